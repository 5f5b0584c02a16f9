"""The overview's money state, in process on both databases: dues owed now and on their way,
autopay on or off, and what needs attention (the latest payment failed, bank accounts waiting
for their microdeposits, autopay stopped, auto top-up stopped, each with its reason and a link
to the page that mends it), read in two queries however many rows the account has; another
customer's never shown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import event

from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.credits.models import AutoTopupStatus, CreditAutoTopup
from billfold.db.engine import Database
from billfold.payments import dues
from billfold.payments.models import Payment, PaymentMethod, PaymentSettings
from billfold.web.money_state import money_state
from tests.web.conftest import sign_in
from tests.web.test_credit_pages import START, _account


@contextmanager
def counted(database: Database) -> Iterator[list[str]]:
    """The SELECT statements run while inside (not the connection's own PRAGMAs)."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    engine = database.read_engine.sync_engine  # readers have an engine of their own on SQLite
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _method(account_id: str, n: int, status: str, clock: FrozenClock) -> PaymentMethod:
    bank = status == "pending_verification"
    return PaymentMethod(
        id=f"pm_{account_id[-6:]}_{n}", account_id=account_id,
        type="us_bank_account" if bank else "card", status=status,
        brand=None if bank else "visa", bank_name="STRIPE TEST BANK" if bank else None,
        last4=f"{n:04d}", priority=n, verification_failures=0,
        created_at=clock.now(), updated_at=clock.now(),
    )  # fmt: skip


def _payment(account_id: str, n: int, status: str, clock: FrozenClock, **kw: Any) -> Payment:
    at = clock.now() + timedelta(minutes=n)
    return Payment(
        id=f"pay_{account_id[-6:]}_{n:03d}", account_id=account_id, kind="balance",
        amount=1000 + n, currency="eur", status=status, refunded_amount=0, attempts=1,
        created_at=at, updated_at=at, **kw,
    )  # fmt: skip


async def _troubled(database: Database, clock: FrozenClock, name: str, rows: int) -> str:
    """An account with `rows` older payments and cards, two unverified bank accounts, dues
    owed and on their way, its latest payment failed, autopay and auto top-up stopped."""
    account_id = (await _account(database, clock, name)).id
    async with database.transaction() as s:
        await dues.add_charge(
            s, account_id, amount=4200, currency="eur", charge_id=f"c1:{name}",
            description="usage", clock=clock,
        )  # fmt: skip
        await dues.reserve_dues(s, account_id, "eur", 1200, f"pay_r:{name}", clock)
        for n in range(rows):
            s.add(_method(account_id, n, "active", clock))
            s.add(_payment(account_id, n, "succeeded", clock))
        s.add(_method(account_id, rows, "pending_verification", clock))
        s.add(_method(account_id, rows + 1, "pending_verification", clock))
        s.add(
            _payment(
                account_id, rows, "failed", clock,
                failure_code="card_declined", failure_message="Your card was declined.",
            )
        )  # fmt: skip
        s.add(
            PaymentSettings(
                account_id=account_id, autopay=False, autopay_failures=4,
                autopay_stopped_reason="autopay stopped after 4 failed payments "
                "(last: card_declined)",
                autopay_stopped_at=clock.now(), updated_at=clock.now(),
            )
        )  # fmt: skip
        s.add(
            CreditAutoTopup(
                account_id=account_id, enabled=True, threshold=10, credits=100, currency="eur",
                max_per_day=2, monthly_limit=5000, status=AutoTopupStatus.STOPPED, armed=True,
                crossings=3, attempts=3, failures_in_row=3,
                stopped_reason="stopped after 3 failed charges in a row (last: card_declined)",
                created_at=clock.now(), updated_at=clock.now(),
            )
        )  # fmt: skip
    return account_id


async def test_the_overview_shows_what_is_owed_autopay_and_what_needs_attention(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    clock.advance(START - clock.now())
    await _troubled(database, clock, "alice", rows=3)
    await sign_in(panel, settings, clock, "user:alice")
    page = await panel.get("/")
    assert page.status_code == 200
    text = page.text
    money = text.split('id="money-h"')[1].split("</section>")[0]
    assert "<dt>Owed now (EUR)</dt><dd>€30.00</dd>" in money
    assert "<dt>Payment on its way (EUR)</dt><dd>€12.00</dd>" in money
    assert '<dd id="autopay-state">Off</dd>' in money

    attention = text.split('id="attention-h"')[1].split("</section>")[0]
    items = [line.strip() for line in attention.split("<li>")[1:]]
    assert items[0].startswith(
        "Your latest payment of €10.03 failed: Your card was declined. Pay with another "
        'method, or update yours. <a href="/payment-methods#balance">Pay the balance</a>'
    )
    assert items[1].startswith(
        "2 bank accounts wait for verification: enter the amounts of their two small "
        'deposits. <a href="/payment-methods">Verify</a>'
    )
    assert items[2].startswith(
        "Autopay is off: autopay stopped after 4 failed payments (last: card_declined). "
        '<a href="/payment-methods#autopay">Turn autopay on</a>'
    )
    assert items[3].startswith(
        "Auto top-up stopped: stopped after 3 failed charges in a row (last: card_declined). "
        '<a href="/credits#auto-topup">Review auto top-up</a>'
    )
    assert len(items) == 4


async def test_a_settled_account_needs_no_attention_and_sees_no_one_elses(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    clock.advance(START - clock.now())
    await _troubled(database, clock, "alice", rows=1)
    bob = (await _account(database, clock, "bob")).id
    async with database.transaction() as s:
        # Bob's latest payment succeeded after a failed one; autopay on; one verified bank.
        s.add(_payment(bob, 0, "failed", clock, failure_message="Insufficient funds."))
        s.add(_payment(bob, 1, "succeeded", clock))
        s.add(_method(bob, 0, "active", clock))
        s.add(PaymentSettings(account_id=bob, autopay=True, updated_at=clock.now()))
    await sign_in(panel, settings, clock, "user:bob")
    text = (await panel.get("/")).text
    assert 'id="attention-h"' not in text
    assert "You owe nothing." in text and '<dd id="autopay-state">On</dd>' in text
    for alices in ("€30.00", "declined", "verification", "stopped"):
        assert alices not in text

    # Only one payment, and it failed: that is what needs attention.
    carol = (await _account(database, clock, "carol")).id
    async with database.transaction() as s:
        s.add(_payment(carol, 0, "failed", clock))
    panel.cookies.clear()
    await sign_in(panel, settings, clock, "user:carol")
    attention = (await panel.get("/")).text.split('id="attention-h"')[1]
    assert "Your latest payment of €10.00 failed. Pay with another method" in attention


async def test_the_money_state_is_two_queries_whatever_the_rows(
    clock: FrozenClock, database: Database
) -> None:
    clock.advance(START - clock.now())
    few = await _troubled(database, clock, "few", rows=1)
    many = await _troubled(database, clock, "many", rows=60)
    counts = []
    for account_id in (few, many):
        async with database.read() as s:
            with counted(database) as statements:
                state = await money_state(s, account_id)
        counts.append(len(statements))
        assert state.unverified_bank_accounts == 2 and state.failed_payment is not None
        assert state.failed_payment.reason == "Your card was declined."
        assert [(d.currency, d.settled, d.pending) for d in state.dues] == [("eur", 3000, 1200)]
    assert counts == [2, 2]
