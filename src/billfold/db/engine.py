"""The engine and the unit of work.

One transaction per request, webhook event, job or CLI command, owned by the edge that started it:
services `flush`, never `commit`. A unit of work says whether it writes, where it is opened:
`Database.transaction()` (a writer) or `Database.read()` (a reader).

- SQLite (WAL): a writer starts with `BEGIN IMMEDIATE` (so two writers never both read and then
  fail to upgrade their lock) and waits on the busy timeout; a reader starts a deferred `BEGIN`
  on a connection of its own pool where `PRAGMA query_only` is on, so it reads a snapshot while
  a writer holds the lock, and a reader that tries to write fails loudly.
- PostgreSQL: a reader's transaction is `BEGIN READ ONLY` (the same round trip as any BEGIN).
  No pre-ping per checkout: a connection the server dropped is found when its unit of work
  begins (the BEGIN is sent at once), thrown away, and the unit of work starts again on a fresh
  one, once; `pool_recycle` retires connections before servers or proxies time them out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Executable, Row, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from billfold.db.sqlite_inline import READ_BUSY_TIMEOUT_S, connector

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Below the idle timeouts of common proxies and managed servers (often 30 to 60 minutes).
POOL_RECYCLE_SECONDS = 1800
# Set on a read unit of work's session (`session.info`): a write attempt is refused anyway,
# and tenancy opens a writer of its own when a read finds an account missing.
READ_ONLY = "billfold.read_only"
DATABASE = "billfold.database"


def _configure_sqlite(engine: AsyncEngine, *, read_only: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so we can say BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        busy_ms = int(READ_BUSY_TIMEOUT_S * 1000) if read_only else SQLITE_BUSY_TIMEOUT_MS
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        if read_only:
            cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


async def _begin_now(connection: AsyncConnection) -> None:
    """Send the asyncpg transaction's BEGIN now rather than before the first statement, so a
    dropped connection is found while nothing has been done on it yet (the driver would send
    this BEGIN anyway: no extra round trip). A dropped connection is invalidated (the pool then
    also retires every connection opened before it) and DBAPIError says so."""
    sync = connection.sync_connection
    assert sync is not None
    raw: Any = sync.connection.dbapi_connection
    start = getattr(raw, "_start_transaction", None)
    if start is None or getattr(raw, "_transaction", None) is not None:
        return
    try:
        await start()  # a coroutine of the driver's adapter: no greenlet needed
    except sync.dialect.loaded_dbapi.Error as exc:
        disconnected = sync.dialect.is_disconnect(exc, raw, None)
        if disconnected:
            await connection.run_sync(_invalidate, exc)
        raise DBAPIError("BEGIN", None, exc, connection_invalidated=disconnected) from exc


def _invalidate(connection: Connection, exc: BaseException) -> None:
    # What SQLAlchemy does on a disconnect error: the pool retires every connection opened
    # before now (the server dropped them all, most likely), then this one.
    connection.engine.pool._invalidate(connection.connection, exc, _checkin=False)
    connection.invalidate(exc)


def is_read_only(session: AsyncSession) -> bool:
    """Whether `session` is a read unit of work's (`Database.read()`)."""
    return bool(session.info.get(READ_ONLY))


def database_of(session: AsyncSession) -> Database:
    """The `Database` whose unit of work `session` is."""
    database: Database = session.info[DATABASE]
    return database


def ensure_sqlite_directory(url: str) -> None:
    """Create the folder of a SQLite database file (the embedded default's data dir)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)


class Database:
    """Owns the engines and hands out units of work: `transaction()` to write, `read()` to
    read."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        # Overflow connections are closed when given back: a pool smaller than the requests in
        # flight opens and closes a connection per request.
        kwargs: dict[str, Any] = {
            "echo": echo,
            "pool_size": pool_size,
            "max_overflow": pool_size * 2,
        }
        if self.dialect == "sqlite":
            ensure_sqlite_directory(url)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs["pool_recycle"] = POOL_RECYCLE_SECONDS
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.read_engine: AsyncEngine
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, read_only=False)
            # Readers get a pool of their own (query_only is a property of the connection),
            # on the event loop's thread (db/sqlite_inline.py) when the database is a file.
            read_kwargs = dict(kwargs)
            if parsed.database not in (None, "", ":memory:"):
                read_kwargs["async_creator"] = connector(str(parsed.database))
            self.read_engine = create_async_engine(url, **read_kwargs)
            _configure_sqlite(self.read_engine, read_only=True)
        elif self.dialect == "postgresql":
            self.read_engine = self.engine.execution_options(postgresql_readonly=True)
        else:
            self.read_engine = self.engine
        # One statement as its own transaction (`execute_alone`), on the writers' pool.
        self._autocommit: AsyncEngine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessionmaker = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error.
        `write=False` is `read()`."""
        maker = self.sessionmaker if write else self.read_sessionmaker
        async with maker() as session:
            if not write:
                session.info[READ_ONLY] = True
            session.info[DATABASE] = self
            if self.dialect == "postgresql":
                await self._begin_on_live_connection(session)
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A read unit of work: never takes a write lock, never waits behind a writer, and a
        statement that writes fails (SQLite `query_only`, PostgreSQL `READ ONLY`)."""
        return self.transaction(write=False)

    @staticmethod
    async def _begin_on_live_connection(session: AsyncSession) -> None:
        """Begin on a connection the server still holds: one dropped while it sat in the pool
        (a restart, `pg_terminate_backend`, a proxy's timeout) is discarded and the session
        begins again on a fresh one, once."""
        for attempt in (1, 2):
            try:
                connection = await session.connection()
                await _begin_now(connection)
                return
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
                await session.rollback()  # the next connection() takes a fresh one

    async def execute_alone(
        self, statement: Executable, params: dict[str, Any] | None = None
    ) -> list[Row[Any]]:
        """One statement as a unit of work of its own, on one checkout, and the rows it
        returns: on PostgreSQL in autocommit (one statement is atomic: no BEGIN or COMMIT round
        trip), sent again on a fresh connection, once, when the pooled one had been dropped, so
        only for a statement that is safe to send twice (INSERT ... ON CONFLICT DO NOTHING);
        on SQLite in a writer's transaction."""
        if self.dialect != "postgresql":
            async with self.engine.begin() as connection:
                result = await connection.execute(statement, params)
                return list(result.all()) if result.returns_rows else []
        for attempt in (1, 2):
            try:
                async with self._autocommit.connect() as connection:
                    result = await connection.execute(statement, params)
                    return list(result.all()) if result.returns_rows else []
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine.sync_engine is not self.engine.sync_engine:
            await self.read_engine.dispose()
