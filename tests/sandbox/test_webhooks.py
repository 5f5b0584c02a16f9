"""Webhook endpoints and deliveries: signatures, order, retries, the duplicate/shuffle switch."""

from __future__ import annotations

import json

import httpx
import pytest
import stripe

from tests.sandbox.shapes import assert_stripe_shape
from tests.sandbox_fixtures import Delivery, SandboxServer, WebhookReceiver


def test_endpoint_crud(
    stripe_client: stripe.StripeClient, webhook_receiver: WebhookReceiver
) -> None:
    endpoint = stripe_client.v1.webhook_endpoints.create(
        params={"url": webhook_receiver.url, "enabled_events": ["customer.created"]}
    )
    assert endpoint.id.startswith("we_")
    assert endpoint.secret.startswith("whsec_")
    fetched = stripe_client.v1.webhook_endpoints.retrieve(endpoint.id)
    assert "secret" not in fetched  # shown only once
    assert_stripe_shape(fetched, "webhook_endpoint")
    updated = stripe_client.v1.webhook_endpoints.update(
        endpoint.id, params={"enabled_events": ["*"], "disabled": True}
    )
    assert updated.status == "disabled"
    assert updated.enabled_events == ["*"]
    assert [e.id for e in stripe_client.v1.webhook_endpoints.list().data] == [endpoint.id]
    assert stripe_client.v1.webhook_endpoints.delete(endpoint.id).deleted is True
    assert stripe_client.v1.webhook_endpoints.list().data == []
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.webhook_endpoints.create(
            params={"url": "not a url", "enabled_events": ["*"]}
        )
    assert info.value.param == "url"


def test_deliveries_are_signed_in_order_and_filtered(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    endpoint = stripe_client.v1.webhook_endpoints.create(
        params={
            "url": webhook_receiver.url,
            "enabled_events": ["customer.created", "customer.updated"],
        }
    )
    customer = stripe_client.v1.customers.create(params={"email": "w@example.com"})
    stripe_client.v1.customers.update(customer.id, params={"name": "W"})
    stripe_client.v1.products.create(params={"name": "not subscribed"})
    sandbox_server.wait_for_webhooks()

    assert webhook_receiver.event_types() == ["customer.created", "customer.updated"]
    for delivery in webhook_receiver.deliveries:
        event = stripe.Webhook.construct_event(
            delivery.body, delivery.headers["Stripe-Signature"], endpoint.secret
        )
        assert event.data.object.id == customer.id
        assert delivery.headers["Content-Type"].startswith("application/json")
    tampered = webhook_receiver.deliveries[0].body.replace("w@example.com", "evil@example.com")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            tampered, webhook_receiver.deliveries[0].headers["Stripe-Signature"], endpoint.secret
        )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            webhook_receiver.deliveries[0].body,
            webhook_receiver.deliveries[0].headers["Stripe-Signature"],
            "whsec_someone_else",
        )
    created = stripe_client.v1.events.retrieve(webhook_receiver.events()[0]["id"])
    assert created.pending_webhooks == 0
    assert_stripe_shape(created, "event")


async def test_async_client_and_webhooks(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    _, secret = webhook_receiver.register(sandbox_server)
    customer = await stripe_client.v1.customers.create_async(params={"email": "async@example.com"})
    await stripe_client.v1.customers.update_async(customer.id, params={"metadata": {"a": "b"}})
    async with httpx.AsyncClient(
        base_url=sandbox_server.url, headers={"Authorization": f"Bearer {sandbox_server.api_key}"}
    ) as http:
        waited = (await http.post("/v1/test_helpers/sandbox/webhooks/wait")).json()
    assert waited["idle"] is True
    await sandbox_server.wait_for_webhooks_async()
    assert webhook_receiver.event_types() == ["customer.created", "customer.updated"]
    event = stripe.Webhook.construct_event(
        webhook_receiver.deliveries[1].body,
        webhook_receiver.deliveries[1].headers["Stripe-Signature"],
        secret,
    )
    assert event.data.previous_attributes.to_dict() == {"metadata": {}}


def test_failed_deliveries_are_retried_with_backoff_and_keep_order(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    sandbox_server.state.webhooks.configure(retry_base=0.05)
    endpoint_id, _ = webhook_receiver.register(sandbox_server)
    webhook_receiver.fail_next(2)
    first = stripe_client.v1.customers.create(params={"email": "1@example.com"})
    second = stripe_client.v1.customers.create(params={"email": "2@example.com"})
    sandbox_server.wait_for_webhooks()

    received = [e["data"]["object"]["id"] for e in webhook_receiver.events()]
    # The first event was tried three times before the second was sent: order is kept.
    assert received == [first.id, first.id, first.id, second.id]
    attempts = sandbox_server.state.webhooks.deliveries
    first_attempts = [a for a in attempts if a["attempt"] and a["event"] == attempts[0]["event"]]
    assert [a["attempt"] for a in first_attempts] == [1, 2, 3]
    assert [a["status"] for a in first_attempts] == [500, 500, 200]
    # Exponential back-off: each failure waits twice as long as the one before.
    assert [a["retry_in"] for a in first_attempts] == [0.05, 0.1, None]
    listed = stripe_client.raw_request(
        "get", "/v1/test_helpers/sandbox/webhooks/deliveries", endpoint=endpoint_id
    )
    assert len(json.loads(listed.body)["data"]) == 4


def test_back_off_doubles_up_to_the_cap(sandbox_server: SandboxServer) -> None:
    hooks = sandbox_server.state.webhooks
    hooks.configure(retry_base=1.0, retry_cap=5.0)
    assert [hooks.retry_delay(attempt) for attempt in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_delivery_gives_up_after_max_attempts(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    sandbox_server.state.webhooks.configure(retry_base=0.01, max_attempts=3)
    webhook_receiver.register(sandbox_server)
    webhook_receiver.fail_next(100)
    customer = stripe_client.v1.customers.create(params={"email": "never@example.com"})
    sandbox_server.wait_for_webhooks()
    assert len(webhook_receiver.deliveries) == 3
    event = stripe_client.v1.events.list(params={"type": "customer.created"}).data[0]
    assert event.data.object.id == customer.id
    assert event.pending_webhooks == 1
    failed = stripe_client.v1.events.list(params={"delivery_success": False}).data
    assert [e.id for e in failed] == [event.id]


def test_duplicate_and_shuffle_switch(
    stripe_client: stripe.StripeClient,
    sandbox_server: SandboxServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    _, secret = webhook_receiver.register(sandbox_server)
    hooks = sandbox_server.state.webhooks
    arrived_while_paused: list[str] = []

    def answer(delivery: Delivery) -> int:
        # Checked as each delivery arrives, however late: none may come during the pause.
        if hooks.paused:
            arrived_while_paused.append(delivery.event["id"])
        return 200

    webhook_receiver.status_for = answer
    switches = stripe_client.raw_request(
        "post",
        "/v1/test_helpers/sandbox/webhooks",
        duplicate=True,
        shuffle=True,
        paused=True,
        seed=7,
    )
    assert json.loads(switches.body)["duplicate"] is True
    ids = [
        stripe_client.v1.customers.create(params={"email": f"{i}@example.com"}).id for i in range(6)
    ]
    assert hooks.pending() == 6  # paused: all six held in the queue, none taken or in flight
    stripe_client.raw_request("post", "/v1/test_helpers/sandbox/webhooks", paused=False)
    sandbox_server.wait_for_webhooks()
    assert arrived_while_paused == []

    received = [e["data"]["object"]["id"] for e in webhook_receiver.events()]
    assert sorted(received) == sorted(ids * 2)  # every event twice
    assert received != [i for i in ids for _ in range(2)]  # and not in order
    for delivery in webhook_receiver.deliveries:
        stripe.Webhook.construct_event(delivery.body, delivery.headers["Stripe-Signature"], secret)


def test_events_list_filters(
    stripe_client: stripe.StripeClient, sandbox_server: SandboxServer
) -> None:
    stripe_client.v1.customers.create(params={"email": "e@example.com"})
    stripe_client.v1.products.create(params={"name": "E"})
    types = [
        e.type for e in stripe_client.v1.events.list(params={"types": ["product.created"]}).data
    ]
    assert types == ["product.created"]
    wildcard = [e.type for e in stripe_client.v1.events.list(params={"type": "customer.*"}).data]
    assert wildcard == ["customer.created"]
    everything = stripe_client.v1.events.list().data
    assert len(everything) == 2
    newest = everything[0].created
    later = stripe_client.v1.events.list(params={"created": {"gt": newest}}).data
    assert later == []
    assert len(stripe_client.v1.events.list(params={"created": {"gte": newest - 5}}).data) == 2
