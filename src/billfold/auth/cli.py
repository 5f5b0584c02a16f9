"""`billfold apikey ...`: API keys for the host app's backend."""

from __future__ import annotations

import sys
from datetime import datetime

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.cli import cli_actor, run_in_transaction
from billfold.audit.service import record_event
from billfold.auth.apikeys import CreatedApiKey, create_api_key, list_api_keys, revoke_api_key
from billfold.auth.models import ApiKey
from billfold.auth.tokens import parse_ttl
from billfold.clock import utcnow
from billfold.errors import BillfoldError

apikey_app = typer.Typer(help="API keys for your app's backend.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


async def _record(session: AsyncSession, action: str, key: ApiKey) -> None:
    await record_event(
        session,
        action=action,
        actor=cli_actor(),
        account_id=None,
        target=key.id,
        details={"name": key.name, "prefix": key.prefix},
    )


def _status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked " + key.revoked_at.strftime("%Y-%m-%d")
    if key.expires_at is not None:
        verb = "expires" if key.is_active(now) else "expired"
        return f"{verb} {key.expires_at.strftime('%Y-%m-%d')}"
    return "active"


def _fail(exc: BillfoldError) -> None:
    err_console.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(code=1)


@apikey_app.command("create")
def create(
    name: str = typer.Argument(..., help="What the key is for, e.g. 'web backend'."),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="Lifetime such as 90d (default: until revoked)."
    ),
) -> None:
    """Create a key and print it once (only its hash is kept)."""

    async def work(session: AsyncSession) -> CreatedApiKey:
        lifetime = parse_ttl(expires_in) if expires_in is not None else None
        created = await create_api_key(session, name, expires_in=lifetime)
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
    now = utcnow()
    # One key a line (id, prefix, status, created, last use, name): readable in any terminal
    # width and easy to grep.
    for key in keys:
        last_used = key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never"
        console.print(
            f"{key.id}  {key.prefix}...  {_status(key, now):<18}  "
            f"created {key.created_at.strftime('%Y-%m-%d')}  last used {last_used}  {key.name}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    if not keys:
        err_console.print("no API keys yet: `billfold apikey create NAME`")


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
