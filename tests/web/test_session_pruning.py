"""Ended panel sessions and spent sign-in links are deleted by the hourly `panel.prune_sessions`
job, a day after they ended (live sessions stay)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select

from billfold.auth.sessions import PanelSession, SpentSignInLink
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.container import Container
from billfold.db.engine import Database
from billfold.jobs import JobRunner
from billfold.wiring import wire
from tests.web.conftest import sign_in


async def _counts(database: Database) -> tuple[int, int]:
    async with database.read() as session:
        sessions = (await session.execute(select(func.count()).select_from(PanelSession))).scalar()
        links = (await session.execute(select(func.count()).select_from(SpentSignInLink))).scalar()
    return int(sessions or 0), int(links or 0)


async def test_ended_sessions_and_spent_links_are_pruned(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    await sign_in(panel, settings, clock, "user:alice")  # will expire
    clock.advance(timedelta(minutes=settings.panel_session_minutes + 24 * 60 + 1))
    panel.cookies.clear()
    await sign_in(panel, settings, clock, "user:bob")  # live
    assert await _counts(database) == (2, 2)
    clock.advance(timedelta(minutes=3))  # bob's link is past its expiry too
    container = wire(Container(settings=settings, db=database, clock=clock))
    assert container.jobs is not None
    runner = JobRunner(container, container.jobs, worker_id="prune")
    await runner.schedule_due()
    await runner.drain()
    # Alice's session ended over a day ago, and both links expired: bob's session stays.
    assert await _counts(database) == (1, 0)
    assert (await panel.get("/")).status_code == 200
