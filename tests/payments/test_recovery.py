"""A payment whose process died between reserving and recording (reserve -> call Stripe ->
record) is finished by the `payments.recover` job: the intent Stripe made is found by its
attempt's metadata and recorded; an attempt Stripe never saw is abandoned and the payment
released. The crash is simulated by an exception at the step where the process would die, on
SQLite and PostgreSQL, against the sandbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from billfold.audit.context import system_audit_context
from billfold.audit.models import AuditEntry
from billfold.clock import FrozenClock
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.ledger.verify import verify_ledger
from billfold.payments import charging
from billfold.payments.jobs import recover_stale_payments
from billfold.payments.models import Payment, PaymentAttempt
from billfold.stripe.gateway import gateway_of
from tests.payments.conftest import Billing


class Crash(Exception):
    """The process dies here."""


async def die(*_args: object, **_kwargs: object) -> Any:
    raise Crash


async def _account(container: Container, user: str) -> BillingAccount:
    async with container.db.read() as session:
        found = await session.execute(
            select(BillingAccount).where(BillingAccount.external_id == user)
        )
        account = found.scalar_one()
        session.expunge(account)
        return account


async def _state(container: Container) -> tuple[list[Payment], list[PaymentAttempt]]:
    async with container.db.read() as session:
        payments = list((await session.execute(select(Payment))).scalars())
        attempts = list((await session.execute(select(PaymentAttempt))).scalars())
        session.expunge_all()
    return payments, attempts


def _intents(alice: Billing, customer_id: str | None) -> list[Any]:
    assert customer_id is not None
    return list(alice.world.client.v1.payment_intents.list({"customer": customer_id}).data)


async def _later(container: Container, clock: FrozenClock) -> None:
    """Not before the grace period: a live run may still be at it."""
    clock.advance(timedelta(seconds=container.settings.payments_recover_after_seconds - 1))
    assert await recover_stale_payments(container) == {}
    clock.advance(timedelta(seconds=2))


async def test_a_dues_payment_that_died_after_stripe_answered_is_recorded(
    alice: Billing, billing_app: Any, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    container: Container = billing_app.state.container
    card = await alice.card()
    await alice.charge(1800)
    account = await _account(container, "alice")
    monkeypatch.setattr(charging, "record_intent", die)
    with pytest.raises(Crash):
        await charging.pay_balance(
            container, account, currency="usd", audit=system_audit_context("test", clock)
        )
    monkeypatch.undo()
    [charged] = _intents(alice, account.stripe_customer_id)
    assert charged.status == "succeeded"  # Stripe charged; billfold never heard
    assert await alice.dues() == {"settled": 0, "pending": 1800}

    await _later(container, clock)
    [(payment_id, status)] = (await recover_stale_payments(container)).items()
    assert status == "succeeded"
    [payment], [attempt] = await _state(container)
    assert (payment.id, payment.status, payment.payment_method_id) == (payment_id, status, card)
    assert (attempt.state, attempt.stripe_payment_intent_id) == ("succeeded", charged.id)
    assert payment.stripe_payment_intent_id == charged.id
    assert await alice.dues() == {"settled": 0, "pending": 0}
    assert len(_intents(alice, account.stripe_customer_id)) == 1
    assert await recover_stale_payments(container) == {}  # done once
    await alice.events()  # the intent's own events change nothing more
    assert await alice.dues() == {"settled": 0, "pending": 0}
    async with container.db.read() as session:
        assert await verify_ledger(session) == []


async def test_a_one_off_charge_that_died_before_calling_stripe_is_released(
    alice: Billing, billing_app: Any, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    container: Container = billing_app.state.container
    await alice.card()
    account = await _account(container, "alice")
    reserve = charging._next_attempt

    async def reserve_then_die(*args: Any, **kwargs: Any) -> Any:
        payment, attempt = await reserve(*args, **kwargs)
        if attempt is not None:
            raise Crash
        return payment, attempt

    monkeypatch.setattr(charging, "_next_attempt", reserve_then_die)
    with pytest.raises(Crash):
        await charging.charge_once(
            container,
            account,
            amount=2500,
            currency="usd",
            description="Setup fee",
            payment_method_id=None,
            audit=system_audit_context("test", clock),
        )
    monkeypatch.undo()
    assert await alice.dues() == {"settled": 0, "pending": 2500}
    [payment], [attempt] = await _state(container)
    assert (payment.status, attempt.state) == ("reserved", "reserved")

    await _later(container, clock)
    assert await recover_stale_payments(container) == {payment.id: "failed"}
    [payment], [attempt] = await _state(container)
    assert (payment.status, payment.failure_code) == ("failed", "interrupted")
    assert attempt.state == "abandoned"
    assert await alice.dues() == {"settled": 0, "pending": 0}  # the charge is voided
    assert _intents(alice, account.stripe_customer_id) == []  # nothing was charged
    kinds = [e["kind"] for e in (await alice.call("GET", "/ledger"))["entries"]]
    assert kinds == ["payment_failed", "one_off_charge"]
    [listed] = await alice.payments()
    assert (listed["status"], listed["failure_code"]) == ("failed", "interrupted")
    async with container.db.read() as session:
        assert await verify_ledger(session) == []

    # Had the process only stalled, its late call would take the money of a failed payment:
    # never counted as paid, and flagged for an operator to refund.
    request = attempt.request
    late = await gateway_of(container).payment_intents.create_on_session(
        customer_id=request["customer_id"],
        payment_method_id=request["payment_method_id"],
        amount=request["amount"],
        currency=request["currency"],
        metadata={
            charging.PAYMENT_METADATA_KEY: payment.id,
            charging.ATTEMPT_METADATA_KEY: attempt.id,
        },
        idempotency_key=f"payment_attempt:{attempt.id}",
    )
    assert late.status == "succeeded"
    await alice.events()
    [listed] = await alice.payments()
    assert listed["status"] == "failed" and await alice.dues() == {"settled": 0, "pending": 0}
    async with container.db.read() as session:
        flagged = await session.execute(
            select(AuditEntry.target).where(AuditEntry.action == "payment.charged_after_recovery")
        )
        assert list(flagged.scalars()) == [attempt.id]


async def test_an_autopay_payment_that_died_before_any_attempt_reopens_the_dues(
    alice: Billing, billing_app: Any, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billfold.payments import jobs

    container: Container = billing_app.state.container
    await alice.card("pm_card_chargeCustomerFail")
    await alice.call("POST", "/autopay", json={"enabled": True})
    await alice.charge(900)
    account = await _account(container, "alice")
    monkeypatch.setattr(jobs, "run_payment", die)
    with pytest.raises(Crash):
        await jobs.autopay(container, account.id, "usd")
    monkeypatch.undo()
    assert await alice.dues() == {"settled": 0, "pending": 900}
    assert await jobs.autopay(container, account.id, "usd") is None  # never while in flight

    await _later(container, clock)
    [status] = (await recover_stale_payments(container)).values()
    assert status == "failed"
    assert await alice.dues() == {"settled": 900, "pending": 0}
    settings = await alice.call("GET", "/settings")
    assert settings["autopay"] and settings["autopay_failures"] == 1  # counted as a failed run
    assert _intents(alice, account.stripe_customer_id) == []
