"""The request path under load: billfold's routes beside a bare FastAPI route, measured with wrk.

For SQLite and PostgreSQL, and for `billfold serve` with 1 worker and with `--workers 2`, in one
run: requests per second, p50 and p99 of a bare FastAPI route (`GET /bare`, served by the same
`uvicorn.run` call billfold uses), `/healthz`, and two logged-in reads
(`GET /api/v1/payments/subscription/status` and the credit balance `GET /api/billing/balance`,
the tokens of --users users with an active subscription, one per request in turn) at
--connections connections; each billfold figure also as a ratio to the bare route of the same
configuration, and the server's CPU time per request (its process and workers, over the run:
the figure that load on a shared machine disturbs least). On SQLite the status read and the
bare route are also measured at 1 connection: one event loop queues the requests in flight, so
p99 at 32 connections is about 32 service times for any server, the bare one's included; the
ratio of the two p99s is printed for both, so billfold's can be judged beside the bare one's.
Then the cold start (spawn to the first answer of `/healthz`, beside the bare app's) and the
idle RSS of each server.

    .venv/bin/python bench/http.py [--duration 5] [--connections 32] [--users 16]
                                   [--workers 1,2] [--only sqlite|postgresql]
                                   [--postgres postgresql://postgres@127.0.0.1:5432/test]

Needs Debian's wrk (`apt-get install -y wrk`). SQLite runs on a temporary data dir; PostgreSQL
on a scratch database created on --postgres's server, migrated with `billfold db upgrade` and
dropped at the end. The users' subscriptions are written as rows (what Stripe's webhooks would
have left). Every server is started here and stopped at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where `http.py` would hide the
# standard library's `http` package from everything imported below.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent))  # bench/loadgen.py, after the stdlib

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import loadgen
from loadgen import Figures, free_port, serving

from billfold.auth.tokens import issue_token
from billfold.config import Settings
from billfold.customers.models import AccountKind, BillingAccount
from billfold.db.engine import Database
from billfold.subscriptions.models import Subscription

STATUS_PATH = "/api/v1/payments/subscription/status"
BALANCE_PATH = "/api/billing/balance"
JWT_SECRET = "bench-http-secret-0123456789abcdef0123456789"
BILLFOLD = str(Path(sys.executable).with_name("billfold"))
LIVE_STRIPE = {
    "STRIPE_SECRET_KEY": "sk_test_bench_http",
    "STRIPE_WEBHOOK_SECRET": "whsec_bench_http",
    "BILLFOLD_STRIPE_API_BASE": "http://127.0.0.1:9",
}

BARE_APP = """
import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    target = "bare_app:app" if workers > 1 else app
    uvicorn.run(target, host="127.0.0.1", port=port, log_level="warning", workers=workers)
"""

WRK_SCRIPT = """
local tokens = {%s}
local i = 0
request = function()
  i = i + 1
  local headers = {}
  if #tokens > 0 then headers["Authorization"] = "Bearer " .. tokens[(i %% #tokens) + 1] end
  return wrk.format("GET", "%s", headers)
end
"""


@dataclass
class Measured:
    figures: Figures
    cpu_us: float  # the server's CPU time per request, in microseconds


def wrk(url: str, path: str, tokens: list[str], connections: int, seconds: float) -> Figures:
    """wrk's figures for `path`, one token per request in turn (none: no Authorization)."""
    quoted = ", ".join(f'"{token}"' for token in tokens)
    return loadgen.wrk(url, WRK_SCRIPT % (quoted, path), connections, seconds)


def measure(
    pid: int, url: str, path: str, tokens: list[str], connections: int, seconds: float
) -> Measured:
    """`wrk`, and the CPU time the server process `pid` (and its workers) spent per request."""
    before = cpu_seconds(pid)
    figures = wrk(url, path, tokens, connections, seconds)
    spent = cpu_seconds(pid) - before
    requests = figures.rps * seconds
    return Measured(figures, 1e6 * spent / requests if requests else 0.0)


def family(pid: int) -> list[int]:
    """A process and its children (uvicorn's workers)."""
    pids = [pid]
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(c) for c in (task / "children").read_text().split()]
    return pids


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process and its children have used so far."""
    ticks = 0
    for one in family(pid):
        with suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The resident memory of a process and its children (uvicorn's workers), in MB."""
    pids = family(pid)
    total = 0
    for one in pids:
        with suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


async def seed(url: str, users: int) -> None:
    """`users` user accounts, each with an active monthly premium subscription."""
    db = Database(url)
    now = datetime.now(UTC)
    async with db.transaction() as session:
        for n in range(users):
            account = BillingAccount(
                id=f"acct_bench{n:04d}",
                kind=AccountKind.USER.value,
                external_id=f"user{n}",
                currency="usd",
                settings={},
                stripe_customer_id=f"cus_bench{n:04d}",
                created_at=now,
                updated_at=now,
            )
            session.add(account)
            await session.flush()
            session.add(
                Subscription(
                    id=f"sub_row_bench{n:04d}",
                    account_id=account.id,
                    stripe_subscription_id=f"sub_bench{n:04d}",
                    stripe_customer_id=account.stripe_customer_id,
                    plan_code="premium",
                    price_id="price_bench_monthly",
                    interval="monthly",
                    currency="usd",
                    unit_amount=699,
                    status="active",
                    current_period_start=now,
                    current_period_end=now + timedelta(days=30),
                    stripe_created=int(now.timestamp()),
                    raw={"id": f"sub_bench{n:04d}", "object": "subscription"},
                    created_at=now,
                    updated_at=now,
                )
            )
    await db.dispose()


def ratio(figure: Figures, bare: Figures) -> str:
    return f"{figure.rps / bare.rps:.3f}x" if bare.rps else "-"


def row(label: str, measured: Measured, bare: Figures | None) -> str:
    figure = measured.figures
    versus = ratio(figure, bare) if bare is not None else ""
    errors = f"  ({figure.errors} errors)" if figure.errors else ""
    return (
        f"  {label:<36} {figure.rps:>9.0f} req/s  p50 {figure.p50_ms:>7.2f} ms  "
        f"p99 {figure.p99_ms:>8.2f} ms  {versus:>7}  cpu {measured.cpu_us:>6.0f} us/req{errors}"
    )


def supports_workers() -> bool:
    help_text = subprocess.run(
        [BILLFOLD, "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--workers" in help_text


def bench_database(label: str, env: dict[str, str], args: argparse.Namespace, tmp: Path) -> None:
    settings = Settings(jwt_secret=JWT_SECRET)
    tokens = [issue_token(settings, f"user{n}", ttl=timedelta(hours=2)) for n in range(args.users)]
    subprocess.run([BILLFOLD, "db", "upgrade"], env=env, check=True, capture_output=True)
    asyncio.run(seed(env["BILLFOLD_DATABASE_URL"], args.users))
    worker_counts = [int(w) for w in args.workers.split(",")]
    if not supports_workers():
        worker_counts = [1]
        print("  (billfold serve has no --workers yet: 1 worker only)")
    for workers in worker_counts:
        port, bare_port = free_port(), free_port()
        base, bare_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        serve = [BILLFOLD, "serve", "--port", str(port)]
        serve_env = env
        if workers > 1:
            # The embedded sandbox lives in one process: several workers talk to a Stripe of
            # their own (never called by these routes).
            serve += ["--workers", str(workers)]
            serve_env = {**env, **LIVE_STRIPE}
        bare_env = {**env, "PYTHONPATH": str(tmp)}
        bare = [sys.executable, str(tmp / "bare_app.py"), str(bare_port), str(workers)]
        with (
            serving(bare, bare_env, bare_base + "/bare") as (bare_pid, bare_start),
            serving(serve, serve_env, base + "/healthz") as (pid, start),
        ):
            auth = {"Authorization": f"Bearer {tokens[0]}"}
            check = httpx.get(base + STATUS_PATH, headers=auth)
            if check.status_code != 200 or check.json()["data"]["has_premium"] is not True:
                raise RuntimeError(f"the logged-in read answered {check.status_code} {check.text}")
            check = httpx.get(base + BALANCE_PATH, headers=auth)
            if check.status_code != 200 or "credits" not in check.json():
                raise RuntimeError(f"the balance read answered {check.status_code} {check.text}")
            time.sleep(0.5)
            idle, bare_idle = rss_mb(pid), rss_mb(bare_pid)
            c = args.connections
            for target in (bare_base + "/bare", base + "/healthz"):  # warm up
                wrk(target, "/" + target.rsplit("/", 1)[1], [], c, 1)
            wrk(base, STATUS_PATH, tokens, c, 1)
            wrk(base, BALANCE_PATH, tokens, c, 1)
            bare_run = measure(bare_pid, bare_base, "/bare", [], c, args.duration)
            health = measure(pid, base, "/healthz", [], c, args.duration)
            status = measure(pid, base, STATUS_PATH, tokens, c, args.duration)
            balance = measure(pid, base, BALANCE_PATH, tokens, c, args.duration)
            bare_fig = bare_run.figures
            mode = "Stripe sandbox embedded" if workers == 1 else "Stripe key set, no sandbox"
            print(
                f"\n{label}, {workers} worker{'s' if workers > 1 else ''} ({mode}), {c} connections"
            )
            print(row("bare FastAPI GET /bare", bare_run, None))
            print(row("GET /healthz", health, bare_fig))
            print(row("GET subscription/status (logged in)", status, bare_fig))
            print(row("GET /api/billing/balance (logged in)", balance, bare_fig))
            if label == "sqlite" and workers == 1:
                single = measure(pid, base, STATUS_PATH, tokens, 1, args.duration)
                bare_single = measure(bare_pid, bare_base, "/bare", [], 1, args.duration)
                print(row("  status at 1 connection", single, None))
                print(row("  bare at 1 connection", bare_single, None))
                print(
                    f"  p99 at {c} connections / p99 at 1: status "
                    f"{status.figures.p99_ms / single.figures.p99_ms:.1f}x, bare "
                    f"{bare_fig.p99_ms / bare_single.figures.p99_ms:.1f}x"
                )
            print(
                f"  cold start {start:.2f} s (bare {bare_start:.2f} s, {start / bare_start:.1f}x); "
                f"idle RSS {idle:.0f} MB (bare {bare_idle:.0f} MB)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    base_env = {
        **os.environ,
        "BILLFOLD_JWT_SECRET": JWT_SECRET,
        # The limits are not what is measured here: no caller may hit them.
        "BILLFOLD_RATE_LIMIT": "1000000/second",
        "BILLFOLD_RATE_LIMIT_ADDRESS": "1000000/second",
        "BILLFOLD_WEBHOOK_RETRY_SECONDS": "0",
        "BILLFOLD_LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryDirectory(prefix="billfold-bench-http-") as folder:
        tmp = Path(folder)
        (tmp / "bare_app.py").write_text(BARE_APP)
        if args.only in (None, "sqlite"):
            data = tmp / "sqlite"
            env = {
                **base_env,
                "BILLFOLD_DATA_DIR": str(data),
                "BILLFOLD_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'billfold.db'}",
            }
            data.mkdir()
            bench_database("sqlite", env, args, tmp)
        if args.only in (None, "postgresql"):
            name = f"billfold_bench_http_{uuid.uuid4().hex[:8]}"
            admin_url = args.postgres.replace("+asyncpg", "")
            asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
            url = "postgresql+asyncpg://" + admin_url.split("://", 1)[1].rsplit("/", 1)[0]
            env = {
                **base_env,
                "BILLFOLD_DATA_DIR": str(tmp / "pg"),
                "BILLFOLD_DATABASE_URL": f"{url}/{name}",
            }
            try:
                bench_database("postgresql", env, args, tmp)
            finally:
                asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
