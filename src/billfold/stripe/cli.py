"""`billfold stripe sync|retry|events`: keep billfold's webhook inbox in step with Stripe.
(`billfold stripe reconcile` is the subscriptions domain's, wired onto this group by cli.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from billfold.clock import SystemClock
from billfold.config import Settings, get_settings
from billfold.container import Container
from billfold.db.engine import Database
from billfold.db.migrate import is_current
from billfold.errors import BillfoldError, UpstreamUnavailable
from billfold.stripe.gateway import StripeClientGateway
from billfold.stripe.inbox import process_due, sync_events
from billfold.stripe.models import WebhookEvent

stripe_app = typer.Typer(help="Stripe: fill event gaps, reconcile, retry.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")

# The composition root (billfold.cli) puts billfold.wiring.wire here: it gives the container
# what the domains declare (the handlers of Stripe's events), which stripe/ may not import.
CONTAINER_WIRING: list[Callable[[Container], object]] = []


def run_with_container(work: Callable[[Container], Awaitable[T]]) -> T:
    """Run `work` against the configured database and Stripe (one command, its own
    transactions), refusing a database whose migrations are not current."""

    settings = get_settings()
    settings.use_recorded_server_url()

    async def main() -> T:
        settings.check()
        database = Database(settings.effective_database_url)
        try:
            if not await is_current(database.engine):
                err_console.print(
                    "[red]error:[/red] the database is not at the newest migration; "
                    "run `billfold db upgrade` first"
                )
                raise typer.Exit(code=2)
            container = Container(
                settings=settings,
                db=database,
                clock=SystemClock(),
                stripe_gateway=StripeClientGateway(settings),
            )
            for wire in CONTAINER_WIRING:
                wire(container)
            return await work(container)
        finally:
            await database.dispose()

    try:
        return asyncio.run(main())
    except UpstreamUnavailable as exc:
        err_console.print(f"[red]error:[/red] {unreachable_message(settings)}", highlight=False)
        raise typer.Exit(code=1) from exc
    except BillfoldError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(code=1) from exc


def unreachable_message(settings: Settings) -> str:
    """One sentence: which Stripe was tried and how to point the command elsewhere."""
    if settings.stripe_api_base_override:
        return (
            f"cannot reach Stripe at {settings.stripe_api_base} (BILLFOLD_STRIPE_API_BASE): start "
            "the sandbox there (`billfold sandbox serve`) or correct the variable."
        )
    if settings.sandbox_mode:
        return (
            f"cannot reach billfold's Stripe sandbox at {settings.stripe_api_base}: start "
            "`billfold serve` (with the same BILLFOLD_DATA_DIR), or set BILLFOLD_PORT "
            "(or BILLFOLD_PUBLIC_URL) to where it listens."
        )
    return "cannot reach Stripe (api.stripe.com): check this machine's network and proxy."


@stripe_app.command("sync")
def sync(
    since: int | None = typer.Option(
        None, help="Unix time to read events from (default: 5 minutes before the newest stored)."
    ),
) -> None:
    """Store every Stripe event the inbox lacks (after downtime) and apply them."""
    report = run_with_container(lambda c: sync_events(c, since=since))
    applied = report.applied
    console.print(
        f"{report.seen} events read, {report.stored} new; "
        f"{applied.processed if applied else 0} applied, {applied.failed if applied else 0} failed"
    )
    if applied and applied.failed:
        raise typer.Exit(code=1)


@stripe_app.command("retry")
def retry(
    all_: bool = typer.Option(
        False, "--all", help="Also retry events given up on (dead) and ones not due yet."
    ),
) -> None:
    """Apply pending events and retry failed ones."""

    async def work(container: Container) -> tuple[int, int]:
        report = await process_due(container, limit=100_000, include_dead=all_)
        return report.processed, report.failed

    processed, failed = run_with_container(work)
    console.print(f"{processed} applied, {failed} failed")
    if failed:
        raise typer.Exit(code=1)


@stripe_app.command("events")
def events() -> None:
    """Count the inbox's events by status, and show the failed ones."""

    async def work(container: Container) -> tuple[list[tuple[str, int]], list[WebhookEvent]]:
        async with container.db.transaction() as session:
            counts = (
                await session.execute(
                    select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
                )
            ).all()
            failed = (
                await session.execute(
                    select(WebhookEvent)
                    .where(WebhookEvent.status.in_(["failed", "dead"]))
                    .order_by(WebhookEvent.received_at)
                    .limit(50)
                )
            ).scalars()
            return [(str(s), int(n)) for s, n in counts], list(failed)

    counts, failed = run_with_container(work)
    for status_name, count in counts:
        console.print(f"{status_name}: {count}")
    if failed:
        table = Table("event", "type", "status", "attempts", "last error")
        for row in failed:
            table.add_row(row.id, row.type, row.status, str(row.attempts), row.last_error or "")
        console.print(table)
