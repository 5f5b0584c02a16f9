"""A payment left waiting for 3-D Secure is canceled at Stripe once it has waited
`payments_action_timeout_seconds` (Stripe cancels nothing by itself): the `payments.recover`
job cancels the PaymentIntent with a key of its attempt, fails the payment (`action_expired`)
and voids what it held; a customer who finished just before is recorded as paid instead. On
SQLite and PostgreSQL against the sandbox, with a FrozenClock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.clock import FrozenClock
from billfold.container import Container
from billfold.db.engine import Database
from billfold.jobs import JobRunner, enqueue
from billfold.ledger.verify import verify_ledger
from billfold.payments.charging import ACTION_EXPIRED, expire_actions
from billfold.payments.jobs import RECOVER_SWEEP
from tests.payments.conftest import Billing


async def _waiting_for_3ds(alice: Billing, amount: int = 1500) -> dict[str, Any]:
    """A one-off charge on a card that asks for 3-D Secure on every payment, not finished."""
    setup = await alice.call(
        "POST", "/setup-intent/card", json={"payment_method_id": "pm_card_authenticationRequired"}
    )
    alice.sandbox(f"/v1/test_helpers/setup_intents/{setup['setup_intent_id']}/authenticate")
    await alice.events()
    body = await alice.call(
        "POST",
        "/charge-once",
        json={"amount": amount, "currency": "usd", "payment_method_id": setup["payment_method_id"]},
    )
    assert body["status"] == "requires_action"
    assert await alice.dues() == {"settled": 0, "pending": amount}
    return dict(body)


async def _run_recover_job(container: Container) -> None:
    async with container.db.transaction() as session:
        await enqueue(session, RECOVER_SWEEP, {}, clock=container.clock)
    assert container.jobs is not None
    report = await JobRunner(container, container.jobs).drain()
    assert report.done >= 1 and (report.failed, report.dead) == (0, 0), report


async def test_an_abandoned_3d_secure_charge_is_canceled_after_the_timeout(
    alice: Billing, billing_app: Any, clock: FrozenClock, database: Database
) -> None:
    container: Container = billing_app.state.container
    body = await _waiting_for_3ds(alice)
    timeout = container.settings.payments_action_timeout_seconds
    assert timeout == 24 * 3600  # the default

    clock.advance(timedelta(seconds=timeout - 1))
    await _run_recover_job(container)  # not yet: the customer may still be at it
    assert (await alice.payments())[0]["status"] == "requires_action"

    clock.advance(timedelta(seconds=2))
    await _run_recover_job(container)
    [payment] = await alice.payments()
    assert (payment["status"], payment["failure_code"]) == ("failed", ACTION_EXPIRED)
    assert "3-D Secure was not completed within 24 h" in payment["failure_message"]
    assert [a["status"] for a in payment["attempts"]] == ["canceled"]
    assert await alice.dues() == {"settled": 0, "pending": 0}  # the one-off charge is voided
    intent = alice.world.client.v1.payment_intents.retrieve(body["payment_intent_id"])
    assert intent.status == "canceled"

    # A later run changes nothing, and no late event does either.
    await _run_recover_job(container)
    assert await expire_actions(container) == {}
    await alice.events()
    [again] = await alice.payments()
    assert again["status"] == "failed"
    async with database.read() as session:
        actions = (
            await session.execute(
                select(AuditEntry.action).where(AuditEntry.action == "payment.action_expired")
            )
        ).all()
        assert len(actions) == 1
        assert await verify_ledger(session) == []


async def test_a_customer_who_finished_just_before_the_timeout_has_paid(
    alice: Billing, billing_app: Any, clock: FrozenClock, database: Database
) -> None:
    container: Container = billing_app.state.container
    body = await _waiting_for_3ds(alice, 2200)
    # The customer finishes at the last moment; its webhook has not arrived yet.
    alice.sandbox(
        f"/v1/test_helpers/payment_intents/{body['payment_intent_id']}/authenticate",
        outcome="succeed",
    )
    clock.advance(timedelta(seconds=container.settings.payments_action_timeout_seconds + 1))
    assert list((await expire_actions(container)).values()) == ["succeeded"]
    await alice.events()  # the late webhook records nothing twice
    [payment] = await alice.payments()
    assert payment["status"] == "succeeded"
    assert await alice.dues() == {"settled": 0, "pending": 0}
    kinds = [e["kind"] for e in (await alice.call("GET", "/ledger"))["entries"]]
    assert kinds == ["payment_succeeded", "one_off_charge"]
    async with database.read() as session:
        assert await verify_ledger(session) == []
