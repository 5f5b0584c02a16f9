"""Deferred entries (a hot path's, `record_event(deferred=True)`): written with the action's
transaction, chained later by `chain_deferred` with the fields they were recorded with, once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from billfold.audit.jobs import CHAIN_DEFERRED_JOB, chain_deferred_entries
from billfold.audit.models import AuditEntry
from billfold.audit.service import chain_deferred, deferred_count, hash_of, record_event
from billfold.audit.verify import verify_chain
from billfold.config import Settings
from billfold.db.engine import Database
from billfold.wiring import job_registry

AT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


async def _defer(db: Database, n: int, *, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        async with db.transaction() as session:
            entry = await record_event(
                session,
                action="credits.spent",
                actor="api_key:ak_1",
                account_id="acct_a",
                target=f"usage-{i}",
                details={"credits": 1, "balance": 100 - i},
                ip="127.0.0.1",
                request_id=f"req-{i}",
                at=AT,
                deferred=True,
            )
            ids.append(entry.id)
    return ids


async def _log(db: Database) -> list[AuditEntry]:
    async with db.read() as session:
        return list(
            (await session.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars().all()
        )


async def test_a_deferred_entry_is_chained_later_with_its_recorded_fields(
    database: Database,
) -> None:
    async with database.transaction() as session:
        await record_event(session, action="credits.granted", actor="cli:root", account_id=None)
    ids = await _defer(database, 3)
    assert [e.action for e in await _log(database)] == ["credits.granted"]
    async with database.transaction() as session:
        assert await deferred_count(session) == 3
        assert await chain_deferred(session, limit=2) == 2
    async with database.transaction() as session:
        assert await chain_deferred(session) == 1
        assert await chain_deferred(session) == 0
    log = await _log(database)
    assert [e.seq for e in log] == [1, 2, 3, 4]
    assert [e.id for e in log[1:]] == ids
    spent = log[1]
    assert (spent.actor, spent.account_id, spent.target, spent.ip, spent.request_id) == (
        "api_key:ak_1",
        "acct_a",
        "usage-0",
        "127.0.0.1",
        "req-0",
    )
    assert spent.occurred_at == AT and spent.details == {"credits": 1, "balance": 100}
    assert all(hash_of(e) == e.entry_hash for e in log)
    async with database.read() as session:
        assert await deferred_count(session) == 0
        report = await verify_chain(session)
    assert report.ok and report.checked == 4


async def test_a_rolled_back_action_leaves_no_deferred_entry(database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await record_event(
                session, action="credits.spent", actor="x", account_id=None, deferred=True
            )
            raise RuntimeError("the debit failed")
    async with database.transaction() as session:
        assert await deferred_count(session) == 0
        assert await chain_deferred(session) == 0
    assert await _log(database) == []


async def test_concurrent_chaining_chains_each_entry_once(database: Database) -> None:
    ids = await _defer(database, 30)

    async def chain() -> None:
        async with database.transaction() as session:
            await chain_deferred(session, limit=7)

    for _ in range(3):
        await asyncio.gather(*(chain() for _ in range(4)))
    async with database.transaction() as session:
        await chain_deferred(session)
    log = await _log(database)
    assert sorted(e.id for e in log) == sorted(ids)
    assert [e.seq for e in log] == list(range(1, 31))
    async with database.read() as session:
        assert (await verify_chain(session)).ok


async def test_the_job_chains_every_waiting_batch(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("billfold.audit.jobs.BATCH", 4)
    await _defer(database, 10)

    class Run:
        class container:
            db = database

    assert CHAIN_DEFERRED_JOB == "audit.chain_deferred"
    await chain_deferred_entries(Run())  # type: ignore[arg-type]
    assert len(await _log(database)) == 10
    async with database.read() as session:
        assert await deferred_count(session) == 0


def test_the_chaining_job_is_wired_and_recurring(settings: Settings) -> None:
    registry = job_registry(settings)
    assert CHAIN_DEFERRED_JOB in registry and CHAIN_DEFERRED_JOB in registry.schedules
