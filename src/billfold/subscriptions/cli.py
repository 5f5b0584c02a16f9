"""`billfold stripe reconcile`: compare billfold's subscriptions with Stripe's (wired onto the
`billfold stripe` group by the top-level cli.py: the subscriptions domain calls the gateway,
the gateway never calls the domain)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from billfold.audit.cli import cli_actor
from billfold.audit.context import system_audit_context
from billfold.container import Container
from billfold.stripe.cli import run_with_container
from billfold.subscriptions.reconcile import DUPLICATE
from billfold.subscriptions.reconcile import reconcile as compare

console = Console()


def reconcile(
    fix: bool = typer.Option(False, "--fix", help="Bring billfold's copy in line with Stripe."),
) -> None:
    """Compare every Stripe subscription with billfold's copy and report each difference."""

    async def work(container: Container) -> list[tuple[str, str, str, str]]:
        audit = system_audit_context(cli_actor(), container.clock)
        async with container.db.transaction() as session:
            found = await compare(session, container, fix=fix, audit=audit)
        return [(d.stripe_subscription_id, d.field, str(d.billfold), str(d.stripe)) for d in found]

    rows = run_with_container(work)
    if not rows:
        console.print("billfold and Stripe agree")
        return
    table = Table("subscription", "field", "billfold", "stripe")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"{len(rows)} differences" + (" repaired" if fix else " (run with --fix)"))
    duplicates = sum(1 for row in rows if row[1] == DUPLICATE)
    if duplicates:
        # Never repaired automatically: which subscription to cancel (and refund) is a decision.
        console.print(
            f"{duplicates} accounts pay for a second live subscription: cancel the extra one in "
            "Stripe (billfold keeps both; `has_premium` follows the one listed as `stripe`)"
        )
    if not fix or duplicates:
        raise typer.Exit(code=1)
