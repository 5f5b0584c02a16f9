"""`invoices.attach_payment`: a PaymentIntent made elsewhere pays an open invoice (real SDK)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.sandbox.billing_support import customer_on_clock, event_types


def open_invoice(client: stripe.StripeClient, customer: str, amount: int = 4200) -> Any:
    client.v1.invoice_items.create(
        params={"customer": customer, "amount": amount, "currency": "usd"}
    )
    draft = client.v1.invoices.create(
        params={
            "customer": customer,
            "pending_invoice_items_behavior": "include",
            "auto_advance": False,
        }
    )
    return client.v1.invoices.finalize_invoice(draft.id)


def test_attach_then_confirm(stripe_client: stripe.StripeClient) -> None:
    who = customer_on_clock(stripe_client, card=None)
    invoice = open_invoice(stripe_client, who.customer)
    assert invoice.status == "open"
    intent = stripe_client.v1.payment_intents.create(
        params={"amount": 4200, "currency": "usd", "customer": who.customer}
    )
    attached = stripe_client.v1.invoices.attach_payment(
        invoice.id, params={"payment_intent": intent.id}
    )
    assert attached.status == "open"
    payments = stripe_client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    assert [p.payment.payment_intent for p in payments] == [intent.id]
    stripe_client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    paid = stripe_client.v1.invoices.retrieve(invoice.id)
    assert (paid.status, paid.amount_paid) == ("paid", 4200)
    assert "invoice.paid" in event_types(stripe_client, prefixes=("invoice.",))

    with pytest.raises(stripe.InvalidRequestError) as twice:
        stripe_client.v1.invoices.attach_payment(
            open_invoice(stripe_client, who.customer).id, params={"payment_intent": intent.id}
        )
    assert twice.value.param == "payment_intent"


def test_attach_succeeded_and_refusals(stripe_client: stripe.StripeClient) -> None:
    who = customer_on_clock(stripe_client, card=None)
    invoice = open_invoice(stripe_client, who.customer, amount=1500)
    done = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1500,
            "currency": "usd",
            "customer": who.customer,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )
    assert done.status == "succeeded"
    paid = stripe_client.v1.invoices.attach_payment(invoice.id, params={"payment_intent": done.id})
    assert paid.status == "paid"

    other = open_invoice(stripe_client, who.customer, amount=900)
    wrong_amount = stripe_client.v1.payment_intents.create(
        params={"amount": 800, "currency": "usd", "customer": who.customer}
    )
    with pytest.raises(stripe.InvalidRequestError) as amount:
        stripe_client.v1.invoices.attach_payment(
            other.id, params={"payment_intent": wrong_amount.id}
        )
    assert amount.value.param == "payment_intent"
    with pytest.raises(stripe.InvalidRequestError) as closed:
        stripe_client.v1.invoices.attach_payment(
            invoice.id, params={"payment_intent": wrong_amount.id}
        )
    assert "open invoice" in str(closed.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_client.v1.invoices.attach_payment(other.id)
    assert missing.value.param == "payment_intent"
    assert stripe_client.v1.invoices.retrieve(other.id).status == "open"
