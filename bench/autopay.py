"""Autopay throughput: how many accounts' dues a run of the autopay job settles per second,
with 1 and then 2 `billfold worker` processes, on PostgreSQL, against the Stripe sandbox served
on its own (`billfold sandbox serve`).

Every account has autopay on, a saved Visa and dues to pay; 10% of them have, first by
priority, a card that declines (so their payment makes two attempts: the ordered fallback).
Each round adds a charge to every account, writes what the autopay sweep writes (one job per
account, keyed by its dues), starts the workers and times until every payment has succeeded.
The run fails unless each account has exactly one succeeded payment per round, and as many
attempts as the fallback needs (two for a declining first card, one otherwise).

Figures per round: accounts settled per second from the round's first payment to its last
(the workers' start-up left out), and over the wall time including it. The workers' own autopay
sweep is set far apart (BILLFOLD_AUTOPAY_INTERVAL_SECONDS) so the round's jobs are the bench's.

    .venv/bin/python bench/autopay.py [--accounts 10000] [--decline-share 0.1]
                                      [--workers 1,2] [--concurrency 4] [--postgres URL]

The issue's figure is the default (10,000 accounts, 10% declining first, 1 then 2 workers);
`--accounts 200` proves it works in a couple of minutes on a busy machine.

A scratch database is created on the server of --postgres (default: the local one, database
`test`) and dropped at the end.
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
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import datetime

import httpx
import stripe
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.clock import SystemClock
from billfold.customers.models import BillingAccount
from billfold.db.base import new_id
from billfold.db.engine import Database
from billfold.db.migrate import upgrade_blocking
from billfold.payments import dues
from billfold.payments.jobs import enqueue_due_autopay
from billfold.payments.models import (
    ACTIVE,
    Payment,
    PaymentAttempt,
    PaymentMethod,
    PaymentSettings,
)

REPO = Path(__file__).resolve().parents[1]
API_KEY = "sk_test_bench_autopay"
CLOCK = SystemClock()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sandbox(logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "billfold.cli", "sandbox", "serve", "--port", str(port)],
        cwd=REPO,
        stdout=(logs / "sandbox.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/customers", auth=(API_KEY, "")).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the sandbox did not start")


async def stripe_customers(
    url: str, accounts: int, declining: int, parallel: int = 16
) -> list[tuple[str, list[str]]]:
    """A customer per account with its methods attached (declining card first for some)."""
    client = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": url},
        http_client=stripe.HTTPXClient(timeout=60),
        # A keep-alive connection the sandbox closed as it was reused: retried, with the same
        # idempotency key (the SDK adds one to every retried POST).
        max_network_retries=5,
    )
    gate = asyncio.Semaphore(parallel)

    async def one(n: int) -> tuple[str, list[str]]:
        async with gate:
            customer = await client.v1.customers.create_async({"name": f"bench {n}"})
            methods = []
            for pm in (["pm_card_chargeCustomerFail"] if n < declining else []) + ["pm_card_visa"]:
                attached = await client.v1.payment_methods.attach_async(
                    pm, {"customer": customer.id}
                )
                methods.append(attached.id)
            return customer.id, methods

    return list(await asyncio.gather(*(one(n) for n in range(accounts))))


async def seed(db: Database, customers: list[tuple[str, list[str]]]) -> list[str]:
    """The accounts, their autopay settings and methods: three multi-row INSERTs."""
    now = CLOCK.now()
    ids = [new_id("acct") for _ in customers]
    accounts = [
        {
            "id": account_id,
            "kind": "user",
            "external_id": f"bench{n}",
            "stripe_customer_id": customer_id,
            "stripe_customer_created_at": now,
            "currency": "usd",
            "settings": {},
            "created_at": now,
            "updated_at": now,
        }
        for n, (account_id, (customer_id, _methods)) in enumerate(zip(ids, customers, strict=True))
    ]
    settings = [
        {
            "account_id": account_id,
            "autopay": True,
            "autopay_failures": 0,
            "default_payment_method_id": methods[0],
            "updated_at": now,
        }
        for account_id, (_customer, methods) in zip(ids, customers, strict=True)
    ]
    methods = [
        {
            "id": pm,
            "account_id": account_id,
            "type": "card",
            "status": ACTIVE,
            "brand": "visa",
            "last4": "4242",
            "priority": priority,
            "verification_failures": 0,
            "created_at": now,
            "updated_at": now,
        }
        for account_id, (_customer, pms) in zip(ids, customers, strict=True)
        for priority, pm in enumerate(pms, start=1)
    ]
    async with db.transaction() as session:
        for table, rows in (
            (BillingAccount.__table__, accounts),
            (PaymentSettings.__table__, settings),
            (PaymentMethod.__table__, methods),
        ):
            for chunk in range(0, len(rows), 1000):
                await session.execute(insert(table), rows[chunk : chunk + 1000])
    return ids


async def charge_all(db: Database, ids: list[str], round_no: int) -> int:
    async with db.transaction() as session:
        for n, account_id in enumerate(ids):
            await dues.add_charge(
                session,
                account_id,
                amount=1000 + n % 500,
                currency="usd",
                charge_id=f"bench:{round_no}:{account_id}",
                description="usage",
                clock=CLOCK,
            )
        return await enqueue_due_autopay(session, clock=CLOCK)


async def succeeded(db: Database) -> int:
    async with db.read() as session:
        found = await session.execute(
            select(func.count()).select_from(Payment).where(Payment.status == "succeeded")
        )
        return int(found.scalar_one())


async def backend_pids(db: Database) -> list[int]:
    """The PostgreSQL backends connected to the bench's database (the workers' and its own)."""
    async with db.read() as session:
        rows = await session.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        )
        return [int(pid) for (pid,) in rows]


async def round_figures(db: Database, since: datetime) -> tuple[float, int, int]:
    """The round's span from its first payment's reservation to its last update (seconds),
    its payments and their attempts."""
    async with db.read() as session:
        first, last, payments = (
            await session.execute(
                select(func.min(Payment.created_at), func.max(Payment.updated_at), func.count())
                .select_from(Payment)
                .where(Payment.created_at >= since)
            )
        ).one()
        attempts = (
            await session.execute(
                select(func.count())
                .select_from(PaymentAttempt)
                .where(PaymentAttempt.created_at >= since)
            )
        ).scalar_one()
    return (last - first).total_seconds(), int(payments), int(attempts)


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_cpu(procs: list[subprocess.Popen[bytes]], profile: Path | None) -> float:
    """The workers' CPU seconds (under py-spy: of the workers it runs)."""
    return sum(
        cpu_seconds(pid) for p in procs for pid in (_children(p.pid) if profile else [p.pid])
    )


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def start_workers(
    count: int,
    db_url: str,
    stripe_url: str,
    concurrency: int,
    logs: Path,
    round_no: int,
    profile: Path | None = None,
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "BILLFOLD_DATABASE_URL": db_url,
        "BILLFOLD_ENV": "test",
        "BILLFOLD_DATA_DIR": str(logs / "data"),
        "BILLFOLD_JOBS_POLL_SECONDS": "0.05",
        "BILLFOLD_WORKER_CONCURRENCY": str(concurrency),
        "STRIPE_SECRET_KEY": API_KEY,
        "STRIPE_WEBHOOK_SECRET": "whsec_bench_autopay",
        "BILLFOLD_STRIPE_API_BASE": stripe_url,
        "BILLFOLD_LOG_LEVEL": "WARNING",
        # The round's jobs are the bench's: the workers' own sweep would write the same keys.
        "BILLFOLD_AUTOPAY_INTERVAL_SECONDS": str(7 * 24 * 3600),
    }
    command = [sys.executable, "-m", "billfold.cli", "worker"]
    return [
        subprocess.Popen(
            command
            if profile is None
            else [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--format",
                "raw",
                "--subprocesses",
                "-o",
                str(profile / f"worker-{round_no}-{n}.txt"),
                "--",
                *command,
            ],
            cwd=REPO,
            env=env,
            stdout=(logs / f"worker-{round_no}-{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for n in range(count)
    ]


async def bench(
    db_url: str,
    accounts: int,
    decline_share: float,
    concurrency: int,
    workers_per_round: list[int],
    setup_parallel: int,
    profile: Path | None = None,
) -> bool:
    upgrade_blocking(db_url)
    db = Database(db_url)
    declining = int(accounts * decline_share)
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        sandbox, stripe_url = start_sandbox(logs)
        try:
            started = time.perf_counter()
            customers = await stripe_customers(stripe_url, accounts, declining, setup_parallel)
            ids = await seed(db, customers)
            print(
                f"setup: {accounts} accounts, {declining} declining first "
                f"({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
            ok = True
            for round_no, workers in enumerate(workers_per_round, start=1):
                before = await succeeded(db)
                since = CLOCK.now()
                jobs = await charge_all(db, ids, round_no)
                own_backends = set(await backend_pids(db))
                sandbox_cpu = cpu_seconds(sandbox.pid)
                began = time.perf_counter()
                procs = start_workers(
                    workers, db_url, stripe_url, concurrency, logs, round_no, profile
                )
                shown = began

                # The workers' CPU from their first settlement on (their start-up left out).
                first: tuple[int, float] | None = None
                try:
                    while (done := await succeeded(db) - before) < accounts:
                        if any(p.poll() is not None for p in procs):
                            print((logs / f"worker-{round_no}-0.log").read_text()[-3000:])
                            return False
                        if done and first is None:
                            first = (done, workers_cpu(procs, profile))
                        if time.perf_counter() - shown >= 30:
                            shown = time.perf_counter()
                            print(f"  ... {done}/{accounts} settled", flush=True)
                        await asyncio.sleep(0.1)
                    elapsed = time.perf_counter() - began
                    first_done, first_cpu = first or (0, 0.0)
                    cpu = {
                        "workers (after their start)": (workers_cpu(procs, profile) - first_cpu)
                        / max(1, accounts - first_done),
                        "sandbox": (cpu_seconds(sandbox.pid) - sandbox_cpu) / accounts,
                        "postgres": sum(
                            cpu_seconds(pid)
                            for pid in await backend_pids(db)
                            if pid not in own_backends
                        )
                        / accounts,
                    }
                finally:
                    for p in procs:
                        # Under py-spy, the worker it runs: py-spy writes its profile when that
                        # ends.
                        for pid in _children(p.pid) if profile else [p.pid]:
                            os.kill(pid, signal.SIGTERM)
                    for p in procs:
                        p.wait(timeout=60)
                span, payments, attempts = await round_figures(db, since)
                expected = accounts + declining
                ok = ok and payments == accounts and attempts == expected
                print(
                    f"{workers} worker(s) x {concurrency}: {jobs} jobs, {accounts} accounts "
                    f"settled ({attempts} attempts, {expected} expected): "
                    f"{accounts / span:.1f} accounts/s first payment to last ({span:.1f} s), "
                    f"{accounts / elapsed:.1f} accounts/s with the workers' start "
                    f"({elapsed:.1f} s)",
                    flush=True,
                )
                print(
                    "  CPU ms per account: "
                    + ", ".join(f"{name} {1000 * spent:.1f}" for name, spent in cpu.items())
                    + ("  (profiled by py-spy)" if profile else ""),
                    flush=True,
                )
            async with db.read() as session:
                per_account = await session.execute(
                    select(Payment.account_id, func.count())
                    .where(Payment.status == "succeeded")
                    .group_by(Payment.account_id)
                )
                counts = {row[0]: row[1] for row in per_account}
            once = len(counts) == accounts and set(counts.values()) == {len(workers_per_round)}
            ok = ok and once
            print(
                "check: one succeeded payment per account per round, attempts as expected:",
                "ok" if ok else "FAILED",
            )
            return ok
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
            await db.dispose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--decline-share", type=float, default=0.10)
    parser.add_argument("--concurrency", type=int, default=4, help="jobs per worker at once")
    parser.add_argument(
        "--workers", default="1,2", help="worker processes per round, comma separated"
    )
    parser.add_argument(
        "--setup-parallel", type=int, default=16, help="sandbox calls at once while seeding"
    )
    parser.add_argument(
        "--profile", type=Path, help="run the workers under py-spy, raw stacks into this folder"
    )
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    name = f"billfold_bench_autopay_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(args.postgres, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.postgres.rsplit("/", 1)[0] + "/" + name
    try:
        ok = await bench(
            url,
            args.accounts,
            args.decline_share,
            args.concurrency,
            [int(n) for n in args.workers.split(",") if n.strip()],
            args.setup_parallel,
            args.profile,
        )
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
