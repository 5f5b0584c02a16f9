"""Postings: balanced, idempotent, never overdrawn unless asked, and atomic when refused."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from billfold.clock import FrozenClock
from billfold.db.engine import Database
from billfold.errors import IdempotencyConflict, InsufficientBalance, NotFound, ValidationFailed
from billfold.ledger import (
    CREDITS,
    EntryLine,
    SystemAccount,
    account_balance,
    balance_of,
    customer_account,
    customer_history,
    debit_credits,
    get_or_create_ledger_account,
    grant_credits,
    post_transaction,
    system_account,
    system_balance,
    transfer,
)
from billfold.ledger.service import SYSTEM_SHARDS, shard_for
from billfold.ledger.verify import verify_ledger
from tests.ledger.conftest import entries_sum, ledger_counts, new_customer


async def test_grant_and_debit_move_balances_and_record_entries(
    database: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        granted = await grant_credits(
            session, billing_account_id=alice, credits=100, idempotency_key="g1", clock=clock
        )
        used = await debit_credits(
            session,
            billing_account_id=alice,
            credits=30,
            idempotency_key="u1",
            clock=clock,
            description="3 exports",
            metadata={"feature": "export", "count": 3},
        )
    assert not granted.replayed and not used.replayed
    assert granted.created_at == clock.now()
    assert sorted(e.amount for e in granted.entries) == [-100, 100]
    assert used.metadata == {"feature": "export", "count": 3}
    async with database.transaction() as session:
        assert await balance_of(session, alice) == 70
        assert await balance_of(session, alice, "usd") == 0
        assert await system_balance(session, SystemAccount.USAGE, CREDITS) == 30
        assert await system_balance(session, SystemAccount.PROMOTIONS, CREDITS) == -100
        usage = await system_account(
            session, SystemAccount.USAGE, CREDITS, clock=clock, spread_by=shard_for(alice)
        )
        assert await account_balance(session, usage.id) == 30
        history = await customer_history(session, alice, page_size=1)
    assert history.total == 2 and history.has_more and history.total_pages == 2
    newest = history.items[0]
    assert (newest.kind, newest.amount, newest.balance_after) == ("usage", -30, 70)
    assert newest.description == "3 exports" and newest.idempotency_key == "u1"


async def test_same_key_same_content_replays_and_changes_nothing(
    database: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        first = await grant_credits(
            session, billing_account_id=alice, credits=50, idempotency_key="k", clock=clock
        )
    clock.advance(__import__("datetime").timedelta(minutes=5))
    for _ in range(3):
        async with database.transaction() as session:
            again = await grant_credits(
                session, billing_account_id=alice, credits=50, idempotency_key="k", clock=clock
            )
        assert again.replayed
        assert again.id == first.id and again.created_at == first.created_at
        assert again.entries == first.entries
    async with database.transaction() as session:
        assert await balance_of(session, alice) == 50
    counts = await ledger_counts(database)
    assert (counts.transactions, counts.entries) == (1, 2)


async def test_same_key_different_content_is_refused(
    database: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        await grant_credits(
            session, billing_account_id=alice, credits=50, idempotency_key="k", clock=clock
        )
    for change in ({"credits": 51}, {"description": "other"}, {"kind": "credit_purchase"}):
        with pytest.raises(IdempotencyConflict) as refused:
            async with database.transaction() as session:
                await grant_credits(
                    session,
                    billing_account_id=alice,
                    idempotency_key="k",
                    clock=clock,
                    **({"credits": 50} | change),  # type: ignore[arg-type]
                )
        assert refused.value.field == "idempotency_key"
    async with database.transaction() as session:
        assert await balance_of(session, alice) == 50
    assert (await ledger_counts(database)).transactions == 1


@pytest.mark.parametrize(
    ("amounts", "message"),
    [
        ([], "needs entries"),
        ([100, -99], "sum to zero"),
        ([5, 0, -5], "zero"),
        ([100], "sum to zero"),
    ],
)
async def test_unbalanced_or_empty_postings_are_refused(
    database: Database, clock: FrozenClock, amounts: list[int], message: str
) -> None:
    alice = await new_customer(database, "alice")
    bob = await new_customer(database, "bob")
    async with database.transaction() as session:
        a = await customer_account(session, alice, clock=clock)
        b = await customer_account(session, bob, clock=clock)
        promotions = await system_account(session, SystemAccount.PROMOTIONS, CREDITS, clock=clock)
    targets = [promotions, a, b]
    with pytest.raises(ValidationFailed, match=message) as refused:
        async with database.transaction() as session:
            await post_transaction(
                session,
                idempotency_key="bad",
                entries=[targets[i].line(amount) for i, amount in enumerate(amounts)],
                kind="test",
                clock=clock,
            )
    assert refused.value.field == "entries"
    assert (await ledger_counts(database)).transactions == 0


async def test_units_must_balance_separately_and_match_the_account(
    database: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        credits = await customer_account(session, alice, clock=clock)
        dues = await customer_account(session, alice, unit="usd", name="dues", clock=clock)
        revenue = await system_account(session, SystemAccount.REVENUE, "usd", clock=clock)
        with pytest.raises(ValidationFailed, match="sum to zero"):
            await post_transaction(
                session,
                idempotency_key="mixed",
                entries=[credits.line(100), revenue.line(-100)],
                kind="test",
                clock=clock,
            )
        with pytest.raises(ValidationFailed, match="counts credits, not usd"):
            await post_transaction(
                session,
                idempotency_key="lying-unit",
                entries=[
                    EntryLine(account_id=credits.id, unit="usd", amount=100),
                    revenue.line(-100),
                ],
                kind="test",
                clock=clock,
            )
        # Both refusals left the transaction usable and empty: a good posting still goes in.
        posted = await post_transaction(
            session,
            idempotency_key="charge",
            entries=[dues.line(1999), revenue.line(-1999)],
            kind="charge",
            clock=clock,
        )
    assert posted.id
    async with database.transaction() as session:
        assert await balance_of(session, alice, "usd", name="dues") == 1999
    counts = await ledger_counts(database)
    assert (counts.transactions, counts.entries) == (1, 2)


async def test_unknown_account_is_not_found(database: Database, clock: FrozenClock) -> None:
    async with database.transaction() as session:
        promotions = await system_account(session, SystemAccount.PROMOTIONS, CREDITS, clock=clock)
        with pytest.raises(NotFound):
            await post_transaction(
                session,
                idempotency_key="ghost",
                entries=[
                    promotions.line(-5),
                    EntryLine(account_id=999_999, unit=CREDITS, amount=5),
                ],
                kind="test",
                clock=clock,
            )
        assert await account_balance(session, promotions.id) == 0
    assert (await ledger_counts(database)).transactions == 0


async def test_overdraft_is_refused_with_nothing_written(
    database: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        await grant_credits(
            session, billing_account_id=alice, credits=10, idempotency_key="g", clock=clock
        )
    before = await ledger_counts(database)
    async with database.transaction() as session:
        with pytest.raises(InsufficientBalance) as refused:
            await debit_credits(
                session, billing_account_id=alice, credits=11, idempotency_key="u", clock=clock
            )
        assert refused.value.details["balance"] == 10
        assert refused.value.details["requested"] == 11
        # The caller's transaction is intact: the same key may be used for a smaller debit.
        assert await balance_of(session, alice) == 10
        smaller = await debit_credits(
            session, billing_account_id=alice, credits=10, idempotency_key="u", clock=clock
        )
    assert smaller.entries
    after = await ledger_counts(database)
    assert after.transactions == before.transactions + 1
    async with database.transaction() as session:
        assert await balance_of(session, alice) == 0


async def test_a_refused_leg_undoes_the_legs_already_applied(
    database: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    bob = await new_customer(database, "bob")
    async with database.transaction() as session:
        await grant_credits(
            session, billing_account_id=alice, credits=100, idempotency_key="ga", clock=clock
        )
        await grant_credits(
            session, billing_account_id=bob, credits=5, idempotency_key="gb", clock=clock
        )
        a = await customer_account(session, alice, clock=clock)
        b = await customer_account(session, bob, clock=clock)
        usage = await system_account(session, SystemAccount.USAGE, CREDITS, clock=clock)
    async with database.transaction() as session:
        with pytest.raises(InsufficientBalance) as refused:
            await post_transaction(
                session,
                idempotency_key="shared-job",
                entries=[a.line(-50), b.line(-50), usage.line(100)],
                kind="usage",
                clock=clock,
            )
        assert refused.value.details["account_id"] == b.id
    async with database.transaction() as session:
        assert await balance_of(session, alice) == 100
        assert await balance_of(session, bob) == 5
        assert await account_balance(session, usage.id) == 0
    assert await entries_sum(database, a.id) == 100
    assert (await ledger_counts(database)).transactions == 2


async def test_explicit_overdraft_goes_negative_and_recovers(
    database: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        await grant_credits(
            session,
            billing_account_id=alice,
            credits=20,
            idempotency_key="purchase",
            source=SystemAccount.CREDIT_SALES,
            clock=clock,
        )
        await debit_credits(
            session, billing_account_id=alice, credits=15, idempotency_key="use", clock=clock
        )
        # The purchase is refunded: claw the 20 credits back although only 5 are left.
        clawback = await debit_credits(
            session,
            billing_account_id=alice,
            credits=20,
            idempotency_key="clawback",
            destination=SystemAccount.CREDIT_SALES,
            kind="clawback",
            allow_overdraft=True,
            clock=clock,
        )
        assert await balance_of(session, alice) == -15
    assert min(e.balance_after for e in clawback.entries) == -15
    async with database.transaction() as session:
        with pytest.raises(InsufficientBalance):
            await debit_credits(
                session, billing_account_id=alice, credits=1, idempotency_key="more", clock=clock
            )
        # A deposit that leaves it still negative is accepted: it only moves towards zero.
        await grant_credits(
            session, billing_account_id=alice, credits=10, idempotency_key="g2", clock=clock
        )
        assert await balance_of(session, alice) == -5
        await grant_credits(
            session, billing_account_id=alice, credits=10, idempotency_key="g3", clock=clock
        )
        assert await balance_of(session, alice) == 5


async def test_the_database_refuses_a_negative_customer_balance_on_its_own(
    database: Database, clock: FrozenClock
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        account = await customer_account(session, alice, clock=clock)
        usage = await system_account(session, SystemAccount.USAGE, CREDITS, clock=clock)
    # Code that bypassed the guarded UPDATE still cannot store a negative customer balance...
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            await session.execute(
                text("UPDATE ledger_accounts SET balance = -1 WHERE id = :id"), {"id": account.id}
            )
    # ...while system accounts may go negative.
    async with database.transaction() as session:
        await session.execute(
            text("UPDATE ledger_accounts SET balance = -1 WHERE id = :id"), {"id": usage.id}
        )


async def test_transfer_checks_its_arguments(database: Database, clock: FrozenClock) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        a = await customer_account(session, alice, clock=clock)
        held = await customer_account(session, alice, name="held", clock=clock)
        dues = await customer_account(session, alice, unit="usd", name="dues", clock=clock)
        for amount in (0, -1):
            with pytest.raises(ValidationFailed):
                await transfer(
                    session,
                    source=a,
                    destination=held,
                    amount=amount,
                    idempotency_key="t",
                    kind="hold",
                    clock=clock,
                )
        with pytest.raises(ValidationFailed, match="usd"):
            await transfer(
                session,
                source=a,
                destination=dues,
                amount=1,
                idempotency_key="t",
                kind="hold",
                clock=clock,
            )
        with pytest.raises(ValidationFailed):
            await customer_account(session, alice, unit="US Dollars", clock=clock)


async def test_system_accounts_are_spread_over_shards(
    database: Database, clock: FrozenClock
) -> None:
    customers = [await new_customer(database, f"c{i}") for i in range(20)]
    async with database.transaction() as session:
        for i, customer in enumerate(customers):
            await grant_credits(
                session,
                billing_account_id=customer,
                credits=100,
                idempotency_key=f"g{i}",
                clock=clock,
            )
            await debit_credits(
                session,
                billing_account_id=customer,
                credits=i + 1,
                idempotency_key=f"u{i}",
                clock=clock,
            )
        shards = {
            (
                await system_account(
                    session, SystemAccount.USAGE, CREDITS, clock=clock, spread_by=n
                )
            ).id
            for n in range(SYSTEM_SHARDS * 2)
        }
        assert len(shards) == SYSTEM_SHARDS
        assert await system_balance(session, SystemAccount.USAGE, CREDITS) == sum(range(1, 21))
        assert await system_balance(session, SystemAccount.PROMOTIONS, CREDITS) == -2000
        with pytest.raises(ValidationFailed):
            await get_or_create_ledger_account(
                session, billing_account_id=customers[0], shard=1, clock=clock
            )


async def test_a_posting_belongs_to_the_callers_transaction(
    database: Database, clock: FrozenClock
) -> None:
    """Committed with it, rolled back with it, also when it is the transaction's first statement
    (on PostgreSQL the posting goes to asyncpg directly and must join SQLAlchemy's transaction)."""
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        account = await customer_account(session, alice, clock=clock)
        promotions = await system_account(session, SystemAccount.PROMOTIONS, CREDITS, clock=clock)
    grant = [promotions.line(-7), account.line(7)]

    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await post_transaction(
                session, idempotency_key="rolled-back", entries=grant, kind="grant", clock=clock
            )
            raise RuntimeError("the request failed after the posting")
    assert (await ledger_counts(database)).transactions == 0

    async with database.transaction() as session:
        first = await post_transaction(
            session, idempotency_key="kept", entries=grant, kind="grant", clock=clock
        )
        assert await account_balance(session, account.id) == 7
    async with database.transaction() as session:
        assert await account_balance(session, account.id) == 7
        again = await post_transaction(
            session, idempotency_key="kept", entries=grant, kind="grant", clock=clock
        )
    assert again.replayed and again.id == first.id
    counts = await ledger_counts(database)
    assert (counts.transactions, counts.entries) == (1, 2)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
        ({"idempotency_key": "nul\x00key"}, "idempotency_key"),
        ({"kind": ""}, "kind"),
        ({"description": "d" * 1001}, "description"),
        ({"metadata": {"rate": 0.5}}, "metadata"),
        ({"metadata": {"note": "nul\x00"}}, "metadata"),
        ({"metadata": {"when": object()}}, "metadata"),
        ({"entries": "lines"}, "entries"),
    ],
)
async def test_bad_input_is_a_validation_error_naming_the_field(
    database: Database, clock: FrozenClock, change: dict[str, object], field: str
) -> None:
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        account = await customer_account(session, alice, clock=clock)
        promotions = await system_account(session, SystemAccount.PROMOTIONS, CREDITS, clock=clock)
        arguments: dict[str, object] = {
            "idempotency_key": "k",
            "entries": [promotions.line(-1), account.line(1)],
            "kind": "grant",
            "description": None,
            "metadata": {"ok": [1, "two", True, None]},
        }
        if change.get("entries") == "lines":
            change = {"entries": [EntryLine(account_id="1", unit=CREDITS, amount=1)]}  # type: ignore[arg-type]
        with pytest.raises(ValidationFailed) as refused:
            await post_transaction(session, clock=clock, **(arguments | change))  # type: ignore[arg-type]
        assert refused.value.field == field
        posted = await post_transaction(session, clock=clock, **arguments)  # type: ignore[arg-type]
    assert posted.metadata == {"ok": [1, "two", True, None]}


async def test_pending_orm_changes_are_flushed_before_the_posting(
    database: Database, clock: FrozenClock
) -> None:
    """An account added to the session but not yet flushed is there for the posting."""
    from billfold.ledger.models import LedgerAccount

    async with database.transaction() as session:
        promotions = await system_account(session, SystemAccount.PROMOTIONS, CREDITS, clock=clock)
        session.add(
            LedgerAccount(
                id=990_001,
                key="system:bonus:credits:0",
                name="bonus",
                unit=CREDITS,
                allow_negative=True,
                created_at=clock.now(),
            )
        )
        posted = await post_transaction(
            session,
            idempotency_key="to-pending",
            entries=[promotions.line(-4), EntryLine(990_001, CREDITS, 4)],
            kind="grant",
            clock=clock,
        )
    assert {e.account_id for e in posted.entries} == {promotions.id, 990_001}
    async with database.transaction() as session:
        assert await account_balance(session, 990_001) == 4


async def test_one_transaction_can_move_credits_and_money_together(
    database: Database, clock: FrozenClock
) -> None:
    """A credit package bought for $9.99: credits to the customer, money to Stripe clearing."""
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        credits = await customer_account(session, alice, clock=clock)
        sales = await system_account(session, SystemAccount.CREDIT_SALES, CREDITS, clock=clock)
        clearing = await system_account(session, SystemAccount.STRIPE_CLEARING, "usd", clock=clock)
        revenue = await system_account(session, SystemAccount.REVENUE, "usd", clock=clock)
        posted = await post_transaction(
            session,
            idempotency_key="cs_test_123",
            entries=[
                sales.line(-100),
                credits.line(100),
                revenue.line(-999),
                clearing.line(999),
            ],
            kind="credit_purchase",
            metadata={"checkout_session": "cs_test_123", "package": "starter"},
            clock=clock,
        )
        assert await balance_of(session, alice) == 100
        assert await system_balance(session, SystemAccount.STRIPE_CLEARING, "usd") == 999
    assert sorted((e.unit, e.amount) for e in posted.entries) == [
        ("credits", -100),
        ("credits", 100),
        ("usd", -999),
        ("usd", 999),
    ]
    async with database.transaction() as session:
        assert await verify_ledger(session) == []


async def test_the_sqlalchemy_route_posts_the_same_when_asyncpg_is_out_of_reach(
    database: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another SQLAlchemy version hides the asyncpg connection, the posting still works."""
    from billfold.ledger import service

    async def out_of_reach(session: object) -> None:
        return None

    monkeypatch.setattr(service, "_asyncpg_connection", out_of_reach)
    alice = await new_customer(database, "alice")
    async with database.transaction() as session:
        await grant_credits(
            session, billing_account_id=alice, credits=5, idempotency_key="g", clock=clock
        )
        with pytest.raises(InsufficientBalance):
            await debit_credits(
                session, billing_account_id=alice, credits=6, idempotency_key="u", clock=clock
            )
        again = await grant_credits(
            session, billing_account_id=alice, credits=5, idempotency_key="g", clock=clock
        )
        assert again.replayed
        assert await balance_of(session, alice) == 5
        assert await verify_ledger(session) == []
