"""`billfold serve` migrates only a database that is behind: at head, a start reads the version
table and runs no Alembic environment."""

from __future__ import annotations

import asyncio
from pathlib import Path

from billfold.db.engine import Database
from billfold.db.migrate import current_revisions, script_heads, upgrade_unless_current


async def test_a_database_at_head_is_not_migrated_again(database: Database) -> None:
    before = await current_revisions(database.url)
    assert before == script_heads()
    assert await asyncio.to_thread(upgrade_unless_current, database.url) is False
    assert await current_revisions(database.url) == before


async def test_a_new_database_is_migrated_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'billfold.db'}"
    assert await asyncio.to_thread(upgrade_unless_current, url) is True
    assert await current_revisions(url) == script_heads()
    assert await asyncio.to_thread(upgrade_unless_current, url) is False
