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


def test_the_heads_read_from_the_scripts_are_alembics() -> None:
    # script_heads() reads the scripts' revision lines instead of importing them with Alembic.
    from alembic.script import ScriptDirectory

    from billfold.db.migrate import alembic_config

    alembic = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert script_heads() == set(alembic)


def test_a_revision_written_over_several_lines_is_read() -> None:
    from billfold.db.migrate import _revision_values

    source = 'revision: str = "0011_x"\ndown_revision: tuple[str, ...] = (\n    "a",\n    "b",\n)\n'
    assert _revision_values(source) == {"revision": "0011_x", "down_revision": ("a", "b")}


async def test_a_database_without_a_version_table_is_at_no_revision(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    assert await current_revisions(url) == set()
