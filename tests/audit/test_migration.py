"""Migration 0003_auth_audit goes down and up again on its own branch, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.migration_support import assert_branch_goes_down_and_up, scratch_postgres

TABLES = {"api_keys", "audit_log", "audit_chain_head"}


async def _down_and_up(url: str) -> None:
    await assert_branch_goes_down_and_up(
        url, branch="auth_audit", revision="0003_auth_audit", tables=TABLES
    )


async def test_sqlite(tmp_path: Path) -> None:
    await _down_and_up(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
async def test_postgres() -> None:
    async with scratch_postgres() as url:
        await _down_and_up(url)
