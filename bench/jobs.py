#!/usr/bin/env python3
"""Job runner throughput on PostgreSQL: `billfold worker` processes against the claim alone.

It enqueues `--jobs` no-op jobs (default 20,000), drains them with 1 and then 3 `billfold
worker` processes (`--concurrency` jobs in flight each), and prints jobs per second from the
first job's start to the last one's end (process start-up left out). Beside each it runs
`pgbench` with the bare claim statement (the one `JobRunner.claim` sends, one job per claim)
against the same table refilled with as many jobs, on 1 and 3 clients, and prints the ratio:
what a job costs beyond claiming it (Python, marking it done, the pool's pings). The database is
created, migrated and dropped by the script.

    .venv/bin/python bench/jobs.py [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

Also the plugin module of its no-op job kind (`BILLFOLD_JOB_MODULES=bench.jobs`).
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
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from billfold.jobs import JobRegistry, JobRun

jobs = JobRegistry()
REPO = Path(__file__).resolve().parents[1]


@jobs.kind("bench.noop", max_attempts=3)
async def noop(run: JobRun) -> None:
    """Nothing: the runner's own cost is what is measured."""


# JobRunner.claim's statement on PostgreSQL, one job per claim (pgbench: one claim a transaction).
CLAIM = """\
WITH picked AS MATERIALIZED (
  SELECT jobs.id FROM jobs
  WHERE jobs.status IN ('queued', 'failed') AND jobs.run_at <= now()
    AND jobs.kind IN ('bench.noop')
  ORDER BY jobs.run_at, jobs.id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE jobs SET status = 'running', locked_by = 'pgbench',
  lease_expires_at = now() + interval '60 s', attempts = jobs.attempts + 1, started_at = now()
FROM picked WHERE jobs.id = picked.id
RETURNING jobs.id, jobs.kind, jobs.payload, jobs.attempts, jobs.max_attempts, jobs.key, jobs.run_at;
"""


def with_database(url: str, name: str, driver: str | None = None) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if driver:
        scheme = f"{scheme}+{driver}"
    return urlunsplit((scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def sql(url: str, statement: str) -> list[tuple[object, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(statement)]
    finally:
        await conn.close()


def refill(url: str, count: int) -> None:
    asyncio.run(sql(url, "TRUNCATE jobs RESTART IDENTITY"))
    asyncio.run(
        sql(
            url,
            "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_at, created_at) "
            "SELECT 'bench.noop', '{}'::jsonb, 'queued', 0, 3, now(), now() "
            f"FROM generate_series(1, {count})",
        )
    )
    asyncio.run(sql(url, "ANALYZE jobs"))


def drain_with_workers(
    libpq_url: str, sa_url: str, count: int, workers: int, concurrency: int
) -> float:
    """Jobs per second of `workers` processes draining `count` queued jobs."""
    refill(libpq_url, count)
    env = {
        **os.environ,
        "BILLFOLD_DATABASE_URL": sa_url,
        "BILLFOLD_JOB_MODULES": "bench.jobs",
        "BILLFOLD_JOBS_POLL_SECONDS": "0.05",
        "BILLFOLD_WORKER_CONCURRENCY": str(concurrency),
        "BILLFOLD_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "billfold.cli", "worker"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        deadline = time.monotonic() + 900
        while True:
            [(done,)] = asyncio.run(
                sql(
                    libpq_url,
                    "SELECT count(*) FROM jobs WHERE status = 'done' AND kind = 'bench.noop'",
                )
            )
            if done == count:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                sys.exit(f"the workers did not drain the jobs ({done}/{count} done)")
            time.sleep(0.2)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    [(seconds, attempts)] = asyncio.run(
        sql(
            libpq_url,
            "SELECT extract(epoch FROM max(finished_at) - min(started_at)), max(attempts) "
            "FROM jobs WHERE kind = 'bench.noop'",
        )
    )
    if attempts != 1:
        sys.exit(f"a job ran {attempts} times")
    return count / float(seconds)  # type: ignore[arg-type]


def pgbench_claims(libpq_url: str, count: int, clients: int) -> float:
    """pgbench's rate for the bare claim statement, `count` claims over `clients` clients."""
    refill(libpq_url, count)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(CLAIM)
        path = f.name
    try:
        command = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients)]
        command += ["-t", str(count // clients), "-f", path, libpq_url]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        Path(path).unlink()
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if done.returncode != 0 or not match:
        sys.exit(f"pgbench failed:\n{done.stdout}\n{done.stderr}\n--- script ---\n{CLAIM}")
    [(claimed,)] = asyncio.run(
        sql(libpq_url, "SELECT count(*) FROM jobs WHERE status = 'running' AND kind = 'bench.noop'")
    )
    if claimed != count // clients * clients:
        sys.exit(f"pgbench claimed {claimed} jobs, not {count // clients * clients}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=4, help="jobs in flight per worker")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    if not shutil.which("pgbench"):
        sys.exit("pgbench is not installed (Debian: postgresql-client)")
    from billfold.db.migrate import upgrade

    name = f"billfold_bench_jobs_{uuid.uuid4().hex[:8]}"
    libpq_url = with_database(args.postgres_url, name)
    sa_url = with_database(args.postgres_url, name, driver="asyncpg")
    admin_url = with_database(args.postgres_url, "postgres")
    asyncio.run(sql(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        upgrade(sa_url)
        print(
            f"PostgreSQL job runner bench: {args.jobs:,} no-op jobs, "
            f"{args.concurrency} in flight per worker, {os.cpu_count()} CPUs"
        )
        print(f"{'workers':<10}{'billfold jobs/s':>16}{'pgbench claims/s':>18}{'ratio':>8}")
        for workers in (1, 3):
            rate = drain_with_workers(libpq_url, sa_url, args.jobs, workers, args.concurrency)
            claims = pgbench_claims(libpq_url, args.jobs, workers)
            print(f"{workers:<10}{rate:>16,.0f}{claims:>18,.0f}{rate / claims:>8.2f}")
    finally:
        if not args.keep:
            asyncio.run(sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
