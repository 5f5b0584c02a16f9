"""Subscription schedules through the official SDK: phases that move a subscription along on
a test clock, `from_subscription`, update, cancel, release, list, and their events."""

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
    subscribed,
)
from tests.sandbox.shapes import assert_stripe_shape, stripe_sample

FEB_1_2026 = JAN_1_2026 + 31 * DAY
MAR_1_2026 = FEB_1_2026 + 28 * DAY
APR_1_2026 = MAR_1_2026 + 31 * DAY


def _renewal(client: stripe.StripeClient, sub_id: str) -> stripe.Invoice:
    return client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(sub_id).latest_invoice))


def test_phases_move_the_subscription_then_release_it(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    mark = last_event_id(client)

    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": who.customer,
            "start_date": "now",
            "metadata": {"plan": "intro"},
            "phases": [
                {"items": [{"price": catalog.monthly}], "end_date": FEB_1_2026},
                {
                    "items": [{"price": catalog.monthly_plus, "quantity": 2}],
                    "duration": {"interval": "month"},
                    "metadata": {"tier": "plus"},
                },
            ],
        }
    )

    assert_stripe_shape(
        schedule,
        "subscription_schedule",
        nested=("default_settings", "default_settings.invoice_settings", "current_phase"),
    )
    sample = stripe_sample("subscription_schedule")["phases"][0]
    assert set(schedule.phases[0].to_dict()) == set(sample)
    assert set(schedule.phases[0]["items"][0].to_dict()) == set(sample["items"][0])
    assert (schedule.status, schedule.end_behavior, schedule.test_clock) == (
        "active",
        "release",
        who.clock,
    )
    assert schedule.metadata.to_dict() == {"plan": "intro"}
    assert (schedule.current_phase.start_date, schedule.current_phase.end_date) == (
        JAN_1_2026,
        FEB_1_2026,
    )
    assert [(p.start_date, p.end_date) for p in schedule.phases] == [
        (JAN_1_2026, FEB_1_2026),
        (FEB_1_2026, MAR_1_2026),
    ]
    assert schedule.phases[1]["items"][0].price == catalog.monthly_plus
    sub = client.v1.subscriptions.retrieve(str(schedule.subscription))
    assert (sub.status, sub.schedule, sub["items"].data[0].price.id) == (
        "active",
        schedule.id,
        catalog.monthly,
    )
    types = event_types(client, since=mark)
    assert types[0] == "subscription_schedule.created"
    assert "customer.subscription.created" in types

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)

    sub = client.v1.subscriptions.retrieve(sub.id)
    assert [(i.price.id, i.quantity) for i in sub["items"].data] == [(catalog.monthly_plus, 2)]
    assert sub.metadata.to_dict() == {"tier": "plus"}
    renewal = _renewal(client, sub.id)
    # The phase changed the items at the period's end: the renewal bills the new ones only.
    assert (renewal.total, renewal.status) == (10000, "paid")
    assert client.v1.invoice_items.list(params={"customer": who.customer}).data == []
    schedule = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (schedule.current_phase.start_date, schedule.current_phase.end_date) == (
        FEB_1_2026,
        MAR_1_2026,
    )

    advance(client, who.clock, MAR_1_2026 + 2 * HOUR)

    schedule = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (schedule.status, schedule.subscription, schedule.released_subscription) == (
        "released",
        None,
        sub.id,
    )
    assert schedule.released_at == MAR_1_2026
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.schedule) == ("active", None)
    assert _renewal(client, sub.id).total == 10000
    assert event_types(client, since=mark, prefixes=("subscription_schedule.",)) == [
        "subscription_schedule.created",
        "subscription_schedule.updated",  # the second phase began on Feb 1
        "subscription_schedule.expiring",  # 7 days before the last phase ends
        "subscription_schedule.released",
    ]


def test_future_start_then_cancel_at_the_end(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    start = JAN_1_2026 + 5 * DAY

    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": who.customer,
            "start_date": start,
            "end_behavior": "cancel",
            "phases": [{"items": [{"price": catalog.monthly}]}],
        }
    )

    assert (schedule.status, schedule.subscription, schedule.current_phase) == (
        "not_started",
        None,
        None,
    )
    end = start + 31 * DAY
    assert (schedule.phases[0].start_date, schedule.phases[0].end_date) == (start, end)
    scheduled = client.v1.subscription_schedules.list(params={"scheduled": True})
    assert [s.id for s in scheduled.data] == [schedule.id]

    advance(client, who.clock, start + HOUR)
    schedule = client.v1.subscription_schedules.retrieve(schedule.id)
    sub = client.v1.subscriptions.retrieve(str(schedule.subscription))
    assert schedule.status == "active"
    assert (sub.status, sub.start_date, sub.cancel_at) == ("active", start, end)
    assert client.v1.subscription_schedules.list(params={"scheduled": True}).data == []

    advance(client, who.clock, end + HOUR)
    schedule = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (schedule.status, schedule.completed_at) == ("completed", end)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", end)
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_create"]


def test_from_subscription_then_phases_are_updated(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)

    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})

    assert (schedule.status, schedule.subscription, schedule.customer) == (
        "active",
        sub.id,
        who.customer,
    )
    assert [(p.start_date, p.end_date) for p in schedule.phases] == [(JAN_1_2026, FEB_1_2026)]
    assert client.v1.subscriptions.retrieve(sub.id).schedule == schedule.id
    with pytest.raises(stripe.InvalidRequestError) as twice:
        client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert twice.value.param == "from_subscription"

    at = JAN_1_2026 + 10 * DAY
    advance(client, who.clock, at)
    schedule = client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "phases": [
                {
                    "items": [{"price": catalog.monthly, "quantity": 2}],
                    "start_date": JAN_1_2026,
                    "end_date": FEB_1_2026,
                },
                {"items": [{"price": catalog.monthly_plus}], "end_date": APR_1_2026},
            ],
            "metadata": {"k": "v"},
        },
    )

    assert len(schedule.phases) == 2
    assert schedule.metadata.to_dict() == {"k": "v"}
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].quantity == 2
    pending = client.v1.invoice_items.list(params={"customer": who.customer, "pending": True})
    left = FEB_1_2026 - at
    month = FEB_1_2026 - JAN_1_2026
    expected = sorted(
        [-((2000 * left * 2 + month) // (2 * month)), (4000 * left * 2 + month) // (2 * month)]
    )
    assert sorted(i.amount for i in pending.data) == expected

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert [(i.price.id, i.quantity) for i in sub["items"].data] == [(catalog.monthly_plus, 1)]
    assert _renewal(client, sub.id).total == 5000 + sum(expected)
    schedule = client.v1.subscription_schedules.retrieve(schedule.id)
    assert schedule.current_phase.end_date == APR_1_2026

    with pytest.raises(stripe.InvalidRequestError) as moved:
        client.v1.subscription_schedules.update(
            schedule.id,
            params={"phases": [{"items": [{"price": catalog.monthly}], "start_date": MAR_1_2026}]},
        )
    assert moved.value.param == "phases[0][start_date]"


def test_cancel_and_release_end_the_schedule_early(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    phases = [{"items": [{"price": catalog.monthly}], "duration": {"interval": "month"}}]
    kept = client.v1.subscription_schedules.create(
        params={"customer": who.customer, "phases": phases}
    )
    dropped = client.v1.subscription_schedules.create(
        params={"customer": who.customer, "phases": phases, "start_date": FEB_1_2026}
    )
    ended = client.v1.subscription_schedules.create(
        params={"customer": who.customer, "phases": phases}
    )
    advance(client, who.clock, JAN_1_2026 + 10 * DAY)
    mark = last_event_id(client)

    released = client.v1.subscription_schedules.release(kept.id)
    assert (released.status, released.released_subscription) == ("released", kept.subscription)
    assert client.v1.subscriptions.retrieve(str(kept.subscription)).status == "active"

    canceled = client.v1.subscription_schedules.cancel(dropped.id)
    assert (canceled.status, canceled.canceled_at) == ("canceled", JAN_1_2026 + 10 * DAY)

    canceled = client.v1.subscription_schedules.cancel(ended.id, params={"invoice_now": False})
    sub = client.v1.subscriptions.retrieve(str(ended.subscription))
    assert sub.status == "canceled"
    # Unused time credited (prorate defaults to true), waiting for the next invoice.
    pending = client.v1.invoice_items.list(params={"customer": who.customer, "pending": True})
    assert [i.amount < 0 for i in pending.data] == [True]
    assert event_types(client, since=mark, prefixes=("subscription_schedule.",)) == [
        "subscription_schedule.released",
        "subscription_schedule.canceled",
        "subscription_schedule.canceled",
    ]
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.subscription_schedules.release(ended.id)
    assert again.value.param == "id"
    listed = client.v1.subscription_schedules.list(params={"customer": who.customer})
    assert {s.id for s in listed.data} == {kept.id, dropped.id, ended.id}
    only_released = client.v1.subscription_schedules.list(
        params={"released_at": {"gte": JAN_1_2026}}
    )
    assert [s.id for s in only_released.data] == [kept.id]


def test_a_subscription_canceled_directly_cancels_its_schedule(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    schedule = client.v1.subscription_schedules.create(
        params={"customer": who.customer, "phases": [{"items": [{"price": catalog.monthly}]}]}
    )
    client.v1.subscriptions.cancel(str(schedule.subscription))
    assert client.v1.subscription_schedules.retrieve(schedule.id).status == "canceled"


def test_refusals_name_the_phase_parameter(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    eur = client.v1.prices.create(
        params={
            "product": catalog.product,
            "currency": "eur",
            "unit_amount": 900,
            "recurring": {"interval": "month"},
        }
    )

    def refused(params: dict[str, object]) -> stripe.InvalidRequestError:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.subscription_schedules.create(params=params)  # type: ignore[arg-type]
        return caught.value

    monthly = {"items": [{"price": catalog.monthly}]}
    assert refused({"phases": [monthly]}).param == "customer"
    assert refused({"customer": who.customer}).param == "phases"
    missing = refused(
        {"customer": who.customer, "phases": [monthly, {"items": [{"price": "price_nope"}]}]}
    )
    assert (missing.http_status, missing.param) == (404, "phases[1][items][0][price]")
    assert (
        refused(
            {"customer": who.customer, "phases": [{**monthly, "end_date": JAN_1_2026 - DAY}]}
        ).param
        == "phases[0][end_date]"
    )
    assert (
        refused(
            {"customer": who.customer, "phases": [monthly, {"items": [{"price": eur.id}]}]}
        ).param
        == "phases[1][items]"
    )
    assert (
        refused(
            {"customer": who.customer, "phases": [monthly, {**monthly, "trial_end": MAR_1_2026}]}
        ).param
        == "phases[1][trial_end]"
    )
    assert (
        refused(
            {"customer": who.customer, "phases": [monthly], "start_date": JAN_1_2026 - DAY}
        ).param
        == "start_date"
    )
    assert refused({"from_subscription": "sub_nope"}).http_status == 404
    # Nothing was stored by any refusal.
    assert client.v1.subscription_schedules.list().data == []
    assert client.v1.subscriptions.list(params={"customer": who.customer}).data == []


def test_trial_in_the_first_phase(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": who.customer,
            "phases": [
                {
                    "items": [{"price": catalog.monthly}],
                    "trial": True,
                    "end_date": JAN_1_2026 + 14 * DAY,
                },
                {"items": [{"price": catalog.monthly}], "duration": {"interval": "month"}},
            ],
        }
    )
    sub = client.v1.subscriptions.retrieve(str(schedule.subscription))
    assert (sub.status, sub.trial_end) == ("trialing", JAN_1_2026 + 14 * DAY)
    advance(client, who.clock, JAN_1_2026 + 14 * DAY + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    assert (_renewal(client, sub.id).total, _renewal(client, sub.id).status) == (2000, "paid")


def test_phases_collect_by_sending_invoices_then_automatically(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": who.customer,
            "default_settings": {
                "collection_method": "send_invoice",
                "invoice_settings": {"days_until_due": 10},
            },
            "phases": [
                {"items": [{"price": catalog.monthly}], "end_date": FEB_1_2026},
                {
                    "items": [{"price": catalog.monthly}],
                    "collection_method": "charge_automatically",
                    "duration": {"interval": "month"},
                },
            ],
        }
    )
    assert schedule.default_settings.invoice_settings.days_until_due == 10
    sub = client.v1.subscriptions.retrieve(str(schedule.subscription))
    assert (sub.status, sub.collection_method, sub.days_until_due) == ("active", "send_invoice", 10)
    first = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (first.status, first.due_date) == ("open", JAN_1_2026 + 10 * DAY)
    client.v1.invoices.pay(first.id, params={"paid_out_of_band": True})

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.collection_method, sub.days_until_due) == ("charge_automatically", None)
    assert (_renewal(client, sub.id).status, _renewal(client, sub.id).amount_paid) == ("paid", 2000)

    with pytest.raises(stripe.InvalidRequestError) as days:
        client.v1.subscription_schedules.create(
            params={
                "customer": who.customer,
                "phases": [
                    {"items": [{"price": catalog.monthly}], "collection_method": "send_invoice"}
                ],
            }
        )
    assert days.value.param == "phases[0][invoice_settings][days_until_due]"


def test_a_subscription_canceled_for_failed_payments_aborts_its_schedule(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": who.customer,
            "phases": [{"items": [{"price": catalog.monthly}], "end_date": APR_1_2026}],
        }
    )
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": who.customer}
    )
    client.v1.customers.update(
        who.customer, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    mark = last_event_id(client)

    advance(client, who.clock, FEB_1_2026 + 8 * DAY)  # the renewal and its three retries fail

    assert client.v1.subscriptions.retrieve(str(schedule.subscription)).status == "canceled"
    assert event_types(client, since=mark, prefixes=("subscription_schedule.",)) == [
        "subscription_schedule.aborted"
    ]
    schedule = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (schedule.status, schedule.current_phase) == ("canceled", None)


def test_the_end_behavior_sets_the_subscriptions_cancel_at(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    schedule = client.v1.subscription_schedules.create(
        params={
            "customer": who.customer,
            "end_behavior": "cancel",
            "phases": [{"items": [{"price": catalog.monthly}], "end_date": MAR_1_2026}],
        }
    )
    sub_id = str(schedule.subscription)
    assert client.v1.subscriptions.retrieve(sub_id).cancel_at == MAR_1_2026

    client.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "release"})
    assert client.v1.subscriptions.retrieve(sub_id).cancel_at is None
    client.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "cancel"})
    assert client.v1.subscriptions.retrieve(sub_id).cancel_at == MAR_1_2026

    advance(client, who.clock, MAR_1_2026 + HOUR)
    assert client.v1.subscriptions.retrieve(sub_id).status == "canceled"
    assert client.v1.subscription_schedules.retrieve(schedule.id).status == "completed"
