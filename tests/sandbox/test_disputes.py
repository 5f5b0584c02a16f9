"""Disputes and balance transactions through the official SDK, as Stripe test mode makes them:
the dispute test cards, evidence that wins or loses, closing, and the money each step moves."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.payments_support import last_event_id
from tests.sandbox.shapes import assert_stripe_shape


def _pay(
    client: stripe.StripeClient, payment_method: str, amount: int = 4000
) -> stripe.PaymentIntent:
    customer = client.v1.customers.create(params={"email": "dispute@example.com"}).id
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "usd",
            "customer": customer,
            "payment_method": payment_method,
            "confirm": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )


def _dispute_events(client: stripe.StripeClient, since: str) -> list[str]:
    events = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    events.reverse()
    ids = [e.id for e in events]
    return [e.type for e in events[ids.index(since) + 1 :] if e.type.startswith("charge.dispute")]


def test_a_dispute_card_is_disputed_and_winning_evidence_wins(
    stripe_client: stripe.StripeClient,
) -> None:
    stripe_client.v1.customers.create(params={"email": "before@example.com"})
    mark = last_event_id(stripe_client)
    pi = _pay(stripe_client, "pm_card_createDispute")
    assert pi.status == "succeeded"
    charge = stripe_client.v1.charges.retrieve(pi.latest_charge)
    assert charge.disputed is True
    disputes = stripe_client.v1.disputes.list(params={"charge": charge.id}).data
    assert len(disputes) == 1
    dispute = stripe_client.v1.disputes.retrieve(disputes[0].id)
    assert_stripe_shape(dispute, "dispute")
    assert (dispute.status, dispute.reason, dispute.amount) == (
        "needs_response",
        "fraudulent",
        4000,
    )
    assert dispute.payment_intent == pi.id
    withdrawn = dispute.balance_transactions[0]
    assert (withdrawn.amount, withdrawn.fee, withdrawn.net) == (-4000, 1500, -5500)
    assert withdrawn.reporting_category == "dispute"
    assert _dispute_events(stripe_client, mark) == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
    ]

    mark = last_event_id(stripe_client)
    won = stripe_client.v1.disputes.update(
        dispute.id,
        params={
            "evidence": {"uncategorized_text": "winning_evidence", "customer_name": "Jenny Rosen"},
            "metadata": {"case": "C-1"},
        },
    )
    assert won.status == "won"
    assert won.evidence.customer_name == "Jenny Rosen"
    assert won.evidence_details.submission_count == 1
    assert won.metadata["case"] == "C-1"
    reinstated = won.balance_transactions[1]
    assert (reinstated.amount, reinstated.fee, reinstated.net) == (4000, -1500, 5500)
    assert _dispute_events(stripe_client, mark) == [
        "charge.dispute.updated",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    ]
    txn = stripe_client.v1.balance_transactions.retrieve(reinstated.id)
    assert_stripe_shape(txn, "balance_transaction")
    assert txn.source == dispute.id
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.disputes.close(dispute.id)
    assert info.value.code == "charge_dispute_already_closed"


def test_losing_evidence_loses_and_closing_accepts(stripe_client: stripe.StripeClient) -> None:
    lost = _pay(stripe_client, "pm_card_createDisputeProductNotReceived")
    dispute = stripe_client.v1.disputes.list(params={"payment_intent": lost.id}).data[0]
    assert dispute.reason == "product_not_received"
    after = stripe_client.v1.disputes.update(
        dispute.id, params={"evidence": {"uncategorized_text": "losing_evidence"}}
    )
    assert after.status == "lost"
    assert len(after.balance_transactions) == 1  # nothing comes back

    other = _pay(stripe_client, "pm_card_createDispute")
    open_one = stripe_client.v1.disputes.list(params={"payment_intent": other.id}).data[0]
    held = stripe_client.v1.disputes.update(
        open_one.id, params={"evidence": {"product_description": "A book"}, "submit": False}
    )
    assert (held.status, held.evidence_details.has_evidence) == ("needs_response", True)
    assert held.evidence_details.submission_count == 0
    mark = last_event_id(stripe_client)
    closed = stripe_client.v1.disputes.close(open_one.id)
    assert closed.status == "lost"
    assert _dispute_events(stripe_client, mark) == ["charge.dispute.closed"]


def test_an_inquiry_moves_no_money(stripe_client: stripe.StripeClient) -> None:
    pi = _pay(stripe_client, "pm_card_createDisputeInquiry")
    dispute = stripe_client.v1.disputes.list(params={"payment_intent": pi.id}).data[0]
    assert dispute.status == "warning_needs_response"
    assert dispute.balance_transactions == []
    closed = stripe_client.v1.disputes.update(
        dispute.id, params={"evidence": {"uncategorized_text": "winning_evidence"}}
    )
    assert closed.status == "warning_closed"
    assert closed.balance_transactions == []


def test_charges_and_refunds_carry_balance_transactions(
    stripe_client: stripe.StripeClient,
) -> None:
    pi = _pay(stripe_client, "pm_card_visa", amount=10000)
    charge = stripe_client.v1.charges.retrieve(
        pi.latest_charge, params={"expand": ["balance_transaction"]}
    )
    txn = charge.balance_transaction
    assert_stripe_shape(txn, "balance_transaction")
    assert (txn.type, txn.amount, txn.fee, txn.net) == ("charge", 10000, 320, 9680)
    refund = stripe_client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2500})
    back = stripe_client.v1.balance_transactions.retrieve(refund.balance_transaction)
    assert (back.type, back.amount, back.source) == ("refund", -2500, refund.id)
    listed = stripe_client.v1.balance_transactions.list(params={"source": charge.id}).data
    assert [t.id for t in listed] == [txn.id]
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.disputes.retrieve("dp_missing")
    assert info.value.http_status == 404


def test_a_charged_back_charge_is_not_refunded_but_an_inquiry_is(
    stripe_client: stripe.StripeClient,
) -> None:
    """As on Stripe: refunding a charge with a chargeback fails with `charge_disputed` (the
    money is already withdrawn by the dispute); a charge under an inquiry can still be
    refunded (`is_charge_refundable`)."""
    disputed = _pay(stripe_client, "pm_card_createDispute")
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.refunds.create(params={"payment_intent": disputed.id})
    assert (info.value.code, info.value.param) == ("charge_disputed", "charge")
    assert "has been charged back" in str(info.value.user_message)
    charge = stripe_client.v1.charges.retrieve(str(disputed.latest_charge))
    assert (charge.refunded, charge.amount_refunded) == (False, 0)
    assert stripe_client.v1.refunds.list(params={"charge": charge.id}).data == []

    inquiry = _pay(stripe_client, "pm_card_createDisputeInquiry")
    dispute = stripe_client.v1.disputes.list(params={"payment_intent": inquiry.id}).data[0]
    assert dispute.is_charge_refundable is True
    refund = stripe_client.v1.refunds.create(params={"payment_intent": inquiry.id})
    assert (refund.status, refund.amount) == ("succeeded", 4000)
