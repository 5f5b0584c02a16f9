"""The credit engine on both databases: lots and their order, expiry, usage, holds, clawback."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from billfold.audit.context import system_audit_context
from billfold.audit.models import AuditEntry
from billfold.audit.service import chain_deferred, deferred_count
from billfold.audit.verify import verify_chain
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.container import Container
from billfold.credits import service
from billfold.credits.models import CreditLot, CreditLotDraw
from billfold.db.engine import Database
from billfold.errors import Conflict, IdempotencyConflict, ValidationFailed
from billfold.errors import InsufficientCredits as PaymentRequired
from billfold.jobs.runner import JobRunner
from billfold.ledger.verify import verify_ledger
from billfold.wiring import wire
from tests.ledger.conftest import new_customer

AUDIT = system_audit_context("test")


async def _grant(db: Database, clock: FrozenClock, account: str, credits: int, key: str, **kw):
    async with db.transaction() as session:
        return await service.grant(
            session,
            account_id=account,
            credits=credits,
            key=key,
            source="grant",
            clock=clock,
            audit=AUDIT,
            **kw,
        )


async def _spend(db: Database, clock: FrozenClock, account: str, credits: int, key: str):
    async with db.transaction() as session:
        return await service.spend(
            session,
            account_id=account,
            credits=credits,
            idempotency_key=key,
            clock=clock,
            audit=AUDIT,
        )


async def _remaining(db: Database, account: str) -> dict[str, int]:
    async with db.read() as session:
        rows = await session.execute(
            select(CreditLot.key, CreditLot.remaining).where(CreditLot.account_id == account)
        )
        return {k: int(r) for k, r in rows}


async def _balance(db: Database, account: str) -> service.Balance:
    async with db.read() as session:
        return await service.get_balance(session, account)


async def _clean(db: Database) -> None:
    async with db.read() as session:
        assert await verify_ledger(session) == []


async def test_spend_order_priority_then_expiry_then_age(
    database: Database, clock: FrozenClock
) -> None:
    account = await new_customer(database, "lots")
    now = clock.now()
    await _grant(database, clock, account, 10, "old")
    clock.advance(timedelta(seconds=1))
    await _grant(database, clock, account, 10, "late-expiry", expires_at=now + timedelta(days=9))
    await _grant(database, clock, account, 10, "soon-expiry", expires_at=now + timedelta(days=2))
    await _grant(database, clock, account, 10, "priority", priority=5)
    moved = await _spend(database, clock, account, 25, "u1")
    assert moved.balance == 15
    left = await _remaining(database, account)
    assert left == {"priority": 0, "soon-expiry": 0, "late-expiry": 5, "old": 10}
    async with database.read() as session:
        taken = (
            await session.execute(
                select(func.count())
                .select_from(CreditLotDraw)
                .where(CreditLotDraw.reason == "usage")
            )
        ).scalar_one()
    assert taken == 3  # the debit recorded which lots it took
    await _clean(database)


async def test_expired_remainder_written_off_by_the_sweep(
    database: Database, clock: FrozenClock
) -> None:
    account = await new_customer(database, "expiry")
    await _grant(database, clock, account, 30, "a", expires_at=clock.now() + timedelta(hours=1))
    await _grant(database, clock, account, 5, "b")
    await _spend(database, clock, account, 10, "u1")
    clock.advance(timedelta(hours=2))
    async with database.transaction() as session:
        await service.expire_due(session, clock, AUDIT)
    assert (await _balance(database, account)).credits == 5
    assert await _remaining(database, account) == {"a": 0, "b": 5}
    with pytest.raises(PaymentRequired) as refused:
        await _spend(database, clock, account, 6, "u2")
    assert refused.value.details["shortfall"] == 1
    await _clean(database)


async def test_usage_idempotent_and_refusal_spends_nothing(
    database: Database, clock: FrozenClock
) -> None:
    account = await new_customer(database, "usage")
    await _grant(database, clock, account, 10, "g")
    first = await _spend(database, clock, account, 4, "k1")
    again = await _spend(database, clock, account, 4, "k1")
    assert (first.balance, again.balance, again.replayed) == (6, 6, True)
    assert again.version > first.version
    with pytest.raises(IdempotencyConflict):
        await _spend(database, clock, account, 5, "k1")
    with pytest.raises(PaymentRequired) as refused:
        await _spend(database, clock, account, 7, "k2")
    assert refused.value.details == {"required": 7, "available": 6, "shortfall": 1}
    assert (await _balance(database, account)).credits == 6
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValidationFailed):
            await _spend(database, clock, account, bad, "bad")  # type: ignore[arg-type]
    await _clean(database)


async def test_holds_capture_partial_release_and_conflicts(
    database: Database, clock: FrozenClock
) -> None:
    account = await new_customer(database, "holds")
    await _grant(database, clock, account, 100, "g")
    async with database.transaction() as session:
        hold, moved = await service.create_hold(
            session, account_id=account, credits=60, idempotency_key="h1", clock=clock, audit=AUDIT
        )
    assert moved.balance == 40
    with pytest.raises(PaymentRequired):
        await _spend(database, clock, account, 41, "u")  # held credits can't be spent twice
    async with database.transaction() as session:
        with pytest.raises(ValidationFailed):
            await service.capture_hold(
                session, account_id=account, hold_id=hold.id, clock=clock, audit=AUDIT, credits=61
            )
    async with database.transaction() as session:
        done, moved = await service.capture_hold(
            session, account_id=account, hold_id=hold.id, clock=clock, audit=AUDIT, credits=25
        )
    assert (done.state, done.captured, moved.balance) == ("captured", 25, 75)
    for action in (service.capture_hold, service.release_hold):
        async with database.transaction() as session:
            with pytest.raises(Conflict):
                await action(session, account_id=account, hold_id=hold.id, clock=clock, audit=AUDIT)
    async with database.transaction() as session:
        h2, _ = await service.create_hold(
            session,
            account_id=account,
            credits=10,
            idempotency_key="h2",
            clock=clock,
            audit=AUDIT,
            expires_in=60,
        )
    clock.advance(timedelta(seconds=61))
    async with database.transaction() as session:
        with pytest.raises(Conflict):
            await service.capture_hold(
                session, account_id=account, hold_id=h2.id, clock=clock, audit=AUDIT
            )
    async with database.transaction() as session:
        await service.expire_due(session, clock, AUDIT)
    balance = await _balance(database, account)
    assert (balance.credits, balance.held) == (75, 0)
    assert sum((await _remaining(database, account)).values()) == 75
    await _clean(database)


async def test_clawback_into_negative_settled_by_next_grant(
    database: Database, clock: FrozenClock
) -> None:
    account = await new_customer(database, "claw")
    await _grant(database, clock, account, 100, "p1")
    await _spend(database, clock, account, 80, "u")
    async with database.transaction() as session:
        moved = await service.claw_back(
            session,
            account_id=account,
            credits=50,
            key="r1",
            clock=clock,
            audit=AUDIT,
            first_lot_key="p1",
        )
    assert moved.balance == -30
    granted = await _grant(database, clock, account, 100, "p2")
    assert (granted.balance, granted.spendable) == (70, 70)
    assert await _remaining(database, account) == {"p1": 0, "p2": 70}
    await _clean(database)


async def test_concurrent_debits_and_holds_never_overdraw(
    database: Database, clock: FrozenClock
) -> None:
    account = await new_customer(database, "race")
    await _grant(database, clock, account, 50, "g")

    async def one(i: int) -> str:
        try:
            if i % 2:
                await _spend(database, clock, account, 1, f"u{i}")
            else:
                async with database.transaction() as session:
                    await service.create_hold(
                        session,
                        account_id=account,
                        credits=1,
                        idempotency_key=f"h{i}",
                        clock=clock,
                        audit=AUDIT,
                    )
            return "ok"
        except PaymentRequired:
            return "402"

    outcomes = await asyncio.gather(*(one(i) for i in range(100)))
    assert outcomes.count("ok") == 50
    balance = await _balance(database, account)
    assert (balance.credits, balance.held) == (0, outcomes[::2].count("ok"))
    assert sum((await _remaining(database, account)).values()) == 0
    await _clean(database)


async def test_the_job_runner_expires_lots_and_releases_holds(
    database: Database, clock: FrozenClock, settings: Settings
) -> None:
    container = wire(Container(settings=settings, db=database, clock=clock))
    assert container.jobs is not None and "credits.expire" in container.jobs.schedules
    account = await new_customer(database, "swept")
    await _grant(database, clock, account, 40, "short", expires_at=clock.now() + timedelta(hours=1))
    await _grant(database, clock, account, 10, "long")
    async with database.transaction() as session:
        await service.create_hold(
            session,
            account_id=account,
            credits=45,
            idempotency_key="h",
            clock=clock,
            audit=AUDIT,
            expires_in=600,
        )
    clock.advance(timedelta(hours=2))
    runner = JobRunner(container, container.jobs)
    assert await runner.schedule_due() >= 1
    await runner.drain()
    balance = await _balance(database, account)
    # The hold's 45 came back to their lots (35 of them to the expired one), then expired.
    assert (balance.credits, balance.held) == (10, 0)
    assert await _remaining(database, account) == {"short": 0, "long": 10}
    async with database.read() as session:
        (hold,) = await service.list_holds(session, account)
    assert hold.state == "expired"
    await _clean(database)


async def test_a_usage_debit_is_audited_through_the_deferred_entries(
    database: Database, clock: FrozenClock
) -> None:
    """A debit's `credits.spent` waits in audit_deferred (no chain head lock per debit); the
    chaining puts it in the verified chain with its transaction's id; a refused or replayed
    debit records none."""
    account = await new_customer(database, "audited")
    await _grant(database, clock, account, 5, "g")
    spent = await _spend(database, clock, account, 2, "u1")
    await _spend(database, clock, account, 2, "u1")  # a replay
    with pytest.raises(PaymentRequired):
        await _spend(database, clock, account, 9, "u2")
    async with database.transaction() as session:
        assert await deferred_count(session) == 1
        assert await chain_deferred(session) == 1
    async with database.read() as session:
        entries = (
            (await session.execute(select(AuditEntry).where(AuditEntry.action == "credits.spent")))
            .scalars()
            .all()
        )
        assert (await verify_chain(session)).ok
    assert [(e.account_id, e.target, e.actor) for e in entries] == [(account, "u1", "test")]
    assert entries[0].details == {
        "credits": 2,
        "balance": 3,
        "ledger_transaction_id": spent.transaction_id,
    }
    await _clean(database)
