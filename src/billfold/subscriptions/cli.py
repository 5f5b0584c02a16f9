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
from billfold.subscriptions.reconcile import DUPLICATE, ORPHAN, orphan_customers
from billfold.subscriptions.reconcile import reconcile as compare

console = Console()


def reconcile(
    fix: bool = typer.Option(False, "--fix", help="Bring billfold's copy in line with Stripe."),
) -> None:
    """Compare every Stripe subscription with billfold's copy and report each difference, and
    every orphan Stripe customer (naming an account that is gone or linked to another one)."""

    async def work(container: Container) -> tuple[list[tuple[str, str, str, str]], int]:
        audit = system_audit_context(cli_actor(), container.clock)
        async with container.db.transaction() as session:
            found = await compare(session, container, fix=fix, audit=audit)
        rows = [(d.stripe_subscription_id, d.field, str(d.billfold), str(d.stripe)) for d in found]
        # Outside that transaction: repairs call Stripe, holding no lock.
        orphans = await orphan_customers(container, fix=fix, audit=audit)
        for o in orphans:
            stripe_side = o.repair or (
                f"kept: {o.live_subscriptions} live subscription(s)" if o.live_subscriptions else ""
            )
            rows.append(
                (
                    o.customer_id,
                    f"{ORPHAN}:{o.reason}",
                    f"{o.account_id} -> {o.linked_customer_id or 'none'}",
                    stripe_side,
                )
            )
        unrepaired = sum(1 for o in orphans if o.repair is None)
        return rows, unrepaired

    rows, unrepaired = run_with_container(work)
    if not rows:
        console.print("billfold and Stripe agree")
        return
    table = Table("subscription / customer", "field", "billfold", "stripe")
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
    if fix and unrepaired:
        console.print(
            f"{unrepaired} orphan customers have a live subscription: cancel it in Stripe "
            "(reconcile --fix then deletes the customer)"
        )
    if not fix or duplicates or unrepaired:
        raise typer.Exit(code=1)
