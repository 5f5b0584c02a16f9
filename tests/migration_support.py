"""Shared checks for a domain's migration branch: it builds its tables, goes down on its own
branch leaving the others alone, and comes back up, on SQLite and on a scratch PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.db.migrate import alembic_config, current_revisions, upgrade_blocking
from tests.conftest import PG_ADMIN_URL, REQUIRE_PG, _create_pg_database, _drop_pg_database


async def table_names(url: str) -> set[str]:
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


@asynccontextmanager
async def scratch_postgres() -> AsyncIterator[str]:
    """An empty PostgreSQL database of its own, dropped afterwards (skipped when unreachable,
    unless BILLFOLD_REQUIRE_POSTGRES=1)."""
    try:
        url = await _create_pg_database()
    except Exception as exc:
        if REQUIRE_PG:
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    try:
        yield url
    finally:
        await _drop_pg_database(url)


async def assert_branch_goes_down_and_up(
    url: str, *, branch: str, revision: str, tables: set[str]
) -> None:
    """Upgrade (tables exist), downgrade `branch` one step (its tables gone, the core's kept),
    upgrade again (revision current)."""
    upgrade_blocking(url)
    assert tables <= await table_names(url)
    await asyncio.to_thread(command.downgrade, alembic_config(url), f"{branch}@-1")
    assert revision not in await current_revisions(url)
    remaining = await table_names(url)
    assert not tables & remaining
    assert "billing_accounts" in remaining  # other branches are left alone
    upgrade_blocking(url)
    assert revision in await current_revisions(url)
