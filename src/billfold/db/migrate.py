"""Run Alembic migrations programmatically (the schema changes only through migrations).

Each domain owns a branch of migrations rooted at the core revision; `upgrade` goes to all heads.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from billfold.db.engine import ensure_sqlite_directory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at `url` up to `revision` (all heads by default)."""
    ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url), revision)


def script_heads(url: str = "sqlite://") -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


async def current_revisions(target: str | AsyncEngine) -> set[str]:
    """The revisions the database (a URL, or an engine already open) is at."""
    engine = create_async_engine(target) if isinstance(target, str) else target
    try:
        async with engine.connect() as conn:
            heads = await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_heads()
            )
    finally:
        if isinstance(target, str):
            await engine.dispose()
    return set(heads)


async def is_current(target: str | AsyncEngine) -> bool:
    return await current_revisions(target) == script_heads()


def upgrade_unless_current(url: str) -> bool:
    """`upgrade` when the database is behind the migrations, else nothing: a start at head
    reads the version table (tens of ms) instead of running Alembic's environment (over a
    second). Not from inside a running event loop. True when it upgraded."""
    ensure_sqlite_directory(url)
    try:
        if asyncio.run(current_revisions(url)) == script_heads(url):
            return False
    except SQLAlchemyError:
        pass  # no database yet, or none readable: Alembic says what is wrong
    upgrade(url)
    return True


def upgrade_blocking(url: str) -> None:
    """Run `upgrade` from inside a running event loop (Alembic's env.py starts its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        upgrade(url)
        return
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(url)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
