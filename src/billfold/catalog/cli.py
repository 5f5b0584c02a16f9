"""`billfold catalog show|sync`: the plans billfold sells, and their Stripe products and prices."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from billfold.audit.cli import cli_actor
from billfold.audit.context import system_audit_context
from billfold.catalog.service import Catalog, load_catalog, sync_catalog, sync_steps
from billfold.container import Container
from billfold.stripe.cli import run_with_container
from billfold.stripe.gateway import gateway_of

catalog_app = typer.Typer(help="Plans and their Stripe prices.", no_args_is_help=True)
console = Console()


@catalog_app.command("show")
def show() -> None:
    """List every plan price with its amount and Stripe price id."""

    async def work(container: Container) -> Catalog:
        async with container.db.transaction() as session:
            return await load_catalog(session, container.settings)

    catalog = run_with_container(work)
    table = Table("plan", "interval", "currency", "amount", "lookup key", "stripe price")
    for plan, price in catalog.prices(active_only=False):
        table.add_row(
            plan.code + ("" if plan.active else " (inactive)"),
            price.interval,
            price.currency,
            "" if price.amount is None else str(price.amount),
            price.lookup_key,
            price.stripe_price_id or "(not synced)",
        )
    console.print(table)


@catalog_app.command("sync")
def sync() -> None:
    """Create or update the Stripe product of every plan and its prices (by lookup key).
    Safe to run again: only what differs changes."""

    async def work(container: Container) -> str:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=False,
        ) as progress:
            async with container.db.transaction() as session:
                catalog = await load_catalog(session, container.settings)
                task = progress.add_task("syncing the catalog", total=sync_steps(catalog))

                def step(line: str) -> None:
                    progress.update(task, advance=1, description=line)

                report = await sync_catalog(
                    session, gateway_of(container), catalog, clock=container.clock, on_step=step
                )
                await system_audit_context(cli_actor(), container.clock).record(
                    session,
                    "catalog.synced",
                    account_id=None,
                    details={
                        "products_created": report.products_created,
                        "prices_created": report.prices_created,
                        "prices_unchanged": report.prices_unchanged,
                    },
                )
                progress.update(task, description="catalog synced")
        return report.summary()

    console.print(run_with_container(work), soft_wrap=True)
