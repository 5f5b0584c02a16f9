"""The customer balance through the official SDK, as Stripe's "customer credit balance" guide
uses it: a credit as a balance transaction, applied to the next invoice, given back if the
invoice is voided; and every balance change recorded in the ledger."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.shapes import assert_stripe_shape


def _customer(client: stripe.StripeClient, **params: object) -> stripe.Customer:
    return client.v1.customers.create(params={"email": "credit@example.com", **params})  # type: ignore[arg-type]


def test_a_credit_is_applied_to_the_next_invoice(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    customer = _customer(client)
    credit = client.v1.customers.balance_transactions.create(
        customer.id,
        params={
            "amount": -500,
            "currency": "usd",
            "description": "Goodwill credit",
            "metadata": {"ticket": "T-9"},
        },
    )
    assert_stripe_shape(credit, "customer_balance_transaction")
    assert (credit.type, credit.amount, credit.ending_balance) == ("adjustment", -500, -500)
    assert client.v1.customers.retrieve(customer.id).balance == -500

    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 2000, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    assert (invoice.total, invoice.amount_due) == (2000, 1500)
    assert (invoice.starting_balance, invoice.ending_balance) == (-500, 0)
    assert client.v1.customers.retrieve(customer.id).balance == 0
    ledger = client.v1.customers.balance_transactions.list(customer.id).data
    assert [(t.type, t.amount, t.invoice) for t in ledger] == [
        ("applied_to_invoice", 500, invoice.id),
        ("adjustment", -500, None),
    ]

    client.v1.invoices.void_invoice(invoice.id)
    assert client.v1.customers.retrieve(customer.id).balance == -500
    back = client.v1.customers.balance_transactions.list(
        customer.id, params={"invoice": invoice.id}
    ).data
    assert [(t.type, t.amount) for t in back] == [
        ("unapplied_from_invoice", -500),
        ("applied_to_invoice", 500),
    ]


def test_balance_updates_are_ledger_entries(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    customer = _customer(client, balance=1200)
    customer = client.v1.customers.update(customer.id, params={"balance": -300})
    assert customer.balance == -300
    ledger = client.v1.customers.balance_transactions.list(customer.id).data
    assert [(t.type, t.amount, t.ending_balance) for t in ledger] == [
        ("adjustment", -1500, -300),
        ("initial", 1200, 1200),
    ]
    one = client.v1.customers.balance_transactions.update(
        customer.id, ledger[0].id, params={"description": "Migrated", "metadata": {"k": "v"}}
    )
    assert (one.description, one.metadata["k"]) == ("Migrated", "v")
    assert client.v1.customers.balance_transactions.retrieve(customer.id, one.id).id == one.id
    events = [e for e in client.v1.events.list().data if e.type == "customer.updated"]
    assert events[0].data.previous_attributes["balance"] == 1200


def test_bad_balance_transactions_are_refused(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    customer = _customer(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.balance_transactions.create(customer.id, params={"amount": 100})  # type: ignore[typeddict-item]
    assert (info.value.code, info.value.param) == ("parameter_missing", "currency")
    client.v1.customers.balance_transactions.create(
        customer.id, params={"amount": 100, "currency": "usd"}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.balance_transactions.create(
            customer.id, params={"amount": 100, "currency": "eur"}
        )
    assert info.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.balance_transactions.retrieve(customer.id, "cbtxn_missing")
    assert info.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.balance_transactions.list("cus_missing")
    assert info.value.http_status == 404
