"""Audit log throughput: appends per second with concurrent writers, and verify speed.

Each append is its own transaction (as each audited request is), so the figure is how many
audited requests per second the single hash chain lets through. Beside it, measured in the same
run, the same transactions writing a plain row with no chain: the ratio is the chain's cost.

    .venv/bin/python bench/audit.py [--writers 8] [--appends 2000] [--postgres URL]

PostgreSQL: a scratch database is created on the server of --postgres (default: the local one,
database `test`) and dropped at the end; SQLite: a file in a temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where bench/http.py would hide the
# standard library's `http` package (imported by httpx, PyJWT, asyncpg...): it goes last.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.audit.service import record_event
from billfold.audit.verify import verify_chain
from billfold.db.engine import Database
from billfold.db.migrate import upgrade_blocking


async def _run_writers(db: Database, writers: int, appends: int, *, chained: bool) -> float:
    per_writer = appends // writers

    async def writer(w: int) -> None:
        for i in range(per_writer):
            async with db.transaction() as session:
                if chained:
                    await record_event(
                        session,
                        action="credits.used",
                        actor=f"user:u{w}",
                        account_id=f"acct_{w}",
                        details={"credits": i, "idempotency_key": f"k{w}-{i}"},
                        request_id=f"req-{w}-{i}",
                    )
                else:
                    await session.execute(
                        text("INSERT INTO bench_plain (id, body) VALUES (:id, :body)"),
                        {"id": f"{w}-{i}-{uuid.uuid4().hex}", "body": f"credits.used {i}"},
                    )

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return per_writer * writers / (time.perf_counter() - started)


async def bench(url: str, label: str, writers: int, appends: int) -> None:
    upgrade_blocking(url)
    db = Database(url, pool_size=writers)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS bench_plain (id VARCHAR(80) PRIMARY KEY, body TEXT)"
                )
            )
        plain = await _run_writers(db, writers, appends, chained=False)
        chained = await _run_writers(db, writers, appends, chained=True)
        started = time.perf_counter()
        async with db.transaction() as session:
            report = await verify_chain(session)
        verify_rate = report.checked / (time.perf_counter() - started)
        assert report.ok, report.reason
        print(
            f"{label:<10} {writers} writers: {chained:8.0f} audited commits/s "
            f"(plain insert commits: {plain:8.0f}/s, ratio {chained / plain:.2f}); "
            f"verify {verify_rate:,.0f} entries/s over {report.checked}"
        )
    finally:
        await db.dispose()


async def _with_scratch_postgres(admin_url: str, writers: int, appends: int) -> None:
    name = f"billfold_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        await bench(admin_url.rsplit("/", 1)[0] + "/" + name, "postgresql", writers, appends)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(bench(url, "sqlite", args.writers, args.appends))
    if not args.no_postgres:
        asyncio.run(_with_scratch_postgres(args.postgres, args.writers, args.appends))


if __name__ == "__main__":
    main()
