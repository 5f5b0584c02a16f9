"""Document 001's credit routes over HTTP on both databases: billfold's real Stripe adapter on
the sandbox, the sandbox's own events delivered (twice, and shuffled) to /api/stripe/webhook."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from billfold.auth.apikeys import create_api_key
from billfold.config import Settings
from billfold.customers.models import AccountKind
from billfold.customers.service import find_account
from billfold.db.engine import Database
from billfold.ledger.verify import verify_ledger
from tests.api.stripe_events import deliver_all
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import bearer, deliver

B = "/api/billing"
WEBHOOK = "/api/stripe/webhook"
URLS = {"successUrl": "https://app.example.com/ok", "cancelUrl": "https://app.example.com/no"}


async def deliver_shuffled_twice(api: httpx.AsyncClient, world: SandboxStripe, seed: int) -> None:
    """Every event so far, twice, in a shuffled order (Stripe's retries and reordering)."""
    events = world.events * 2
    random.Random(seed).shuffle(events)
    for event in events:
        response = await deliver(api, event, path=WEBHOOK)
        assert response.status_code == 200, response.text
    await deliver_all(api, world, path=WEBHOOK)


async def _balance(api: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.get(f"{B}/balance", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _topup(
    api: httpx.AsyncClient, headers: dict[str, str], credits: int, **extra: Any
) -> str:
    response = await api.post(
        f"{B}/topup", json={"credits": credits, **URLS, **extra}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"sessionUrl", "checkoutUrl"}
    assert body["sessionUrl"] == body["checkoutUrl"]
    return str(body["sessionUrl"]).rsplit("/", 1)[-1].split("?")[0]


def _session_id(world: SandboxStripe, url: str | None = None) -> str:
    found = [s for s in world.server.state.all("checkout.session") if s.get("mode") == "payment"]
    return str(found[0]["id"]) if url is None else next(s["id"] for s in found if s["url"] == url)


async def backend(database: Database, user: str) -> dict[str, str]:
    """The host app's backend acting on `user`'s account: usage and holds take an API key."""
    async with database.transaction() as session:
        key = await create_api_key(session, f"backend for {user}")
    return {"X-API-Key": key.secret, "X-Billfold-Account": f"user:{user}"}


async def _clean(database: Database) -> None:
    async with database.read() as session:
        assert await verify_ledger(session) == []


async def test_topup_grants_once_whatever_the_delivery(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    headers = bearer(billing_settings, "topper")
    assert await _balance(api, headers) == {
        "credits": 0,
        "balance": 0,
        "currency": "EUR",
        "dues": [],
    }
    price = await api.get(f"{B}/topup/calculate?credits=150&currency=usd", headers=headers)
    assert price.json() == {"credits": 150, "price": 16.5, "currency": "USD"}
    tiered = await api.get(f"{B}/topup/calculate?credits=500", headers=headers)
    assert tiered.json() == {"credits": 500, "price": 45.0, "currency": "EUR"}
    response = await api.post(
        f"{B}/topup", json={"credits": 150, "currency": "usd", **URLS}, headers=headers
    )
    assert response.status_code == 200, response.text
    session_id = _session_id(stripe_world)
    session = stripe_world.sessions[session_id]
    assert (session["mode"], session["amount_total"], session["currency"]) == (
        "payment",
        1650,
        "usd",
    )
    # Not paid yet: nothing granted, nothing in the history.
    await deliver_all(api, stripe_world, path=WEBHOOK)
    assert (await _balance(api, headers))["credits"] == 0
    stripe_world.complete_checkout(session_id)
    await deliver_shuffled_twice(api, stripe_world, seed=1)
    assert (await _balance(api, headers))["credits"] == 150
    history = (await api.get(f"{B}/history", headers=headers)).json()
    assert history["pagination"] == {
        "page": 1,
        "pageSize": 20,
        "total": 1,
        "totalPages": 1,
        "hasNextPage": False,
        "hasPrevPage": False,
    }
    (row,) = history["transactions"]
    assert (row["type"], row["amount"], row["currency"], row["credits"], row["status"]) == (
        "topup",
        16.5,
        "USD",
        150,
        "completed",
    )
    billing = (await api.get(f"{B}/billing-history", headers=headers)).json()
    assert {(i["type"], i["amount"], i["status"]) for i in billing["items"]} >= {
        ("charge", 16.5, "succeeded")
    }
    await _clean(database)


async def test_packages_need_an_active_subscription(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
    database: Database,
) -> None:
    headers = bearer(billing_settings, "packer")
    empty = (await api.get(f"{B}/packages", headers=headers)).json()
    assert empty == {"packages": [], "currency": "EUR", "subscriptionRequired": True}
    refused = await api.post(
        f"{B}/purchase", json={"packageId": "starter", **URLS}, headers=headers
    )
    assert refused.status_code == 402, refused.text
    assert not [s for s in stripe_world.server.state.all("checkout.session")]
    subscribe = await api.post(
        "/api/subscriptions/subscribe",
        json={"planId": "premium", "interval": "monthly"},
        headers=headers,
    )
    assert subscribe.status_code == 200, subscribe.text
    stripe_world.complete_checkout(subscribe.json()["sessionId"])
    await deliver_all(api, stripe_world, path=WEBHOOK)
    listed = (await api.get(f"{B}/packages?currency=usd", headers=headers)).json()
    assert listed["subscriptionRequired"] is False
    assert listed["packages"][0] == {
        "id": "starter",
        "name": "Starter",
        "credits": 100,
        "price": 10.99,
        "currency": "USD",
        "description": "For trying it out",
    }
    bought = await api.post(f"{B}/purchase", json={"packageId": "pro", **URLS}, headers=headers)
    assert bought.status_code == 200, bought.text
    session_id = _session_id(stripe_world, bought.json()["sessionUrl"])
    assert stripe_world.sessions[session_id]["amount_total"] == 3999
    stripe_world.complete_checkout(session_id)
    await deliver_shuffled_twice(api, stripe_world, seed=2)
    assert (await _balance(api, headers))["credits"] == 500
    types = {
        t["type"] for t in (await api.get(f"{B}/history", headers=headers)).json()["transactions"]
    }
    assert types == {"credit_purchase", "subscription"}
    await _clean(database)


async def test_refund_and_lost_dispute_claw_back_in_proportion(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    headers = bearer(billing_settings, "refunded")
    await _topup(api, headers, 100)  # 10.00 EUR
    session_id = _session_id(stripe_world)
    stripe_world.complete_checkout(session_id)
    await deliver_all(api, stripe_world, path=WEBHOOK)
    # Read (and so cache) the history before the refund: the read after it must not be stale.
    cached = (await api.get(f"{B}/history", headers=headers)).json()["transactions"]
    assert [t["type"] for t in cached] == ["topup"]
    spent = await api.post(
        f"{B}/usage",
        json={"credits": 80, "idempotencyKey": "job-1"},
        headers=await backend(database, "refunded"),
    )
    assert spent.status_code == 200, spent.text
    intent = stripe_world.sessions[session_id]["payment_intent"]
    stripe_world.client.v1.refunds.create({"payment_intent": intent, "amount": 500})
    await deliver_shuffled_twice(api, stripe_world, seed=3)
    assert (await _balance(api, headers))["credits"] == 20 - 50
    history = (await api.get(f"{B}/history", headers=headers)).json()["transactions"]
    assert {(t["type"], t["amount"], t["credits"]) for t in history} == {
        ("topup", 10.0, 100),
        ("refund", 5.0, 50),
    }
    # A lost dispute of what is left: its credits clawed back too (the sandbox has no disputes
    # yet, so the event is Stripe-shaped and signed with the webhook secret).
    dispute = {
        "id": "evt_credits_dispute_lost",
        "object": "event",
        "type": "charge.dispute.closed",
        "created": 1_768_478_400,  # SANDBOX_EPOCH
        "data": {
            "object": {
                "id": "du_credits_1",
                "object": "dispute",
                "amount": 500,
                "currency": "eur",
                "status": "lost",
                "payment_intent": intent,
                "charge": "ch_x",
                "metadata": {},
            }
        },
    }
    for _ in range(2):
        assert (await deliver(api, dispute, path=WEBHOOK)).status_code == 200
    assert (await _balance(api, headers))["credits"] == -80
    # The next purchase settles the negative balance first.
    await _topup(api, headers, 100)
    second = [
        s["id"] for s in stripe_world.server.state.all("checkout.session") if s["id"] != session_id
    ]
    stripe_world.complete_checkout(second[0])
    await deliver_all(api, stripe_world, path=WEBHOOK)
    assert (await _balance(api, headers))["credits"] == 20
    await _clean(database)


async def ach_topup(
    api: httpx.AsyncClient,
    world: SandboxStripe,
    headers: dict[str, str],
    payment_method: str,
    *,
    seed: int,
) -> None:
    """A top-up of 100 credits in usd paid on the hosted page by a bank debit from
    `payment_method` (a test bank account), its events delivered: pending until it settles."""
    await _topup(api, headers, 100, currency="usd")
    session_id = _session_id(world)
    response = await asyncio.to_thread(
        httpx.post,
        f"{world.server.url}/v1/test_helpers/checkout/sessions/{session_id}/complete",
        data={"payment_method": payment_method},
        headers={"Authorization": f"Bearer {world.server.api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    await deliver_shuffled_twice(api, world, seed=seed)


async def test_ach_topup_pending_until_it_settles(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    headers = bearer(billing_settings, "ach")
    await ach_topup(api, stripe_world, headers, "pm_usBankAccount_success", seed=4)
    assert (await _balance(api, headers))["credits"] == 0
    (row,) = (await api.get(f"{B}/history", headers=headers)).json()["transactions"]
    assert row["status"] == "pending"
    stripe_world.advance_clock(5 * 24 * 3600)
    await deliver_shuffled_twice(api, stripe_world, seed=5)
    assert (await _balance(api, headers))["credits"] == 100
    (row,) = (await api.get(f"{B}/history", headers=headers)).json()["transactions"]
    assert row["status"] == "completed"
    await _clean(database)


async def test_bad_input_is_400_naming_the_field(
    api: httpx.AsyncClient, billing_settings: Settings, stripe_world: SandboxStripe
) -> None:
    headers = bearer(billing_settings, "mistaken")
    for credits in (0, -5, 1.5, "ten", True, 2_000_000, None):
        response = await api.post(f"{B}/topup", json={"credits": credits, **URLS}, headers=headers)
        assert response.status_code == 400, (credits, response.text)
        assert response.json()["error"]["field"] == "credits"
    for query, field in (
        ("credits=abc", "credits"),
        ("credits=%C2%B2", "credits"),  # '²': str.isdigit() says yes, int() says no
        ("credits=%D9%A3", "credits"),  # Arabic-Indic three: int() reads it; credits are ASCII
        ("credits=0", "credits"),
        ("credits=5", "credits"),
        ("credits=10&currency=gbp", "currency"),
    ):
        response = await api.get(f"{B}/topup/calculate?{query}", headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == field
    bad_host = await api.post(
        f"{B}/topup",
        json={
            "credits": 10,
            "successUrl": "https://evil.example.net/x",
            "cancelUrl": URLS["cancelUrl"],
        },
        headers=headers,
    )
    assert (bad_host.status_code, bad_host.json()["error"]["field"]) == (400, "successUrl")
    unknown = await api.post(f"{B}/purchase", json={"packageId": "nope", **URLS}, headers=headers)
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (400, "packageId")
    for path in ("history", "billing-history"):
        big = await api.get(f"{B}/{path}?pageSize=101", headers=headers)
        assert (big.status_code, big.json()["error"]["field"]) == (400, "pageSize")
    assert not stripe_world.server.state.all("checkout.session")


async def test_usage_batch_check_holds_and_fresh_reads(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    headers = bearer(billing_settings, "user-of-credits")
    host = await backend(database, "user-of-credits")
    await _topup(api, headers, 50)
    stripe_world.complete_checkout(_session_id(stripe_world))
    await deliver_all(api, stripe_world, path=WEBHOOK)
    before = await api.get(f"{B}/history", headers=headers)
    version = int(before.headers["X-Balance-Version"])
    check = await api.post(f"{B}/usage/check", json={"credits": 60}, headers=host)
    assert check.json() == {
        "allowed": False,
        "credits": 60,
        "available": 50,
        "shortfall": 10,
        "version": version,
    }
    refused = await api.post(
        f"{B}/usage", json={"credits": 60, "idempotencyKey": "big"}, headers=host
    )
    assert refused.status_code == 402
    assert refused.json()["error"]["details"]["shortfall"] == 10
    batch = await api.post(
        f"{B}/usage/batch",
        json={
            "events": [
                {"credits": 10, "idempotencyKey": "a"},
                {"credits": 100, "idempotencyKey": "b"},
                {"credits": 10, "idempotencyKey": "a"},
                {"credits": 0, "idempotencyKey": "c"},
                {"credits": 5, "idempotencyKey": "d"},
            ]
        },
        headers=host,
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["status"] for r in results] == ["ok", "insufficient_credits", "ok", "error", "ok"]
    assert [r.get("balance") for r in results] == [40, None, 40, None, 35]
    assert results[1]["shortfall"] == 60 and results[2]["replayed"] is True
    too_many = await api.post(
        f"{B}/usage/batch",
        json={"events": [{"credits": 1, "idempotencyKey": str(i)} for i in range(101)]},
        headers=host,
    )
    assert (too_many.status_code, too_many.json()["error"]["field"]) == (400, "events")
    hold = await api.post(
        f"{B}/holds", json={"credits": 20, "idempotencyKey": "h", "expiresIn": 600}, headers=host
    )
    assert hold.status_code == 200, hold.text
    hold_id = hold.json()["hold"]["id"]
    assert hold.json()["balance"] == 15
    captured = await api.post(f"{B}/holds/{hold_id}/capture", json={"credits": 5}, headers=host)
    assert captured.json()["balance"] == 30 and captured.json()["hold"]["state"] == "captured"
    again = await api.post(f"{B}/holds/{hold_id}/capture", json={"credits": 5}, headers=host)
    assert again.status_code == 409
    released = await api.post(f"{B}/holds/{hold_id}/release", headers=host)
    assert released.status_code == 409
    listed = (await api.get(f"{B}/holds", headers=host)).json()["holds"]
    assert [(h["id"], h["captured"]) for h in listed] == [(hold_id, 5)]
    # Never stale: each read after a write sees it, and the version only grew.
    after = await api.get(f"{B}/balance", headers=headers)
    assert after.json()["credits"] == 30
    assert int(after.headers["X-Balance-Version"]) > version
    await _clean(database)


@pytest.mark.parametrize("n", [100])
async def test_concurrent_usage_requests_never_overdraw(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Database,
    n: int,
) -> None:
    headers = bearer(billing_settings, "racer")
    host = await backend(database, "racer")
    await _topup(api, headers, 30)
    stripe_world.complete_checkout(_session_id(stripe_world))
    await deliver_all(api, stripe_world, path=WEBHOOK)
    replies = await asyncio.gather(
        *(
            api.post(f"{B}/usage", json={"credits": 1, "idempotencyKey": f"k{i}"}, headers=host)
            for i in range(n)
        )
    )
    codes = [r.status_code for r in replies]
    assert codes.count(200) == 30 and codes.count(402) == n - 30, codes
    assert (await _balance(api, headers))["credits"] == 0
    await _clean(database)


async def test_usage_and_holds_take_only_an_api_key(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    """Document 001: usage and holds are the host app's backend's (an API key naming the
    account); a user's token is refused (403, saying so) before anything is resolved or written."""
    user = bearer(billing_settings, "tokened")
    for method, path, body in (
        ("POST", "usage", {"credits": 1, "idempotencyKey": "u"}),
        ("POST", "usage/batch", {"events": [{"credits": 1, "idempotencyKey": "u"}]}),
        ("POST", "usage/check", {"credits": 1}),
        ("POST", "holds", {"credits": 1, "idempotencyKey": "h"}),
        ("GET", "holds", None),
        ("POST", "holds/hold_x/capture", {"credits": 1}),
        ("POST", "holds/hold_x/release", None),
    ):
        response = await api.request(method, f"{B}/{path}", json=body, headers=user)
        assert response.status_code == 403, (path, response.text)
        assert "API key" in response.json()["error"]["message"], path
    async with database.read() as session:
        assert await find_account(session, AccountKind.USER, "tokened") is None
    host = await backend(database, "tokened")
    checked = await api.post(f"{B}/usage/check", json={"credits": 1}, headers=host)
    assert checked.status_code == 200 and checked.json()["allowed"] is False
    assert (await api.get(f"{B}/holds", headers=host)).json() == {"holds": []}
