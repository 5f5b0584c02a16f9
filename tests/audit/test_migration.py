"""The auth_audit branch's head (0011_audit_deferred) goes down and up again, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.migration_support import assert_branch_goes_down_and_up, scratch_postgres

TABLES = {"audit_deferred"}


async def _down_and_up(url: str) -> None:
    await assert_branch_goes_down_and_up(
        url, branch="auth_audit", revision="0011_audit_deferred", tables=TABLES
    )


async def test_sqlite(tmp_path: Path) -> None:
    await _down_and_up(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
async def test_postgres() -> None:
    async with scratch_postgres() as url:
        await _down_and_up(url)
