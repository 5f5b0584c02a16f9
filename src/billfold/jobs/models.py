"""The `jobs` table: durable background work, written in the transaction that calls for it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.clock import utcnow
from billfold.db.base import Base, BigIntPK, JSONType, UTCDateTime


class JobStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for `run_at`
    RUNNING = "running"  # claimed by `locked_by` until `lease_expires_at` (renewed while it runs)
    DONE = "done"
    FAILED = "failed"  # the last attempt raised; tried again at `run_at` (back-off)
    DEAD = "dead"  # gave up after `max_attempts`; `billfold jobs retry` brings it back


# What a worker may claim: due queued or failed jobs, and running ones whose lease expired.
CLAIMABLE = (JobStatus.QUEUED.value, JobStatus.FAILED.value)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The claim walks this in order: due jobs only, so done ones cost it nothing.
        Index(
            "ix_jobs_waiting_run_at",
            "run_at",
            "id",
            postgresql_where=text("status IN ('queued', 'failed')"),
            sqlite_where=text("status IN ('queued', 'failed')"),
        ),
        Index("ix_jobs_status_lease_expires_at", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Enqueuing the same key twice makes one job (recurring slots: `recurring:<name>:<slot>`).
    key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    traceback: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


__all__ = ["CLAIMABLE", "Job", "JobStatus"]
