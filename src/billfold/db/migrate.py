"""Run Alembic migrations programmatically (the schema changes only through migrations).

Each domain owns a branch of migrations rooted at the core revision; `upgrade` goes to all heads.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, cast

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from billfold.db.engine import ensure_sqlite_directory

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps (the SELECT names it too)
# `revision: str = "0002_ledger"` and `down_revision: ... = "0001_core"` (or a tuple, or None):
# the two lines of a migration script the heads are computed from.
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def alembic_config(url: str) -> Config:
    """Alembic's configuration for `url` (Alembic is imported here: the commands and the server
    that only check the database's revision never load it)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at `url` up to `revision` (all heads by default)."""
    from alembic import command

    ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url), revision)


def script_heads(url: str = "sqlite://") -> set[str]:
    """The revisions no migration script builds on: what `upgrade` goes to (Alembic's
    `ScriptDirectory.get_heads()`, read from the scripts' revision lines without importing
    them; a test keeps the two equal)."""
    return set(_script_heads())


@functools.cache
def _script_heads() -> frozenset[str]:
    revisions: set[str] = set()
    built_on: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        values = _revision_values(script.read_text(encoding="utf-8"))
        if "revision" not in values:
            continue
        revisions.add(str(values["revision"]))
        down = values.get("down_revision")
        built_on.update([down] if isinstance(down, str) else cast("tuple[str, ...]", down or ()))
    return frozenset(revisions - built_on)


def _revision_values(source: str) -> dict[str, object]:
    try:
        return {name: ast.literal_eval(value) for name, value in _REVISION_LINE.findall(source)}
    except (ValueError, SyntaxError):  # a value over several lines: read the whole script
        values: dict[str, object] = {}
        for node in ast.parse(source).body:
            if isinstance(node, ast.AnnAssign) and node.value is not None:
                targets: list[ast.expr] = [node.target]
                value = node.value
            elif isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    values[target.id] = ast.literal_eval(value)
        return values


def _version_rows(conn: Connection) -> set[str]:
    # Alembic's MigrationContext.get_current_heads(): no version table is no revision.
    if not inspect(conn).has_table(VERSION_TABLE):
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


async def current_revisions(target: str | AsyncEngine) -> set[str]:
    """The revisions the database (a URL, or an engine already open) is at."""
    engine = create_async_engine(target) if isinstance(target, str) else target
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_version_rows)
    finally:
        if isinstance(target, str):
            await engine.dispose()


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
