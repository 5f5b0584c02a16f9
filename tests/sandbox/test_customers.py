"""Customers, products, prices, coupons and promotion codes through the official SDK."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.billing_support import (
    DAY,
    JAN_1_2026,
    advance,
    event_types,
    events,
    make_catalog,
    subscribed,
)
from tests.sandbox.shapes import assert_stripe_shape
from tests.sandbox_fixtures import SandboxServer


def test_customer_lifecycle_and_events(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(
        params={"email": "ada@example.com", "name": "Ada", "metadata": {"user_id": "u1"}}
    )
    assert customer.id.startswith("cus_")
    assert customer.livemode is False
    assert customer.metadata["user_id"] == "u1"
    assert_stripe_shape(customer, "customer", nested=("invoice_settings",))

    updated = stripe_client.v1.customers.update(
        customer.id, params={"name": "Ada L.", "metadata": {"user_id": "", "plan": "pro"}}
    )
    assert updated.name == "Ada L."
    assert updated.metadata.to_dict() == {"plan": "pro"}

    fetched = stripe_client.v1.customers.retrieve(customer.id)
    assert fetched.email == "ada@example.com"

    deleted = stripe_client.v1.customers.delete(customer.id)
    assert deleted.deleted is True
    assert stripe_client.v1.customers.retrieve(customer.id).deleted is True
    assert stripe_client.v1.customers.list().data == []

    events = stripe_client.v1.events.list(params={"type": "customer.*"}).data
    assert [e.type for e in events] == ["customer.deleted", "customer.updated", "customer.created"]
    update_event = events[1]
    assert update_event.api_version == stripe.api_version
    assert update_event.data.previous_attributes["name"] == "Ada"
    assert update_event.request.id is not None


async def test_customer_async_and_search(stripe_client: stripe.StripeClient) -> None:
    a = await stripe_client.v1.customers.create_async(
        params={"email": "a@example.com", "metadata": {"org": "acme"}}
    )
    await stripe_client.v1.customers.create_async(params={"email": "b@example.com"})
    by_meta = await stripe_client.v1.customers.search_async(
        params={"query": "metadata['org']:'acme'"}
    )
    assert [c.id for c in by_meta.data] == [a.id]
    by_email = stripe_client.v1.customers.search(params={"query": "email:'a@example.com'"})
    assert [c.id for c in by_email.data] == [a.id]
    assert by_email.object == "search_result"


def test_missing_customer_is_resource_missing(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.retrieve("cus_nope")
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"
    assert "No such customer: 'cus_nope'" in str(info.value.user_message)


def test_sandbox_server_fixture(sandbox_server: SandboxServer) -> None:
    assert sandbox_server.url.startswith("http://127.0.0.1:")


def test_default_payment_method(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(
        params={
            "email": "pm@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    default = customer.invoice_settings.default_payment_method
    assert isinstance(default, str) and default.startswith("pm_")
    attached = stripe_client.v1.payment_methods.retrieve(default)
    assert attached.customer == customer.id
    expanded = stripe_client.v1.customers.retrieve(
        customer.id, params={"expand": ["invoice_settings.default_payment_method"]}
    )
    assert expanded.invoice_settings.default_payment_method.card.last4 == "4242"

    loose = stripe_client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "tok_mastercard"}}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": loose.id}}
        )
    assert info.value.param == "invoice_settings[default_payment_method]"
    cleared = stripe_client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": ""}}
    )
    assert cleared.invoice_settings.default_payment_method is None
    types = [e.type for e in stripe_client.v1.events.list().data]
    assert types[-2:] == ["payment_method.attached", "customer.created"]


def test_search_query_language(stripe_client: stripe.StripeClient) -> None:
    ada = stripe_client.v1.customers.create(
        params={"email": "ada@example.com", "name": "Ada Lovelace", "metadata": {"plan": "pro"}}
    )
    bob = stripe_client.v1.customers.create(
        params={"email": "bob@example.com", "name": "Bob", "metadata": {"plan": "pro"}}
    )

    def ids(query: str) -> list[str]:
        return [c.id for c in stripe_client.v1.customers.search(params={"query": query}).data]

    assert ids('email:"ada@example.com"') == [ada.id]
    assert ids('metadata["plan"]:"pro"') == [bob.id, ada.id]
    assert ids("metadata['plan']:'pro' AND name~'love'") == [ada.id]
    assert ids("email:'ada@example.com' OR email:'bob@example.com'") == [bob.id, ada.id]
    assert ids("-name:'Bob' AND metadata['plan']:'pro'") == [ada.id]
    assert ids(f"created>={ada.created}") == [bob.id, ada.id]
    first = stripe_client.v1.customers.search(
        params={"query": "metadata['plan']:'pro'", "limit": 1}
    )
    assert first.has_more is True
    second = stripe_client.v1.customers.search(
        params={"query": "metadata['plan']:'pro'", "limit": 1, "page": first.next_page}
    )
    assert [c.id for c in second.data] == [ada.id]
    counted = stripe_client.v1.customers.search(
        params={"query": "metadata['plan']:'pro'", "limit": 1, "expand": ["total_count"]}
    )
    assert counted.total_count == 2
    assert second.has_more is False
    for bad in ("email:'a' AND name:'b' OR phone:'c'", "nonsense", "colour:'red'"):
        with pytest.raises(stripe.InvalidRequestError) as info:
            stripe_client.v1.customers.search(params={"query": bad})
        assert info.value.param == "query"


def test_create_with_test_payment_method_defaults_the_created_one(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = stripe_client.v1.customers.create(
        params={
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    default = customer.invoice_settings.default_payment_method
    assert isinstance(default, str) and default != "pm_card_visa"
    owned = stripe_client.v1.customers.payment_methods.list(customer.id).data
    assert [pm.id for pm in owned] == [default]
    assert stripe_client.v1.payment_methods.retrieve(default).customer == customer.id
    # The next request names a new PaymentMethod with the same test id.
    other = stripe_client.v1.customers.create(
        params={
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    assert other.invoice_settings.default_payment_method not in (None, default)
    # A default naming a test id that is not the attached payment method is refused.
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.create(
            params={
                "payment_method": "pm_card_visa",
                "invoice_settings": {"default_payment_method": "pm_card_mastercard"},
            }
        )
    assert info.value.param == "invoice_settings[default_payment_method]"


def test_create_with_declined_card_is_refused_at_attach(
    stripe_client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.CardError) as info:
        stripe_client.v1.customers.create(
            params={"email": "declined@example.com", "payment_method": "pm_card_chargeDeclined"}
        )
    assert info.value.http_status == 402
    assert info.value.code == "card_declined"
    assert info.value.error is not None and info.value.error.decline_code == "generic_decline"
    # Nothing was created: no customer, no customer event.
    assert stripe_client.v1.customers.list().data == []
    assert not [t for t in event_types(stripe_client) if t.startswith("customer.")]

    # A card Stripe only declines when charged attaches, announced after the customer.
    customer = stripe_client.v1.customers.create(
        params={"payment_method": "pm_card_chargeCustomerFail"}
    )
    owned = stripe_client.v1.customers.payment_methods.list(customer.id).data
    assert len(owned) == 1
    assert event_types(stripe_client)[-2:] == ["customer.created", "payment_method.attached"]
    attached = stripe_client.v1.events.list(params={"type": "payment_method.attached"}).data
    assert attached[0].data.object.id == owned[0].id
    assert attached[0].data.object.customer == customer.id


def test_create_with_payment_method_of_another_customer_creates_nothing(
    stripe_client: stripe.StripeClient,
) -> None:
    first = stripe_client.v1.customers.create(params={"payment_method": "pm_card_visa"})
    pm = stripe_client.v1.customers.payment_methods.list(first.id).data[0]
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.create(params={"payment_method": pm.id})
    assert info.value.http_status == 400
    assert [c.id for c in stripe_client.v1.customers.list().data] == [first.id]
    assert event_types(stripe_client).count("customer.created") == 1


def test_delete_cancels_subscriptions_and_detaches_payment_methods(
    stripe_client: stripe.StripeClient,
) -> None:
    catalog = make_catalog(stripe_client)
    customer = stripe_client.v1.customers.create(
        params={
            "email": "leaving@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    card = str(customer.invoice_settings.default_payment_method)
    second = stripe_client.v1.payment_methods.attach(
        "pm_card_mastercard", params={"customer": customer.id}
    )
    monthly = stripe_client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": catalog.monthly}]}
    )
    yearly = stripe_client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": catalog.yearly}]}
    )
    ended = stripe_client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": catalog.monthly_plus}]}
    )
    stripe_client.v1.subscriptions.cancel(ended.id)
    assert monthly.status == "active" and yearly.status == "active"
    since = stripe_client.v1.events.list(params={"limit": 1}).data[0].id

    deleted = stripe_client.v1.customers.delete(customer.id)
    assert deleted.deleted is True

    for sub_id in (monthly.id, yearly.id):
        sub = stripe_client.v1.subscriptions.retrieve(sub_id)
        assert sub.status == "canceled"
        assert sub.ended_at is not None and sub.canceled_at is not None
    for pm_id in (card, second.id):
        assert stripe_client.v1.payment_methods.retrieve(pm_id).customer is None

    after = events(stripe_client, since=since)
    types = [e.type for e in after]
    assert sorted(types) == sorted(
        ["customer.subscription.deleted"] * 2
        + ["payment_method.detached"] * 2
        + ["customer.deleted"]
    )
    assert types[-1] == "customer.deleted"
    assert "customer.updated" not in types  # the default goes with the customer, no update
    canceled = {e.data.object.id for e in after if e.type == "customer.subscription.deleted"}
    assert canceled == {monthly.id, yearly.id}
    detached = {e.data.object.id for e in after if e.type == "payment_method.detached"}
    assert detached == {card, second.id}
    assert {
        stripe_client.v1.subscriptions.retrieve(s).cancellation_details.reason
        for s in (monthly.id, yearly.id)
    } == {"cancellation_requested"}
    # A detached PaymentMethod may not be used again (as on Stripe); a customer is deleted once.
    someone = stripe_client.v1.customers.create(params={"email": "someone@example.com"})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_methods.attach(card, params={"customer": someone.id})
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.delete(customer.id)
    assert info.value.code == "resource_missing"


def test_deleted_customer_is_not_billed_again(stripe_client: stripe.StripeClient) -> None:
    _, who, sub = subscribed(stripe_client)
    invoices_before = stripe_client.v1.invoices.list(params={"customer": who.customer}).data
    assert [i.status for i in invoices_before] == ["paid"]
    stripe_client.v1.customers.delete(who.customer)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    since = stripe_client.v1.events.list(params={"limit": 1}).data[0].id
    advance(stripe_client, who.clock, JAN_1_2026 + 70 * DAY)
    later = event_types(stripe_client, since=since)
    assert later == [
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.ready",
    ]
    invoices = stripe_client.v1.invoices.list(params={"customer": who.customer}).data
    assert [i.id for i in invoices] == [i.id for i in invoices_before]


def test_update_default_payment_method_must_belong_to_the_customer(
    stripe_client: stripe.StripeClient,
) -> None:
    ada = stripe_client.v1.customers.create(params={"payment_method": "pm_card_visa"})
    bob = stripe_client.v1.customers.create(params={"payment_method": "pm_card_visa"})
    bobs = stripe_client.v1.customers.payment_methods.list(bob.id).data[0].id
    loose = stripe_client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "tok_visa"}}
    )
    for pm_id in (bobs, loose.id):
        with pytest.raises(stripe.InvalidRequestError) as info:
            stripe_client.v1.customers.update(
                ada.id, params={"invoice_settings": {"default_payment_method": pm_id}}
            )
        assert info.value.http_status == 400
        assert info.value.code == "resource_missing"
        assert info.value.param == "invoice_settings[default_payment_method]"
        assert f"The customer does not have a payment method with the ID {pm_id}" in str(
            info.value.user_message
        )
    assert (
        stripe_client.v1.customers.retrieve(ada.id).invoice_settings.default_payment_method is None
    )
    assert "customer.updated" not in event_types(stripe_client)

    adas = stripe_client.v1.customers.payment_methods.list(ada.id).data[0].id
    updated = stripe_client.v1.customers.update(
        ada.id, params={"invoice_settings": {"default_payment_method": adas}}
    )
    assert updated.invoice_settings.default_payment_method == adas
