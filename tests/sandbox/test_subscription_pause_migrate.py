"""Pausing a subscription (`/pause`, with usage billed and unused time credited) and migrating
it to flexible billing mode, with the real SDK."""

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
    make_catalog,
)
from tests.sandbox.test_billing_meters import make_meter, metered_price, send


def test_pause_bills_usage_and_credits_unused_time(stripe_client: stripe.StripeClient) -> None:
    catalog = make_catalog(stripe_client)  # monthly: 20.00
    meter = make_meter(stripe_client)
    usage_price = metered_price(stripe_client, meter.id, unit_amount=10)
    who = customer_on_clock(stripe_client)
    sub = stripe_client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}, {"price": usage_price}],
        }
    )
    start = int(sub["items"].data[0].current_period_start)
    end = int(sub["items"].data[0].current_period_end)
    halfway = start + (end - start) // 2
    advance(stripe_client, who.clock, halfway)
    send(stripe_client, who.customer, 30, halfway - DAY, identifier="before-pause")

    paused = stripe_client.v1.subscriptions.pause(
        sub.id,
        params={
            "type": "subscription",
            "bill_for": {
                "outstanding_usage_through": {"type": "now"},
                "unused_time_from": {"type": "now"},
            },
        },
    )
    assert paused.status == "paused"
    invoice = stripe_client.v1.invoices.retrieve(
        str(stripe_client.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].id)
    )
    amounts = sorted(line.amount for line in invoice.lines.data)
    assert amounts == [-1000, 300]  # half of 20.00 back; 30 units at 10 cents
    assert invoice.billing_reason == "subscription_update"
    types = event_types(stripe_client, prefixes=("customer.subscription.",))
    assert types[-2:] == ["customer.subscription.updated", "customer.subscription.paused"]
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.pause(sub.id)

    # No invoice while paused; resuming starts a new cycle that does not bill the usage again.
    advance(stripe_client, who.clock, end + 2 * HOUR)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "paused"
    resumed = stripe_client.v1.subscriptions.resume(sub.id)
    assert resumed.status == "active"
    renewal = stripe_client.v1.invoices.retrieve(str(resumed.latest_invoice))
    by_price = {line.pricing.price_details.price: line for line in renewal.lines.data}
    assert by_price[usage_price].quantity == 0
    assert by_price[catalog.monthly].amount == 2000


def test_pause_without_billing_and_pending_items(stripe_client: stripe.StripeClient) -> None:
    catalog = make_catalog(stripe_client)
    who = customer_on_clock(stripe_client)
    sub = stripe_client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly}]}
    )
    advance(stripe_client, who.clock, JAN_1_2026 + 10 * DAY)
    invoices_before = len(stripe_client.v1.invoices.list(params={"customer": who.customer}).data)
    paused = stripe_client.v1.subscriptions.pause(
        sub.id,
        params={
            "bill_for": {"unused_time_from": {"type": "item_current_period_start"}},
            "invoicing_behavior": "pending_invoice_item",
        },
    )
    assert paused.status == "paused"
    assert len(stripe_client.v1.invoices.list(params={"customer": who.customer}).data) == (
        invoices_before
    )
    pending = stripe_client.v1.invoice_items.list(
        params={"customer": who.customer, "pending": True}
    ).data
    assert [i.amount for i in pending] == [-2000]


def test_migrate_to_flexible(stripe_client: stripe.StripeClient) -> None:
    catalog = make_catalog(stripe_client)
    who = customer_on_clock(stripe_client)
    sub = stripe_client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly}]}
    )
    assert sub.billing_mode.type == "classic"
    migrated = stripe_client.v1.subscriptions.migrate(
        sub.id, params={"billing_mode": {"type": "flexible"}}
    )
    assert migrated.billing_mode.type == "flexible"
    assert migrated.billing_mode.flexible.proration_discounts == "itemized"
    assert migrated.billing_mode.updated_at == JAN_1_2026
    with pytest.raises(stripe.InvalidRequestError) as again:
        stripe_client.v1.subscriptions.migrate(
            sub.id, params={"billing_mode": {"type": "flexible"}}
        )
    assert again.value.param == "billing_mode[type]"
