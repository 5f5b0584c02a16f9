"""`billfold ledger ...`: checks on the ledger from the command line."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from billfold.config import get_settings
from billfold.db.engine import Database
from billfold.ledger.verify import LedgerProblem, verify_ledger

ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


async def _verify(url: str) -> list[LedgerProblem]:
    db = Database(url)
    try:
        async with db.transaction() as session:
            return await verify_ledger(session)
    finally:
        await db.dispose()


@ledger_app.command("verify")
def verify() -> None:
    """Recompute every balance from the entries and report each difference (exit 1 if any,
    2 if the database cannot be read)."""
    try:
        problems = asyncio.run(_verify(get_settings().effective_database_url))
    except (SQLAlchemyError, OSError) as exc:
        err_console.print(
            f"[red]error:[/red] cannot read the ledger ({type(exc).__name__}): "
            f"{str(exc).splitlines()[0]} (has `billfold db upgrade` run?)",
            highlight=False,
        )
        raise typer.Exit(code=2) from None
    if not problems:
        console.print("ledger verified: every balance matches its entries")
        return
    for problem in problems:
        console.print(f"[red]{problem.kind}[/red]: {problem.message}", highlight=False)
    console.print(f"[red]{len(problems)} problem(s) found[/red]")
    raise typer.Exit(code=1)
