"""The job runner in one process, on SQLite and PostgreSQL, on a frozen clock: the outbox,
keys, back-off and dead jobs, manual retry, leases, recurring slots, shutdown, metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from billfold.clock import FrozenClock
from billfold.container import Container
from billfold.jobs import Job, JobRegistry, JobRun, JobRunner, Worker, enqueue, retry, stats
from billfold.jobs.metrics import publish
from billfold.jobs.registry import Cron
from billfold.observability import REGISTRY
from tests.jobs import kinds
from tests.jobs.conftest import count_runs, recorded


async def _job(container: Container, job_id: int) -> Job:
    async with container.db.transaction() as session:
        found = await session.get(Job, job_id)
        assert found is not None
        return found


async def _only_job(container: Container) -> Job:
    async with container.db.transaction() as session:
        return (await session.execute(select(Job))).scalar_one()


async def test_a_job_enqueued_in_a_rolled_back_transaction_never_runs(
    container: Container, runner: JobRunner
) -> None:
    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with container.db.transaction() as session:
            await enqueue(session, "test.record", {"n": 1}, clock=container.clock)
            raise Refused
    async with container.db.transaction() as session:
        await enqueue(session, "test.record", {"n": 2}, clock=container.clock)
    report = await runner.drain()
    assert report.done == 1
    async with container.db.transaction() as session:
        payloads = [j.payload for j in (await session.execute(select(Job))).scalars()]
    assert payloads == [{"n": 2}]
    assert await count_runs(container.db) == 1
    assert (await runner.drain()).done == 0  # ran once


async def test_an_uncommitted_job_is_invisible_to_workers(
    container: Container, runner: JobRunner
) -> None:
    if container.db.is_sqlite:
        pytest.skip("SQLite admits one writer at a time: a claim would wait for the commit")
    async with container.db.transaction() as session:
        await enqueue(session, "test.record", clock=container.clock)
        assert await runner.claim(10) == []
    assert len(await runner.claim(10)) == 1


async def test_a_key_makes_one_job(container: Container, runner: JobRunner) -> None:
    async with container.db.transaction() as session:
        assert await enqueue(session, "test.record", key="once", clock=container.clock)
        assert not await enqueue(session, "test.record", key="once", clock=container.clock)
    await runner.drain()
    async with container.db.transaction() as session:
        assert not await enqueue(session, "test.record", key="once", clock=container.clock)
    assert (await runner.drain()).done == 0
    assert await count_runs(container.db) == 1


async def test_scheduled_jobs_wait_for_their_time(
    container: Container, runner: JobRunner, clock: FrozenClock
) -> None:
    async with container.db.transaction() as session:
        await enqueue(
            session, "test.record", run_at=clock.now() + timedelta(minutes=5), clock=clock
        )
    assert (await runner.drain()).done == 0
    clock.advance(timedelta(minutes=5))
    assert (await runner.drain()).done == 1


async def test_failures_back_off_then_die_keeping_the_error_and_a_retry_revives(
    container: Container, runner: JobRunner, clock: FrozenClock
) -> None:
    async with container.db.transaction() as session:
        await enqueue(session, "test.flaky", max_attempts=3, clock=clock)
    assert (await runner.drain()).failed == 1
    job = await _only_job(container)
    assert job.status == "failed" and job.attempts == 1
    assert job.run_at == clock.now() + timedelta(seconds=5)
    assert job.last_error == "RuntimeError: flaky failed on attempt 1"
    assert job.traceback and "flaky failed on attempt 1" in job.traceback
    assert (await runner.drain()).failed == 0  # not due yet
    clock.advance(timedelta(seconds=5))
    assert (await runner.drain()).failed == 1
    assert (await _only_job(container)).run_at == clock.now() + timedelta(seconds=10)
    clock.advance(timedelta(seconds=10))
    assert (await runner.drain()).dead == 1
    job = await _only_job(container)
    assert job.status == "dead" and job.attempts == 3 and job.finished_at == clock.now()
    assert "flaky failed on attempt 3" in (job.traceback or "")
    clock.advance(timedelta(days=1))
    assert (await runner.drain()).dead == 0  # dead stays dead

    kinds.FAILING["flaky"] = False
    async with container.db.transaction() as session:
        assert await retry(session, job_id=job.id, clock=clock) == 1
    assert (await runner.drain()).done == 1
    job = await _only_job(container)
    assert job.status == "done" and job.attempts == 1 and job.last_error is None


async def test_a_lost_lease_lets_another_worker_run_it_and_fences_off_the_first(
    container: Container, registry: JobRegistry, clock: FrozenClock
) -> None:
    first = JobRunner(container, registry, worker_id="first", lease_seconds=30)
    second = JobRunner(container, registry, worker_id="second", lease_seconds=30)
    async with container.db.transaction() as session:
        await enqueue(session, "test.sleep", {"first": 0, "then": 0}, clock=clock)
    [claimed] = await first.claim(5)
    assert await second.claim(5) == []  # held
    clock.advance(timedelta(seconds=31))  # the first worker stalls past its lease
    assert await second.requeue_expired() == 1
    [again] = await second.claim(5)
    assert again.id == claimed.id and again.attempts == 2
    assert await first.run(claimed) is None  # its completion is refused, its writes undone
    assert await second.run(again) == "done"
    runs = await recorded(container.db)
    assert [(attempt, stage) for _, _, attempt, stage in runs] == [
        (1, "started"),
        (2, "started"),
        (2, "finished"),
    ]


async def test_a_recurring_job_runs_once_per_slot(
    container: Container, registry: JobRegistry, clock: FrozenClock
) -> None:
    clock.advance(timedelta(milliseconds=250))
    runners = [JobRunner(container, registry, worker_id=f"w{n}") for n in range(3)]
    for _ in range(3):
        for each in runners:
            await each.schedule_due()
        clock.advance(timedelta(milliseconds=400))
    for each in runners:
        await each.drain()
    clock.advance(timedelta(seconds=1))
    for each in runners:
        await each.schedule_due()
        await each.drain()
    runs = await recorded(container.db, kind="test.tick")
    assert [key for _, key, _, _ in runs] == [
        "recurring:test.tick:2026-01-01T00:00:00Z",
        "recurring:test.tick:2026-01-01T00:00:01Z",
        "recurring:test.tick:2026-01-01T00:00:02Z",
    ]


def test_cron_slots() -> None:
    every_quarter = Cron.parse("*/15 9-17 * * 1-5")
    monday = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert every_quarter.matches(monday)
    assert not every_quarter.matches(monday.replace(minute=31))
    assert not every_quarter.matches(monday.replace(day=4))  # a Sunday
    assert not every_quarter.matches(monday.replace(hour=18))


async def test_shutdown_finishes_quick_jobs_and_releases_slow_ones(
    container: Container, registry: JobRegistry, clock: FrozenClock
) -> None:
    async with container.db.transaction() as session:
        await enqueue(session, "test.sleep", {"first": 0.05}, key="quick", clock=clock)
        await enqueue(session, "test.sleep", {"first": 60}, key="slow", clock=clock)
    worker = Worker(JobRunner(container, registry), poll_seconds=0.05, shutdown_grace=1.0)
    async with worker.running():
        deadline = asyncio.get_running_loop().time() + 20
        while len(await recorded(container.db, stage="started")) < 2:
            assert asyncio.get_running_loop().time() < deadline, "the jobs did not start"
            await asyncio.sleep(0.02)
    async with container.db.transaction() as session:
        by_key = {j.key: j for j in (await session.execute(select(Job))).scalars()}
    assert by_key["quick"].status == "done"
    slow = by_key["slow"]
    assert slow.status == "queued" and slow.attempts == 0 and slow.locked_by is None


async def test_stats_and_metrics(
    container: Container, runner: JobRunner, clock: FrozenClock
) -> None:
    async with container.db.transaction() as session:
        await enqueue(session, "test.record", clock=clock)
        await enqueue(session, "test.flaky", max_attempts=1, clock=clock)
        await enqueue(session, "test.record", run_at=clock.now() + timedelta(hours=1), clock=clock)
    clock.advance(timedelta(seconds=90))
    async with container.db.transaction() as session:
        before = await stats(session, clock=clock)
    assert before.counts["queued"] == 3 and before.oldest_queued_age == 90.0
    await runner.drain()
    async with container.db.transaction() as session:
        after = await stats(session, clock=clock)
    assert after.counts == {"queued": 1, "running": 0, "done": 1, "failed": 0, "dead": 1}
    assert after.oldest_queued_age == 0.0
    publish(after)
    assert REGISTRY.get_sample_value("billfold_jobs", {"status": "dead"}) == 1
    assert REGISTRY.get_sample_value("billfold_jobs_oldest_due_age_seconds") == 0.0
    assert (
        REGISTRY.get_sample_value(
            "billfold_job_runs_total", {"kind": "test.flaky", "outcome": "dead"}
        )
        or 0
    ) >= 1


def test_a_handler_transaction_outside_a_runner_is_refused(container: Container) -> None:
    run = JobRun(1, "x", {}, 1, 1, None, datetime(2026, 1, 1, tzinfo=UTC), container)
    with pytest.raises(RuntimeError):
        run.transaction()


async def test_done_jobs_are_pruned_after_the_keep_days(
    container: Container, runner: JobRunner, clock: FrozenClock
) -> None:
    async with container.db.transaction() as session:
        await enqueue(session, "test.record", key="old", clock=clock)
        await enqueue(session, "test.flaky", max_attempts=1, key="dead", clock=clock)
    await runner.drain()
    clock.advance(timedelta(days=8))
    async with container.db.transaction() as session:
        await enqueue(session, "test.record", key="new", clock=clock)
    await runner.schedule_due()  # writes this hour's jobs.prune
    await runner.drain()
    async with container.db.transaction() as session:
        keys = set((await session.execute(select(Job.key))).scalars())
    assert "old" not in keys and {"dead", "new"} <= keys
    assert any(key and key.startswith("recurring:jobs.prune:") for key in keys)


async def test_run_inline_claims_in_the_handlers_transaction_and_backs_off(
    container: Container, registry: JobRegistry, clock: FrozenClock
) -> None:
    here = JobRunner(container, registry, worker_id="inline")
    async with container.db.transaction() as session:
        await enqueue(session, "test.sleep", {"first": 0}, key="a", clock=clock)
        await enqueue(session, "test.flaky", max_attempts=3, key="b", clock=clock)
        await enqueue(session, "test.sleep", {"first": 0}, key="c", clock=clock)
    assert await here.run_inline("test.sleep", "a", {"first": 0}) == "done"
    assert await here.run_inline("test.sleep", "a", {"first": 0}) is None  # done already
    assert await here.run_inline("test.flaky", "b", {}) == "failed"
    async with container.db.transaction() as session:
        flaky = (await session.execute(select(Job).where(Job.key == "b"))).scalar_one()
    assert flaky.attempts == 1 and flaky.run_at == clock.now() + timedelta(seconds=5)
    [held] = await JobRunner(container, registry, worker_id="other").claim(1, key="c")
    assert await here.run_inline("test.sleep", "c", {"first": 0}) is None  # a worker holds it
    # What a handler does before `run.transaction()` runs unclaimed; its transaction does not.
    assert [(key, stage) for _, key, _, stage in await recorded(container.db)] == [
        ("a", "started"),
        ("a", "finished"),
        ("a", "started"),
        ("c", "started"),
    ]
    assert held.attempts == 1


async def test_a_batch_kind_is_claimed_and_run_together_and_fails_one_job_at_a_time(
    container: Container, runner: JobRunner, clock: FrozenClock
) -> None:
    async with container.db.transaction() as session:
        for n in range(6):
            payload = {"fail": True} if n == 2 else {}
            await enqueue(session, "test.batch", payload, key=f"b{n}", max_attempts=2, clock=clock)
    report = await runner.drain(kinds=["test.batch"], batch=4)
    assert (report.done, report.failed, report.dead) == (5, 1, 0)
    # Two batches (4, then 2); the failing run's write rolled back, the batch's others kept.
    assert [(key, stage) for _, key, _, stage in await recorded(container.db)] == [
        ("b0", "batch of 4"),
        ("b1", "batch of 4"),
        ("b3", "batch of 4"),
        ("b4", "batch of 2"),
        ("b5", "batch of 2"),
    ]
    async with container.db.transaction() as session:
        jobs = {j.key: j for j in (await session.execute(select(Job))).scalars()}
    failed = jobs["b2"]
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.run_at == clock.now() + timedelta(seconds=5)
    assert failed.last_error == "RuntimeError: batch run b2 failed"
    assert all(jobs[f"b{n}"].status == "done" for n in (0, 1, 3, 4, 5))
    # Run alone (by key), a batch kind's job is a batch of one; its last attempt: dead.
    clock.advance(timedelta(seconds=5))
    assert await runner.run_now("b2") == "dead"
    assert (await _job(container, failed.id)).status == "dead"
