"""The audit log: appends chain, concurrent appends stay linear, tampering is detected."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text

from billfold.audit.models import AuditChainHead, AuditEntry
from billfold.audit.service import (
    GENESIS_HASH,
    hash_of,
    list_entries,
    record_event,
    write_pending_entries,
)
from billfold.audit.verify import verify_chain
from billfold.db.engine import Database
from billfold.errors import ValidationFailed


async def _append(db: Database, n: int, *, account_id: str | None = "acct_a") -> None:
    for i in range(n):
        async with db.transaction() as session:
            await record_event(
                session,
                action="credits.granted",
                actor="user:alice",
                account_id=account_id,
                target=f"txn_{i}",
                details={"amount": i, "unit": "credits", "note": "caf\u00e9 \u2603"},
                ip="127.0.0.1",
                request_id=f"req-{i}",
            )


async def test_entries_chain_to_each_other(database: Database) -> None:
    await _append(database, 3)
    async with database.transaction() as session:
        rows = (await session.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars().all()
        head = await session.get(AuditChainHead, 1)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS_HASH
    assert rows[1].prev_hash == rows[0].entry_hash
    assert rows[2].prev_hash == rows[1].entry_hash
    assert all(hash_of(r) == r.entry_hash for r in rows)
    assert rows[2].details == {"amount": 2, "unit": "credits", "note": "caf\u00e9 \u2603"}
    assert head is not None and head.seq == 3 and head.entry_hash == rows[2].entry_hash
    async with database.transaction() as session:
        report = await verify_chain(session)
    assert report.ok and report.checked == 3


async def test_rolled_back_append_leaves_no_trace(database: Database) -> None:
    await _append(database, 1)
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await record_event(session, action="charge.created", actor="x", account_id=None)
            raise RuntimeError("the action failed")
    await _append(database, 1)
    async with database.transaction() as session:
        report = await verify_chain(session)
    assert report.ok and report.checked == 2


async def test_bad_details_are_refused(database: Database) -> None:
    async with database.transaction() as session:
        with pytest.raises(ValidationFailed):
            await record_event(
                session, action="x.y", actor="a", account_id=None, details={"f": float("nan")}
            )
        with pytest.raises(ValidationFailed):
            await record_event(session, action="", actor="a", account_id=None)


async def test_concurrent_appends_never_fork_the_chain(database: Database) -> None:
    async def writer(i: int) -> None:
        for _ in range(3):
            async with database.transaction() as session:
                await record_event(
                    session, action="usage.recorded", actor=f"user:u{i}", account_id=f"acct_{i % 5}"
                )

    # 20 writers (a connection each, leaving room on a shared server) and 60 commits.
    await asyncio.gather(*(writer(i) for i in range(20)))
    async with database.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(AuditEntry))).scalar()
        prevs = (await session.execute(select(AuditEntry.prev_hash))).scalars().all()
        report = await verify_chain(session)
    assert count == 60
    assert len(set(prevs)) == 60  # no two entries extend the same predecessor
    assert report.ok, report.reason


async def test_list_entries_pages_newest_first(database: Database) -> None:
    await _append(database, 5, account_id="acct_a")
    await _append(database, 2, account_id="acct_b")
    async with database.transaction() as session:
        page, more = await list_entries(session, account_id="acct_a", limit=3)
        assert [e.seq for e in page] == [5, 4, 3] and more
        page2, more2 = await list_entries(session, account_id="acct_a", limit=3, before_seq=3)
        assert [e.seq for e in page2] == [2, 1] and not more2


async def test_database_refuses_update(database: Database) -> None:
    await _append(database, 1)
    with pytest.raises(Exception, match="append-only"):
        async with database.transaction() as session:
            await session.execute(text("UPDATE audit_log SET actor = 'mallory'"))


async def test_entries_of_a_rolled_back_savepoint_are_not_written(database: Database) -> None:
    async with database.transaction() as session:
        kept = await record_event(session, action="checkout.created", actor="a", account_id="x")
        with pytest.raises(RuntimeError):
            async with session.begin_nested():
                await record_event(session, action="charge.created", actor="a", account_id="x")
                raise RuntimeError("the charge failed")
        async with session.begin_nested():
            await record_event(session, action="credits.granted", actor="a", account_id="x")
    async with database.transaction() as session:
        actions = (
            (await session.execute(select(AuditEntry.action).order_by(AuditEntry.seq)))
            .scalars()
            .all()
        )
    assert actions == ["checkout.created", "credits.granted"]
    assert kept.seq == 1 and kept.entry_hash


async def test_write_pending_entries_makes_them_readable_in_the_same_transaction(
    database: Database,
) -> None:
    async with database.transaction() as session:
        await record_event(session, action="api_key.created", actor="cli:root", account_id=None)
        await write_pending_entries(session)
        page, _ = await list_entries(session, account_id=None)
        assert [e.action for e in page] == ["api_key.created"]
        await record_event(session, action="api_key.revoked", actor="cli:root", account_id=None)
    async with database.transaction() as session:
        report = await verify_chain(session)
    assert report.ok and report.checked == 2
