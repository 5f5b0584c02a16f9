"""Subscriptions in the sandbox, driven with the official SDK: statuses, renewals, failed
renewals and retries, trials, cancellation, plan changes with prorations."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.billing_support import (
    BILLING_PREFIXES,
    DAY,
    HOUR,
    JAN_1_2026,
    advance,
    attach_card,
    billing_settings,
    customer_on_clock,
    event_types,
    last_event_id,
    make_catalog,
    subscribed,
)
from tests.sandbox.shapes import assert_stripe_shape
from tests.sandbox_fixtures import SandboxServer, WebhookReceiver

FEB_1_2026 = JAN_1_2026 + 31 * DAY
MAR_1_2026 = FEB_1_2026 + 28 * DAY


def add_month(ts: int) -> int:
    from billfold_sandbox.billing.periods import add_intervals

    return add_intervals(ts, "month", 1, 1)


def _prorated(amount: int, start: int, end: int, at: int) -> int:
    """Stripe's proration: to the second, rounded half up."""
    return (amount * (end - at) * 2 + (end - start)) // (2 * (end - start))


def test_create_charges_the_first_invoice_and_is_active(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    mark = last_event_id(client)

    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "metadata": {"account": "42"},
        }
    )

    assert sub.status == "active"
    assert sub.metadata.to_dict() == {"account": "42"}
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (JAN_1_2026, FEB_1_2026)
    assert sub.billing_cycle_anchor == JAN_1_2026
    assert sub.test_clock == who.clock
    assert_stripe_shape(sub, "subscription")
    assert_stripe_shape(item, "subscription_item")

    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice), params={"expand": ["payments"]})
    assert invoice.status == "paid"
    assert invoice.billing_reason == "subscription_create"
    assert (invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (2000, 2000, 0)
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.lines.data[0].parent.subscription_item_details.subscription_item == item.id
    payment = invoice.payments.data[0]
    assert (payment.status, payment.amount_paid, payment.is_default) == ("paid", 2000, True)
    intent = client.v1.payment_intents.retrieve(payment.payment.payment_intent)
    assert (intent.status, intent.amount, intent.customer) == ("succeeded", 2000, who.customer)

    # Stripe announces the subscription first, already active (API creation).
    assert event_types(client, since=mark, prefixes=BILLING_PREFIXES) == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    created = [e for e in client.v1.events.list().data if e.type == "customer.subscription.created"]
    assert created[0].data.object["status"] == "active"


def test_renewal_creates_and_pays_the_next_invoice(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    mark = last_event_id(client)

    advance(client, who.clock, FEB_1_2026 - 3 * DAY + 60)
    upcoming = client.v1.events.list(params={"type": "invoice.upcoming"}).data
    assert len(upcoming) == 1
    preview = upcoming[0].data.object
    assert "id" not in preview
    assert (preview["billing_reason"], preview["amount_due"]) == ("upcoming", 2000)
    assert preview["lines"]["data"][0]["period"].to_dict() == {
        "start": FEB_1_2026,
        "end": MAR_1_2026,
    }
    assert client.v1.invoices.list(params={"subscription": sub.id}).data[0].billing_reason == (
        "subscription_create"
    )
    mark = last_event_id(client)

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)

    sub = client.v1.subscriptions.retrieve(sub.id)
    item = sub["items"].data[0]
    assert sub.status == "active"
    assert (item.current_period_start, item.current_period_end) == (FEB_1_2026, MAR_1_2026)
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.status == "paid"
    assert invoice.created == FEB_1_2026
    assert invoice.status_transitions.finalized_at == FEB_1_2026 + HOUR
    assert invoice.lines.data[0].period.start == FEB_1_2026
    assert event_types(client, since=mark, prefixes=BILLING_PREFIXES) == [
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    listed = client.v1.invoices.list(params={"subscription": sub.id})
    assert [i.billing_reason for i in listed.data] == ["subscription_cycle", "subscription_create"]


def test_failed_renewal_goes_past_due_retries_then_cancels(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    # 4000000000000341: attaches fine, every charge is declined.
    attach_card(client, who.customer, "4000000000000341")
    mark = last_event_id(client)

    first_attempt = FEB_1_2026 + HOUR
    advance(client, who.clock, first_attempt + 60)

    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert invoice.next_payment_attempt == first_attempt + 3 * DAY
    types = event_types(client, since=mark, prefixes=BILLING_PREFIXES)
    assert types[-2:] == ["invoice.payment_failed", "customer.subscription.updated"]
    past_due = [
        e for e in client.v1.events.list().data if e.type == "customer.subscription.updated"
    ]
    assert past_due[0].data.object["status"] == "past_due"
    assert past_due[0].data.previous_attributes["status"] == "active"

    # Retries 3, 5 and 7 days after the first failure, then Stripe's default: cancel.
    advance(client, who.clock, first_attempt + 5 * DAY + 60)
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.attempt_count == 3
    assert invoice.next_payment_attempt == first_attempt + 7 * DAY
    advance(client, who.clock, first_attempt + 7 * DAY + 60)

    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert sub.cancellation_details.reason == "payment_failed"
    assert sub.ended_at == first_attempt + 7 * DAY
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert (invoice.attempt_count, invoice.next_payment_attempt) == (4, None)
    assert event_types(client, since=mark).count("invoice.payment_failed") == 4
    assert event_types(client, since=mark, prefixes=BILLING_PREFIXES)[-1] == (
        "customer.subscription.deleted"
    )


def test_final_failure_can_leave_the_subscription_unpaid(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    billing_settings(client, after_final_failure="unpaid", retry_days=[1])
    _catalog, who, sub = subscribed(client)
    attach_card(client, who.customer, "pm_card_chargeCustomerFail")

    advance(client, who.clock, FEB_1_2026 + HOUR + 2 * DAY)

    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "unpaid"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.attempt_count == 2

    # Paying the invoice with a good card brings the subscription back.
    good = attach_card(client, who.customer, "pm_card_visa", default=False)
    paid = client.v1.invoices.pay(invoice.id, params={"payment_method": good})
    assert paid.status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_past_due_recovers_when_a_retry_succeeds(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    attach_card(client, who.customer, "pm_card_chargeCustomerFail")
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"

    attach_card(client, who.customer, "pm_card_mastercard")
    advance(client, who.clock, FEB_1_2026 + 4 * DAY)

    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.attempt_count) == ("paid", 2)


def test_renewal_needing_authentication_is_paid_on_session(
    stripe_client: stripe.StripeClient,
) -> None:
    """Off-session, a card that always asks for 3-D Secure is declined with
    `authentication_required`; the customer then pays on-session and authenticates."""
    from tests.sandbox.payments_support import authenticate

    client = stripe_client
    _catalog, who, sub = subscribed(client)
    attach_card(client, who.customer, "pm_card_authenticationRequired")
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    invoice_id = str(sub.latest_invoice)

    with pytest.raises(stripe.CardError) as raised:
        client.v1.invoices.pay(invoice_id, params={"off_session": False})
    assert raised.value.code == "authentication_required"
    intent = client.v1.invoice_payments.list(params={"invoice": invoice_id}).data[0]
    assert client.v1.invoices.retrieve(invoice_id).status == "open"

    authenticate(client, intent.payment.payment_intent)

    assert client.v1.invoices.retrieve(invoice_id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_cancel_at_period_end_reactivate_then_end(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    advance(client, who.clock, JAN_1_2026 + 10 * DAY)

    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert (sub.cancel_at_period_end, sub.cancel_at) == (True, FEB_1_2026)
    assert sub.canceled_at == JAN_1_2026 + 10 * DAY
    assert sub.cancellation_details.reason == "cancellation_requested"
    updated = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert updated.data.previous_attributes["cancel_at_period_end"] is False

    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
    assert (sub.cancel_at_period_end, sub.cancel_at, sub.canceled_at) == (False, None, None)
    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    mark = last_event_id(client)

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)

    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", FEB_1_2026)
    assert event_types(client, since=mark, prefixes=BILLING_PREFIXES) == [
        "customer.subscription.deleted"
    ]
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1
    assert client.v1.subscriptions.list(params={"customer": who.customer}).data == []
    everything = client.v1.subscriptions.list(params={"customer": who.customer, "status": "all"})
    assert [s.id for s in everything.data] == [sub.id]


def test_cancel_now_with_proration_credits_the_customer(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    at = JAN_1_2026 + 11 * DAY
    advance(client, who.clock, at)

    canceled = client.v1.subscriptions.cancel(
        sub.id,
        params={
            "prorate": True,
            "invoice_now": True,
            "cancellation_details": {"comment": "moving on"},
        },
    )

    assert (canceled.status, canceled.canceled_at, canceled.ended_at) == ("canceled", at, at)
    assert canceled.cancellation_details.comment == "moving on"
    credit = -_prorated(2000, JAN_1_2026, FEB_1_2026, at)
    final = client.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert final.total == credit
    assert (final.status, final.amount_due) == ("paid", 0)
    assert client.v1.customers.retrieve(who.customer).balance == credit
    assert client.v1.events.list().data[0].type == "customer.subscription.deleted"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.cancel(sub.id)


def test_plan_change_creates_prorations_for_the_next_invoice(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    at = JAN_1_2026 + 15 * DAY
    advance(client, who.clock, at)
    item = sub["items"].data[0]

    sub = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "price": catalog.monthly_plus}]}
    )

    assert sub["items"].data[0].id == item.id
    assert sub["items"].data[0].price.id == catalog.monthly_plus
    credit = -_prorated(2000, JAN_1_2026, FEB_1_2026, at)
    charge = _prorated(5000, JAN_1_2026, FEB_1_2026, at)
    pending = client.v1.invoice_items.list(params={"customer": who.customer, "pending": True})
    assert sorted(i.amount for i in pending.data) == sorted([credit, charge])
    assert all(i.proration for i in pending.data)
    updated = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    previous_items = updated.data.previous_attributes["items"]["data"]
    assert previous_items[0]["price"]["id"] == catalog.monthly

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert renewal.total == 5000 + credit + charge
    assert [line.amount for line in renewal.lines.data] == [credit, charge, 5000]
    assert renewal.status == "paid"
    assert (
        client.v1.invoice_items.list(params={"customer": who.customer, "pending": True}).data == []
    )


def test_plan_change_always_invoice_charges_now(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    at = JAN_1_2026 + 20 * DAY
    advance(client, who.clock, at)

    sub = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "price": catalog.monthly_plus}],
            "proration_behavior": "always_invoice",
        },
    )

    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    expected = _prorated(5000, JAN_1_2026, FEB_1_2026, at) - _prorated(
        2000, JAN_1_2026, FEB_1_2026, at
    )
    assert invoice.billing_reason == "subscription_update"
    assert (invoice.total, invoice.amount_paid, invoice.status) == (expected, expected, "paid")
    assert all(line.parent.subscription_item_details.proration for line in invoice.lines.data)


def test_plan_change_without_proration_and_quantity(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    sub = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly, "quantity": 2}]}
    )
    sub = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "quantity": 3}],
            "proration_behavior": "none",
        },
    )
    assert sub["items"].data[0].quantity == 3
    assert client.v1.invoice_items.list(params={"customer": who.customer}).data == []
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert renewal.total == 6000


def test_interval_change_restarts_the_cycle(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    at = JAN_1_2026 + 10 * DAY
    advance(client, who.clock, at)

    sub = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": sub["items"].data[0].id, "price": catalog.yearly}]}
    )

    item = sub["items"].data[0]
    assert sub.billing_cycle_anchor == at
    assert (item.current_period_start, item.current_period_end) == (at, at + 365 * DAY)
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    credit = -_prorated(2000, JAN_1_2026, FEB_1_2026, at)
    assert invoice.billing_reason == "subscription_update"
    assert (invoice.total, invoice.status) == (20000 + credit, "paid")


def test_trial_then_first_charge(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    mark = last_event_id(client)

    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "trial_period_days": 14,
        }
    )

    trial_end = JAN_1_2026 + 14 * DAY
    assert (sub.status, sub.trial_start, sub.trial_end) == ("trialing", JAN_1_2026, trial_end)
    assert sub["items"].data[0].current_period_end == trial_end
    first = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (first.total, first.status) == (0, "paid")
    assert client.v1.invoice_payments.list(params={"invoice": first.id}).data == []
    mark = last_event_id(client)

    advance(client, who.clock, trial_end - 3 * DAY + 60)
    assert event_types(client, since=mark, prefixes=BILLING_PREFIXES) == [
        "customer.subscription.trial_will_end",
        "invoice.upcoming",
    ]

    advance(client, who.clock, trial_end + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (
        trial_end,
        trial_end + 31 * DAY,
    )
    charged = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (charged.billing_reason, charged.total, charged.status) == (
        "subscription_cycle",
        2000,
        "paid",
    )
    became_active = [
        e
        for e in client.v1.events.list(params={"type": "customer.subscription.updated"}).data
        if e.data.previous_attributes.to_dict().get("status") == "trialing"
    ]
    assert became_active


def test_trial_end_now_starts_billing(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "trial_period_days": 30,
        }
    )
    advance(client, who.clock, JAN_1_2026 + 5 * DAY)
    sub = client.v1.subscriptions.update(sub.id, params={"trial_end": "now"})
    assert (sub.status, sub.trial_end) == ("active", JAN_1_2026 + 5 * DAY)
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.total, invoice.status) == (2000, "paid")


def test_error_if_incomplete_refuses_and_leaves_nothing(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client, card="pm_card_chargeCustomerFail")

    with pytest.raises(stripe.CardError) as raised:
        client.v1.subscriptions.create(
            params={
                "customer": who.customer,
                "items": [{"price": catalog.monthly}],
                "payment_behavior": "error_if_incomplete",
            }
        )

    assert raised.value.code == "card_declined"
    assert raised.value.http_status == 402
    everything = client.v1.subscriptions.list(params={"status": "all"})
    assert everything.data == []
    assert client.v1.invoices.list().data == []
    assert "customer.subscription.created" not in event_types(client)


def test_declined_first_payment_is_incomplete_then_expires(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client, card="pm_card_chargeCustomerFail")

    sub = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly}]}
    )

    assert sub.status == "incomplete"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert invoice.next_payment_attempt is None
    advance(client, who.clock, JAN_1_2026 + 23 * HOUR + 60)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("incomplete_expired", JAN_1_2026 + 23 * HOUR)
    assert client.v1.invoices.retrieve(invoice.id).status == "void"


def test_default_incomplete_waits_for_the_customer_to_confirm(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client, card=None)

    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "payment_behavior": "default_incomplete",
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "expand": ["latest_invoice.confirmation_secret"],
        }
    )

    assert sub.status == "incomplete"
    secret = sub.latest_invoice.confirmation_secret
    assert secret.type == "payment_intent"
    intent_id = secret.client_secret.split("_secret_")[0]
    client.v1.payment_intents.confirm(intent_id, params={"payment_method": "pm_card_visa"})

    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).status == "paid"
    # save_default_payment_method=on_subscription: the card that paid is now the default.
    paid_with = client.v1.payment_intents.retrieve(intent_id).payment_method
    assert sub.default_payment_method == paid_with
    assert sub.payment_settings.save_default_payment_method == "on_subscription"


def test_discount_applies_to_invoices(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    coupon = client.v1.coupons.create(
        params={"percent_off": 25, "duration": "repeating", "duration_in_months": 1}
    )
    who = customer_on_clock(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "discounts": [{"coupon": coupon.id}],
        }
    )
    first = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (first.subtotal, first.total, first.amount_paid) == (2000, 1500, 1500)
    assert first.total_discount_amounts[0].amount == 500
    assert len(sub.discounts) == 1
    expanded = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["discounts"]})
    discount = expanded.discounts[0]
    assert_stripe_shape(discount, "discount")
    assert (discount.source.coupon, discount.subscription) == (coupon.id, sub.id)
    assert discount.end == add_month(JAN_1_2026)
    assert_stripe_shape(client.v1.coupons.retrieve(coupon.id), "coupon")
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    second = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert second.total == 2000  # a one-month coupon ended


def test_subscription_on_the_sandbox_clock_renews(stripe_client: stripe.StripeClient) -> None:
    from tests.sandbox.billing_support import helper

    client = stripe_client
    catalog = make_catalog(client)
    customer = client.v1.customers.create(params={"email": "no-clock@example.com"})
    attach_card(client, customer.id, "pm_card_visa")
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": catalog.monthly}]}
    )
    assert sub.test_clock is None

    helper(client, "post", "/v1/test_helpers/sandbox/clock/advance", seconds=32 * DAY)

    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    assert invoices[0].status == "paid"


def test_list_filters_search_and_refusals(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    monthly = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "metadata": {"team": "a"},
        }
    )
    yearly = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.yearly}]}
    )
    assert [s.id for s in client.v1.subscriptions.list(params={"price": catalog.yearly}).data] == [
        yearly.id
    ]
    assert {s.id for s in client.v1.subscriptions.list(params={"status": "active"}).data} == {
        monthly.id,
        yearly.id,
    }
    found = client.v1.subscriptions.search(params={"query": "metadata['team']:'a'"})
    assert [s.id for s in found.data] == [monthly.id]
    items = client.v1.subscription_items.list(params={"subscription": monthly.id})
    assert items.data[0].price.id == catalog.monthly

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.subscriptions.create(
            params={"customer": who.customer, "items": [{"price": catalog.monthly}], "coupon": "x"}  # type: ignore[typeddict-unknown-key]
        )
    assert unknown.value.code == "parameter_unknown"
    assert unknown.value.param == "coupon"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.create(
            params={"customer": who.customer, "items": [{"price": "price_nope"}]}
        )
    assert (missing.value.http_status, missing.value.param) == (404, "items[0][price]")
    one_time = client.v1.prices.create(
        params={"product": catalog.product, "currency": "usd", "unit_amount": 500}
    )
    with pytest.raises(stripe.InvalidRequestError) as not_recurring:
        client.v1.subscriptions.create(
            params={"customer": who.customer, "items": [{"price": one_time.id}]}
        )
    assert not_recurring.value.param == "items[0][price]"


def test_downgrade_credit_pays_part_of_the_next_invoice(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client, price="monthly_plus")
    at = JAN_1_2026 + 16 * DAY
    advance(client, who.clock, at)

    sub = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "price": catalog.monthly}],
            "proration_behavior": "always_invoice",
        },
    )

    net = _prorated(2000, JAN_1_2026, FEB_1_2026, at) - _prorated(5000, JAN_1_2026, FEB_1_2026, at)
    assert net < 0
    credit_note = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (credit_note.total, credit_note.amount_due, credit_note.status) == (net, 0, "paid")
    assert client.v1.customers.retrieve(who.customer).balance == net

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert (renewal.total, renewal.starting_balance) == (2000, net)
    assert (renewal.amount_due, renewal.amount_paid) == (2000 + net, 2000 + net)
    assert client.v1.customers.retrieve(who.customer).balance == 0


def test_billing_cycle_anchor_now_and_paused_collection(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    at = JAN_1_2026 + 7 * DAY
    advance(client, who.clock, at)

    sub = client.v1.subscriptions.update(sub.id, params={"billing_cycle_anchor": "now"})

    assert sub.billing_cycle_anchor == at
    assert sub["items"].data[0].current_period_end == at + 31 * DAY
    anchored = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert anchored.total == 2000 - _prorated(2000, JAN_1_2026, FEB_1_2026, at)

    sub = client.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "void"}})
    assert sub.pause_collection.behavior == "void"
    advance(client, who.clock, at + 31 * DAY + 2 * HOUR)
    voided = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert (voided.billing_reason, voided.status) == ("subscription_cycle", "void")
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"

    client.v1.subscriptions.update(sub.id, params={"pause_collection": ""})  # type: ignore[typeddict-item]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(sub.id, params={"collection_method": "send_invoice"})
    assert refused.value.param == "days_until_due"  # send_invoice needs days_until_due


def test_trial_without_a_card_pauses_then_resumes(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client, card=None)
    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "trial_period_days": 7,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        }
    )
    mark = last_event_id(client)
    advance(client, who.clock, JAN_1_2026 + 8 * DAY)

    assert client.v1.subscriptions.retrieve(sub.id).status == "paused"
    assert "customer.subscription.paused" in event_types(client, since=mark)

    attach_card(client, who.customer, "pm_card_visa")
    resumed = client.v1.subscriptions.resume(sub.id)

    assert resumed.status == "active"
    assert resumed.billing_cycle_anchor == JAN_1_2026 + 8 * DAY
    invoice = client.v1.invoices.retrieve(str(resumed.latest_invoice))
    assert (invoice.total, invoice.status) == (2000, "paid")
    types = event_types(client, since=mark, prefixes=BILLING_PREFIXES)
    assert types.index("customer.subscription.resumed") < types.index("invoice.paid")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.resume(sub.id)


def test_cancel_at_a_date_inside_the_period(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    cancel_at = JAN_1_2026 + 20 * DAY

    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at": cancel_at})

    assert (sub.cancel_at, sub.cancel_at_period_end, sub.status) == (cancel_at, False, "active")
    advance(client, who.clock, cancel_at + 60)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", cancel_at)
    assert sub.cancellation_details.reason == "cancellation_requested"


def test_error_if_incomplete_update_changes_nothing_when_unpaid(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    attach_card(client, who.customer, "pm_card_chargeCustomerFail")
    advance(client, who.clock, JAN_1_2026 + 5 * DAY)
    mark = last_event_id(client)

    with pytest.raises(stripe.CardError) as refused:
        client.v1.subscriptions.update(
            sub.id,
            params={
                "items": [{"id": sub["items"].data[0].id, "price": catalog.yearly}],
                "payment_behavior": "error_if_incomplete",
            },
        )

    assert refused.value.code == "card_declined"
    after = client.v1.subscriptions.retrieve(sub.id)
    assert after["items"].data[0].price.id == catalog.monthly
    assert (after.status, after.latest_invoice) == ("active", sub.latest_invoice)
    assert [i.id for i in client.v1.invoices.list(params={"subscription": sub.id}).data] == [
        sub.latest_invoice
    ]
    assert event_types(client, since=mark, prefixes=BILLING_PREFIXES) == []
    # The same change with a good card goes through.
    attach_card(client, who.customer, "pm_card_visa")
    changed = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "price": catalog.yearly}],
            "payment_behavior": "error_if_incomplete",
        },
    )
    assert changed["items"].data[0].price.id == catalog.yearly
    assert client.v1.invoices.retrieve(str(changed.latest_invoice)).status == "paid"


def test_a_proration_too_small_to_charge_goes_to_the_next_invoice(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    tiny = client.v1.prices.create(
        params={
            "product": catalog.product,
            "currency": "usd",
            "unit_amount": 2050,
            "recurring": {"interval": "month"},
        }
    )
    at = JAN_1_2026 + 20 * DAY
    advance(client, who.clock, at)

    sub = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "price": tiny.id}],
            "proration_behavior": "always_invoice",
        },
    )

    owed = _prorated(2050, JAN_1_2026, FEB_1_2026, at) - _prorated(2000, JAN_1_2026, FEB_1_2026, at)
    assert 0 < owed < 50
    small = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (small.total, small.amount_due, small.status) == (owed, 0, "paid")
    assert client.v1.customers.retrieve(who.customer).balance == owed
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert (renewal.starting_balance, renewal.amount_due) == (owed, 2050 + owed)
    assert renewal.status == "paid"


def test_renewal_after_the_card_was_removed_fails_cleanly(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    assert who.payment_method is not None
    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "default_payment_method": who.payment_method,
        }
    )
    client.v1.payment_methods.detach(who.payment_method)

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)

    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert client.v1.test_helpers.test_clocks.retrieve(who.clock).status == "ready"


def test_first_payment_needing_3d_secure_waits_then_activates(
    stripe_client: stripe.StripeClient,
) -> None:
    from tests.sandbox.payments_support import authenticate

    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client, card="pm_card_authenticationRequired")

    sub = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly}]}
    )

    assert sub.status == "incomplete"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.status == "open"
    intent = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data[0]
    pi = client.v1.payment_intents.retrieve(intent.payment.payment_intent)
    assert pi.status == "requires_action"
    assert "invoice.payment_action_required" in event_types(client)

    authenticate(client, pi.id)

    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"
    activated = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert activated.data.previous_attributes["status"] == "incomplete"


def test_failed_renewal_webhooks_arrive_signed_and_in_order(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    attach_card(client, who.customer, "4000000000000341")
    _, secret = webhook_receiver.register(
        sandbox_server,
        enabled_events=[
            "invoice.created",
            "invoice.finalized",
            "invoice.payment_failed",
            "customer.subscription.updated",
        ],
    )

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    sandbox_server.wait_for_webhooks()

    received = [
        stripe.Webhook.construct_event(d.body, d.headers["Stripe-Signature"], secret)
        for d in webhook_receiver.deliveries
    ]
    # Only the subscribed types, in the order they happened.
    assert [e.type for e in received] == [
        "customer.subscription.updated",  # the new period
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "customer.subscription.updated",  # past_due
    ]
    failed = received[3]
    assert failed.data.object["parent"]["subscription_details"]["subscription"] == sub.id
    assert failed.data.object["attempt_count"] == 1
    assert received[4].data.object["status"] == "past_due"
    assert received[4].data.previous_attributes["status"] == "active"


def test_billing_cycle_anchor_prorates_the_first_period(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    start = JAN_1_2026 + 10 * DAY

    advance(client, who.clock, start)
    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "billing_cycle_anchor": FEB_1_2026,
        }
    )

    assert sub.billing_cycle_anchor == FEB_1_2026
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (start, FEB_1_2026)
    first = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert first.total == _prorated(2000, JAN_1_2026, FEB_1_2026, start)
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].current_period_end == MAR_1_2026
    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).total == 2000

    free = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly_plus}],
            "billing_cycle_anchor": MAR_1_2026 - DAY,
            "proration_behavior": "none",
        }
    )
    assert client.v1.invoices.retrieve(str(free.latest_invoice)).total == 0
    with pytest.raises(stripe.InvalidRequestError) as too_far:
        client.v1.subscriptions.create(
            params={
                "customer": who.customer,
                "items": [{"price": catalog.monthly}],
                "billing_cycle_anchor": FEB_1_2026 + 90 * DAY,
            }
        )
    assert too_far.value.param == "billing_cycle_anchor"


def test_add_invoice_items_bill_once(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    setup_fee = client.v1.prices.create(
        params={"product": catalog.product, "currency": "usd", "unit_amount": 4900}
    )

    sub = client.v1.subscriptions.create(
        params={
            "customer": who.customer,
            "items": [{"price": catalog.monthly}],
            "add_invoice_items": [{"price": setup_fee.id}],
        }
    )

    first = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (first.total, first.status) == (6900, "paid")
    client.v1.subscriptions.update(
        sub.id,
        params={
            "add_invoice_items": [
                {"price_data": {"currency": "usd", "product": catalog.product, "unit_amount": 300}}
            ]
        },
    )
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert renewal.total == 2300
    with pytest.raises(stripe.InvalidRequestError) as recurring:
        client.v1.subscriptions.update(
            sub.id, params={"add_invoice_items": [{"price": catalog.yearly}]}
        )
    assert recurring.value.param == "add_invoice_items[0][price]"
