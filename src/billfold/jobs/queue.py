"""Writing jobs (in the caller's transaction: an outbox) and looking after them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock, SystemClock
from billfold.db.dialect import insert_ignoring_conflict
from billfold.jobs.models import Job, JobStatus
from billfold.jobs.registry import DEFAULT_MAX_ATTEMPTS


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    key: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    clock: Clock | None = None,
    requeue_finished: bool = False,
) -> bool:
    """Write a job in the caller's transaction: it runs only once that transaction commits,
    and never if it rolls back. `run_at` (default now) schedules it; a `key` makes enqueuing
    the same work twice one job (a second call with the key returns False and changes
    nothing, even after the first job ran; with `requeue_finished`, a done or dead job with
    the key is queued again instead). True when this call wrote the job."""
    now = (clock or SystemClock()).now()
    values = {
        "kind": kind,
        "payload": payload or {},
        "key": key,
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or now,
        "created_at": now,
    }
    if key is None:
        session.add(Job(**values))
        await session.flush()
        return True
    if not requeue_finished:
        return await insert_ignoring_conflict(session, Job.__table__, values, ["key"])  # type: ignore[arg-type]
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = module.insert(Job).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            name: stmt.excluded[name]
            for name in ("payload", "status", "attempts", "max_attempts", "run_at", "created_at")
        }
        | {"finished_at": None, "last_error": None, "traceback": None},
        where=Job.status.in_([JobStatus.DONE.value, JobStatus.DEAD.value]),
    )
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


async def enqueue_many(
    session: AsyncSession,
    kind: str,
    payloads: list[dict[str, Any]],
    *,
    run_at: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    clock: Clock | None = None,
) -> int:
    """`enqueue` for many jobs of one kind (no keys), in one INSERT. Returns how many."""
    if not payloads:
        return 0
    now = (clock or SystemClock()).now()
    rows = [
        {
            "kind": kind,
            "payload": payload,
            "key": None,
            "status": JobStatus.QUEUED.value,
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_at": run_at or now,
            "created_at": now,
        }
        for payload in payloads
    ]
    await session.execute(insert(Job), rows)
    return len(rows)


async def retry(
    session: AsyncSession,
    *,
    job_id: int | None = None,
    key: str | None = None,
    all_dead: bool = False,
    also_failed: bool = False,
    kind: str | None = None,
    clock: Clock | None = None,
) -> int:
    """Make failed or dead jobs due now with a fresh set of attempts (`billfold jobs retry`):
    one by id or key, or every dead one (`also_failed`: and every failed one not due yet) of
    `kind`. Returns how many."""
    stmt = update(Job).where(Job.status.in_([JobStatus.FAILED.value, JobStatus.DEAD.value]))
    if job_id is not None:
        stmt = stmt.where(Job.id == job_id)
    elif key is not None:
        stmt = stmt.where(Job.key == key)
    elif all_dead:
        if not also_failed:
            stmt = stmt.where(Job.status == JobStatus.DEAD.value)
    else:
        raise ValueError("retry needs job_id, key or all_dead")
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    stmt = stmt.values(
        status=JobStatus.QUEUED.value,
        attempts=0,
        run_at=(clock or SystemClock()).now(),
        finished_at=None,
    ).execution_options(synchronize_session=False)
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class JobStats:
    counts: dict[str, int]  # by status
    oldest_queued_age: float  # seconds the oldest due queued/failed job has waited (0: none)


async def stats(session: AsyncSession, *, clock: Clock | None = None) -> JobStats:
    """Jobs by status and the age of the oldest one that is due and waiting."""
    now = (clock or SystemClock()).now()
    rows = (await session.execute(select(Job.status, func.count()).group_by(Job.status))).all()
    oldest = (
        await session.execute(
            select(func.min(Job.run_at)).where(
                Job.status.in_([JobStatus.QUEUED.value, JobStatus.FAILED.value]),
                Job.run_at <= now,
            )
        )
    ).scalar_one_or_none()
    counts = {status.value: 0 for status in JobStatus}
    counts.update({str(status): int(n) for status, n in rows})
    if isinstance(oldest, str):  # SQLite's MIN() returns the stored text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return JobStats(counts, age)


async def list_jobs(
    session: AsyncSession, *, status: str | None = None, kind: str | None = None, limit: int = 50
) -> list[Job]:
    """The newest jobs (of a status, of a kind)."""
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    return list((await session.execute(stmt)).scalars())
