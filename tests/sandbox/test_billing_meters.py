"""Billing meters, meter events and usage-based subscriptions, with the real SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import stripe

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState
from tests.sandbox.billing_support import (
    DAY,
    HOUR,
    JAN_1_2026,
    advance,
    complete_checkout,
    customer_on_clock,
    event_types,
)
from tests.sandbox.shapes import assert_stripe_shape
from tests.sandbox_fixtures import ServedApp


def make_meter(client: stripe.StripeClient, **params: Any) -> Any:
    return client.v1.billing.meters.create(
        params={
            "display_name": "API requests",
            "event_name": "api_request",
            "default_aggregation": {"formula": "sum"},
            **params,
        }
    )


def send(client: stripe.StripeClient, customer: str, value: int, at: int, **params: Any) -> Any:
    return client.v1.billing.meter_events.create(
        params={
            "event_name": "api_request",
            "payload": {"stripe_customer_id": customer, "value": str(value)},
            "timestamp": at,
            **params,
        }
    )


def test_meter_lifecycle(stripe_client: stripe.StripeClient) -> None:
    meter = make_meter(
        stripe_client, customer_mapping={"event_payload_key": "stripe_customer_id", "type": "by_id"}
    )
    assert_stripe_shape(meter, "billing.meter")
    assert meter.id.startswith("mtr_")
    assert meter.status == "active"
    assert meter.value_settings.event_payload_key == "value"
    assert stripe_client.v1.billing.meters.retrieve(meter.id).display_name == "API requests"
    renamed = stripe_client.v1.billing.meters.update(meter.id, params={"display_name": "Calls"})
    assert renamed.display_name == "Calls"

    off = stripe_client.v1.billing.meters.deactivate(meter.id)
    assert off.status == "inactive"
    assert off.status_transitions.deactivated_at is not None
    listed = stripe_client.v1.billing.meters.list(params={"status": "inactive"})
    assert [m.id for m in listed.data] == [meter.id]
    assert stripe_client.v1.billing.meters.list(params={"status": "active"}).data == []
    with pytest.raises(stripe.InvalidRequestError) as refused:
        send(stripe_client, "cus_x", 1, JAN_1_2026)
    assert refused.value.code == "archived_meter"

    on = stripe_client.v1.billing.meters.reactivate(meter.id)
    assert on.status == "active"
    assert on.status_transitions.deactivated_at is None
    assert event_types(stripe_client, prefixes=("billing.meter.",)) == [
        "billing.meter.created",
        "billing.meter.updated",
        "billing.meter.deactivated",
        "billing.meter.reactivated",
    ]


def test_meter_refusals(stripe_client: stripe.StripeClient) -> None:
    make_meter(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        make_meter(stripe_client)
    assert duplicate.value.param == "event_name"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_client.v1.billing.meters.create(
            params={"display_name": "x", "event_name": "y"}  # type: ignore[typeddict-item]
        )
    assert missing.value.param == "default_aggregation"
    with pytest.raises(stripe.InvalidRequestError) as formula:
        make_meter(stripe_client, event_name="z", default_aggregation={"formula": "avg"})
    assert formula.value.param == "default_aggregation[formula]"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        stripe_client.v1.billing.meters.retrieve("mtr_nope")
    assert unknown.value.http_status == 404


def test_meter_events_idempotent_and_summaries(stripe_client: stripe.StripeClient) -> None:
    who = customer_on_clock(stripe_client, card=None, start=JAN_1_2026 + DAY)
    meter = make_meter(stripe_client)
    first = send(stripe_client, who.customer, 25, JAN_1_2026, identifier="req-1")
    assert_stripe_shape(first, "billing.meter_event")
    assert first.identifier == "req-1"
    assert first.payload["value"] == "25"
    again = send(stripe_client, who.customer, 999, JAN_1_2026, identifier="req-1")
    assert again.payload["value"] == "25"  # the resent event counts once
    send(stripe_client, who.customer, 5, JAN_1_2026 + HOUR + 60)
    generated = send(stripe_client, who.customer, 7, JAN_1_2026 - DAY)
    assert generated.identifier

    summaries = stripe_client.v1.billing.meters.event_summaries.list(
        meter.id,
        params={"customer": who.customer, "start_time": JAN_1_2026, "end_time": JAN_1_2026 + DAY},
    )
    assert len(summaries.data) == 1
    assert_stripe_shape(summaries.data[0], "billing.meter_event_summary")
    assert summaries.data[0].aggregated_value == 30
    hourly = stripe_client.v1.billing.meters.event_summaries.list(
        meter.id,
        params={
            "customer": who.customer,
            "start_time": JAN_1_2026,
            "end_time": JAN_1_2026 + 3 * HOUR,
            "value_grouping_window": "hour",
        },
    )
    assert [s.aggregated_value for s in hourly.data] == [0, 5, 25]  # newest first

    adjustment = stripe_client.v1.billing.meter_event_adjustments.create(
        params={"event_name": "api_request", "type": "cancel", "cancel": {"identifier": "req-1"}}
    )
    assert_stripe_shape(adjustment, "billing.meter_event_adjustment")
    after = stripe_client.v1.billing.meters.event_summaries.list(
        meter.id,
        params={"customer": who.customer, "start_time": JAN_1_2026, "end_time": JAN_1_2026 + DAY},
    )
    assert after.data[0].aggregated_value == 5


def test_meter_event_refusals(stripe_client: stripe.StripeClient) -> None:
    who = customer_on_clock(stripe_client, card=None)
    with pytest.raises(stripe.InvalidRequestError) as no_meter:
        send(stripe_client, who.customer, 1, JAN_1_2026)
    assert no_meter.value.code == "no_meter"
    make_meter(stripe_client)
    cases = [
        ({"payload": {"value": "1"}}, "meter_event_no_customer_defined"),
        (
            {"payload": {"stripe_customer_id": "cus_nope", "value": "1"}},
            "meter_event_customer_not_found",
        ),
        (
            {"payload": {"stripe_customer_id": who.customer, "value": "ten"}},
            "meter_event_invalid_value",
        ),
        ({"timestamp": JAN_1_2026 - 40 * DAY}, "timestamp_too_far_in_past"),
        ({"timestamp": JAN_1_2026 + HOUR}, "timestamp_in_future"),
    ]
    for params, code in cases:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            send(stripe_client, who.customer, 1, JAN_1_2026, **params)
        assert refused.value.code == code, params
    meter = stripe_client.v1.billing.meters.list().data[0]
    with pytest.raises(stripe.InvalidRequestError) as misaligned:
        stripe_client.v1.billing.meters.event_summaries.list(
            meter.id,
            params={
                "customer": who.customer,
                "start_time": JAN_1_2026 + 1,
                "end_time": JAN_1_2026 + DAY,
            },
        )
    assert misaligned.value.param == "start_time"


def metered_price(client: stripe.StripeClient, meter_id: str, unit_amount: int = 3) -> str:
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": unit_amount,
            "product_data": {"name": "API calls"},
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
        }
    )
    return str(price.id)


def test_usage_billed_on_the_next_invoice(stripe_client: stripe.StripeClient) -> None:
    """Stripe's usage-based billing guide: a meter, a metered price, a subscription, events,
    and the usage on the invoice at the period's end."""
    who = customer_on_clock(stripe_client)
    meter = make_meter(stripe_client)
    price = metered_price(stripe_client, meter.id, unit_amount=3)
    sub = stripe_client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": price}]}
    )
    assert sub.status == "active"
    first = stripe_client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert first.amount_due == 0  # nothing used yet
    assert sub["items"].data[0].plan.usage_type == "metered"

    advance(stripe_client, who.clock, JAN_1_2026 + 3 * DAY)
    send(stripe_client, who.customer, 100, JAN_1_2026 + DAY, identifier="a")
    send(stripe_client, who.customer, 20, JAN_1_2026 + 2 * DAY, identifier="b")
    send(stripe_client, who.customer, 20, JAN_1_2026 + 2 * DAY, identifier="b")  # a retry
    period_end = int(sub["items"].data[0].current_period_end)
    advance(stripe_client, who.clock, period_end + 2 * HOUR)
    send(stripe_client, who.customer, 7, period_end + HOUR)  # next period's usage

    renewed = stripe_client.v1.subscriptions.retrieve(sub.id)
    invoice = stripe_client.v1.invoices.retrieve(str(renewed.latest_invoice))
    assert invoice.billing_reason == "subscription_cycle"
    line = invoice.lines.data[0]
    assert line.quantity == 120
    assert line.amount == 360
    assert (line.period.start, line.period.end) == (JAN_1_2026, period_end)
    assert invoice.status == "paid"
    assert invoice.amount_paid == 360

    summary = stripe_client.v1.billing.meters.event_summaries.list(
        meter.id,
        params={"customer": who.customer, "start_time": JAN_1_2026, "end_time": period_end},
    )
    assert summary.data[0].aggregated_value == 120


def test_count_and_last_formulas(stripe_client: stripe.StripeClient) -> None:
    who = customer_on_clock(stripe_client, card=None)
    counted = make_meter(
        stripe_client, event_name="login", default_aggregation={"formula": "count"}
    )
    last = make_meter(stripe_client, event_name="seats", default_aggregation={"formula": "last"})
    for at, seats in ((JAN_1_2026, 3), (JAN_1_2026 + 60, 9), (JAN_1_2026 + 120, 4)):
        stripe_client.v1.billing.meter_events.create(
            params={
                "event_name": "login",
                "payload": {"stripe_customer_id": who.customer},
                "timestamp": at,
            }
        )
        send(stripe_client, who.customer, seats, at, event_name="seats")
    window = {"customer": who.customer, "start_time": JAN_1_2026, "end_time": JAN_1_2026 + HOUR}
    assert (
        stripe_client.v1.billing.meters.event_summaries.list(counted.id, params=window)
        .data[0]
        .aggregated_value
        == 3
    )
    assert (
        stripe_client.v1.billing.meters.event_summaries.list(last.id, params=window)
        .data[0]
        .aggregated_value
        == 4
    )


def test_usage_based_billing_guide(stripe_client: stripe.StripeClient) -> None:
    """Stripe's "Set up usage-based billing" guide as written: meter, metered price, customer,
    subscription, meter events (no timestamp), then the preview invoice shows the usage."""
    meter = stripe_client.v1.billing.meters.create(
        params={
            "display_name": "Alpaca AI tokens",
            "event_name": "alpaca_ai_tokens",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )
    price = stripe_client.v1.prices.create(
        params={
            "product_data": {"name": "Alpaca AI tokens"},
            "currency": "usd",
            "unit_amount": 4,
            "billing_scheme": "per_unit",
            "recurring": {"usage_type": "metered", "interval": "month", "meter": meter.id},
        }
    )
    who = customer_on_clock(stripe_client)
    subscription = stripe_client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": price.id}]}
    )
    for _ in range(3):
        stripe_client.v1.billing.meter_events.create(
            params={
                "event_name": "alpaca_ai_tokens",
                "payload": {"value": "25", "stripe_customer_id": who.customer},
            }
        )
    preview = stripe_client.v1.invoices.create_preview(params={"subscription": subscription.id})
    assert preview.lines.data[0].quantity == 75
    assert preview.amount_due == 300


def test_metered_prices_and_quantities(stripe_client: stripe.StripeClient) -> None:
    """A metered price needs a meter; a quantity is refused for it where Stripe refuses it,
    and Checkout takes it without one."""
    meter = make_meter(stripe_client)
    product = stripe_client.v1.products.create(params={"name": "Tokens"})
    base = {"currency": "usd", "unit_amount": 1, "product": product.id}
    with pytest.raises(stripe.InvalidRequestError) as no_meter:
        stripe_client.v1.prices.create(
            params={**base, "recurring": {"interval": "month", "usage_type": "metered"}}
        )
    assert no_meter.value.param == "recurring[meter]"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        stripe_client.v1.prices.create(
            params={
                **base,
                "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_nope"},
            }
        )
    assert (unknown.value.http_status, unknown.value.param) == (404, "recurring[meter]")
    with pytest.raises(stripe.InvalidRequestError) as licensed:
        stripe_client.v1.prices.create(
            params={**base, "recurring": {"interval": "month", "meter": meter.id}}
        )
    assert licensed.value.param == "recurring[meter]"

    price = metered_price(stripe_client, meter.id)
    who = customer_on_clock(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as quantity:
        stripe_client.v1.subscriptions.create(
            params={"customer": who.customer, "items": [{"price": price, "quantity": 2}]}
        )
    assert quantity.value.param == "items[0][quantity]"
    assert "usage_type is `metered`" in str(quantity.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as checkout_quantity:
        stripe_client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "line_items": [{"price": price, "quantity": 1}],
                "success_url": "https://example.com/ok",
            }
        )
    assert checkout_quantity.value.param == "line_items[0][quantity]"
    session = stripe_client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": who.customer,
            "line_items": [{"price": price}],
            "success_url": "https://example.com/ok",
        }
    )
    assert session.amount_total == 0
    complete_checkout(stripe_client, session.id)
    subs = stripe_client.v1.subscriptions.list(params={"customer": who.customer}).data
    assert [s["items"].data[0].price.id for s in subs] == [price]


def test_cancellation_bills_the_last_usage(stripe_client: stripe.StripeClient) -> None:
    """Ending at the period's end, or canceled now with invoice_now, the usage not yet invoiced
    is billed on a final invoice."""
    meter = make_meter(stripe_client)
    price = metered_price(stripe_client, meter.id, unit_amount=5)

    who = customer_on_clock(stripe_client)
    sub = stripe_client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": price}], "cancel_at_period_end": True}
    )
    advance(stripe_client, who.clock, JAN_1_2026 + 3 * DAY)
    send(stripe_client, who.customer, 40, JAN_1_2026 + DAY)
    end = int(sub["items"].data[0].current_period_end)
    advance(stripe_client, who.clock, end + HOUR)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    final = stripe_client.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0]
    assert (final.lines.data[0].quantity, final.amount_paid, final.status) == (40, 200, "paid")

    other = customer_on_clock(stripe_client, email="other@example.com")
    now_sub = stripe_client.v1.subscriptions.create(
        params={"customer": other.customer, "items": [{"price": price}]}
    )
    advance(stripe_client, other.clock, JAN_1_2026 + 3 * DAY)
    send(stripe_client, other.customer, 12, JAN_1_2026 + 2 * DAY)
    stripe_client.v1.subscriptions.cancel(now_sub.id, params={"invoice_now": True})
    last = stripe_client.v1.invoices.list(params={"subscription": now_sub.id, "limit": 1}).data[0]
    assert (last.lines.data[0].quantity, last.amount_paid) == (12, 60)


def test_usage_and_credits_survive_a_restart(tmp_path: Path) -> None:
    """Meters, meter events (and their identifiers), cancellations and credit grants are in the
    state file: after a restart the usage is billed once, less the credits."""
    path = tmp_path / "sandbox.json"
    served = ServedApp(create_sandbox_app(state_file=path))
    try:
        client = stripe.StripeClient(
            "sk_test_meters_restart", base_addresses={"api": served.url}, max_network_retries=0
        )
        who = customer_on_clock(client)
        meter = make_meter(client)
        price = metered_price(client, meter.id, unit_amount=2)
        sub = client.v1.subscriptions.create(
            params={"customer": who.customer, "items": [{"price": price}]}
        )
        client.v1.billing.credit_grants.create(
            params={
                "customer": who.customer,
                "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 50}},
                "applicability_config": {"scope": {"price_type": "metered"}},
            }
        )
        advance(client, who.clock, JAN_1_2026 + 3 * DAY)
        send(client, who.customer, 100, JAN_1_2026 + DAY, identifier="kept")
        send(client, who.customer, 999, JAN_1_2026 + DAY, identifier="canceled")
        client.v1.billing.meter_event_adjustments.create(
            params={
                "event_name": "api_request",
                "type": "cancel",
                "cancel": {"identifier": "canceled"},
            }
        )
    finally:
        served.stop()

    served = ServedApp(create_sandbox_app(SandboxState(path)))
    try:
        client = stripe.StripeClient(
            "sk_test_meters_restart", base_addresses={"api": served.url}, max_network_retries=0
        )
        send(client, who.customer, 100, JAN_1_2026 + DAY, identifier="kept")  # a retry
        end = int(sub["items"].data[0].current_period_end)
        advance(client, who.clock, end + 2 * HOUR)
        invoice = client.v1.invoices.retrieve(
            str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
        )
        assert (invoice.lines.data[0].quantity, invoice.subtotal) == (100, 200)
        assert (invoice.total, invoice.amount_paid) == (150, 150)
    finally:
        served.stop()
