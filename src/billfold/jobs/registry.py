"""What a job kind is, and the registries in which domains declare theirs.

A domain declares its kinds on a `JobRegistry` of its own, at import:

    jobs = JobRegistry()

    @jobs.kind("credits.expire", max_attempts=5)
    async def expire_credits(run: JobRun) -> None:
        async with run.transaction() as session:   # the job is marked done in this transaction
            ...

    jobs.every("credits.expire_sweep", seconds=3600)(expire_credits_sweep)

and the composition root combines the domains' registries (`JobRegistry.combine`) with real
imports: the runner only ever runs kinds it was given.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.errors import ConfigurationError

if TYPE_CHECKING:
    from billfold.container import Container

DEFAULT_MAX_ATTEMPTS = 12
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 3600.0
_NAME = re.compile(r"^[a-z0-9_.:-]{1,100}$")


@dataclass
class JobRun:
    """One attempt at a job, as its handler sees it."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int  # 1 for the first attempt
    max_attempts: int
    key: str | None
    scheduled_for: datetime  # the job's run_at (a recurring job's slot)
    container: Container
    # Whatever the code that asked for this run already had in memory (`run_now(memo=...)`).
    memo: object = None
    # Set by the runner: a transaction that also marks the job done when it commits.
    completing: Callable[[], AbstractAsyncContextManager[AsyncSession]] | None = field(
        default=None, repr=False
    )
    completed: bool = False

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A transaction in which the job is marked done: the handler's writes and the job's
        completion commit together, and neither does if this worker's claim was lost (its
        lease expired and another worker took the job over)."""
        if self.completing is None:
            raise RuntimeError("JobRun.transaction() outside a runner")
        return self.completing()


Handler = Callable[[JobRun], Awaitable[None]]


@dataclass
class JobBatch:
    """Many due jobs of one kind claimed together, as a batch kind's handler sees them. The
    handler applies them in `transaction()`, where every run it does not `fail` is marked done
    when the transaction commits; `fail` records one run's failure there (after the handler
    rolled back that run's writes, e.g. to a savepoint) without losing the others."""

    runs: list[JobRun]
    container: Container
    completing: Callable[[], AbstractAsyncContextManager[AsyncSession]] | None = field(
        default=None, repr=False
    )
    failing: Callable[[AsyncSession, JobRun, Exception], Awaitable[str]] | None = field(
        default=None, repr=False
    )
    # The runs `fail` recorded: job id -> 'failed' or 'dead'.
    failed: dict[int, str] = field(default_factory=dict)
    completed: bool = False

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        if self.completing is None:
            raise RuntimeError("JobBatch.transaction() outside a runner")
        return self.completing()

    async def fail(self, session: AsyncSession, run: JobRun, exc: Exception) -> None:
        """In `transaction()`: back `run` off (or give it up), as a single job's failure."""
        if self.failing is None:
            raise RuntimeError("JobBatch.fail() outside a runner")
        self.failed[run.id] = await self.failing(session, run, exc)


BatchHandler = Callable[[JobBatch], Awaitable[None]]


@dataclass(frozen=True)
class JobFailure:
    """A failed attempt, for a kind's `on_failure` hook."""

    error: str
    traceback: str
    dead: bool
    retry_at: datetime | None


# Runs in the transaction that records a failed attempt (e.g. to mirror it on a domain row).
FailureHook = Callable[[AsyncSession, JobRun, JobFailure], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_base: float = BACKOFF_BASE_SECONDS
    backoff_cap: float = BACKOFF_CAP_SECONDS
    on_failure: FailureHook | None = None
    # A batch kind: up to `batch_size` due jobs are claimed and handled together.
    batch_handler: BatchHandler | None = None
    batch_size: int = 1

    def backoff(self, attempt: int) -> timedelta:
        """How long after failed attempt number `attempt` the next one is due."""
        return timedelta(
            seconds=min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempt - 1))
        )


@dataclass(frozen=True)
class Schedule:
    """A recurring job: one job per slot, whatever the number of workers (the slot's job has
    the unique key `recurring:<name>:<slot start>`). A slot no worker saw is skipped."""

    name: str
    every_seconds: int | None = None
    cron: Cron | None = None

    def slot(self, now: datetime) -> datetime | None:
        """The start of the slot `now` falls in (None: a cron minute that does not match)."""
        if self.every_seconds is not None:
            seconds = int(now.timestamp()) // self.every_seconds * self.every_seconds
            return datetime.fromtimestamp(seconds, UTC)
        assert self.cron is not None
        minute = now.astimezone(UTC).replace(second=0, microsecond=0)
        return minute if self.cron.matches(minute) else None

    def key(self, slot: datetime) -> str:
        return f"recurring:{self.name}:{slot.strftime('%Y-%m-%dT%H:%M:%SZ')}"


_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


@dataclass(frozen=True)
class Cron:
    """Five cron fields (minute hour day-of-month month day-of-week, Sunday 0) with `*`, `a-b`,
    `a,b`, and `/step`. Day-of-month and day-of-week must both match (no Vixie OR rule)."""

    fields: tuple[frozenset[int], ...]

    @classmethod
    def parse(cls, spec: str) -> Cron:
        parts = spec.split()
        if len(parts) != 5:
            raise ConfigurationError(f"cron spec {spec!r} must have five fields")
        parsed = []
        for part, (low, high) in zip(parts, _CRON_RANGES, strict=True):
            values: set[int] = set()
            for item in part.split(","):
                body, _, step_text = item.partition("/")
                step = int(step_text) if step_text else 1
                if body == "*":
                    start, end = low, high
                elif "-" in body:
                    start, end = (int(x) for x in body.split("-", 1))
                else:
                    start = end = int(body)
                if not (low <= start <= end <= high) or step < 1:
                    raise ConfigurationError(f"cron field {item!r} out of range in {spec!r}")
                values.update(range(start, end + 1, step))
            parsed.append(frozenset(values))
        return cls(tuple(parsed))

    def matches(self, minute: datetime) -> bool:
        weekday = (minute.weekday() + 1) % 7  # Python's Monday 0 -> cron's Sunday 0
        values = (minute.minute, minute.hour, minute.day, minute.month, weekday)
        return all(v in allowed for v, allowed in zip(values, self.fields, strict=True))


class JobRegistry:
    """Job kinds (and recurring schedules) by name."""

    def __init__(self) -> None:
        self.kinds: dict[str, JobKind] = {}
        self.schedules: dict[str, Schedule] = {}

    def add(self, kind: JobKind) -> JobKind:
        if not _NAME.match(kind.name):
            raise ConfigurationError(f"job kind name {kind.name!r} is not [a-z0-9_.:-]{{1,100}}")
        if kind.name in self.kinds and self.kinds[kind.name] != kind:
            raise ConfigurationError(f"job kind {kind.name!r} is declared twice")
        self.kinds[kind.name] = kind
        return kind

    def kind(
        self,
        name: str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
        on_failure: FailureHook | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator: declare a job kind run by this coroutine."""

        def declare(handler: Handler) -> Handler:
            self.add(JobKind(name, handler, max_attempts, backoff_base, backoff_cap, on_failure))
            return handler

        return declare

    def batch_kind(
        self,
        name: str,
        *,
        size: int,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
        on_failure: FailureHook | None = None,
    ) -> Callable[[BatchHandler], BatchHandler]:
        """Decorator: declare a kind whose due jobs are claimed (up to `size` at once) and run
        by this coroutine together (`JobBatch`); each job keeps its own attempts, back-off
        and outcome. A job run alone (`run_now`) is a batch of one."""
        if size < 1:
            raise ConfigurationError(f"batch job kind {name!r}: size must be 1 or more")

        def declare(handler: BatchHandler) -> BatchHandler:
            async def alone(run: JobRun) -> None:
                raise RuntimeError(f"{name} is a batch kind: the runner runs it in batches")

            self.add(
                JobKind(
                    name,
                    alone,
                    max_attempts,
                    backoff_base,
                    backoff_cap,
                    on_failure,
                    batch_handler=handler,
                    batch_size=size,
                )
            )
            return handler

        return declare

    def every(
        self,
        name: str,
        *,
        seconds: int | None = None,
        cron: str | None = None,
        max_attempts: int = 3,
    ) -> Callable[[Handler], Handler]:
        """Decorator: declare a recurring kind, run once per slot: every `seconds` (slots
        aligned on the Unix epoch) or at each minute matching `cron` (UTC)."""
        if (seconds is None) == (cron is None):
            raise ConfigurationError(f"recurring job {name!r} needs seconds or cron (one)")
        if seconds is not None and seconds < 1:
            raise ConfigurationError(f"recurring job {name!r}: seconds must be 1 or more")
        schedule = Schedule(name, seconds, Cron.parse(cron) if cron else None)

        def declare(handler: Handler) -> Handler:
            self.add(JobKind(name, handler, max_attempts))
            self.schedules[name] = schedule
            return handler

        return declare

    def include(self, other: JobRegistry) -> None:
        for kind in other.kinds.values():
            self.add(kind)
        self.schedules.update(other.schedules)

    @classmethod
    def combine(cls, registries: Iterable[JobRegistry]) -> JobRegistry:
        combined = cls()
        for registry in registries:
            combined.include(registry)
        return combined

    def __contains__(self, name: object) -> bool:
        return name in self.kinds

    def get(self, name: str) -> JobKind | None:
        return self.kinds.get(name)
