"""Customers, products, prices, coupons and promotion codes through the official SDK."""

from __future__ import annotations

import pytest
import stripe

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
