"""Migration 0003_auth_audit goes down and up again on its own branch, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.db.migrate import alembic_config, current_revisions, upgrade_blocking
from tests.conftest import PG_ADMIN_URL, REQUIRE_PG


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


async def _down_and_up(url: str) -> None:
    upgrade_blocking(url)
    assert {"api_keys", "audit_log", "audit_chain_head"} <= await _tables(url)
    await asyncio.to_thread(command.downgrade, alembic_config(url), "auth_audit@-1")
    assert "0003_auth_audit" not in await current_revisions(url)
    remaining = await _tables(url)
    assert not {"api_keys", "audit_log", "audit_chain_head"} & remaining
    assert "billing_accounts" in remaining  # other branches are left alone
    upgrade_blocking(url)
    assert "0003_auth_audit" in await current_revisions(url)


async def test_sqlite(tmp_path: Path) -> None:
    await _down_and_up(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
async def test_postgres() -> None:
    name = f"billfold_mig_{uuid.uuid4().hex[:8]}"
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
        await _down_and_up(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
