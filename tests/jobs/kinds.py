"""Job kinds for the runner's tests, a plugin module (`BILLFOLD_JOB_MODULES=tests.jobs.kinds`)
so that `billfold worker` subprocesses run them too. Each run is written to `test_job_runs`
in a transaction of its own, before the job is marked done: a job that ran twice shows twice.
"""

from __future__ import annotations

import asyncio
import os

from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from billfold.jobs import JobBatch, JobRegistry, JobRun

metadata = MetaData()
runs = Table(
    "test_job_runs",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False),
    Column("kind", String(100), nullable=False),
    Column("key", String(255)),
    Column("attempt", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("stage", String(16), nullable=False),
)

jobs = JobRegistry()
# Flipped by in-process tests: `test.flaky` fails while it is true.
FAILING = {"flaky": True}


async def record(run: JobRun, stage: str = "ran") -> None:
    async with run.container.db.transaction() as session:
        await session.execute(
            insert(runs).values(
                job_id=run.id,
                kind=run.kind,
                key=run.key,
                attempt=run.attempt,
                pid=os.getpid(),
                stage=stage,
            )
        )


@jobs.kind("test.record")
async def record_run(run: JobRun) -> None:
    await record(run)


@jobs.kind("test.sleep", max_attempts=5)
async def sleep_then_record(run: JobRun) -> None:
    """Records its start, sleeps (`first` seconds on the first attempt, `then` after), and
    records its end in the transaction that marks it done."""
    await record(run, "started")
    await asyncio.sleep(float(run.payload.get("first" if run.attempt == 1 else "then", 0)))
    async with run.transaction() as session:
        await session.execute(
            insert(runs).values(
                job_id=run.id,
                kind=run.kind,
                key=run.key,
                attempt=run.attempt,
                pid=os.getpid(),
                stage="finished",
            )
        )


@jobs.kind("test.flaky", max_attempts=3)
async def flaky(run: JobRun) -> None:
    if FAILING["flaky"]:
        raise RuntimeError(f"flaky failed on attempt {run.attempt}")
    await record(run)


@jobs.batch_kind("test.batch", size=4, max_attempts=2)
async def record_batch(batch: JobBatch) -> None:
    """Records every run of the batch in one transaction, each in a savepoint; a run whose
    payload says `fail` writes, then fails (its write rolled back, the others kept)."""
    async with batch.transaction() as session:
        for run in batch.runs:
            try:
                async with session.begin_nested():
                    await session.execute(
                        insert(runs).values(
                            job_id=run.id,
                            kind=run.kind,
                            key=run.key,
                            attempt=run.attempt,
                            pid=os.getpid(),
                            stage=f"batch of {len(batch.runs)}",
                        )
                    )
                    if run.payload.get("fail"):
                        raise RuntimeError(f"batch run {run.key} failed")
            except RuntimeError as exc:
                await batch.fail(session, run, exc)
