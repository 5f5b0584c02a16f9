"""Refunds through the official SDK: full and partial, never more than what was paid."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.payments_support import advance_sandbox_clock, last_event_id, payment_events
from tests.sandbox.shapes import assert_stripe_shape


def _paid(client: stripe.StripeClient, amount: int = 5000) -> stripe.PaymentIntent:
    customer = client.v1.customers.create(params={"email": "refund@example.com"}).id
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "usd",
            "customer": customer,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )


def test_partial_refunds_then_the_rest(stripe_client: stripe.StripeClient) -> None:
    pi = _paid(stripe_client)
    mark = last_event_id(stripe_client)
    first = stripe_client.v1.refunds.create(
        params={
            "payment_intent": pi.id,
            "amount": 1500,
            "reason": "requested_by_customer",
            "metadata": {"ticket": "T-1"},
        }
    )
    assert (first.status, first.amount, first.charge) == ("succeeded", 1500, pi.latest_charge)
    assert first.payment_intent == pi.id
    assert first.metadata["ticket"] == "T-1"
    assert_stripe_shape(first, "refund")
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1500, False)
    assert [r.id for r in charge.refunds.data] == [first.id]
    assert payment_events(stripe_client, since=mark) == ["refund.created", "charge.refunded"]

    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"charge": pi.latest_charge, "amount": 3501})
    assert (info.value.code, info.value.param) == (None, "amount")
    assert "($35.01) is greater than unrefunded amount on charge ($35.00)" in str(
        info.value.user_message
    )

    rest = stripe_client.v1.refunds.create(params={"charge": pi.latest_charge})
    assert rest.amount == 3500
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"payment_intent": pi.id})
    assert info.value.code == "charge_already_refunded"

    by_pi = stripe_client.v1.refunds.list(params={"payment_intent": pi.id})
    assert [r.id for r in by_pi.data] == [rest.id, first.id]
    by_charge = stripe_client.deserialize(
        stripe_client.raw_request("get", f"/v1/charges/{pi.latest_charge}/refunds"),
        api_mode="V1",
    )
    assert [r.id for r in by_charge.data] == [rest.id, first.id]
    assert [r.id for r in stripe_client.v1.refunds.list(params={"charge": charge.id}).data] == [
        rest.id,
        first.id,
    ]
    assert stripe_client.v1.refunds.retrieve(first.id).amount == 1500
    refunded_events = stripe_client.v1.events.list(params={"type": "charge.refunded"}).data
    assert refunded_events[0].data.previous_attributes["amount_refunded"] == 1500


def test_refund_requests_that_cannot_be_refunded(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={})
    assert info.value.code == "parameter_missing"
    draft = stripe_client.v1.payment_intents.create(params={"amount": 900, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"payment_intent": draft.id})
    assert info.value.code == "charge_not_refundable"
    with pytest.raises(stripe.CardError) as declined:
        stripe_client.v1.payment_intents.create(
            params={
                "amount": 900,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
            }
        )
    failed_charge = declined.value.error.charge
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"charge": failed_charge})
    assert info.value.code == "charge_not_refundable"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"charge": "ch_missing"})
    assert info.value.http_status == 404
    pi = _paid(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 0})
    assert info.value.param == "amount"


def test_refund_metadata_update_and_idempotent_create(stripe_client: stripe.StripeClient) -> None:
    pi = _paid(stripe_client, 3000)
    options: dict[str, str] = {"idempotency_key": "refund-1"}
    first = stripe_client.v1.refunds.create(
        params={"payment_intent": pi.id, "amount": 1000},
        options=options,  # type: ignore[arg-type]
    )
    again = stripe_client.v1.refunds.create(
        params={"payment_intent": pi.id, "amount": 1000},
        options=options,  # type: ignore[arg-type]
    )
    assert first.id == again.id
    assert stripe_client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1000
    updated = stripe_client.v1.refunds.update(first.id, params={"metadata": {"note": "dup"}})
    assert updated.metadata["note"] == "dup"


async def test_async_refund(stripe_client: stripe.StripeClient) -> None:
    pi = _paid(stripe_client, 1200)
    refund = await stripe_client.v1.refunds.create_async(
        params={"payment_intent": pi.id, "amount": 200}
    )
    fetched = await stripe_client.v1.refunds.retrieve_async(refund.id)
    assert fetched.amount == 200
    charge = await stripe_client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.amount_refunded == 200


def _paid_with(client: stripe.StripeClient, payment_method: str) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={
            "amount": 3000,
            "currency": "usd",
            "payment_method": payment_method,
            "confirm": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )


def test_a_pending_refund_succeeds_later(stripe_client: stripe.StripeClient) -> None:
    """Card 4000000000007726 (`pm_card_refundPending`): the refund waits, then succeeds."""
    pi = _paid_with(stripe_client, "pm_card_refundPending")
    refund = stripe_client.v1.refunds.create(params={"payment_intent": pi.id})
    assert refund.status == "pending"
    mark = last_event_id(stripe_client)
    advance_sandbox_clock(stripe_client, 61)
    assert stripe_client.v1.refunds.retrieve(refund.id).status == "succeeded"
    assert payment_events(stripe_client, since=mark) == ["refund.updated", "charge.refund.updated"]
    updated = next(e for e in stripe_client.v1.events.list().data if e.type == "refund.updated")
    assert updated.data.previous_attributes["status"] == "pending"


def test_a_refund_that_fails_later(stripe_client: stripe.StripeClient) -> None:
    """Card 4000000000005126 (`pm_card_refundFail`): the refund succeeds, then fails, and the
    amount is the charge's again."""
    pi = _paid_with(stripe_client, "pm_card_refundFail")
    refund = stripe_client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1000})
    assert refund.status == "succeeded"
    assert stripe_client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1000
    mark = last_event_id(stripe_client)
    advance_sandbox_clock(stripe_client, 61)
    failed = stripe_client.v1.refunds.retrieve(refund.id)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    assert_stripe_shape(
        failed,
        "refund",
        # Stripe adds these to a failed refund only.
        allow_extra=("failure_reason", "failure_balance_transaction"),
    )
    back = stripe_client.v1.balance_transactions.retrieve(failed.failure_balance_transaction)
    assert (back.type, back.amount) == ("refund_failure", 1000)
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)
    assert payment_events(stripe_client, since=mark) == [
        "refund.updated",
        "charge.refund.updated",
        "refund.failed",
    ]
