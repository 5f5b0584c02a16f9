"""`billfold jobs list|retry|stats` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from billfold.cli import app
from billfold.clock import SystemClock
from billfold.config import get_settings
from billfold.container import Container
from billfold.db.engine import Database
from billfold.jobs import Job, JobRunner, enqueue
from billfold.wiring import wire


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


async def _prepare(container: Container) -> None:
    db = Database(container.db.url)
    try:
        mine = wire(Container(settings=container.settings, db=db, clock=SystemClock()))
        async with db.transaction() as session:
            await enqueue(session, "test.flaky", max_attempts=1, clock=mine.clock)
            await enqueue(session, "test.record", clock=mine.clock)
        assert mine.jobs is not None
        await JobRunner(mine, mine.jobs).drain()
    finally:
        await db.dispose()


async def _flaky(url: str) -> Job:
    db = Database(url)
    try:
        async with db.transaction() as session:
            return (await session.execute(select(Job).where(Job.kind == "test.flaky"))).scalar_one()
    finally:
        await db.dispose()


def test_list_retry_stats(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLFOLD_DATABASE_URL", container.db.url)
    get_settings.cache_clear()
    asyncio.run(_prepare(container))
    try:
        stats = run("jobs", "stats")
        assert "dead: 1" in stats and "done: 1" in stats and "queued: 0" in stats
        listed = run("jobs", "list", "--status", "dead")
        assert "test.flaky" in listed and "test.record" not in listed
        assert "RuntimeError" in listed  # (rich wraps the error in its column)
        run("jobs", "retry", code=2)
        assert "1 jobs queued again" in run("jobs", "retry", "--all-dead")
        job = asyncio.run(_flaky(container.db.url))
        assert job.status == "queued" and job.attempts == 0
        run("jobs", "retry", str(job.id), code=1)  # queued already: nothing to retry
    finally:
        get_settings.cache_clear()
