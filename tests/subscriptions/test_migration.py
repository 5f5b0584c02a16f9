"""Migrations 0004_subscriptions and 0008_subscription_changes: match the models, and the
branch's head goes down and up again on its own, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.db.base import Base
from billfold.db.migrate import upgrade_blocking
from tests.migration_support import assert_branch_goes_down_and_up, scratch_postgres

TABLES = {
    "subscriptions",
    "stripe_webhook_events",
    "catalog_price_links",
    "subscription_changes",
}


async def _differences(url: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()

    def table_of(entry: Any) -> str | None:
        first = entry[0] if isinstance(entry, list) else entry
        for item in first[1:]:
            name = getattr(item, "name", None) if not isinstance(item, str) else None
            table = getattr(item, "table", None)
            if table is not None:
                return str(table.name)
            if name in TABLES:
                return str(name)
            if isinstance(item, str) and item in TABLES:
                return item
        return None

    return [d for d in diff if table_of(d) in TABLES]


async def _check(url: str) -> None:
    upgrade_blocking(url)
    assert await _differences(url) == []
    await assert_branch_goes_down_and_up(
        url,
        branch="subscriptions",
        revision="0008_subscription_changes",
        tables={"subscription_changes"},
    )


async def test_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
async def test_postgres() -> None:
    async with scratch_postgres() as url:
        await _check(url)
