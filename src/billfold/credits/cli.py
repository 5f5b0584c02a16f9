"""`billfold credits grant|revoke`: promotional credits from the command line, with a reason
(audited as `cli:<user>`, posted on the ledger like the API's and the operator console's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.cli import cli_actor, run_in_transaction
from billfold.audit.context import system_audit_context
from billfold.auth.principal import AccountRef
from billfold.clock import SystemClock
from billfold.config import get_settings
from billfold.credits import service
from billfold.customers.service import get_or_create_account
from billfold.db.base import new_id
from billfold.errors import BillfoldError

credits_app = typer.Typer(help="Prepaid credits: promotional grants.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """One transaction; a billfold error is one line and exit status 1."""
    try:
        return run_in_transaction(work)
    except BillfoldError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(code=1) from None


@credits_app.command("grant")
def grant(
    account: str = typer.Argument(..., help="user:ID, organization:ID or shop:DOMAIN"),
    credits: int = typer.Argument(..., help="How many credits."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    expires_at: str | None = typer.Option(
        None, "--expires-at", help="When they expire (ISO 8601 with its offset)."
    ),
    key: str | None = typer.Option(
        None, "--key", help="Idempotency key: the same key grants once (default: a new one)."
    ),
) -> None:
    """Grant promotional credits to an account (created on first use)."""
    clock = SystemClock()

    async def work(session: AsyncSession) -> service.Granted:
        ref = AccountRef.parse(account, field="account")
        found = await get_or_create_account(
            session,
            ref.kind,
            ref.external_id,
            currency=get_settings().stripe_default_currency,
            clock=clock,
        )
        return await service.grant_promotion(
            session,
            account_id=found.id,
            credits=credits,
            reason=reason,
            idempotency_key=key or new_id("cli"),
            expires_at=service.check_expiry(expires_at, clock.now(), field="--expires-at"),
            clock=clock,
            audit=system_audit_context(cli_actor(), clock),
        )

    granted = _run(work)
    again = " (already granted with this key)" if granted.replayed else ""
    console.print(
        f"grant {granted.lot_id}: {granted.credits} credits{again}; balance {granted.balance}",
        highlight=False,
    )


@credits_app.command("revoke")
def revoke(
    grant_id: int = typer.Argument(..., help="The grant's id (as `grant` printed it)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
) -> None:
    """Take back the unspent remainder of a promotional grant."""
    clock = SystemClock()

    async def work(session: AsyncSession) -> service.Revoked:
        return await service.revoke_grant(
            session,
            lot_id=grant_id,
            reason=reason,
            clock=clock,
            audit=system_audit_context(cli_actor(), clock),
        )

    revoked = _run(work)
    console.print(
        f"grant {grant_id}: {revoked.credits} unspent credits taken back; "
        f"balance {revoked.balance}",
        highlight=False,
    )
