"""Subscription items through the official SDK: create, retrieve, update, delete, list, with
prorations on the next invoice (as a subscription update makes them) and
`customer.subscription.updated`."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.sandbox.billing_support import (
    DAY,
    HOUR,
    JAN_1_2026,
    Catalog,
    ClockedCustomer,
    advance,
    customer_on_clock,
    make_catalog,
    subscribed,
)
from tests.sandbox.shapes import assert_stripe_shape

FEB_1_2026 = JAN_1_2026 + 31 * DAY


def _prorated(amount: int, start: int, end: int, at: int) -> int:
    return (amount * (end - at) * 2 + (end - start)) // (2 * (end - start))


def _addon(client: stripe.StripeClient, product: str, amount: int = 700) -> str:
    price = client.v1.prices.create(
        params={
            "product": product,
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": "month"},
        }
    )
    return str(price.id)


def _pending(client: stripe.StripeClient, customer: str) -> list[int]:
    found = client.v1.invoice_items.list(params={"customer": customer, "pending": True})
    return sorted(int(i.amount) for i in found.data)


def _with_addon(client: stripe.StripeClient) -> tuple[Catalog, ClockedCustomer, Any, Any]:
    """A subscription to the monthly price and a 7.00 add-on; the add-on's item."""
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    addon = _addon(client, catalog.product)
    sub = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly}, {"price": addon}]}
    )
    return catalog, who, sub, next(i for i in sub["items"].data if i.price.id == addon)


def test_create_an_item_prorates_onto_the_next_invoice(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    addon = _addon(client, catalog.product)
    at = JAN_1_2026 + 10 * DAY
    advance(client, who.clock, at)

    item = client.v1.subscription_items.create(
        params={"subscription": sub.id, "price": addon, "quantity": 2, "metadata": {"seat": "x"}}
    )

    assert_stripe_shape(item, "subscription_item")
    assert (item.subscription, item.price.id, item.quantity) == (sub.id, addon, 2)
    assert item.metadata.to_dict() == {"seat": "x"}
    assert (item.current_period_start, item.current_period_end) == (JAN_1_2026, FEB_1_2026)
    assert client.v1.subscription_items.retrieve(item.id).id == item.id
    listed = client.v1.subscription_items.list(params={"subscription": sub.id})
    assert {i.id for i in listed.data} == {sub["items"].data[0].id, item.id}
    charge = _prorated(1400, JAN_1_2026, FEB_1_2026, at)
    assert _pending(client, who.customer) == [charge]
    updated = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert len(updated.data.previous_attributes["items"]["data"]) == 1
    assert len(updated.data.object["items"]["data"]) == 2

    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert renewal.status == "paid"
    assert renewal.total == charge + 2000 + 1400


def test_update_quantity_and_price_with_proration_behaviors(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    at = JAN_1_2026 + 15 * DAY
    advance(client, who.clock, at)
    item_id = sub["items"].data[0].id

    item = client.v1.subscription_items.update(item_id, params={"quantity": 3})
    assert (item.id, item.quantity) == (item_id, 3)
    credit = -_prorated(2000, JAN_1_2026, FEB_1_2026, at)
    charge = _prorated(6000, JAN_1_2026, FEB_1_2026, at)
    assert _pending(client, who.customer) == sorted([credit, charge])

    item = client.v1.subscription_items.update(
        item_id, params={"price": catalog.monthly_plus, "proration_behavior": "always_invoice"}
    )
    assert (item.price.id, item.quantity) == (catalog.monthly_plus, 3)
    sub = client.v1.subscriptions.retrieve(sub.id)
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    step = _prorated(15000, JAN_1_2026, FEB_1_2026, at) - _prorated(
        6000, JAN_1_2026, FEB_1_2026, at
    )
    assert invoice.billing_reason == "subscription_update"
    # always_invoice takes the pending prorations of the first change too.
    assert (invoice.status, invoice.total) == ("paid", credit + charge + step)
    assert _pending(client, who.customer) == []

    item = client.v1.subscription_items.update(
        item_id, params={"quantity": 1, "proration_behavior": "none", "metadata": {"a": "b"}}
    )
    assert (item.quantity, item.metadata.to_dict()) == (1, {"a": "b"})
    assert _pending(client, who.customer) == []


def test_delete_an_item_credits_unused_time(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub, extra = _with_addon(client)
    at = JAN_1_2026 + 20 * DAY
    advance(client, who.clock, at)

    deleted = client.v1.subscription_items.delete(extra.id)

    assert deleted.to_dict() == {"id": extra.id, "object": "subscription_item", "deleted": True}
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert [i.price.id for i in sub["items"].data] == [catalog.monthly]
    assert _pending(client, who.customer) == [-_prorated(700, JAN_1_2026, FEB_1_2026, at)]
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscription_items.retrieve(extra.id)
    assert missing.value.http_status == 404

    # The last item cannot go; without prorations nothing is credited.
    with pytest.raises(stripe.InvalidRequestError) as last:
        client.v1.subscription_items.delete(sub["items"].data[0].id)
    assert last.value.param == "id"


def test_delete_without_proration_credits_nothing(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _catalog, who, _sub, extra = _with_addon(client)
    advance(client, who.clock, JAN_1_2026 + 5 * DAY)
    client.v1.subscription_items.delete(extra.id, params={"proration_behavior": "none"})
    assert _pending(client, who.customer) == []


def test_refusals_name_the_item_parameters(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)

    with pytest.raises(stripe.InvalidRequestError) as no_price:
        client.v1.subscription_items.create(params={"subscription": sub.id})
    assert (no_price.value.param, no_price.value.code) == ("price", "parameter_missing")
    with pytest.raises(stripe.InvalidRequestError) as same:
        client.v1.subscription_items.create(
            params={"subscription": sub.id, "price": catalog.monthly}
        )
    assert same.value.param == "price"
    with pytest.raises(stripe.InvalidRequestError) as yearly:
        client.v1.subscription_items.create(
            params={"subscription": sub.id, "price": catalog.yearly}
        )
    assert yearly.value.param == "price"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.subscription_items.create(params={"subscription": sub.id, "price": "price_nope"})
    assert (unknown.value.http_status, unknown.value.param) == (404, "price")
    with pytest.raises(stripe.InvalidRequestError) as negative:
        client.v1.subscription_items.update(sub["items"].data[0].id, params={"quantity": -1})
    assert negative.value.param == "quantity"
    with pytest.raises(stripe.InvalidRequestError) as no_sub:
        client.v1.subscription_items.create(params={"subscription": "sub_nope", "price": "x"})
    assert (no_sub.value.http_status, no_sub.value.param) == (404, "subscription")
    # Nothing was half-written.
    assert len(client.v1.subscriptions.retrieve(sub.id)["items"].data) == 1
    assert _pending(client, who.customer) == []

    client.v1.subscriptions.cancel(sub.id)
    with pytest.raises(stripe.InvalidRequestError) as ended:
        client.v1.subscription_items.update(sub["items"].data[0].id, params={"quantity": 2})
    assert ended.value.http_status == 400


def test_error_if_incomplete_item_change_is_not_made(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    declining = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": who.customer}
    )
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": declining.id})
    advance(client, who.clock, JAN_1_2026 + 3 * DAY)
    item_id = sub["items"].data[0].id

    with pytest.raises(stripe.CardError):
        client.v1.subscription_items.update(
            item_id,
            params={
                "price": catalog.monthly_plus,
                "proration_behavior": "always_invoice",
                "payment_behavior": "error_if_incomplete",
            },
        )
    assert client.v1.subscription_items.retrieve(item_id).price.id == catalog.monthly


def test_items_with_price_data(stripe_client: stripe.StripeClient) -> None:
    """An inline price (`price_data`) is made inactive, as on Stripe, and still bills."""
    client = stripe_client
    catalog, who, sub = subscribed(client)
    data = {
        "currency": "usd",
        "product": catalog.product,
        "unit_amount": 300,
        "recurring": {"interval": "month"},
    }

    item = client.v1.subscription_items.create(
        params={"subscription": sub.id, "price_data": data, "proration_behavior": "none"}
    )

    assert (item.price.unit_amount, item.price.active) == (300, False)
    created = client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price_data": data}]}
    )
    assert client.v1.invoices.retrieve(str(created.latest_invoice)).amount_paid == 300
    advance(client, who.clock, FEB_1_2026 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert renewal.total == 2300
