"""`billfold worker` processes against one database, on SQLite and PostgreSQL: 2,000 jobs run
exactly once by 3 workers, a job whose worker was SIGKILLed runs again on another after its
lease, a recurring job runs once per slot with 3 workers up, and webhook events are applied
by a worker. Conditions are awaited with a bounded deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billfold.clock import SystemClock
from billfold.container import Container
from billfold.db.engine import Database
from billfold.jobs import Job, enqueue, enqueue_many
from billfold.stripe.inbox import store_event
from billfold.stripe.models import WebhookEvent
from tests.jobs.conftest import recorded

REPO = Path(__file__).resolve().parents[2]


class Workers:
    """`billfold worker` subprocesses on the test's database."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, modules: str, *, lease: float = 30, concurrency: int = 4) -> int:
        env = {
            **os.environ,
            "BILLFOLD_DATABASE_URL": self.url,
            "BILLFOLD_JOB_MODULES": modules,
            "BILLFOLD_JOBS_POLL_SECONDS": "0.05",
            "BILLFOLD_JOBS_LEASE_SECONDS": str(lease),
            "BILLFOLD_WORKER_CONCURRENCY": str(concurrency),
            "BILLFOLD_DATA_DIR": str(self.logs / "data"),
            "BILLFOLD_ENV": "test",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        log = (self.logs / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "billfold.cli", "worker"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc.pid

    def stop(self) -> list[int | None]:
        """SIGTERM every worker still running and wait for it (a graceful shutdown)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob("worker-*.log")))


@pytest.fixture
def workers(database: Database, runs_table: Database, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(database.url, tmp_path)
    try:
        yield started
    finally:
        started.stop()


async def until(
    check: Callable[[], Awaitable[bool]], what: str, workers: Workers, within: float = 120
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        dead = [p.returncode for p in workers.procs if p.poll() is not None]
        if time.monotonic() > deadline or (dead and len(dead) == len(workers.procs)):
            raise AssertionError(f"{what}: not after {within}s\n{workers.output()[-4000:]}")
        await asyncio.sleep(0.1)


async def _count(db: Database, *where: object) -> int:
    async with db.transaction() as session:
        return int(
            (
                await session.execute(select(func.count()).select_from(Job).where(*where))
            ).scalar_one()  # type: ignore[arg-type]
        )


async def test_2000_jobs_by_3_workers_each_run_exactly_once(
    container: Container, workers: Workers
) -> None:
    db = container.db
    async with db.transaction() as session:
        await enqueue_many(
            session, "test.record", [{"n": n} for n in range(2000)], clock=SystemClock()
        )
    pids = {workers.start("tests.jobs.kinds") for _ in range(3)}
    await until(lambda: _done(db, 2000, "test.record"), "2000 jobs done", workers)
    assert workers.stop() == [0, 0, 0]
    runs = await recorded(db)
    per_job = Counter(job_id for job_id, _, _, _ in runs)
    assert len(per_job) == 2000 and set(per_job.values()) == {1}
    async with db.transaction() as session:
        ran_by = set((await session.execute(select(func.distinct(_pid())))).scalars())
        attempts = set(
            (await session.execute(select(Job.attempts).where(Job.kind == "test.record"))).scalars()
        )
    assert ran_by <= pids and len(ran_by) >= 2  # the work was shared
    assert attempts == {1}


def _pid() -> object:
    from tests.jobs.kinds import runs

    return runs.c.pid


async def _done(db: Database, expected: int, kind: str) -> bool:
    return await _count(db, Job.status == "done", Job.kind == kind) == expected


async def test_a_job_on_a_killed_worker_runs_again_on_another_after_its_lease(
    container: Container, workers: Workers
) -> None:
    db = container.db
    async with db.transaction() as session:
        await enqueue(session, "test.sleep", {"first": 600, "then": 0}, clock=SystemClock())
    first = workers.start("tests.jobs.kinds", lease=2)

    async def started() -> bool:
        return bool(await recorded(db, stage="started"))

    await until(started, "the job started", workers)
    os.kill(first, signal.SIGKILL)
    workers.procs[0].wait(timeout=10)
    second = workers.start("tests.jobs.kinds", lease=2)
    await until(lambda: _done(db, 1, "test.sleep"), "the job done by the second worker", workers)
    runs = await recorded(db)
    assert [(attempt, stage) for _, _, attempt, stage in runs] == [
        (1, "started"),
        (2, "started"),
        (2, "finished"),
    ]
    async with db.transaction() as session:
        job = (await session.execute(select(Job).where(Job.kind == "test.sleep"))).scalar_one()
        from tests.jobs.kinds import runs as table

        pids = list((await session.execute(select(table.c.pid).order_by(table.c.n))).scalars())
    assert job.attempts == 2 and job.status == "done"
    assert pids == [first, second, second]


async def test_a_recurring_job_runs_once_per_slot_with_3_workers(
    container: Container, workers: Workers
) -> None:
    db = container.db
    for _ in range(3):
        workers.start("tests.jobs.recurring")

    async def four_slots() -> bool:
        return len({key for _, key, _, _ in await recorded(db, kind="test.tick")}) >= 4

    await until(four_slots, "four slots run", workers, within=60)
    assert workers.stop() == [0, 0, 0]
    runs = await recorded(db, kind="test.tick")
    per_slot = Counter(key for _, key, _, _ in runs)
    assert set(per_slot.values()) == {1}, per_slot
    async with db.transaction() as session:
        keys = list(
            (await session.execute(select(Job.key).where(Job.kind == "test.tick"))).scalars()
        )
    assert len(keys) == len(set(keys)) and set(per_slot) <= set(keys)


async def test_webhook_events_are_applied_by_a_worker(
    container: Container, workers: Workers
) -> None:
    db = container.db
    async with db.transaction() as session:
        for n in range(3):
            event = {
                "id": f"evt_w{n}",
                "type": "balance.available",
                "created": n,
                "data": {"object": {}},
            }
            await store_event(session, event, source="webhook", clock=SystemClock())
    workers.start("tests.jobs.kinds")

    async def applied() -> bool:
        async with db.transaction() as session:
            statuses = list((await session.execute(select(WebhookEvent.status))).scalars())
        return statuses == ["processed"] * 3

    await until(applied, "the events applied", workers)
    async with db.transaction() as session:
        jobs = list(
            (
                await session.execute(
                    select(Job.key, Job.status)
                    .where(Job.kind == "stripe.apply_event")
                    .order_by(Job.id)
                )
            ).all()
        )
    assert jobs == [(f"stripe-event:evt_w{n}", "done") for n in range(3)]
