"""Credits under load: usage debits and balance reads beside a trivial route of the same app.

On PostgreSQL, with `billfold serve --workers 2` and --connections (32) concurrent clients
(wrk), in one run: requests per second, p50 and p99 of `GET /healthz` (the trivial route),
`GET /api/billing/balance` and `POST /api/billing/usage` (1 credit, a new idempotency key per
request; the callers are --users accounts with a large grant, in turn: a user's token for the
balance, the backend's API key naming the account for usage, which takes only API keys).
Afterwards the debits are counted in the ledger and `billfold ledger verify` is run.

    .venv/bin/python bench/credits.py [--duration 10] [--connections 32] [--users 32]
                                      [--workers 2]
                                      [--postgres postgresql://postgres@127.0.0.1:5432/test]
                                      [--against OTHER_CHECKOUT/src --rounds 3]

Each figure comes with the server's CPU time per request (its process group's user + system
time over the run / requests), the figure a shared machine's load does not distort much.
`--against` compares usage debits with another checkout (say `git worktree add /tmp/base
main`, then `--against /tmp/base/src`) in alternating runs on the same database.

Needs Debian's wrk (`apt-get install -y wrk`). The database is a scratch one created on
--postgres's server, migrated with `billfold db upgrade` and dropped at the end. Stripe is not
called (a test key pointed at a closed port: `--workers` needs a Stripe that is not the
embedded sandbox).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package from everything imported below.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent))  # bench/loadgen.py, after the stdlib

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import loadgen
from loadgen import Figures, free_port, serving
from sqlalchemy import func, select

from billfold.audit.context import system_audit_context
from billfold.auth.apikeys import create_api_key
from billfold.auth.tokens import issue_token
from billfold.clock import SystemClock
from billfold.config import Settings
from billfold.credits import service
from billfold.customers.models import AccountKind
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.ledger.models import LedgerTransaction

JWT_SECRET = "bench-credits-secret-0123456789abcdef0123456789"
BILLFOLD = str(Path(sys.executable).with_name("billfold"))
LIVE_STRIPE = {
    "STRIPE_SECRET_KEY": "sk_test_bench_credits",
    "STRIPE_WEBHOOK_SECRET": "whsec_bench_credits",
    "BILLFOLD_STRIPE_API_BASE": "http://127.0.0.1:9",
}
GRANT = 10**11

WRK_SCRIPT = """
local callers = {%s}
local i = 0
local prefix = tostring(math.random(1, 1e9)) .. "-" .. tostring(os.time())
-- Each wrk thread runs this script in a Lua state of its own, with the same random sequence:
-- its number goes into the keys, or two threads would send the same keys (replays).
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("key_prefix", prefix .. "-" .. threads)
end
request = function()
  i = i + 1
  local headers = {}
  for name, value in pairs(callers[(i %% #callers) + 1]) do headers[name] = value end
  if "%s" == "POST" then
    headers["Content-Type"] = "application/json"
    local body = '{"credits": 1, "idempotencyKey": "' .. key_prefix .. "-" .. i .. '"}'
    return wrk.format("POST", "%s", headers, body)
  end
  return wrk.format("GET", "%s", headers)
end
"""


def wrk(
    url: str, method: str, path: str, callers: list[dict[str, str]], args: argparse.Namespace
) -> Figures:
    """`callers`: the headers of each caller (a user's token, or the backend's API key naming
    an account), taken in turn."""
    quoted = ", ".join(
        "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}" for headers in callers
    )
    script = WRK_SCRIPT % (quoted, method, path, path)
    return loadgen.wrk(url, script, args.connections, args.duration, threads=2)


async def seed(url: str, users: int) -> str:
    """`users` accounts, each granted GRANT credits (one lot); the backend's API key (usage
    takes one naming the account)."""
    db = Database(url)
    clock = SystemClock()
    audit = system_audit_context("bench", clock)
    async with db.transaction() as session:
        for n in range(users):
            account = await get_or_create_account(
                session, AccountKind.USER, f"user{n}", currency="eur"
            )
            await service.grant(
                session,
                account_id=account.id,
                credits=GRANT,
                key=f"bench:{n}",
                source="grant",
                clock=clock,
                audit=audit,
            )
        key = await create_api_key(session, "bench backend", now=clock.now())
    await db.dispose()
    return key.secret


async def usage_postings(url: str) -> int:
    db = Database(url)
    async with db.read() as session:
        found = (
            await session.execute(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.kind == "usage")
            )
        ).scalar_one()
    await db.dispose()
    return int(found)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def server_cpu(group: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a server's process
    group (uvicorn's parent and its workers)."""
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    figures: Figures
    cpu_ms: float  # the server's CPU per request


def measured(group: int, run: Callable[[], Figures], seconds: float) -> Run:
    before = server_cpu(group)
    figures = run()
    requests = max(figures.rps * seconds, 1.0)
    return Run(figures, (server_cpu(group) - before) / requests * 1000)


def row(label: str, run: Run, trivial: Run | None) -> str:
    figure = run.figures
    versus = f"  ({figure.rps / trivial.figures.rps:.2f}x the trivial route)" if trivial else ""
    return (
        f"  {label:<28} {figure.rps:8.0f} req/s  p50 {figure.p50_ms:6.2f} ms  "
        f"p99 {figure.p99_ms:7.2f} ms  CPU {run.cpu_ms:5.2f} ms/req  errors {figure.errors}"
        f"{versus}"
    )


def against(
    args: argparse.Namespace,
    serve: list[str],
    env: dict[str, str],
    port: int,
    backend: list[dict[str, str]],
    run: Callable[[str, str, list[dict[str, str]]], Run],
) -> tuple[Run, Run]:
    """Usage debits on this tree's server and on one started from `--against` (another
    checkout's `src` folder first on PYTHONPATH, the same database), in alternating runs, so
    machine load weighs on both alike: the two sums as one Run each (requests per second,
    the worst p50 and p99, CPU per request)."""
    other_port = free_port()
    other_serve = [str(other_port) if part == str(port) else part for part in serve]
    other_env = {**env, "PYTHONPATH": str(Path(args.against).resolve())}
    other_base = f"http://127.0.0.1:{other_port}"
    runs: dict[str, list[Run]] = {"ours": [], "theirs": []}
    with serving(other_serve, other_env, other_base + "/healthz") as (other_group, _):
        wrk(other_base, "POST", "/api/billing/usage", backend, args)  # warm up
        for _ in range(args.rounds):
            runs["ours"].append(run("POST", "/api/billing/usage", backend))
            runs["theirs"].append(
                measured(
                    other_group,
                    lambda: wrk(other_base, "POST", "/api/billing/usage", backend, args),
                    args.duration,
                )
            )

    def total(found: list[Run]) -> Run:
        rps = sum(r.figures.rps for r in found) / len(found)
        cpu = sum(r.cpu_ms * r.figures.rps for r in found) / sum(r.figures.rps for r in found)
        worst = Figures(
            rps,
            max(r.figures.p50_ms for r in found),
            max(r.figures.p99_ms for r in found),
            sum(r.figures.errors for r in found),
        )
        return Run(worst, cpu)

    return total(runs["ours"]), total(runs["theirs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--against",
        metavar="SRC",
        help="also run usage debits, alternating, on a server from another checkout's src "
        "folder (before/after in one run; the schema must be the same)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs for --against")
    parser.add_argument(
        "--pool-size",
        type=int,
        help="BILLFOLD_DB_POOL_SIZE of the servers (default: the app's; lower it when two "
        "servers and their overflow would pass PostgreSQL's max_connections)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    name = f"billfold_bench_credits_{uuid.uuid4().hex[:8]}"
    admin_url = args.postgres.replace("+asyncpg", "")
    server_url = "postgresql+asyncpg://" + admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    url = f"{server_url}/{name}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        with tempfile.TemporaryDirectory(prefix="billfold-bench-credits-") as folder:
            env = {
                **os.environ,
                **LIVE_STRIPE,
                "BILLFOLD_JWT_SECRET": JWT_SECRET,
                "BILLFOLD_RATE_LIMIT": "1000000/second",
                "BILLFOLD_RATE_LIMIT_ADDRESS": "1000000/second",
                "BILLFOLD_LOG_LEVEL": "WARNING",
                "BILLFOLD_DATA_DIR": folder,
                "BILLFOLD_DATABASE_URL": url,
            }
            if args.pool_size:
                env["BILLFOLD_DB_POOL_SIZE"] = str(args.pool_size)
            subprocess.run([BILLFOLD, "db", "upgrade"], env=env, check=True, capture_output=True)
            secret = asyncio.run(seed(url, args.users))
            settings = Settings(jwt_secret=JWT_SECRET)
            tokens = [
                {"Authorization": f"Bearer {issue_token(settings, f'user{n}')}"}
                for n in range(args.users)
            ]
            backend = [
                {"X-API-Key": secret, "X-Billfold-Account": f"user:user{n}"}
                for n in range(args.users)
            ]
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            # `billfold serve --workers N` as it serves, less its migration step: in this
            # environment its workers never start after the migration ran in the parent process
            # (on main as well), so the database is migrated above and uvicorn is started with
            # the same factory, workers and log level `billfold serve` passes it.
            serve = [
                sys.executable,
                "-m",
                "uvicorn",
                "billfold.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ]
            print(
                f"PostgreSQL, billfold's app with {args.workers} uvicorn workers, "
                f"{args.connections} connections, {args.duration} s each, {args.users} accounts, "
                f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before"
            )
            with serving(serve, env, base + "/healthz") as (group, _):

                def run(method: str, path: str, callers: list[dict[str, str]]) -> Run:
                    return measured(
                        group, lambda: wrk(base, method, path, callers, args), args.duration
                    )

                wrk(base, "GET", "/healthz", tokens, argparse.Namespace(connections=4, duration=2))
                trivial = run("GET", "/healthz", tokens)
                balance = run("GET", "/api/billing/balance", tokens)
                usage = run("POST", "/api/billing/usage", backend)
                trivial_after = run("GET", "/healthz", tokens)
                if args.against:
                    ours, theirs = against(args, serve, env, port, backend, run)
            print(row("GET /healthz (trivial)", trivial, None))
            print(row("GET /api/billing/balance", balance, trivial))
            print(row("POST /api/billing/usage", usage, trivial))
            print(row("GET /healthz (again, after)", trivial_after, None))
            if args.against:
                print(f"  POST /api/billing/usage, {args.rounds} alternating runs of each:")
                print(row("this tree", ours, None))
                print(row(f"{args.against}", theirs, None))
                print(f"  CPU per debit, this tree / the other: {ours.cpu_ms / theirs.cpu_ms:.2f}")
            debits = asyncio.run(usage_postings(url))
            print(f"  usage postings in the ledger: {debits}")
            verified = subprocess.run(
                [BILLFOLD, "ledger", "verify"], env=env, capture_output=True, text=True
            )
            outcome = verified.stdout.strip()[:200]
            print(f"  billfold ledger verify: exit {verified.returncode} {outcome}")
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
