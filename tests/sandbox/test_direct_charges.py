"""The Charges API through the official SDK: `POST /v1/charges` with a test token or a
customer's card, declines as 402s naming the charge, authorize then capture."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.payments_support import last_event_id, payment_events
from tests.sandbox.sdk_params import undeclared_sdk_parameters
from tests.sandbox.shapes import assert_stripe_shape


def test_a_token_is_charged_and_refunded(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    client.v1.customers.create(params={"email": "c@example.com"})  # an event to start after
    mark_id = last_event_id(client)
    charge = client.v1.charges.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "source": "tok_visa",
            "description": "Order 42",
            "metadata": {"order": "42"},
        }
    )
    assert_stripe_shape(charge, "charge")
    assert (charge.status, charge.paid, charge.captured) == ("succeeded", True, True)
    assert (charge.payment_intent, charge.metadata["order"]) == (None, "42")
    assert charge.payment_method_details.card.last4 == "4242"
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert (txn.amount, txn.fee, txn.net) == (2000, 88, 1912)
    assert payment_events(client, since=mark_id)[:1] == ["charge.succeeded"]
    refund = client.v1.refunds.create(params={"charge": charge.id})
    assert refund.amount == 2000


def test_a_customer_default_card_and_declines(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    customer = client.v1.customers.create(
        params={
            "payment_method": "pm_card_mastercard",
            "invoice_settings": {"default_payment_method": "pm_card_mastercard"},
        }
    )
    charge = client.v1.charges.create(
        params={"amount": 1500, "currency": "usd", "customer": customer.id}
    )
    assert (charge.customer, charge.payment_method_details.card.brand) == (
        customer.id,
        "mastercard",
    )
    with pytest.raises(stripe.CardError) as info:
        client.v1.charges.create(
            params={
                "amount": 1500,
                "currency": "usd",
                "source": "tok_chargeDeclinedInsufficientFunds",
            }
        )
    assert (info.value.code, info.value.error.decline_code) == (
        "card_declined",
        "insufficient_funds",
    )
    failed = client.v1.charges.retrieve(info.value.error.charge)
    assert (failed.status, failed.failure_code) == ("failed", "card_declined")
    bare = client.v1.customers.create(params={"email": "nocard@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.charges.create(params={"amount": 1500, "currency": "usd", "customer": bare.id})
    assert missing.value.code == "missing"
    with pytest.raises(stripe.InvalidRequestError) as small:
        client.v1.charges.create(params={"amount": 10, "currency": "usd", "source": "tok_visa"})
    assert small.value.code == "amount_too_small"


def test_authorize_then_capture_part(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    held = client.v1.charges.create(
        params={"amount": 5000, "currency": "usd", "source": "tok_visa", "capture": False}
    )
    assert (held.captured, held.amount_captured, held.balance_transaction) == (False, 0, None)
    mark = last_event_id(client)
    captured = client.v1.charges.capture(held.id, params={"amount": 3000})
    assert (captured.captured, captured.amount_captured, captured.amount_refunded) == (
        True,
        3000,
        2000,
    )
    assert client.v1.balance_transactions.retrieve(captured.balance_transaction).amount == 3000
    assert payment_events(client, since=mark) == ["charge.captured"]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.charges.capture(held.id)
    assert info.value.code == "charge_already_captured"


def test_a_dispute_card_through_the_charges_api(stripe_client: stripe.StripeClient) -> None:
    charge = stripe_client.v1.charges.create(
        params={"amount": 2000, "currency": "usd", "source": "tok_createDispute"}
    )
    disputes = stripe_client.v1.disputes.list(params={"charge": charge.id}).data
    assert [d.status for d in disputes] == ["needs_response"]


def test_the_new_routes_accept_every_sdk_parameter() -> None:
    params = stripe.params
    for method, path, typed in (
        ("POST", "/v1/charges", params.ChargeCreateParams),
        ("POST", "/v1/charges/{id}/capture", params.ChargeCaptureParams),
        ("POST", "/v1/disputes/{id}", params.DisputeUpdateParams),
        ("GET", "/v1/disputes", params.DisputeListParams),
        ("GET", "/v1/balance_transactions", params.BalanceTransactionListParams),
        (
            "POST",
            "/v1/customers/{id}/balance_transactions",
            params.CustomerBalanceTransactionCreateParams,
        ),
    ):
        assert undeclared_sdk_parameters(method, path, typed) == [], path
