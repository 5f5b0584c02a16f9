"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

The schema is built by the Alembic migrations once per backend and test session; each test
starts from empty tables. PostgreSQL comes from BILLFOLD_TEST_POSTGRES_URL (default: the local
server, database `test`); without it those tests are skipped visibly, unless
BILLFOLD_REQUIRE_POSTGRES=1 (as in CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.app import create_app
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.db.base import Base
from billfold.db.engine import Database
from billfold.db.migrate import upgrade_blocking
from billfold.schema import load_all_models

pytest_plugins = ["tests.sandbox_fixtures"]

load_all_models()

PG_ADMIN_URL = os.environ.get(
    "BILLFOLD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("BILLFOLD_REQUIRE_POSTGRES") == "1"
TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


async def _create_pg_database() -> str:
    name = f"billfold_test_{_worker()}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def _drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


_pg_state: dict[str, Any] = {}


async def _postgres_url() -> str:
    if "url" in _pg_state:
        return str(_pg_state["url"])
    if "error" in _pg_state:
        raise _pg_state["error"]
    try:
        url = await asyncio.wait_for(_create_pg_database(), timeout=15)
    except Exception as exc:
        _pg_state["error"] = exc
        raise
    upgrade_blocking(url)
    _pg_state["url"] = url
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "billfold.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade_blocking(url)
    return url


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_at_end() -> Iterator[None]:
    yield
    if "url" in _pg_state:
        asyncio.run(_drop_pg_database(_pg_state["url"]))


async def _empty_tables(db: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with db.engine.begin() as conn:
        if db.is_sqlite:
            for name in tables:
                await conn.execute(text(f'DELETE FROM "{name}"'))
        else:
            joined = ", ".join(f'"{n}"' for n in tables)
            await conn.execute(text(f"TRUNCATE {joined} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        url = sqlite_url
    else:
        try:
            url = await _postgres_url()
        except Exception as exc:
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL is required (BILLFOLD_REQUIRE_POSTGRES=1): {exc!r}")
            pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    db = Database(url, pool_size=20)
    await _empty_tables(db)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        jwt_secret=TEST_JWT_SECRET,
        data_dir=tmp_path / "data",
        frontend_url="https://app.example.com",
        environment="test",
        # Limits on (the middleware runs in every test) but out of the way; test_ratelimit.py
        # sets small ones.
        rate_limit="100000/minute",
        rate_limit_checkout="100000/minute",
        rate_limit_address="100000/minute",
        rate_limit_auth_failures="100000/minute",
    )


@pytest.fixture
async def app(settings: Settings, database: Database) -> Any:
    return create_app(settings, database=database)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billfold.test") as c:
        yield c
