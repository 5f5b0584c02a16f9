"""`collection_method=send_invoice` through the official SDK: invoices emailed with a due date,
`send`, `invoice.sent`, open until paid (`paid_out_of_band`, or a card), `invoice.overdue`, and
subscriptions collected that way."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.billing_support import (
    DAY,
    HOUR,
    JAN_1_2026,
    advance,
    customer_on_clock,
    event_types,
    last_event_id,
    make_catalog,
)

FEB_1_2026 = JAN_1_2026 + 31 * DAY


def test_a_sent_invoice_stays_open_until_paid_out_of_band(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    who = customer_on_clock(client)  # has a card: it must not be charged
    client.v1.invoice_items.create(
        params={"customer": who.customer, "amount": 4200, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(
        params={
            "customer": who.customer,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "pending_invoice_items_behavior": "include",
        }
    )
    assert (invoice.collection_method, invoice.due_date) == ("send_invoice", JAN_1_2026 + 30 * DAY)
    mark = last_event_id(client)

    invoice = client.v1.invoices.send_invoice(invoice.id)

    assert (invoice.status, invoice.amount_due, invoice.amount_paid) == ("open", 4200, 0)
    assert event_types(client, since=mark, prefixes=("invoice.",)) == [
        "invoice.finalized",
        "invoice.sent",
    ]
    assert client.v1.payment_intents.list(params={"customer": who.customer}).data == []
    client.v1.invoices.send_invoice(invoice.id)  # sent again: still open
    advance(client, who.clock, JAN_1_2026 + 10 * DAY)
    assert client.v1.invoices.retrieve(invoice.id).status == "open"

    paid = client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 4200, 0)
    advance(client, who.clock, JAN_1_2026 + 31 * DAY)
    assert "invoice.overdue" not in event_types(client, since=mark)


def test_an_unpaid_sent_invoice_becomes_overdue_then_is_paid_by_card(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    who = customer_on_clock(client)
    due = JAN_1_2026 + 5 * DAY
    invoice = client.v1.invoices.create(
        params={"customer": who.customer, "collection_method": "send_invoice", "due_date": due}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 900}]})
    client.v1.invoices.finalize_invoice(invoice.id)  # auto_advance off: finalized, not sent
    mark = last_event_id(client)

    advance(client, who.clock, due + HOUR)

    assert event_types(client, since=mark, prefixes=("invoice.",)) == ["invoice.overdue"]
    paid = client.v1.invoices.pay(invoice.id, params={"payment_method": who.payment_method})
    assert (paid.status, paid.amount_paid) == ("paid", 900)


def test_a_subscription_sends_its_invoices(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    mark = last_event_id(client)

    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "collection_method": "send_invoice",
            "days_until_due": 7,
        }
    )

    assert (sub.status, sub.collection_method, sub.days_until_due) == ("active", "send_invoice", 7)
    first = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (first.status, first.collection_method, first.due_date) == (
        "open",
        "send_invoice",
        JAN_1_2026 + 7 * DAY,
    )
    assert "invoice.sent" in event_types(client, since=mark)
    assert client.v1.payment_intents.list(params={"customer": who.customer}).data == []

    advance(client, who.clock, JAN_1_2026 + 7 * DAY + HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    client.v1.invoices.pay(first.id, params={"paid_out_of_band": True})
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert (renewal.billing_reason, renewal.status, renewal.due_date) == (
        "subscription_cycle",
        "open",
        FEB_1_2026 + 7 * DAY,
    )

    # Back to automatic collection: the next renewal is charged.
    sub = client.v1.subscriptions.update(
        sub.id, params={"collection_method": "charge_automatically"}
    )
    assert (sub.collection_method, sub.days_until_due) == ("charge_automatically", None)


def test_send_invoice_refusals(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    who = customer_on_clock(client)
    auto = client.v1.invoices.create(params={"customer": who.customer})

    with pytest.raises(stripe.InvalidRequestError) as not_sent:
        client.v1.invoices.send_invoice(auto.id)
    assert not_sent.value.param == "id"
    with pytest.raises(stripe.InvalidRequestError) as days:
        client.v1.invoices.create(params={"customer": who.customer, "days_until_due": 3})
    assert days.value.param == "days_until_due"
    with pytest.raises(stripe.InvalidRequestError) as past:
        client.v1.invoices.create(
            params={
                "customer": who.customer,
                "collection_method": "send_invoice",
                "due_date": JAN_1_2026 - DAY,
            }
        )
    assert past.value.param == "due_date"
    # A draft switches to send_invoice, with its due date.
    updated = client.v1.invoices.update(
        auto.id, params={"collection_method": "send_invoice", "days_until_due": 14}
    )
    assert (updated.collection_method, updated.due_date) == ("send_invoice", JAN_1_2026 + 14 * DAY)
    client.v1.invoices.finalize_invoice(auto.id)
    with pytest.raises(stripe.InvalidRequestError) as finalized:
        client.v1.invoices.update(auto.id, params={"days_until_due": 3})
    assert finalized.value.code == "invoice_not_editable"
