"""Postings in the hot path's unit of work (`Database.connection()`, a bare Core connection):
the same guarantees as in a request's session (idempotent, never overdrawn, nothing written
when refused or rolled back), on both databases."""

from __future__ import annotations

import asyncio

import pytest

from billfold.clock import FrozenClock
from billfold.db.engine import Database
from billfold.errors import IdempotencyConflict, InsufficientBalance
from billfold.ledger import (
    CREDITS,
    EntryLine,
    SystemAccount,
    balance_of,
    customer_account,
    grant_credits,
    post_transaction,
    system_account,
)
from billfold.ledger.service import shard_for
from billfold.ledger.verify import verify_ledger
from tests.ledger.conftest import ledger_counts, new_customer


async def _accounts(database: Database, clock: FrozenClock, credits: int) -> tuple[str, int, int]:
    """A customer granted `credits`; its ledger account id and its usage shard's."""
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        await grant_credits(
            session, billing_account_id=alice, credits=credits, idempotency_key="g", clock=clock
        )
        customer = await customer_account(session, alice, clock=clock)
        usage = await system_account(
            session, SystemAccount.USAGE, CREDITS, clock=clock, spread_by=shard_for(alice)
        )
    return alice, customer.id, usage.id


def _debit(customer: int, usage: int, amount: int = 1) -> list[EntryLine]:
    return [EntryLine(customer, CREDITS, -amount), EntryLine(usage, CREDITS, amount)]


async def test_a_posting_in_a_connection_unit_commits_and_replays(
    database: Database, clock: FrozenClock
) -> None:
    alice, customer, usage = await _accounts(database, clock, 10)
    async with database.connection() as unit:
        first = await post_transaction(
            unit,
            idempotency_key="u1",
            entries=_debit(customer, usage, 3),
            kind="usage",
            clock=clock,
        )
    async with database.connection() as unit:
        again = await post_transaction(
            unit,
            idempotency_key="u1",
            entries=_debit(customer, usage, 3),
            kind="usage",
            clock=clock,
        )
        with pytest.raises(IdempotencyConflict):
            await post_transaction(
                unit,
                idempotency_key="u1",
                entries=_debit(customer, usage, 4),
                kind="usage",
                clock=clock,
            )
    assert not first.replayed and again.replayed and again.id == first.id
    assert sorted(e.balance_after for e in first.entries if e.account_id == customer) == [7]
    async with database.read() as session:
        assert await balance_of(session, alice) == 7
        assert await verify_ledger(session) == []
    assert (await ledger_counts(database)).transactions == 2


async def test_a_refused_posting_writes_nothing_and_the_unit_stays_usable(
    database: Database, clock: FrozenClock
) -> None:
    alice, customer, usage = await _accounts(database, clock, 2)
    async with database.connection() as unit:
        with pytest.raises(InsufficientBalance):
            await post_transaction(
                unit,
                idempotency_key="big",
                entries=_debit(customer, usage, 3),
                kind="usage",
                clock=clock,
            )
        await post_transaction(
            unit,
            idempotency_key="small",
            entries=_debit(customer, usage, 2),
            kind="usage",
            clock=clock,
        )
    async with database.read() as session:
        assert await balance_of(session, alice) == 0
        assert await verify_ledger(session) == []
    assert (await ledger_counts(database)).transactions == 2


async def test_an_error_in_a_connection_unit_rolls_the_posting_back(
    database: Database, clock: FrozenClock
) -> None:
    alice, customer, usage = await _accounts(database, clock, 5)
    with pytest.raises(RuntimeError, match="after the posting"):
        async with database.connection() as unit:
            await post_transaction(
                unit,
                idempotency_key="u1",
                entries=_debit(customer, usage, 5),
                kind="usage",
                clock=clock,
            )
            raise RuntimeError("after the posting")
    async with database.read() as session:
        assert await balance_of(session, alice) == 5
    assert (await ledger_counts(database)).transactions == 1
    # The key was never used: posting it again spends.
    async with database.connection() as unit:
        posted = await post_transaction(
            unit,
            idempotency_key="u1",
            entries=_debit(customer, usage, 5),
            kind="usage",
            clock=clock,
        )
    assert not posted.replayed


async def test_concurrent_connection_units_never_overdraw(
    database: Database, clock: FrozenClock
) -> None:
    alice, customer, usage = await _accounts(database, clock, 20)

    async def debit(n: int) -> bool:
        try:
            async with database.connection() as unit:
                await post_transaction(
                    unit,
                    idempotency_key=f"u{n}",
                    entries=_debit(customer, usage),
                    kind="usage",
                    clock=clock,
                )
        except InsufficientBalance:
            return False
        return True

    spent = await asyncio.gather(*(debit(n) for n in range(40)))
    assert sum(spent) == 20
    async with database.read() as session:
        assert await balance_of(session, alice) == 0
        assert await verify_ledger(session) == []
