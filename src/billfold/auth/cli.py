"""`billfold apikey ...`: API keys for the host app's backend."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.cli import cli_actor, run_in_transaction
from billfold.audit.service import record_event
from billfold.auth.apikeys import CreatedApiKey, create_api_key, list_api_keys, revoke_api_key
from billfold.auth.models import ApiKey
from billfold.errors import BillfoldError

apikey_app = typer.Typer(help="API keys for your app's backend.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


async def _record(session: AsyncSession, action: str, key: ApiKey) -> None:
    await record_event(
        session,
        action=action,
        actor=cli_actor(),
        account_id=None,
        target=key.id,
        details={"name": key.name, "prefix": key.prefix},
    )


def _fail(exc: BillfoldError) -> None:
    err_console.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(code=1)


@apikey_app.command("create")
def create(
    name: str = typer.Argument(..., help="What the key is for, e.g. 'web backend'."),
) -> None:
    """Create a key and print it once (only its hash is kept)."""

    async def work(session: AsyncSession) -> CreatedApiKey:
        created = await create_api_key(session, name)
        await _record(session, "api_key.created", created.key)
        return created

    try:
        created = run_in_transaction(work)
    except BillfoldError as exc:
        _fail(exc)
        return
    err_console.print(
        f"created API key {created.key.id} ({created.key.name}); "
        "store it now, it is not shown again:"
    )
    sys.stdout.write(created.secret + "\n")


@apikey_app.command("list")
def list_command(
    active: bool = typer.Option(False, "--active", help="Leave out revoked keys."),
) -> None:
    """List keys (id, name, visible prefix, created, last used, revoked)."""

    async def work(session: AsyncSession) -> list[ApiKey]:
        return list(await list_api_keys(session, include_revoked=not active))

    keys = run_in_transaction(work)
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("prefix", no_wrap=True)
    for column in ("name", "created", "last used", "status"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.id,
            key.prefix + "...",
            key.name,
            key.created_at.strftime("%Y-%m-%d"),
            key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never",
            "revoked " + key.revoked_at.strftime("%Y-%m-%d") if key.revoked_at else "active",
        )
    console.print(table)


@apikey_app.command("revoke")
def revoke(key: str = typer.Argument(..., help="The key's id (ak_...) or visible prefix.")) -> None:
    """Revoke a key: requests with it get 401 from now on."""

    async def work(session: AsyncSession) -> ApiKey:
        revoked = await revoke_api_key(session, key)
        await _record(session, "api_key.revoked", revoked)
        return revoked

    try:
        revoked = run_in_transaction(work)
    except BillfoldError as exc:
        _fail(exc)
        return
    console.print(f"revoked API key {revoked.id} ({revoked.name})")
