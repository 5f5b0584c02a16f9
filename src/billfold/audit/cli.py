"""`billfold audit ...`: check the chain, read the log."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.service import deferred_count, list_entries
from billfold.audit.verify import Anchor, ChainReport, chain_head, verify_chain
from billfold.config import get_settings
from billfold.db.engine import Database
from billfold.db.migrate import is_current
from billfold.errors import BillfoldError

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")


def cli_actor() -> str:
    """How the audit log names a person at the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def run_in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the configured database (one transaction per CLI
    command); refuses, with one sentence, a database whose migrations are not current."""

    async def main() -> T:
        database = Database(get_settings().effective_database_url)
        try:
            if not await is_current(database.engine):
                err_console.print(
                    "[red]error:[/red] the database is not at the newest migration; "
                    "run `billfold db upgrade` first"
                )
                raise typer.Exit(code=2)
            async with database.transaction() as session:
                return await work(session)
        finally:
            await database.dispose()

    return asyncio.run(main())


@audit_app.command("verify")
def verify(
    anchor: list[str] = typer.Option(
        [], "--anchor", help="SEQ:HASH printed earlier by `billfold audit head` (repeatable)."
    ),
) -> None:
    """Walk the hash chain; report the first altered, removed or inserted entry (exit 1)."""
    try:
        anchors = [Anchor.parse(text) for text in anchor]
    except BillfoldError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(code=2) from exc

    async def work(session: AsyncSession) -> tuple[ChainReport, int]:
        return await verify_chain(session, anchors), await deferred_count(session)

    report, waiting = run_in_transaction(work)
    if report.ok:
        console.print(f"audit log intact: {report.checked} entries verified")
        if waiting:
            console.print(
                f"{waiting} deferred entries (usage debits) wait to be chained by the "
                "audit.chain_deferred job"
            )
        return
    err_console.print(
        f"[red]audit log broken at entry {report.broken_seq}:[/red] {report.reason} "
        f"({report.checked} entries before it verified)"
    )
    raise typer.Exit(code=1)


@audit_app.command("head")
def head() -> None:
    """Print the newest entry as SEQ:HASH, to keep outside the database as an anchor."""
    newest = run_in_transaction(chain_head)
    if newest is None:
        err_console.print("the audit log is empty")
        raise typer.Exit(code=1)
    sys.stdout.write(f"{newest}\n")


@audit_app.command("list")
def list_command(
    account_id: str | None = typer.Option(None, "--account", help="Only this account (acct_...)."),
    limit: int = typer.Option(20, min=1, max=1000, help="How many of the newest entries."),
) -> None:
    """Show the newest entries."""

    async def work(session: AsyncSession) -> None:
        entries, _ = await list_entries(session, account_id=account_id, limit=limit)
        for entry in entries:
            where = " ".join(
                part
                for part in (
                    entry.account_id,
                    f"target={entry.target}" if entry.target else None,
                    f"ip={entry.ip}" if entry.ip else None,
                    f"request={entry.request_id}" if entry.request_id else None,
                )
                if part
            )
            console.print(
                f"{entry.seq:>6}  {entry.occurred_at.strftime('%Y-%m-%d %H:%M:%S')}  "
                f"{entry.action:<24} {entry.actor}  {where}  {entry.details_json}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )

    run_in_transaction(work)
