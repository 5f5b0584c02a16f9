"""Running jobs: claim, run, complete or back off; the worker loop.

Claiming is one statement. On PostgreSQL:

    WITH picked AS MATERIALIZED (
        SELECT id FROM jobs
        WHERE kind IN (...) AND status IN ('queued', 'failed') AND run_at <= now
        ORDER BY run_at, id LIMIT n FOR UPDATE SKIP LOCKED)   -- a partial index, in order
    UPDATE jobs SET status = 'running', locked_by = me, lease_expires_at = now + lease,
                    attempts = attempts + 1, started_at = now
    FROM picked WHERE jobs.id = picked.id RETURNING ...

so workers on any number of machines never claim the same job; SQLite runs the same UPDATE
under its `BEGIN IMMEDIATE` write lock. A job whose worker's lease ran out is put back in the
queue by `requeue_expired` (every worker, every second). The claim's `(id, attempts)` is a
fence: the job is marked done, failed or released only `WHERE status = 'running' AND
attempts = <the claim's> AND locked_by = me`, so a worker whose lease expired (and whose job
another worker took over) can change nothing, and a handler's writes made in
`run.transaction()` roll back with it.

A batch kind (`JobRegistry.batch_kind`) is claimed up to its batch size at once and handled
in one transaction (`JobBatch`): the jobs it does not fail are marked done in one fenced UPDATE
as it commits, and each failure is recorded on its own job in that same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.jobs.metrics import RUNS, publish
from billfold.jobs.models import CLAIMABLE, Job, JobStatus
from billfold.jobs.queue import enqueue, stats
from billfold.jobs.registry import JobBatch, JobFailure, JobKind, JobRegistry, JobRun

if TYPE_CHECKING:
    from billfold.container import Container

log = logging.getLogger("billfold.jobs")

DEFAULT_LEASE_SECONDS = 60.0


class LeaseLost(Exception):
    """This worker's claim on a job is gone (its lease expired and another worker took it)."""


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    key: str | None
    run_at: datetime


@dataclass
class RunReport:
    done: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0

    def add(self, outcome: str | None) -> None:
        if outcome == JobStatus.DONE.value:
            self.done += 1
        elif outcome == JobStatus.FAILED.value:
            self.failed += 1
        elif outcome == JobStatus.DEAD.value:
            self.dead += 1
        else:
            self.lost += 1


def worker_name() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


_RETURNED = (Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.key, Job.run_at)


class JobRunner:
    """Claims and runs the jobs of the kinds in `registry`, against `container.db`, on
    `container.clock`'s time."""

    def __init__(
        self,
        container: Container,
        registry: JobRegistry,
        *,
        worker_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.container = container
        self.registry = registry
        self.worker_id = worker_id or worker_name()
        self.lease = timedelta(seconds=lease_seconds)
        self._scheduled: dict[str, datetime] = {}  # the last slot written, by schedule

    @property
    def db(self) -> Any:
        return self.container.db

    def _now(self) -> datetime:
        return self.container.clock.now()

    # --- claiming ---------------------------------------------------------------------
    async def claim(
        self, limit: int, *, key: str | None = None, kinds: Sequence[str] | None = None
    ) -> list[Claimed]:
        """Take up to `limit` due jobs (of `kinds`, default every kind this runner knows; or the
        job with `key`, due or not) for this worker."""
        if not self.registry.kinds or limit < 1:
            return []
        now = self._now()
        expired = and_(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now)
        waiting = Job.status.in_(CLAIMABLE)
        if key is None:
            # Only waiting jobs, so the claim walks the partial index in order (expired leases
            # are put back in the queue by `requeue_expired`, which workers run every second).
            due = and_(waiting, Job.run_at <= now)
            known = [k for k in kinds if k in self.registry] if kinds else list(self.registry.kinds)
            if not known:
                return []
            picked = select(Job.id).where(due, Job.kind.in_(known))
        else:
            picked = select(Job.id).where(Job.key == key, or_(waiting, expired))
        picked = picked.order_by(Job.run_at, Job.id).limit(limit)
        values = {
            "status": JobStatus.RUNNING.value,
            "locked_by": self.worker_id,
            "lease_expires_at": now + self.lease,
            "attempts": Job.attempts + 1,
            "started_at": now,
        }
        if self.db.is_sqlite:
            stmt = update(Job).where(Job.id.in_(picked.scalar_subquery()))
        else:
            cte = picked.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
            stmt = update(Job).where(Job.id == cte.c.id)
        stmt = (
            stmt.values(**values).returning(*_RETURNED).execution_options(synchronize_session=False)
        )
        async with self.db.transaction() as session:
            rows = (await session.execute(stmt)).all()
        claimed = [Claimed(*row) for row in rows]
        claimed.sort(key=lambda c: (c.run_at, c.id))
        return claimed

    def _fence(self, job_id: int, attempt: int) -> Any:
        return and_(
            Job.id == job_id,
            Job.status == JobStatus.RUNNING.value,
            Job.attempts == attempt,
            Job.locked_by == self.worker_id,
        )

    # --- running ----------------------------------------------------------------------
    async def run(self, claimed: Claimed, *, memo: object = None) -> str | None:
        """Run one claimed job to its outcome: 'done', 'failed' (retried after back-off),
        'dead', or None when the claim was lost. Never raises for a failing handler;
        cancellation (shutdown) propagates and leaves the job to `release`."""
        kind = self.registry.get(claimed.kind)
        if kind is None:  # claimed by key, but this runner does not know the kind
            await self.release(claimed)
            return None
        if kind.batch_handler is not None:
            return (await self.run_batch([claimed], memos={claimed.id: memo}))[0]
        run = self._job_run(claimed, memo)
        run.completing = lambda: self._completing(run)
        try:
            await kind.handler(run)
            if not run.completed:
                async with self.db.transaction() as session:
                    await self._mark_done(session, run)
        except LeaseLost:
            log.warning("job %s (%s): lease lost, another worker has it", run.id, run.kind)
            RUNS.labels(run.kind, "lost").inc()
            return None
        except Exception as exc:
            outcome = await self._record_failure(kind, run, exc)
            RUNS.labels(run.kind, outcome or "lost").inc()
            return outcome
        RUNS.labels(run.kind, JobStatus.DONE.value).inc()
        return JobStatus.DONE.value

    def _job_run(self, claimed: Claimed, memo: object = None) -> JobRun:
        return JobRun(
            id=claimed.id,
            kind=claimed.kind,
            payload=dict(claimed.payload),
            attempt=claimed.attempts,
            max_attempts=claimed.max_attempts,
            key=claimed.key,
            scheduled_for=claimed.run_at,
            container=self.container,
            memo=memo,
        )

    async def run_claimed(self, claimed: Sequence[Claimed]) -> list[str | None]:
        """Run claimed jobs here, one after another; those of a batch kind together (where
        the first of them was). Their outcomes, as `run`'s."""
        groups: dict[str, list[Claimed]] = {}
        order: list[list[Claimed]] = []
        for job in claimed:
            kind = self.registry.get(job.kind)
            if kind is not None and kind.batch_handler is not None:
                if job.kind not in groups:
                    groups[job.kind] = []
                    order.append(groups[job.kind])
                groups[job.kind].append(job)
            else:
                order.append([job])
        outcomes: list[str | None] = []
        for group in order:
            if len(group) == 1 and group[0].kind not in groups:
                outcomes.append(await self.run(group[0]))
            else:
                outcomes.extend(await self.run_batch(group))
        return outcomes

    async def run_batch(
        self, claimed: Sequence[Claimed], *, memos: dict[int, object] | None = None
    ) -> list[str | None]:
        """Run claimed jobs of one batch kind together (`JobBatch`); their outcomes, in order
        (None: the claim was lost). A failure of the batch as a whole (its transaction did not
        commit) is recorded on each of its jobs."""
        kind = self.registry.get(claimed[0].kind) if claimed else None
        if kind is None or kind.batch_handler is None:
            for job in claimed:
                await self.release(job)
            return [None] * len(claimed)
        memos = memos or {}
        runs = [self._job_run(job, memos.get(job.id)) for job in claimed]
        batch = JobBatch(runs=runs, container=self.container)
        batch.completing = lambda: self._completing_batch(batch)

        async def failing(session: AsyncSession, run: JobRun, exc: Exception) -> str:
            status = await self._write_failure(
                session, kind, run, exc, self._fence(run.id, run.attempt)
            )
            if status is None:
                raise LeaseLost(run.id)
            return status

        batch.failing = failing
        try:
            await kind.batch_handler(batch)
            if not batch.completed:
                async with self.db.transaction() as session:
                    await self._mark_batch_done(session, batch)
                batch.completed = True
        except LeaseLost:
            log.warning("a batch of %d %s jobs: a lease was lost", len(runs), kind.name)
            RUNS.labels(kind.name, "lost").inc(len(runs))
            return [None] * len(runs)
        except Exception as exc:
            outcomes = [await self._record_failure(kind, run, exc) for run in runs]
            for outcome in outcomes:
                RUNS.labels(kind.name, outcome or "lost").inc()
            return outcomes
        outcomes = [batch.failed.get(run.id, JobStatus.DONE.value) for run in runs]
        for outcome in outcomes:
            RUNS.labels(kind.name, outcome).inc()
        return list(outcomes)

    @contextlib.asynccontextmanager
    async def _completing_batch(self, batch: JobBatch) -> AsyncIterator[AsyncSession]:
        async with self.db.transaction() as session:
            yield session
            await self._mark_batch_done(session, batch)
        batch.completed = True

    async def _mark_batch_done(self, session: AsyncSession, batch: JobBatch) -> None:
        done = [(run.id, run.attempt) for run in batch.runs if run.id not in batch.failed]
        if done:
            await self._mark_done_where(
                session,
                and_(
                    tuple_(Job.id, Job.attempts).in_(done),
                    Job.status == JobStatus.RUNNING.value,
                    Job.locked_by == self.worker_id,
                ),
                len(done),
            )

    @contextlib.asynccontextmanager
    async def _completing(self, run: JobRun) -> AsyncIterator[AsyncSession]:
        async with self.db.transaction() as session:
            yield session
            await self._mark_done(session, run)
        run.completed = True

    async def _mark_done(self, session: AsyncSession, run: JobRun) -> None:
        await self._mark_done_where(session, self._fence(run.id, run.attempt), 1)

    async def _mark_done_where(self, session: AsyncSession, fence: Any, expected: int) -> None:
        """Mark the claimed jobs matching `fence` done; LeaseLost unless all `expected` were."""
        result = await session.execute(
            update(Job)
            .where(fence)
            .values(
                status=JobStatus.DONE.value,
                finished_at=self._now(),
                locked_by=None,
                lease_expires_at=None,
                last_error=None,
                traceback=None,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != expected:
            raise LeaseLost(expected)

    async def _record_failure(
        self, kind: JobKind, run: JobRun, exc: Exception, *, inline: bool = False
    ) -> str | None:
        """Back off (or give up after `max_attempts`), keeping the error and traceback; the
        kind's `on_failure` hook runs in the same transaction. (`inline`: the job was never
        claimed, see `run_inline`; the attempt is counted here.)"""
        try:
            async with self.db.transaction() as session:
                if inline:
                    taken = await self._take_waiting(session, run)
                    if taken is None:
                        return None
                    fence: Any = Job.id == run.id
                else:
                    fence = self._fence(run.id, run.attempt)
                status = await self._write_failure(session, kind, run, exc, fence)
                if status is None:
                    return None
        except Exception:
            # The job stays claimed (or waiting); it is tried again.
            log.exception("job %s (%s): recording its failure failed", run.id, run.kind)
            return None
        return status

    async def _write_failure(
        self, session: AsyncSession, kind: JobKind, run: JobRun, exc: Exception, fence: Any
    ) -> str | None:
        """Record a failed attempt on the job matching `fence` (and the kind's `on_failure`),
        in `session`'s transaction; None when no job matched."""
        now = self._now()
        dead = run.attempt >= run.max_attempts
        failure = JobFailure(
            error=f"{type(exc).__name__}: {exc}"[:4000],
            traceback="".join(traceback.format_exception(exc))[-16000:],
            dead=dead,
            retry_at=None if dead else now + kind.backoff(run.attempt),
        )
        status = (JobStatus.DEAD if dead else JobStatus.FAILED).value
        result = await session.execute(
            update(Job)
            .where(fence)
            .values(
                status=status,
                attempts=run.attempt,
                run_at=failure.retry_at or Job.run_at,
                locked_by=None,
                lease_expires_at=None,
                last_error=failure.error,
                traceback=failure.traceback,
                finished_at=now if dead else None,
            )
            .execution_options(synchronize_session=False)
        )
        if not getattr(result, "rowcount", 0):
            return None
        if kind.on_failure is not None:
            await kind.on_failure(session, run, failure)
        log.warning(
            "job %s (%s) %s, attempt %d/%d: %s",
            run.id,
            run.kind,
            status,
            run.attempt,
            run.max_attempts,
            failure.error,
        )
        return status

    # --- inline: claimed and completed in the handler's own transaction ------------------
    def _waiting_with_key(self, key: str | None) -> Any:
        now = self._now()
        expired = and_(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now)
        return and_(Job.key == key, or_(Job.status.in_(CLAIMABLE), expired))

    async def _take_waiting(self, session: AsyncSession, run: JobRun) -> int | None:
        """Lock the waiting job with `run.key` (skipping it if a worker holds it) and fill in
        `run`'s id and attempt; None when there is none waiting."""
        stmt = select(Job.id, Job.attempts, Job.max_attempts, Job.run_at).where(
            self._waiting_with_key(run.key)
        )
        if not self.db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        row = (await session.execute(stmt)).one_or_none()
        if row is None:
            return None
        run.id, run.attempt, run.max_attempts, run.scheduled_for = (
            row.id,
            row.attempts + 1,
            row.max_attempts,
            row.run_at,
        )
        return run.id

    async def _complete_waiting(self, session: AsyncSession, run: JobRun) -> None:
        """Claim the waiting job with `run.key` and mark it done, in one statement, in the
        handler's transaction (which holds the row until it commits); LeaseLost if none."""
        now = self._now()
        picked = select(Job.id).where(self._waiting_with_key(run.key))
        if not self.db.is_sqlite:
            picked = picked.with_for_update(skip_locked=True)
        stmt = (
            update(Job)
            .where(Job.id.in_(picked.scalar_subquery()))
            .values(
                status=JobStatus.DONE.value,
                attempts=Job.attempts + 1,
                started_at=now,
                finished_at=now,
                locked_by=None,
                lease_expires_at=None,
                last_error=None,
                traceback=None,
            )
            .returning(Job.id, Job.attempts, Job.max_attempts, Job.run_at)
            .execution_options(synchronize_session=False)
        )
        row = (await session.execute(stmt)).one_or_none()
        if row is None:
            raise LeaseLost(run.key)
        run.id, run.attempt, run.max_attempts, run.scheduled_for = (
            row.id,
            row.attempts,
            row.max_attempts,
            row.run_at,
        )

    @contextlib.asynccontextmanager
    async def _completing_inline(self, run: JobRun) -> AsyncIterator[AsyncSession]:
        async with self.db.transaction() as session:
            await self._complete_waiting(session, run)
            yield session
        run.completed = True

    async def run_inline(
        self, kind_name: str, key: str, payload: dict[str, Any], *, memo: object = None
    ) -> str | None:
        """Run the waiting job with `key` here and now, claiming it in the very transaction
        in which its handler's writes and its completion commit (`run.transaction()`): for a
        job this process just enqueued and wants done at once (a webhook event after its
        request), one transaction less than `run_now`. The handler's work before
        `run.transaction()` runs unclaimed (a worker may run the job meanwhile: then this
        returns None and its commit is refused). Failures back off like any job's."""
        kind = self.registry.get(kind_name)
        if kind is None:
            return None
        run = JobRun(
            id=0,
            kind=kind_name,
            payload=payload,
            attempt=0,
            max_attempts=kind.max_attempts,
            key=key,
            scheduled_for=self._now(),
            container=self.container,
            memo=memo,
        )
        run.completing = lambda: self._completing_inline(run)
        try:
            await kind.handler(run)
            if not run.completed:
                async with self.db.transaction() as session:
                    await self._complete_waiting(session, run)
        except LeaseLost:
            return None
        except Exception as exc:
            outcome = await self._record_failure(kind, run, exc, inline=True)
            RUNS.labels(run.kind, outcome or "lost").inc()
            return outcome
        RUNS.labels(run.kind, JobStatus.DONE.value).inc()
        return JobStatus.DONE.value

    async def requeue_expired(self) -> int:
        """Put the jobs whose worker's lease ran out (it died or stalled) back in the queue,
        due at once; the attempt it used stays counted, and its late completion is refused
        by the fence."""
        now = self._now()
        stmt = (
            update(Job)
            .where(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now)
            .values(status=JobStatus.QUEUED.value, locked_by=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        async with self.db.transaction() as session:
            result = await session.execute(stmt)
        requeued = int(getattr(result, "rowcount", 0) or 0)
        if requeued:
            log.warning("%d jobs whose lease ran out are queued again", requeued)
        return requeued

    async def release(self, claimed: Claimed) -> None:
        """Give a claimed job back (shutdown): due at once, the attempt not counted."""
        async with self.db.transaction() as session:
            await session.execute(
                update(Job)
                .where(self._fence(claimed.id, claimed.attempts))
                .values(
                    status=JobStatus.QUEUED.value,
                    attempts=Job.attempts - 1,
                    locked_by=None,
                    lease_expires_at=None,
                )
                .execution_options(synchronize_session=False)
            )

    async def renew(self, claimed: Iterable[Claimed]) -> None:
        """Extend the lease of jobs still running here."""
        ids = [c.id for c in claimed]
        if not ids:
            return
        async with self.db.transaction() as session:
            await session.execute(
                update(Job)
                .where(
                    Job.id.in_(ids),
                    Job.status == JobStatus.RUNNING.value,
                    Job.locked_by == self.worker_id,
                )
                .values(lease_expires_at=self._now() + self.lease)
                .execution_options(synchronize_session=False)
            )

    async def run_now(self, key: str, *, memo: object = None) -> str | None:
        """Claim the job with `key` (due or not) and run it here, now. None when there is no
        such job waiting (done already, or another worker holds it)."""
        claimed = await self.claim(1, key=key)
        if not claimed:
            return None
        return await self.run(claimed[0], memo=memo)

    async def drain(
        self, *, limit: int | None = None, batch: int = 20, kinds: Sequence[str] | None = None
    ) -> RunReport:
        """Run due jobs (of `kinds`, default all) here until none is due (or `limit` ran),
        `batch` claimed at a time; those of a batch kind are handled together."""
        report = RunReport()
        ran = 0
        await self.requeue_expired()
        while limit is None or ran < limit:
            size = batch if limit is None else min(batch, limit - ran)
            claimed = await self.claim(size, kinds=kinds)
            if not claimed:
                break
            for outcome in await self.run_claimed(claimed):
                report.add(outcome)
            ran += len(claimed)
        return report

    async def schedule_due(self) -> int:
        """Write the current slot's job of every recurring kind (one per slot: its key is
        unique, so any number of workers write it once)."""
        now = self._now()
        due = []
        for schedule in self.registry.schedules.values():
            slot = schedule.slot(now)
            if slot is not None and self._scheduled.get(schedule.name) != slot:
                due.append((schedule, slot))
        if not due:
            return 0  # this worker wrote every current slot already
        written = 0
        async with self.db.transaction() as session:
            for schedule, slot in due:
                kind = self.registry.get(schedule.name)
                if kind is None:
                    continue
                written += await enqueue(
                    session,
                    schedule.name,
                    {},
                    run_at=slot,
                    key=schedule.key(slot),
                    max_attempts=kind.max_attempts,
                    clock=self.container.clock,
                )
        for schedule, slot in due:
            self._scheduled[schedule.name] = slot
        return written


class Worker:
    """Runs jobs as they come due, `concurrency` at a time, until `stop()`: then it takes no
    more, lets the jobs in flight finish within `shutdown_grace` seconds, and releases those
    that did not (they are due again at once, for any worker)."""

    def __init__(
        self,
        runner: JobRunner,
        *,
        concurrency: int = 4,
        poll_seconds: float = 1.0,
        shutdown_grace: float = 10.0,
        metrics_seconds: float = 5.0,
    ) -> None:
        self.runner = runner
        self.concurrency = max(1, concurrency)
        self.poll_seconds = poll_seconds
        self.shutdown_grace = shutdown_grace
        self.metrics_seconds = metrics_seconds
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        # Each task runs one job, or one batch of a batch kind's jobs.
        self._in_flight: dict[asyncio.Task[Any], list[Claimed]] = {}

    @classmethod
    def from_settings(cls, container: Container, registry: JobRegistry) -> Worker:
        """A worker configured by BILLFOLD_WORKER_CONCURRENCY, BILLFOLD_JOBS_POLL_SECONDS and
        BILLFOLD_JOBS_LEASE_SECONDS."""
        settings = container.settings
        runner = JobRunner(container, registry, lease_seconds=settings.jobs_lease_seconds)
        return cls(
            runner,
            concurrency=settings.worker_concurrency,
            poll_seconds=settings.jobs_poll_seconds,
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Worker]:
        """Run in the background for the duration of the block (the server's embedded
        worker); leaving it shuts the worker down gracefully."""
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            self.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for due jobs now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        renewer = asyncio.create_task(self._renew_leases())
        last_schedule = last_metrics = 0.0
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # a job finishing from here on wakes the wait below
                started = time.monotonic()
                if started - last_schedule >= min(1.0, self.poll_seconds):
                    last_schedule = started
                    await self._guarded(self.runner.schedule_due())
                    await self._guarded(self.runner.requeue_expired())
                if started - last_metrics >= self.metrics_seconds:
                    last_metrics = started
                    await self._guarded(self._publish_metrics())
                free = self.concurrency - len(self._in_flight)
                claimed: list[Claimed] = []
                if free > 0:
                    claimed = await self._guarded(self.runner.claim(free)) or []
                for group in await self._grouped(claimed):
                    task = asyncio.create_task(self.runner.run_claimed(group))
                    self._in_flight[task] = group
                    task.add_done_callback(self._finished)
                if free > 0 and len(claimed) == free:
                    continue  # more may be due: claim again as soon as a slot frees
                await self._wait(self.poll_seconds)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._shut_down()

    async def _grouped(self, claimed: list[Claimed]) -> list[list[Claimed]]:
        """One group per job, but one per batch kind, filled up to its batch size."""
        groups: list[list[Claimed]] = []
        batches: dict[str, list[Claimed]] = {}
        for job in claimed:
            kind = self.runner.registry.get(job.kind)
            if kind is None or kind.batch_handler is None:
                groups.append([job])
            elif job.kind in batches:
                batches[job.kind].append(job)
            else:
                batches[job.kind] = [job]
                groups.append(batches[job.kind])
        for name, group in batches.items():
            size = self.runner.registry.kinds[name].batch_size
            if len(group) < size:
                group.extend(
                    await self._guarded(self.runner.claim(size - len(group), kinds=[name])) or []
                )
        return groups

    def _finished(self, task: asyncio.Task[Any]) -> None:
        jobs = self._in_flight.pop(task, None) or []
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            # The database failed under the runner itself: the job's lease runs out and it is
            # tried again.
            log.error("jobs %s: %r", [job.id for job in jobs] or "?", task.exception())

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _guarded(self, work: Any) -> Any:
        try:
            return await work
        except Exception:
            log.exception("job worker %s", self.runner.worker_id)
            await asyncio.sleep(min(self.poll_seconds, 1.0))
            return None

    async def _publish_metrics(self) -> None:
        async with self.runner.db.transaction() as session:
            publish(await stats(session, clock=self.runner.container.clock))

    async def _renew_leases(self) -> None:
        interval = max(0.2, self.runner.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.runner.renew([job for jobs in self._in_flight.values() for job in jobs])
            except Exception:
                log.exception("renewing job leases")

    async def _shut_down(self) -> None:
        if not self._in_flight:
            return
        pending = set(self._in_flight)
        _done, pending = await asyncio.wait(pending, timeout=self.shutdown_grace)
        left = [(task, self._in_flight.get(task) or []) for task in pending]
        for task, _ in left:
            task.cancel()
        for task, jobs in left:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            for job in jobs:
                with contextlib.suppress(Exception):
                    await self.runner.release(job)
