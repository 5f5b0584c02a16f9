"""Fixtures for the job runner's tests: a container wired with the test kinds, on the frozen
clock, and the `test_job_runs` table (outside billfold's schema) emptied for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.container import Container
from billfold.db.engine import Database
from billfold.jobs import JobRegistry, JobRunner
from billfold.wiring import wire
from tests.jobs import kinds, recurring


@pytest.fixture
async def runs_table(database: Database) -> AsyncIterator[Database]:
    async with database.engine.begin() as conn:
        await conn.run_sync(kinds.metadata.create_all)
        await conn.execute(delete(kinds.runs))
    kinds.FAILING["flaky"] = True
    yield database


@pytest.fixture
def job_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        environment="test",
        job_modules=["tests.jobs.kinds", "tests.jobs.recurring"],
    )


@pytest.fixture
def container(job_settings: Settings, runs_table: Database, clock: FrozenClock) -> Container:
    return wire(Container(settings=job_settings, db=runs_table, clock=clock))


@pytest.fixture
def registry(container: Container) -> JobRegistry:
    assert container.jobs is not None
    assert "test.record" in container.jobs and "test.tick" in container.jobs
    return container.jobs


@pytest.fixture
def runner(container: Container, registry: JobRegistry) -> JobRunner:
    return JobRunner(container, registry, worker_id="runner-a", lease_seconds=30)


async def recorded(db: Database, **where: object) -> list[tuple[int, str | None, int, str]]:
    """(job_id, key, attempt, stage) of every recorded run, in order."""
    stmt = select(kinds.runs.c.job_id, kinds.runs.c.key, kinds.runs.c.attempt, kinds.runs.c.stage)
    for column, value in where.items():
        stmt = stmt.where(kinds.runs.c[column] == value)
    async with db.transaction() as session:
        return [tuple(row) for row in (await session.execute(stmt.order_by(kinds.runs.c.n)))]  # type: ignore[misc]


async def count_runs(db: Database) -> int:
    async with db.transaction() as session:
        return int(
            (await session.execute(select(func.count()).select_from(kinds.runs))).scalar_one()
        )


__all__ = ["count_runs", "recorded", "recurring"]
