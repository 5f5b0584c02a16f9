"""The engine and the unit of work.

One transaction per request, webhook event, job or CLI command, owned by the edge that started it:
services `flush`, never `commit`. A unit of work says whether it writes, where it is opened:
`Database.transaction()` (a writer) or `Database.read()` (a reader). A hot path whose work is
Core statements only (the ledger's posting) may take `Database.connection()` instead: the same
writer's transaction on a bare connection, without the ORM session's cost per transaction.

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

import asyncio
import sqlite3
import weakref
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
from sqlalchemy.util.concurrency import await_only, greenlet_spawn

from billfold.db.hot_read import CompiledRead, PreparedRead
from billfold.db.sqlite_inline import READ_BUSY_TIMEOUT_S, connector

Executor = AsyncSession | AsyncConnection
"""What runs a service's Core statements: a unit of work's session (`Database.transaction()`,
`read()`) or its bare connection (`Database.connection()`). Both say `execute`; the
dialect is `dialect_name(executor)`."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Below the idle timeouts of common proxies and managed servers (often 30 to 60 minutes).
POOL_RECYCLE_SECONDS = 1800
# Set on a read unit of work's session (`session.info`): a write attempt is refused anyway,
# and tenancy opens a writer of its own when a read finds an account missing.
READ_ONLY = "billfold.read_only"
DATABASE = "billfold.database"


def _sqlite_pragmas(*, read_only: bool) -> list[str]:
    busy_ms = int(READ_BUSY_TIMEOUT_S * 1000) if read_only else SQLITE_BUSY_TIMEOUT_MS
    pragmas = [
        f"PRAGMA busy_timeout = {busy_ms}",
        "PRAGMA foreign_keys = ON",
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
    ]
    return [*pragmas, "PRAGMA query_only = ON"] if read_only else pragmas


def _configure_sqlite(engine: AsyncEngine, *, read_only: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so we can say BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _sqlite_pragmas(read_only=read_only):
            cursor.execute(pragma)
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


def dialect_name(executor: Executor) -> str:
    """`postgresql` or `sqlite`: the database a session or connection talks to."""
    if isinstance(executor, AsyncConnection):
        return str(executor.dialect.name)
    return str(executor.get_bind().dialect.name)


def _driver_transaction(connection: AsyncConnection) -> Any | None:
    """The asyncpg transaction `_begin_now` opened on `connection` and SQLAlchemy's own
    Connection never began (no statement went through it), or None."""
    sync = connection.sync_connection
    if sync is None or sync.in_transaction():
        return None
    return getattr(sync.connection.dbapi_connection, "_transaction", None)


async def _end_driver_transaction(connection: AsyncConnection, *, commit: bool) -> None:
    """Commit (or roll back) a unit of work's transaction. When only the driver began it
    (every statement went straight to asyncpg), asyncpg ends it: no greenlet hop through
    SQLAlchemy's Connection, which has nothing to do; otherwise SQLAlchemy does."""
    if _driver_transaction(connection) is None:
        await (connection.commit() if commit else connection.rollback())
        return
    sync = connection.sync_connection
    assert sync is not None
    adapter: Any = sync.connection.dbapi_connection
    end = adapter._transaction.commit if commit else adapter._transaction.rollback
    dbapi_error = sync.dialect.loaded_dbapi.Error
    try:
        try:
            await adapter._call_and_discard(end)
        except Exception as exc:
            adapter._handle_exception(exc)  # raises asyncpg's error in the DBAPI's form
    except dbapi_error as exc:
        disconnected = sync.dialect.is_disconnect(exc, adapter, None)
        if disconnected:
            await connection.run_sync(_invalidate, exc)
        raise DBAPIError.instance(
            "COMMIT" if commit else "ROLLBACK",
            None,
            exc,
            dbapi_error,
            connection_invalidated=disconnected,
            dialect=sync.dialect,
        ) from exc


def _fetch_sqlite(engine: Any, compiled: CompiledRead, arguments: list[Any]) -> Any:
    """A hot read of an in-memory SQLite database (aiosqlite), in one greenlet: checkout,
    statement, checkin."""
    connection = engine.raw_connection()
    try:
        driver: Any = connection.driver_connection
        return await_only(driver.execute_fetchall(compiled.sql, arguments))
    finally:
        connection.close()


def _fetch_postgresql(engine: Any, compiled: CompiledRead, arguments: list[Any]) -> Any:
    """A PostgreSQL hot read, in one greenlet (the pool may open or close a connection, which
    asyncpg does awaiting; one greenlet for all of it costs less than one per step)."""
    for attempt in (1, 2):
        connection = engine.raw_connection()
        try:
            return await_only(connection.driver_connection.fetch(compiled.sql, *arguments))
        except Exception as exc:
            if attempt == 1 and (_dropped(exc) or _unusable(exc)):
                # This connection is closed for good, and the pool's older ones are replaced
                # when next checked out (the server dropped them all alike).
                engine.pool._invalidate(connection, exc)
                continue
            raise
        finally:
            connection.close()
    raise AssertionError("unreachable")


def _sqlite_reader(path: str) -> sqlite3.Connection:
    """A read-only connection on the loop's thread (as sqlite_inline's), in autocommit: each
    statement is its own read transaction, a snapshot, ended when its rows are fetched."""
    connection = sqlite3.connect(
        path, timeout=READ_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
    )
    for pragma in _sqlite_pragmas(read_only=True):
        connection.execute(pragma)
    return connection


def _dropped(exc: BaseException) -> bool:
    """Whether asyncpg's `exc` says the connection is gone (the server dropped it)."""
    import asyncpg  # type: ignore[import-untyped]

    return isinstance(
        exc, (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)
    ) or getattr(exc, "sqlstate", None) in ("57P01", "57P02", "57P03")


def _unusable(exc: BaseException) -> bool:
    """Whether asyncpg refused to use the connection at all (left mid-operation by a failure
    it saw first): a single read is safe to run again on a fresh one."""
    import asyncpg

    return isinstance(exc, asyncpg.InternalClientError)


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
        self.pool_size = pool_size
        # Hot reads in flight on PostgreSQL, per event loop: at most the pool's size, so a burst
        # waits for a pooled connection rather than opening (and closing) overflow ones.
        self._hot_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._hot_slots = weakref.WeakKeyDictionary()
        # SQLite: the connection hot reads use (read_rows), when the database is a file.
        self._hot_sqlite: sqlite3.Connection | None = None
        self._inline_reads = False  # SQLite readers on the loop's thread (a file's)
        self._sqlite_path = str(parsed.database)
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
                self._inline_reads = True
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

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A writer unit of work on a bare Core connection, for hot paths that run only Core
        statements (the ledger's posting, `bench/ledger.py`): the same transaction as
        `transaction()` (owned by the edge, committed on success, rolled back on error;
        BEGIN IMMEDIATE on SQLite; on PostgreSQL the BEGIN sent at once, a dropped pooled
        connection replaced once) without an ORM session, its identity map, its events and
        its flushes. Services take it wherever they take a session for Core work
        (`Executor`); there is no audit chaining at its commit (`record_event` needs a
        session)."""
        connection = await self._live_connection()
        try:
            try:
                yield connection
            except BaseException:
                await _end_driver_transaction(connection, commit=False)
                raise
            await _end_driver_transaction(connection, commit=True)
        finally:
            await connection.close()

    async def _live_connection(self) -> AsyncConnection:
        """A pooled connection inside a begun writer transaction."""
        for attempt in (1, 2):
            connection = await self.engine.connect()
            try:
                if self.dialect == "postgresql":
                    await _begin_now(connection)
                else:
                    await connection.begin()
                return connection
            except DBAPIError as exc:
                await connection.close()
                if attempt == 2 or not exc.connection_invalidated:
                    raise
            except BaseException:
                await connection.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A read unit of work: never takes a write lock, never waits behind a writer, and a
        statement that writes fails (SQLite `query_only`, PostgreSQL `READ ONLY`)."""
        return self.transaction(write=False)

    async def read_rows(self, read: PreparedRead, **params: Any) -> list[tuple[Any, ...]]:
        """The rows of one hot read (db/hot_read.py): a connection of the read pool, the one
        statement with no transaction around it, no session. A PostgreSQL connection dropped
        while it sat in the pool is discarded (with every older one) and the read sent again
        on a fresh one, once, as a unit of work does."""
        engine = self.read_engine.sync_engine
        compiled = read.compiled(engine.dialect)
        arguments = compiled.arguments(params)
        if self.dialect != "postgresql" and not self._inline_reads:  # in memory: aiosqlite
            return compiled.rows(await greenlet_spawn(_fetch_sqlite, engine, compiled, arguments))
        if self.dialect != "postgresql":
            # A file's reader runs on this thread and never awaits: one connection of its own,
            # configured as the read pool's are, serves every hot read of the process (no
            # checkout, reset and checkin per read).
            if self._hot_sqlite is None:
                self._hot_sqlite = _sqlite_reader(self._sqlite_path)
            return compiled.rows(self._hot_sqlite.execute(compiled.sql, arguments).fetchall())
        loop = asyncio.get_running_loop()
        slots = self._hot_slots.get(loop)
        if slots is None:
            slots = self._hot_slots[loop] = asyncio.Semaphore(self.pool_size)
        async with slots:
            return compiled.rows(
                await greenlet_spawn(_fetch_postgresql, engine, compiled, arguments)
            )

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
        if self._hot_sqlite is not None:
            hot, self._hot_sqlite = self._hot_sqlite, None
            hot.close()
        await self.engine.dispose()
        if self.read_engine.sync_engine is not self.engine.sync_engine:
            await self.read_engine.dispose()
