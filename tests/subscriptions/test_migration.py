"""Migration 0004_subscriptions: matches the models, and goes down and up again on its own
branch, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.db.base import Base
from billfold.db.migrate import alembic_config, current_revisions, upgrade_blocking
from tests.conftest import PG_ADMIN_URL, REQUIRE_PG

TABLES = {"subscriptions", "stripe_webhook_events", "catalog_price_links"}


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            if url.startswith("sqlite"):
                sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
            else:
                sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            return set((await conn.execute(text(sql))).scalars())
    finally:
        await engine.dispose()


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
    assert TABLES <= await _tables(url)
    assert await _differences(url) == []
    await asyncio.to_thread(command.downgrade, alembic_config(url), "subscriptions@-1")
    assert "0004_subscriptions" not in await current_revisions(url)
    remaining = await _tables(url)
    assert not TABLES & remaining
    assert "billing_accounts" in remaining  # other branches are left alone
    upgrade_blocking(url)
    assert "0004_subscriptions" in await current_revisions(url)


async def test_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
async def test_postgres() -> None:
    name = f"billfold_mig_subs_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        if REQUIRE_PG:
            raise
        pytest.skip(f"PostgreSQL not reachable: {type(exc).__name__}")
    try:
        await _check(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
