"""`billfold catalog ...` and `billfold stripe ...` against the Stripe sandbox, through the real
SDK, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billfold.cli import app
from billfold.config import get_settings
from billfold.db.engine import Database
from tests.sandbox_fixtures import SandboxServer


@pytest.fixture
def cli_env(
    database: Database,
    sandbox_server: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    monkeypatch.setenv("BILLFOLD_DATABASE_URL", database.url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", sandbox_server.api_key)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_cli_tests")
    monkeypatch.setenv("BILLFOLD_STRIPE_API_BASE", sandbox_server.url)
    monkeypatch.setenv("BILLFOLD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BILLFOLD_JWT_SECRET", "cli-secret-that-is-long-enough-for-hs256-0123456789")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_catalog_sync_and_stripe_commands(
    cli_env: None, sandbox_server: SandboxServer, database: Database
) -> None:
    database_url = database.url
    first = run("catalog", "sync")
    assert "prices: 4 created, 0 unchanged" in first
    assert "products: 1 created" in first and "nothing changed" not in first
    again = run("catalog", "sync")
    assert "prices: 0 created, 4 unchanged" in again
    # A second run with nothing changed says so (it used to report the product "1 updated").
    assert "nothing changed" in again and "0 updated, 1 unchanged" in again
    with sandbox_server.state.lock:
        plan_prices = [
            p for p in sandbox_server.state.all("price") if p["product"] == "billfold_premium"
        ]
        assert len(plan_prices) == 4  # (credit packages have prices of their own)
    shown = run("catalog", "show")
    assert "premium" in shown and "price_" in shown and "(not synced)" not in shown

    assert "billfold and Stripe agree" in run("stripe", "reconcile")
    synced = run("stripe", "sync", "--since", "0")
    assert " new; " in synced and "0 failed" in synced
    events_read = int(synced.split(" events read")[0])
    assert events_read >= 5  # product.created, price.created x4 at least
    assert run("stripe", "sync", "--since", "0").split(", ")[0].endswith(" events read")
    assert ", 0 new;" in run("stripe", "sync", "--since", "0")
    assert "0 applied, 0 failed" in run("stripe", "retry")
    assert f"processed: {events_read}" in run("stripe", "events")
    assert _audit_actions(database_url).count("catalog.synced") == 2


def _audit_actions(url: str) -> list[str]:
    import asyncio

    from sqlalchemy import select

    from billfold.audit.models import AuditEntry

    async def read() -> list[str]:
        db = Database(url)
        try:
            async with db.transaction() as session:
                return list((await session.execute(select(AuditEntry.action))).scalars())
        finally:
            await db.dispose()

    return asyncio.run(read())
