#!/usr/bin/env python3
"""Ledger posting throughput on PostgreSQL: billfold's Python path against the database alone.

For 8 concurrent writers it measures debits of 1 credit per second (a) spread over 10,000
customer accounts and (b) all on one hot customer account, each debit a posting (customer -1,
the usage system account +1) through `billfold.ledger.post_transaction`, one transaction per
debit, in the hot path's unit of work (`Database.connection()`: a bare Core connection) and, in
the "in a session" column, in a request's ORM session (`Database.transaction()`). Beside each it
runs `pgbench` with the same statement (billfold.ledger.statements) and no Python in between, and
prints the ratio; and, to tell Python's own cost from billfold's, the same statement sent by bare
asyncpg from the same Python processes ("asyncpg alone"). The four take turns in short slices, so
machine load that comes and goes weighs on each alike. The database is created, migrated,
seeded, ANALYZEd and dropped by the script.

    .venv/bin/python bench/ledger.py [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
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
import itertools
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from billfold.clock import FrozenClock
from billfold.db.engine import Database
from billfold.db.migrate import upgrade
from billfold.ledger import CREDITS, EntryLine, post_transaction
from billfold.ledger.schemas import EntryLine as _EntryLine
from billfold.ledger.service import SYSTEM_SHARDS, canonical_json, transaction_fingerprint
from billfold.ledger.statements import (
    POST_TRANSACTION,
    POST_TRANSACTION_NUMBERED,
    POST_TRANSACTION_PARAMETERS,
)
from billfold.ledger.verify import verify_ledger

OPENING_BALANCE = 10**12


def with_database(url: str, name: str, driver: str | None = None) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if driver:
        scheme = f"{scheme}+{driver}"
    return urlunsplit((scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@dataclass
class Ledger:
    customer_ids: list[int]
    usage_ids: list[int]  # the usage account's shards, in shard order, contiguous ids

    def usage_for(self, account_id: int) -> int:
        """The usage shard a debit of this account credits: by account id, which pgbench can
        compute too (billfold's helpers use shard_for(billing_account_id); any stable choice
        spreads the load alike)."""
        return self.usage_ids[account_id % SYSTEM_SHARDS]


async def seed(url: str, accounts: int) -> Ledger:
    """Billing accounts, their credit accounts (each with a large opening grant) and usage."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO billing_accounts
                       (id, kind, external_id, currency, settings, created_at, updated_at)
                   SELECT 'acct_bench_' || g, 'user', 'bench-' || g, 'usd', '{}', now(), now()
                   FROM generate_series(1, $1) g""",
                accounts,
            )
            await conn.execute(
                """INSERT INTO ledger_accounts
                       (key, billing_account_id, name, unit, balance, allow_negative, created_at)
                   SELECT 'acct_bench_' || g || ':main:credits', 'acct_bench_' || g, 'main',
                          'credits', $2, false, now()
                   FROM generate_series(1, $1) g""",
                accounts,
                OPENING_BALANCE,
            )
            promotions_id = await conn.fetchval(
                """INSERT INTO ledger_accounts
                       (key, name, unit, balance, allow_negative, created_at)
                   VALUES ('system:promotions:credits:0', 'promotions', 'credits', $1, true, now())
                   RETURNING id""",
                -OPENING_BALANCE * accounts,
            )
            usage_ids = [
                r["id"]
                for r in await conn.fetch(
                    """INSERT INTO ledger_accounts
                           (key, name, unit, shard, balance, allow_negative, created_at)
                       SELECT 'system:usage:credits:' || s, 'usage', 'credits', s, 0, true, now()
                       FROM generate_series(0, $1 - 1) s ORDER BY s
                       RETURNING id""",
                    SYSTEM_SHARDS,
                )
            ]
            customer_ids = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM ledger_accounts WHERE billing_account_id IS NOT NULL "
                    "ORDER BY id"
                )
            ]
            # One opening transaction, fingerprinted like any other, so `ledger verify` agrees.
            lines = [_EntryLine(i, CREDITS, OPENING_BALANCE) for i in customer_ids]
            lines.append(_EntryLine(promotions_id, CREDITS, -OPENING_BALANCE * accounts))
            fingerprint = transaction_fingerprint("opening", None, {}, lines)
            opening_id = await conn.fetchval(
                """INSERT INTO ledger_transactions
                       (idempotency_key, kind, metadata, fingerprint, created_at)
                   VALUES ('opening', 'opening', '{}', $1, now()) RETURNING id""",
                fingerprint,
            )
            await conn.executemany(
                """INSERT INTO ledger_entries
                       (transaction_id, account_id, unit, amount, balance_after)
                   VALUES ($1, $2, 'credits', $3, $3)""",
                [(opening_id, line.account_id, line.amount) for line in lines],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return Ledger(customer_ids=customer_ids, usage_ids=sorted(usage_ids))


class PythonWriters:
    """`writers` coroutines posting debits through post_transaction, one transaction each: in
    the hot path's unit of work (`Database.connection()`, a bare Core connection), or with
    `session=True` in the ORM session's (`Database.transaction()`, what a request takes)."""

    def __init__(
        self, url: str, ledger: Ledger, hot: bool, writers: int, label: str, session: bool = False
    ) -> None:
        # Without the pool's pre-ping: on asyncpg it adds three round trips per transaction that
        # are not the posting's and that pgbench does not send.
        self.db = Database(url, pool_size=writers)
        self.unit_of_work = self.db.transaction if session else self.db.connection
        self.ledger, self.hot, self.writers, self.label = ledger, hot, writers, label
        self.clock = FrozenClock()
        self.keys = itertools.count()
        self.rng = random.Random(label)

    async def run(self, seconds: float) -> tuple[int, float]:
        """Post for `seconds`; (debits done, seconds taken)."""
        done = 0
        started = time.perf_counter()
        deadline = started + seconds

        async def writer() -> None:
            nonlocal done
            ledger = self.ledger
            while time.perf_counter() < deadline:
                account = (
                    ledger.customer_ids[0] if self.hot else self.rng.choice(ledger.customer_ids)
                )
                async with self.unit_of_work() as unit:
                    await post_transaction(
                        unit,
                        idempotency_key=f"{self.label}-{next(self.keys)}",
                        entries=[
                            EntryLine(account, CREDITS, -1),
                            EntryLine(ledger.usage_for(account), CREDITS, 1),
                        ],
                        kind="usage",
                        clock=self.clock,
                    )
                done += 1

        await asyncio.gather(*(writer() for _ in range(self.writers)))
        return done, time.perf_counter() - started

    async def close(self) -> None:
        await self.db.dispose()


class AsyncpgWriters:
    """The same debits as PythonWriters with only asyncpg under Python: the posting's one
    statement in a transaction, no SQLAlchemy, no billfold. The floor for any Python code."""

    def __init__(self, url: str, ledger: Ledger, hot: bool, writers: int, label: str) -> None:
        self.url, self.ledger, self.hot, self.writers, self.label = url, ledger, hot, writers, label
        self.pool: asyncpg.Pool | None = None
        self.keys = itertools.count()
        self.rng = random.Random(label)
        self.now = datetime.now(UTC)

    async def run(self, seconds: float) -> tuple[int, float]:
        if self.pool is None:
            self.pool = await asyncpg.create_pool(
                self.url.replace("+asyncpg", "", 1),
                min_size=self.writers,
                max_size=self.writers,
            )
        pool, ledger = self.pool, self.ledger
        done = 0
        started = time.perf_counter()
        deadline = started + seconds

        async def writer() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                account = (
                    ledger.customer_ids[0] if self.hot else self.rng.choice(ledger.customer_ids)
                )
                parameters = {
                    "idempotency_key": f"{self.label}-{next(self.keys)}",
                    "kind": "usage",
                    "description": None,
                    "metadata": "{}",
                    "fingerprint": "0" * 64,
                    "created_at": self.now,
                    "account_ids": [account, ledger.usage_for(account)],
                    "units": [CREDITS, CREDITS],
                    "amounts": [-1, 1],
                    "overdraft": False,
                }
                async with pool.acquire() as connection, connection.transaction():
                    await connection.fetch(
                        POST_TRANSACTION_NUMBERED,
                        *(parameters[name] for name in POST_TRANSACTION_PARAMETERS),
                    )
                done += 1

        await asyncio.gather(*(writer() for _ in range(self.writers)))
        return done, time.perf_counter() - started


# Each writer process (like each pgbench thread) runs a share of the writers on its own loop.
_process: dict[str, Any] = {}


def _start_process(
    url: str, ledger: Ledger, hot: bool, writers: int, label: str, loop: str
) -> None:
    _process["runner"] = asyncio.Runner(loop_factory=loop_factory(loop))
    _process["billfold"] = PythonWriters(url, ledger, hot, writers, f"{label}-{os.getpid()}")
    _process["session"] = PythonWriters(
        url, ledger, hot, writers, f"{label}-s-{os.getpid()}", session=True
    )
    _process["asyncpg"] = AsyncpgWriters(url, ledger, hot, writers, f"{label}-pg-{os.getpid()}")


def _run_slice(writers: str, seconds: float) -> tuple[int, float, float]:
    """(debits, seconds taken, this process's CPU seconds)."""
    cpu = time.process_time()
    done, took = _process["runner"].run(_process[writers].run(seconds))
    return done, took, time.process_time() - cpu


# billfold in the hot path's unit of work, billfold in a request's ORM session, bare asyncpg.
PYTHON_WRITERS = ("billfold", "session", "asyncpg")


def measure(
    url: str, libpq_url: str, ledger: Ledger, hot: bool, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """billfold's (hot path's unit of work, then the ORM session's), asyncpg's alone and
    pgbench's rates, taken in alternating slices so all four see the same machine load; and
    the Python writers' CPU seconds per debit (their processes' CPU time / debits).

    The Python writers are spread over `--processes` processes, as pgbench's clients are over
    its `-j` threads (the same number by default); each process is what one `billfold serve`
    worker would be.
    """
    processes = args.processes or args.pgbench_threads
    if args.writers % processes:
        sys.exit("--writers must be a multiple of --processes")
    label = "hot" if hot else "spread"
    with ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_process,
        initargs=(url, ledger, hot, args.writers // processes, label, args.loop),
    ) as pool:

        def python_slice(writers: str, seconds: float) -> tuple[int, float]:
            futures = [pool.submit(_run_slice, writers, seconds) for _ in range(processes)]
            results = [future.result() for future in futures]
            cpu[writers] += sum(used for _, _, used in results)
            return sum(done for done, _, _ in results), max(took for _, took, _ in results)

        # Warm up: processes, connections, prepared statements.
        cpu = dict.fromkeys(PYTHON_WRITERS, 0.0)
        for writers in PYTHON_WRITERS:
            python_slice(writers, 1.0)
        cpu = dict.fromkeys(PYTHON_WRITERS, 0.0)  # the warm-up's left out
        slice_seconds = max(1, args.seconds // args.rounds)
        totals = {name: [0.0, 0.0] for name in (*PYTHON_WRITERS, "pgbench")}
        for _ in range(args.rounds):
            for writers in PYTHON_WRITERS:
                done, took = python_slice(writers, slice_seconds)
                totals[writers][0] += done
                totals[writers][1] += took
            tps = pgbench_rate(
                libpq_url, ledger, hot, args.writers, args.pgbench_threads, slice_seconds
            )
            totals["pgbench"][0] += tps * slice_seconds
            totals["pgbench"][1] += slice_seconds
    rates = {name: done / took for name, (done, took) in totals.items()}
    cpu_per_debit = {name: cpu[name] / totals[name][0] for name in PYTHON_WRITERS}
    return rates, cpu_per_debit


def pgbench_script(ledger: Ledger, hot: bool) -> str:
    """The posting's statements for pgbench: the same SQL, its parameters as pgbench variables.

    Only the array of account ids is spelt differently (pgbench variables are scalars), and the
    NULL description is written as NULL.
    """
    lo, hi = ledger.customer_ids[0], ledger.customer_ids[-1]
    assert hi - lo + 1 == len(ledger.customer_ids), "customer account ids are contiguous"
    first = ledger.usage_ids[0]
    assert ledger.usage_ids == list(range(first, first + SYSTEM_SHARDS)), "usage shards contiguous"
    pick = f"\\set aid {lo}" if hot else f"\\set aid random({lo}, {hi})"
    shard = f"\\set usage {first} + :aid % {SYSTEM_SHARDS}"
    post = (
        POST_TRANSACTION.replace(":idempotency_key", ":key")
        .replace(":description", "NULL")
        .replace(
            "CAST(:account_ids AS BIGINT[])",
            "ARRAY[CAST(:aid AS BIGINT), CAST(:usage AS BIGINT)]",
        )
    )
    return "\n".join(
        [pick, shard, "\\set key random(1, 9000000000000000000)", "BEGIN;", post + ";", "END;", ""]
    )


def pgbench_rate(
    url: str, ledger: Ledger, hot: bool, clients: int, threads: int, seconds: int
) -> float:
    script = pgbench_script(ledger, hot)
    variables = {
        "kind": "usage",
        "metadata": canonical_json({}),
        "fingerprint": "0" * 64,
        "created_at": "2026-01-01T00:00:00+00:00",
        "units": "{credits,credits}",
        "amounts": "{-1,1}",
        "overdraft": "false",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        command = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads)]
        command += ["-T", str(seconds), "-f", path]
        for name, value in variables.items():
            command += ["-D", f"{name}={value}"]
        command.append(url)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        Path(path).unlink()
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode != 0 or not match or "aborted" in done.stderr:
        sys.exit(f"pgbench failed:\n{done.stdout}\n{done.stderr}\n--- script ---\n{script}")
    if failed and int(failed.group(1)):
        sys.exit(f"pgbench had failed transactions:\n{done.stdout}")
    return float(match.group(1))


async def check_ledger(url: str) -> int:
    """Balances still equal their entries after both kinds of writer (pgbench's fingerprints are
    placeholders, so the content check is left out)."""
    db = Database(url)
    try:
        async with db.transaction() as session:
            return len(await verify_ledger(session, fingerprints=False))
    finally:
        await db.dispose()


async def admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when asked for and installed (uvicorn picks it the same way), else asyncio's."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return None
        return uvloop.new_event_loop
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--seconds", type=int, default=9, help="seconds per scenario for each of the three writers"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating Python/pgbench slices per scenario"
    )
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--pgbench-threads", type=int, default=2, help="pgbench -j")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="processes the Python writers are spread over (default: as many as pgbench threads)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--show-script", action="store_true", help="print the pgbench scripts before running"
    )
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the Python writers (uvloop: what `billfold serve` runs on)",
    )
    args = parser.parse_args()
    if not shutil.which("pgbench"):
        sys.exit("pgbench is not installed (Debian: postgresql-client)")

    name = f"billfold_bench_{uuid.uuid4().hex[:8]}"
    libpq_url = with_database(args.postgres_url, name)
    sa_url = with_database(args.postgres_url, name, driver="asyncpg")
    asyncio.run(admin(with_database(args.postgres_url, "postgres"), f'CREATE DATABASE "{name}"'))
    try:
        upgrade(sa_url)
        ledger = asyncio.run(seed(libpq_url, args.accounts))
        print(
            f"PostgreSQL ledger bench: {args.writers} writers, {args.seconds}s per scenario and "
            f"side in {args.rounds} alternating slices, {args.loop} loop, "
            f"{args.processes or args.pgbench_threads} Python processes, "
            f"{len(ledger.customer_ids)} accounts"
        )
        if args.show_script:
            for hot in (False, True):
                print(f"-- pgbench script ({'hot' if hot else 'spread'}):")
                print(pgbench_script(ledger, hot))
        print(
            f"{'scenario':<26}{'billfold debits/s':>18}{'pgbench tx/s':>14}{'ratio':>8}"
            f"{'in a session':>14}{'ratio':>8}{'asyncpg alone':>16}{'ratio':>8}"
        )
        cpu_figures: list[str] = []
        for hot, label in ((False, "spread"), (True, "hot")):
            scenario = f"{label} ({'1 account' if hot else f'{args.accounts} accounts'})"
            rates, cpu = measure(sa_url, libpq_url, ledger, hot, args)
            python, session, floor, raw = (
                rates[name] for name in ("billfold", "session", "asyncpg", "pgbench")
            )
            print(
                f"{scenario:<26}{python:>18,.0f}{raw:>14,.0f}{python / raw:>8.2f}"
                f"{session:>14,.0f}{session / raw:>8.2f}{floor:>16,.0f}{floor / raw:>8.2f}"
            )
            cpu_figures.append(
                f"  {label}: "
                + ", ".join(f"{name} {cpu[name] * 1e6:,.0f}" for name in PYTHON_WRITERS)
            )
        print("Python CPU per debit, microseconds (writer processes' CPU time / debits):")
        print("\n".join(cpu_figures))
        problems = asyncio.run(check_ledger(sa_url))
        print(
            "ledger verify (balances, running balances, sums): "
            + ("ok" if not problems else f"{problems} problem(s)")
        )
    finally:
        if not args.keep:
            asyncio.run(
                admin(
                    with_database(args.postgres_url, "postgres"),
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                )
            )


if __name__ == "__main__":
    main()
