"""Invoices and invoice payments: shapes, lists, pay, void, uncollectible, webhooks."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest
import stripe

from tests.sandbox.billing_support import (
    HOUR,
    JAN_1_2026,
    advance,
    attach_card,
    customer_on_clock,
    make_catalog,
    subscribed,
)
from tests.sandbox.shapes import assert_stripe_shape

FEB_1_2026 = JAN_1_2026 + 31 * 86_400


def _past_due(client: stripe.StripeClient) -> tuple[str, str, str]:
    """A subscription whose renewal failed: (customer, subscription, open invoice)."""
    _catalog, who, sub = subscribed(client)
    attach_card(client, who.customer, "pm_card_chargeCustomerFail")
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    invoice = str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    return who.customer, str(sub.id), invoice


def test_invoice_shapes_lines_and_payments(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    sub = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly, "quantity": 2}]}
    )

    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice), params={"expand": ["payments"]})

    # 2026-10-28: no top-level `subscription` on an invoice (it is under `parent`), and
    # `payments` only when asked for with expand[]=payments.
    assert_stripe_shape(
        invoice, "invoice", allow_missing=("subscription",), allow_extra=("payments",)
    )
    assert "payment_intent" not in invoice and "charge" not in invoice and "paid" not in invoice
    assert "payments" not in client.v1.invoices.retrieve(invoice.id)
    line = invoice.lines.data[0]
    assert_stripe_shape(line, "line_item")
    assert (line.quantity, line.amount, line.pricing.price_details.price) == (
        2,
        4000,
        catalog.monthly,
    )
    assert line.description == "2 \u00d7 Premium (at $20.00 / month)"
    assert invoice.number is not None and invoice.number.endswith("-0001")
    payment = invoice.payments.data[0]
    assert_stripe_shape(payment, "invoice_payment")
    assert payment.payment.type == "payment_intent"
    assert client.v1.invoice_payments.retrieve(payment.id).invoice == invoice.id
    listed = client.v1.invoice_payments.list(params={"invoice": invoice.id, "status": "paid"})
    assert [p.id for p in listed.data] == [payment.id]
    lines = client.v1.invoices.line_items.list(invoice.id)
    assert [item.id for item in lines.data] == [line.id]
    found = client.v1.invoices.search(params={"query": f"subscription:'{sub.id}'"})
    assert [i.id for i in found.data] == [invoice.id]


def test_pay_void_and_uncollectible(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    customer, sub, invoice_id = _past_due(client)
    assert [i.id for i in client.v1.invoices.list(params={"status": "open"}).data] == [invoice_id]

    with pytest.raises(stripe.CardError) as declined:
        client.v1.invoices.pay(invoice_id)
    assert declined.value.code == "card_declined"
    assert client.v1.invoices.retrieve(invoice_id).attempt_count == 2

    marked = client.v1.invoices.mark_uncollectible(invoice_id)
    assert marked.status == "uncollectible"
    assert marked.next_payment_attempt is None
    paid = client.v1.invoices.pay(invoice_id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_remaining) == ("paid", 0)
    assert client.v1.subscriptions.retrieve(sub).status == "active"

    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(invoice_id)
    assert customer


def test_void_an_open_invoice(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _, _, invoice_id = _past_due(client)

    voided = client.v1.invoices.void_invoice(invoice_id)

    assert voided.status == "void"
    assert voided.status_transitions.voided_at is not None
    assert client.v1.events.list().data[0].type == "invoice.voided"
    payments = client.v1.invoice_payments.list(params={"invoice": invoice_id}).data
    assert [p.status for p in payments] == ["canceled"]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(invoice_id)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.invoices.retrieve("in_missing")
    assert missing.value.http_status == 404


def test_hosted_invoice_page_pays_a_past_due_invoice(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _, sub, invoice_id = _past_due(client)
    invoice = client.v1.invoices.retrieve(invoice_id)
    url = str(invoice.hosted_invoice_url)
    assert url.startswith("http://127.0.0.1:") and f"/i/{invoice_id}_" in url
    page = httpx.get(url)
    assert page.status_code == 200 and "$20.00" in page.text
    assert httpx.get(url.replace(f"{invoice_id}_", f"{invoice_id}_0")).status_code == 404

    declined = httpx.post(url, data={"payment_method": "pm_card_chargeDeclined"})
    assert "declined" in unquote(declined.headers["location"]).lower()
    challenge = httpx.post(url, data={"payment_method": "pm_card_authenticationRequired"})
    assert challenge.headers["location"] == f"{url}/authenticate"
    assert "Complete authentication" in httpx.get(f"{url}/authenticate").text
    done = httpx.post(f"{url}/authenticate", data={"outcome": "complete"})

    assert done.headers["location"] == url
    assert "This invoice is paid" in httpx.get(url).text
    assert client.v1.invoices.retrieve(invoice_id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub).status == "active"


def test_one_off_invoice_from_invoice_items(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    setup_fee = client.v1.prices.create(
        params={"product": catalog.product, "currency": "usd", "unit_amount": 1500}
    )
    first = client.v1.invoice_items.create(
        params={
            "customer": who.customer,
            "amount": 2500,
            "currency": "usd",
            "description": "Consulting",
        }
    )
    second = client.v1.invoice_items.create(
        params={"customer": who.customer, "pricing": {"price": setup_fee.id}, "quantity": 2}
    )
    assert (first.amount, first.invoice, first.proration, first.pricing) == (
        2500,
        None,
        False,
        None,
    )
    assert second.amount == 3000
    assert_stripe_shape(second, "invoiceitem")

    invoice = client.v1.invoices.create(
        params={"customer": who.customer, "pending_invoice_items_behavior": "include"}
    )
    assert (invoice.status, invoice.billing_reason, invoice.total) == ("draft", "manual", 5500)
    assert invoice.parent is None
    extra = client.v1.invoice_items.create(
        params={"customer": who.customer, "amount": -500, "currency": "usd", "invoice": invoice.id}
    )
    assert extra.invoice == invoice.id
    client.v1.invoice_items.delete(second.id)
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert [line.amount for line in invoice.lines.data] == [2500, -500]
    assert invoice.total == 2000

    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    assert (invoice.status, invoice.amount_due) == ("open", 2000)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.create(
            params={
                "customer": who.customer,
                "amount": 100,
                "currency": "usd",
                "invoice": invoice.id,
            }
        )
    paid = client.v1.invoices.pay(invoice.id)
    assert (paid.status, paid.amount_paid) == ("paid", 2000)
    assert (
        client.v1.invoice_items.list(params={"customer": who.customer, "pending": True}).data == []
    )


def test_auto_advance_finalizes_and_charges_after_an_hour(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    who = customer_on_clock(client)
    client.v1.invoice_items.create(
        params={"customer": who.customer, "amount": 1234, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(
        params={
            "customer": who.customer,
            "auto_advance": True,
            "pending_invoice_items_behavior": "include",
        }
    )
    assert invoice.automatically_finalizes_at == JAN_1_2026 + HOUR

    advance(client, who.clock, JAN_1_2026 + HOUR + 60)

    invoice = client.v1.invoices.retrieve(invoice.id)
    assert (invoice.status, invoice.amount_paid) == ("paid", 1234)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.create(
            params={"customer": who.customer, "collection_method": "send_invoice"}
        )
    assert refused.value.param == "days_until_due"  # send_invoice needs a due date


def test_create_preview_shows_what_a_plan_change_will_cost(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    item = sub["items"].data[0].id
    advance(client, who.clock, JAN_1_2026 + 15 * 86_400)
    before = len(client.v1.invoices.list(params={"customer": who.customer}).data)

    renewal = client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert (renewal.billing_reason, renewal.total) == ("upcoming", 2000)
    assert renewal.id.startswith("upcoming_in_")
    assert renewal.lines.data[0].period.start == FEB_1_2026
    change = {"items": [{"id": item, "price": catalog.monthly_plus}]}
    next_invoice = client.v1.invoices.create_preview(
        params={"subscription": sub.id, "subscription_details": change}
    )
    now_invoice = client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {**change, "proration_behavior": "always_invoice"},
        }
    )
    assert next_invoice.billing_reason == "upcoming"
    assert now_invoice.billing_reason == "subscription_update"
    assert next_invoice.total == 5000 + now_invoice.total
    assert len(client.v1.invoices.list(params={"customer": who.customer}).data) == before
    assert client.v1.invoice_items.list(params={"customer": who.customer}).data == []

    changed = client.v1.subscriptions.update(
        sub.id,
        params={**change, "proration_behavior": "always_invoice"},  # type: ignore[arg-type]
    )
    assert client.v1.invoices.retrieve(str(changed.latest_invoice)).total == now_invoice.total
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.create_preview(params={"customer": who.customer})
    assert refused.value.param == "subscription"
