"""Migrations 0006_customers and 0007_checkout_attempts: they match the models, move the
account's Stripe state out of the settings JSON and back again, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.db.base import Base, JSONType, UTCDateTime
from billfold.db.migrate import alembic_config, upgrade_blocking
from tests.migration_support import assert_branch_goes_down_and_up, scratch_postgres

ACCOUNTS = sa.table(
    "billing_accounts",
    sa.column("id", sa.String),
    sa.column("kind", sa.String),
    sa.column("external_id", sa.String),
    sa.column("currency", sa.String),
    sa.column("settings", JSONType),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
BEFORE = {
    "theme": "dark",
    "stripe_customer_generation": 2,
    "open_checkout_session": {"id": "cs_test_1", "offer": "f" * 64},
}


async def _run(url: str, fn: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _differences(sync: Any) -> list[Any]:
    diff = compare_metadata(MigrationContext.configure(sync), Base.metadata)
    watched = {"billing_accounts", "checkout_attempts"}
    return [d for d in diff if watched & {getattr(x, "name", x) for x in _tables(d)}]


def _tables(entry: Any) -> set[Any]:
    first = entry[0] if isinstance(entry, list) else entry
    found: set[Any] = set()
    for item in first[1:]:
        table = getattr(item, "table", None)
        found.add(table.name if table is not None else getattr(item, "name", item))
    return found


async def _downgrade_both(url: str) -> None:
    for branch in ("customers", "checkout_attempts"):
        await asyncio.to_thread(command.downgrade, alembic_config(url), f"{branch}@-1")


async def _check(url: str) -> None:
    upgrade_blocking(url)
    assert await _run(url, _differences) == []
    await _downgrade_both(url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    await _run(
        url,
        lambda sync: sync.execute(
            ACCOUNTS.insert().values(
                id="acct_1",
                kind="user",
                external_id="ada",
                currency="usd",
                settings=BEFORE,
                created_at=now,
                updated_at=now,
            )
        ),
    )
    upgrade_blocking(url)

    def moved(sync: Any) -> tuple[Any, ...]:
        account = sync.execute(
            sa.text("SELECT stripe_customer_generation FROM billing_accounts")
        ).one()
        settings = sync.execute(sa.select(ACCOUNTS.c.settings)).scalar_one()
        attempt = sync.execute(
            sa.text("SELECT state, stripe_checkout_session_id, offer FROM checkout_attempts")
        ).one()
        return account[0], settings, tuple(attempt)

    generation, settings, attempt = await _run(url, moved)
    assert generation == 2 and settings == {"theme": "dark"}
    assert attempt == ("open", "cs_test_1", "f" * 64)

    await _downgrade_both(url)
    restored = await _run(url, lambda sync: sync.execute(sa.select(ACCOUNTS.c.settings)).scalar())
    assert restored == BEFORE
    await assert_branch_goes_down_and_up(
        url,
        branch="checkout_attempts",
        revision="0007_checkout_attempts",
        tables={"checkout_attempts"},
    )
    await assert_branch_goes_down_and_up(
        url, branch="customers", revision="0006_customers", tables=set()
    )


async def test_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
async def test_postgres() -> None:
    async with scratch_postgres() as url:
        await _check(url)
