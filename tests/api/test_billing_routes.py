"""Document 003's `POST /api/billing/checkout_session`, `GET /api/billing/subscriptions` and
`POST /api/stripe/webhook` over HTTP (billfold's Stripe adapter on the sandbox, the sandbox's
events delivered in process), and end to end with the sandbox's own webhook deliveries, on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from sqlalchemy import func, select

from billfold.config import Settings
from billfold.stripe.models import WebhookEvent
from tests.api.stripe_events import deliver_all, pay_checkout, pay_in_sandbox
from tests.e2e_fixtures import BillfoldServer
from tests.fakes.stripe_gateway import sign
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, bearer, deliver

B = "/api/billing"
MONTHLY = {"price_id": "billfold_premium_monthly_usd"}
WEBHOOK = "/api/stripe/webhook"
APP = "https://app.example.com"
SUBSCRIPTION_KEYS = {
    "id",
    "stripe_subscription_id",
    "stripe_customer_id",
    "plan",
    "price_id",
    "status",
    "interval",
    "unit_amount",
    "currency",
    "quantity",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "canceled_at",
    "ended_at",
    "trial_end",
    "created_at",
    "updated_at",
}


async def _stored_events(database: Any) -> int:
    async with database.transaction() as session:
        return int((await session.execute(select(func.count(WebhookEvent.id)))).scalar_one())


async def test_checkout_session(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "alice")
    response = await api.post(
        f"{B}/checkout_session",
        json={"price_id": "billfold_premium_yearly_usd", "quantity": 3},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "url"}
    session = stripe_world.sessions[body["id"]]
    assert body["url"] == session["url"]
    assert (session["mode"], session["quantity"]) == ("subscription", 3)
    assert session["price"] == synced["billfold_premium_yearly_usd"]
    # No redirect sent: FRONTEND_URL's defaults (STRIPE_SUCCESS_URL / STRIPE_CANCEL_URL unset).
    assert session["success_url"].startswith(f"{APP}/billing/success")
    assert session["cancel_url"] == f"{APP}/billing/cancel"

    by_plan = await api.post(
        f"{B}/checkout_session",
        json={"plan": "premium", "interval": "monthly", "currency": "eur"},
        headers=bearer(billing_settings, "bob"),
    )
    assert by_plan.status_code == 200
    assert (
        stripe_world.sessions[by_plan.json()["id"]]["price"]
        == synced["billfold_premium_monthly_eur"]
    )


async def test_checkout_session_errors(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    body = {"price_id": "billfold_premium_monthly_usd"}
    anonymous = await api.post(f"{B}/checkout_session", json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    headers = bearer(billing_settings, "alice")
    bad_host = await api.post(
        f"{B}/checkout_session",
        json=body | {"success_url": "https://evil.example.net/"},
        headers=headers,
    )
    assert bad_host.status_code == 400
    assert bad_host.json()["error"]["field"] == "success_url"
    nothing = await api.post(f"{B}/checkout_session", json={}, headers=headers)
    assert nothing.status_code == 400
    assert nothing.json()["error"]["field"] == "price_id"
    unknown = await api.post(
        f"{B}/checkout_session", json={"price_id": "price_unknown"}, headers=headers
    )
    assert unknown.status_code == 400
    zero = await api.post(f"{B}/checkout_session", json=body | {"quantity": 0}, headers=headers)
    assert zero.status_code == 422
    assert zero.json()["error"]["field"] == "quantity"

    first = await api.post(f"{B}/checkout_session", json=body, headers=headers)
    await pay_checkout(api, stripe_world, first.json()["id"], path=WEBHOOK)
    second = await api.post(f"{B}/checkout_session", json=body, headers=headers)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conflict"


async def test_subscriptions_list(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    assert (await api.get(f"{B}/subscriptions")).status_code == 401
    headers = bearer(billing_settings, "alice")
    empty = await api.get(f"{B}/subscriptions", headers=headers)
    assert empty.status_code == 200
    assert empty.json() == {"subscriptions": []}

    body = {"price_id": "billfold_premium_monthly_usd"}
    first = await api.post(f"{B}/checkout_session", json=body, headers=headers)
    await pay_checkout(api, stripe_world, first.json()["id"], path=WEBHOOK)
    (only,) = (await api.get(f"{B}/subscriptions", headers=headers)).json()["subscriptions"]
    assert set(only) == SUBSCRIPTION_KEYS
    assert (only["plan"], only["status"], only["interval"]) == ("premium", "active", "monthly")
    assert (only["unit_amount"], only["currency"]) == (699, "usd")
    assert only["price_id"] == synced["billfold_premium_monthly_usd"]

    # Canceled now, then subscribed again: both listed, the newest first.
    sub = stripe_world.subscriptions[only["stripe_subscription_id"]]
    stripe_world.client.v1.subscriptions.cancel(sub["id"])
    await deliver_all(api, stripe_world, path=WEBHOOK)
    stripe_world.advance_clock(60)  # so the new subscription is the newer one by Stripe's clock
    again = await api.post(
        f"{B}/checkout_session", json={"price_id": "billfold_premium_yearly_usd"}, headers=headers
    )
    assert again.status_code == 200, again.text
    await pay_checkout(api, stripe_world, again.json()["id"], path=WEBHOOK)
    listed = (await api.get(f"{B}/subscriptions", headers=headers)).json()["subscriptions"]
    assert [(s["status"], s["interval"]) for s in listed] == [
        ("active", "yearly"),
        ("canceled", "monthly"),
    ]
    # Another user sees none of them.
    other = await api.get(f"{B}/subscriptions", headers=bearer(billing_settings, "mallory"))
    assert other.json() == {"subscriptions": []}


async def test_stripe_webhook_stores_once_and_applies(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Any,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "alice")
    started = await api.post(
        f"{B}/checkout_session", json={"price_id": "billfold_premium_monthly_usd"}, headers=headers
    )
    stripe_world.complete_checkout(started.json()["id"])
    event = next(e for e in stripe_world.events if e["type"] == "customer.subscription.created")
    response = await deliver(api, event, path=WEBHOOK)
    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "event_id": event["id"],
        "type": event["type"],
        "duplicate": False,
    }
    again = await deliver(api, event, path=WEBHOOK, secret=OLD_WEBHOOK_SECRET)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    # The same inbox as document 004's route: a third delivery there is a duplicate too.
    there = await deliver(api, event)
    assert there.json()["data"]["duplicate"] is True
    assert await _stored_events(database) == 1
    listed = (await api.get(f"{B}/subscriptions", headers=headers)).json()["subscriptions"]
    assert [s["status"] for s in listed] == ["active"]


async def test_both_webhook_routes_store_the_event_and_apply_what_is_due(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
    monkeypatch: Any,
) -> None:
    """Both routes go through `accept_stripe_webhook`: the event is stored, and after the
    answer the inbox's due events are applied (`apply_due`), this one among them."""
    import billfold.api.webhooks as webhooks
    from billfold.stripe.inbox import apply_due

    drains: list[Any] = []

    async def spy(container: Any) -> None:
        drains.append(container)
        await apply_due(container)

    monkeypatch.setattr(webhooks, "apply_due", spy)
    customer = stripe_world.client.v1.customers.create().id
    first, second = (
        {
            "id": f"evt_spy_{n}",
            "type": "customer.deleted",
            "created": int(time.time()),
            "data": {"object": {"id": customer, "object": "customer"}},
            "object": "event",
        }
        for n in (1, 2)
    )
    assert (await deliver(api, first, path=WEBHOOK)).status_code == 200
    assert (await deliver(api, second)).status_code == 200
    repeat = await deliver(api, second)
    assert repeat.status_code == 200 and repeat.json()["data"]["duplicate"] is True
    assert len(drains) == 3
    async with drains[0].db.read() as session:
        statuses = {
            row.id: row.status
            for row in (await session.execute(select(WebhookEvent))).scalars()
            if row.id.startswith("evt_spy_")
        }
    assert statuses == {"evt_spy_1": "processed", "evt_spy_2": "processed"}


async def test_stripe_webhook_refuses_forged_and_stale(
    api: httpx.AsyncClient, database: Any, synced: dict[str, str]
) -> None:
    event = {
        "id": "evt_forged",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": int(time.time()),
        "data": {"object": {"id": "sub_x", "object": "subscription"}},
    }
    payload = json.dumps(event).encode()
    forged = await api.post(
        WEBHOOK,
        content=payload,
        headers={"Stripe-Signature": sign(payload, "whsec_not_ours")},
    )
    assert forged.status_code == 400
    assert forged.json()["error"]["code"] == "validation_error"
    stale = await api.post(
        WEBHOOK,
        content=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET, int(time.time()) - 3600)},
    )
    assert stale.status_code == 400
    unsigned = await api.post(WEBHOOK, content=payload)
    assert unsigned.status_code == 400
    assert await _stored_events(database) == 0


async def test_paid_in_the_sandbox_through_api_stripe_webhook(
    billfold_server: BillfoldServer,
) -> None:
    """The real SDK against the Stripe sandbox, its signed webhooks sent to /api/stripe/webhook."""
    server = billfold_server
    state = server.sandbox.state
    with state.lock:
        (endpoint,) = state.all("webhook_endpoint")
        state.update(endpoint, {"url": server.url + WEBHOOK})
    headers = server.bearer("alice")
    async with server.http() as http:
        started = await http.post(
            f"{B}/checkout_session", json={"plan": "premium", "interval": "yearly"}, headers=headers
        )
        assert started.status_code == 200, started.text
        session_id = started.json()["id"]
        assert started.json()["url"].startswith(server.sandbox.url)
        await pay_in_sandbox(server, session_id)
        listed = (await http.get(f"{B}/subscriptions", headers=headers)).json()["subscriptions"]
    (sub,) = listed
    assert (sub["status"], sub["plan"], sub["interval"]) == ("active", "premium", "yearly")
    assert sub["price_id"] == server.prices["billfold_premium_yearly_usd"]
    stripe_sub = await asyncio.to_thread(
        server.sandbox.client().v1.subscriptions.retrieve, sub["stripe_subscription_id"]
    )
    assert stripe_sub.status == "active"
    deliveries = list(state.webhooks.deliveries)
    assert deliveries and all(d["succeeded"] for d in deliveries)
    assert {d["endpoint"] for d in deliveries} == {endpoint["id"]}


async def _open_then_replace(
    api: httpx.AsyncClient, alice: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """Alice opens a monthly Checkout with her key, then a yearly one with another key (which
    expires the first): both answers."""
    first = await api.post(f"{B}/checkout_session", json=MONTHLY, headers=alice)
    yearly = await api.post(
        f"{B}/checkout_session",
        json={"price_id": "billfold_premium_yearly_usd"},
        headers=alice | {"Idempotency-Key": "order-3"},
    )
    assert first.status_code == yearly.status_code == 200
    assert yearly.json()["id"] != first.json()["id"]
    return first, yearly


async def test_idempotency_key_replays_the_same_session(
    api: httpx.AsyncClient, billing_settings: Settings, synced: dict[str, str]
) -> None:
    alice = bearer(billing_settings, "alice") | {"Idempotency-Key": "order-1"}
    first = await api.post(f"{B}/checkout_session", json=MONTHLY, headers=alice)
    again = await api.post(f"{B}/checkout_session", json=MONTHLY, headers=alice)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    # Another key for the same offer: the account's one open session is reused.
    other = await api.post(
        f"{B}/checkout_session", json=MONTHLY, headers=alice | {"Idempotency-Key": "order-2"}
    )
    assert other.json()["id"] == first.json()["id"]
    # Another offer: the open session is expired and a new one opened.
    await _open_then_replace(api, alice)
    # Keys are kept apart per account: bob's "order-1" is bob's own session.
    bob = bearer(billing_settings, "bob") | {"Idempotency-Key": "order-1"}
    bobs = await api.post(f"{B}/checkout_session", json=MONTHLY, headers=bob)
    assert bobs.json()["id"] != first.json()["id"]


async def test_a_key_whose_session_was_replaced_is_a_conflict(
    api: httpx.AsyncClient, billing_settings: Settings, synced: dict[str, str]
) -> None:
    alice = bearer(billing_settings, "alice") | {"Idempotency-Key": "order-1"}
    await _open_then_replace(api, alice)
    # The first key now names an expired session: 409, not a dead link.
    replaced = await api.post(f"{B}/checkout_session", json=MONTHLY, headers=alice)
    assert replaced.status_code == 409, replaced.text


async def test_concurrent_checkouts_in_the_sandbox_leave_one_open_session(
    billfold_server: BillfoldServer,
) -> None:
    """Concurrent starts for one account through the real SDK and the Stripe sandbox: one
    customer, and every session but the last one is expired in Stripe (it cannot be paid)."""
    server = billfold_server
    headers = server.bearer("carol")
    offers = [
        {"plan": "premium", "interval": "monthly"},
        {"plan": "premium", "interval": "yearly"},
        {"plan": "premium", "interval": "monthly", "quantity": 2},
    ]
    async with server.http() as http:
        answers = await asyncio.gather(
            *(http.post(f"{B}/checkout_session", json=o, headers=headers) for o in offers)
        )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    client = server.sandbox.client()
    found = [
        await asyncio.to_thread(client.v1.checkout.sessions.retrieve, a.json()["id"])
        for a in answers
    ]
    assert sorted(s.status for s in found) == ["expired", "expired", "open"]
    assert len({s.customer for s in found}) == 1
