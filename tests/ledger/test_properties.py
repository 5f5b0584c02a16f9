"""Property: any sequence of postings keeps every balance equal to the sum of its entries, and a
customer balance goes below zero only through an explicit overdraft."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billfold.clock import FrozenClock
from billfold.db.engine import Database
from billfold.errors import InsufficientBalance
from billfold.ledger import (
    balance_of,
    customer_account,
    debit_credits,
    grant_credits,
    transfer,
)
from billfold.ledger.verify import verify_ledger
from tests.ledger.conftest import entries_sum, new_customer

CUSTOMERS = 3


@dataclass(frozen=True)
class Op:
    kind: str  # grant | debit | clawback | transfer | replay
    who: int
    other: int
    amount: int
    replay_of: int


ops = st.lists(
    st.builds(
        Op,
        kind=st.sampled_from(["grant", "debit", "debit", "clawback", "transfer", "replay"]),
        who=st.integers(0, CUSTOMERS - 1),
        other=st.integers(0, CUSTOMERS - 1),
        amount=st.integers(1, 60),
        replay_of=st.integers(0, 30),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=ops)
async def test_random_postings_keep_balances_equal_to_their_entries(
    database: Database, program: list[Op]
) -> None:
    clock = FrozenClock()
    run = uuid.uuid4().hex[:8]
    customers = [await new_customer(database, f"{run}-{i}") for i in range(CUSTOMERS)]
    model = [0] * CUSTOMERS
    overdrawn_ever = [False] * CUSTOMERS
    done: list[tuple[str, Op]] = []  # (key, op) of every posting that went in

    async def apply(key: str, op: Op) -> bool:
        """Post `op` under `key`; True when it went in, False when refused for lack of credits."""
        who, other = customers[op.who], customers[op.other]
        try:
            async with database.transaction() as session:
                if op.kind == "grant":
                    await grant_credits(
                        session,
                        billing_account_id=who,
                        credits=op.amount,
                        idempotency_key=key,
                        clock=clock,
                    )
                elif op.kind in ("debit", "clawback"):
                    await debit_credits(
                        session,
                        billing_account_id=who,
                        credits=op.amount,
                        idempotency_key=key,
                        allow_overdraft=op.kind == "clawback",
                        clock=clock,
                    )
                else:
                    await transfer(
                        session,
                        source=await customer_account(session, who, clock=clock),
                        destination=await customer_account(session, other, clock=clock),
                        amount=op.amount,
                        idempotency_key=key,
                        kind="transfer",
                        clock=clock,
                    )
        except InsufficientBalance:
            return False
        return True

    for step, op in enumerate(program):
        if op.kind == "replay":
            if not done:
                continue
            key, original = done[op.replay_of % len(done)]
            assert await apply(key, original)  # replayed: changes nothing
            continue
        if op.kind == "transfer" and op.who == op.other:
            continue
        key = f"{run}-{step}"
        expect_ok = op.kind in ("grant", "clawback") or model[op.who] - op.amount >= 0
        assert await apply(key, op) == expect_ok
        if expect_ok:
            done.append((key, op))
            if op.kind == "grant":
                model[op.who] += op.amount
            else:
                model[op.who] -= op.amount
                if op.kind == "transfer":
                    model[op.other] += op.amount
            overdrawn_ever[op.who] |= op.kind == "clawback"

    account_ids = []
    async with database.transaction() as session:
        for i, billing_account_id in enumerate(customers):
            balance = await balance_of(session, billing_account_id)
            assert balance == model[i]
            assert balance >= 0 or overdrawn_ever[i]
            account_ids.append(
                (await customer_account(session, billing_account_id, clock=clock)).id
            )
        assert await verify_ledger(session) == []
    # Outside the session above: on SQLite a second writer would wait for it.
    for i, account_id in enumerate(account_ids):
        assert await entries_sum(database, account_id) == model[i]
