"""Many writers at once, each in its own transaction: no overdraft, no double posting.

On PostgreSQL these are real concurrent transactions on separate connections; on SQLite, many
connections contend for the write lock (BEGIN IMMEDIATE) and wait on the busy timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from billfold.clock import FrozenClock
from billfold.db.engine import Database
from billfold.errors import InsufficientBalance
from billfold.ledger import (
    CREDITS,
    PostedTransaction,
    SystemAccount,
    balance_of,
    customer_account,
    debit_credits,
    grant_credits,
    system_account,
)
from billfold.ledger.service import shard_for
from billfold.ledger.verify import verify_ledger
from tests.ledger.conftest import entries_sum, ledger_counts, new_customer

WRITER_POOL = 5


@pytest.fixture
async def writers(database: Database) -> AsyncIterator[Database]:
    """The same database through a pool of at most 15 connections (5 + 10 overflow): enough
    concurrency to race, and modest on a PostgreSQL server other test runs share."""
    db = Database(database.url, pool_size=WRITER_POOL)
    try:
        yield db
    finally:
        await db.dispose()


async def test_200_concurrent_debits_of_1_against_100_leave_exactly_100(
    database: Database, writers: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        await grant_credits(
            session, billing_account_id=alice, credits=100, idempotency_key="grant", clock=clock
        )
        account = await customer_account(session, alice, clock=clock)
        usage = await system_account(
            session, SystemAccount.USAGE, CREDITS, clock=clock, spread_by=shard_for(alice)
        )

    async def debit(i: int) -> bool:
        try:
            async with writers.sessionmaker() as session, session.begin():
                await debit_credits(
                    session,
                    billing_account_id=alice,
                    credits=1,
                    idempotency_key=f"debit-{i}",
                    clock=clock,
                )
        except InsufficientBalance:
            return False
        return True

    outcomes = await asyncio.gather(*(debit(i) for i in range(200)))

    assert outcomes.count(True) == 100
    assert outcomes.count(False) == 100
    async with database.transaction() as session:
        assert await balance_of(session, alice) == 0
        assert await verify_ledger(session) == []
    assert await entries_sum(database, account.id) == 0
    assert await entries_sum(database, usage.id) == 100
    counts = await ledger_counts(database)
    assert counts.transactions == 1 + 100
    assert counts.entries == 2 * 101


async def test_concurrent_posts_with_one_key_make_one_transaction(
    database: Database, writers: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")

    async def grant() -> PostedTransaction:
        async with writers.sessionmaker() as session, session.begin():
            return await grant_credits(
                session,
                billing_account_id=alice,
                credits=25,
                idempotency_key="once",
                clock=clock,
            )

    results = await asyncio.gather(*(grant() for _ in range(20)))

    assert len({r.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    async with database.transaction() as session:
        assert await balance_of(session, alice) == 25
    counts = await ledger_counts(database)
    assert (counts.transactions, counts.entries) == (1, 2)


async def test_crossing_transfers_between_two_accounts_do_not_deadlock(
    database: Database, writers: Database, clock: FrozenClock
) -> None:
    """A->B and B->A at once lock the two rows in the same (id) order, so neither waits forever."""
    from billfold.ledger import transfer

    alice = await new_customer(database, "alice")
    bob = await new_customer(database, "bob")
    async with database.transaction() as session:
        for who in (alice, bob):
            await grant_credits(
                session, billing_account_id=who, credits=1000, idempotency_key=who, clock=clock
            )
        a = await customer_account(session, alice, clock=clock)
        b = await customer_account(session, bob, clock=clock)

    async def move(i: int) -> None:
        source, destination = (a, b) if i % 2 else (b, a)
        async with writers.sessionmaker() as session, session.begin():
            await transfer(
                session,
                source=source,
                destination=destination,
                amount=1 + i % 3,
                idempotency_key=f"move-{i}",
                kind="transfer",
                clock=clock,
            )

    await asyncio.gather(*(move(i) for i in range(100)))
    async with database.transaction() as session:
        assert await balance_of(session, alice) + await balance_of(session, bob) == 2000
        assert await verify_ledger(session) == []
