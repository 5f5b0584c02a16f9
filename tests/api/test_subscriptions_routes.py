"""Document 001's `/api/subscriptions/*` over HTTP with billfold's Stripe adapter on the sandbox
(every route's shape, its errors, shops chosen by token or header), then end to end with the
sandbox's own webhook deliveries, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import select

from billfold.config import Settings
from billfold.customers.models import BillingAccount
from tests.api.stripe_events import pay_checkout, pay_in_sandbox, sandbox_post
from tests.e2e_fixtures import BillfoldServer
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import bearer

S = "/api/subscriptions"
APP = "https://app.example.com"
SUBSCRIPTION_KEYS = {
    "id",
    "stripeSubscriptionId",
    "plan",
    "status",
    "interval",
    "amount",
    "currency",
    "quantity",
    "currentPeriodStart",
    "currentPeriodEnd",
    "cancelAtPeriodEnd",
    "cancelAt",
    "canceledAt",
    "trialEnd",
    "createdAt",
}


async def _subscribe(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,
    headers: dict[str, str],
    **choice: Any,
) -> dict[str, Any]:
    body = {"planId": "premium", "successUrl": f"{APP}/ok", "cancelUrl": f"{APP}/no"} | choice
    response = await api.post(f"{S}/subscribe", json=body, headers=headers)
    assert response.status_code == 200, response.text
    checkout: dict[str, Any] = response.json()
    await pay_checkout(api, stripe_world, checkout["sessionId"])
    return checkout


def _price_of(line: dict[str, Any]) -> str | None:
    pricing = line.get("pricing") or {}
    details = pricing.get("price_details") or {}
    price = details.get("price") or line.get("price")
    return price if isinstance(price, str) or price is None else str(price.get("id"))


async def test_every_route_needs_a_token(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "current"),
        ("POST", "subscribe"),
        ("PUT", "update"),
        ("POST", "cancel"),
        ("GET", "portal"),
    ]:
        response = await api.request(method, f"{S}/{path}", json={})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "unauthenticated"


async def test_current_without_subscription(
    api: httpx.AsyncClient, billing_settings: Settings, synced: dict[str, str]
) -> None:
    response = await api.get(f"{S}/current", headers=bearer(billing_settings, "alice"))
    assert response.status_code == 200
    assert response.json() == {"subscription": None, "hasPremium": False}


async def test_subscribe_answers_the_checkout_urls(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    response = await api.post(
        f"{S}/subscribe",
        json={
            "planId": "premium",
            "interval": "yearly",
            "currency": "EUR",
            "successUrl": f"{APP}/ok",
            "cancelUrl": f"{APP}/no",
        },
        headers=bearer(billing_settings, "alice"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"sessionId", "sessionUrl", "checkoutUrl"}
    session = stripe_world.sessions[body["sessionId"]]
    assert body["sessionUrl"] == body["checkoutUrl"] == session["url"]
    assert session["price"] == synced["billfold_premium_yearly_eur"]
    assert (session["success_url"], session["cancel_url"]) == (f"{APP}/ok", f"{APP}/no")
    keyed = bearer(billing_settings, "bob") | {"Idempotency-Key": "k1"}
    first = await api.post(f"{S}/subscribe", json={"planId": "premium"}, headers=keyed)
    again = await api.post(f"{S}/subscribe", json={"planId": "premium"}, headers=keyed)
    assert first.json()["sessionId"] == again.json()["sessionId"] != body["sessionId"]


async def test_subscribe_errors(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "alice")
    bad_host = await api.post(
        f"{S}/subscribe",
        json={"planId": "premium", "successUrl": "https://evil.example.net/ok"},
        headers=headers,
    )
    assert bad_host.status_code == 400
    assert bad_host.json()["error"]["code"] == "validation_error"
    assert "evil.example.net" in bad_host.json()["error"]["message"]
    nothing = await api.post(f"{S}/subscribe", json={}, headers=headers)
    assert nothing.status_code == 400
    assert nothing.json()["error"]["field"] == "planId"
    unknown = await api.post(f"{S}/subscribe", json={"planId": "gold"}, headers=headers)
    assert unknown.status_code == 400
    bad_interval = await api.post(
        f"{S}/subscribe", json={"planId": "premium", "interval": "hourly"}, headers=headers
    )
    assert bad_interval.status_code == 422
    assert bad_interval.json()["error"]["field"] == "interval"

    await _subscribe(api, stripe_world, headers)
    second = await api.post(f"{S}/subscribe", json={"planId": "premium"}, headers=headers)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conflict"


async def test_current_after_paying(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "alice")
    await _subscribe(api, stripe_world, headers)
    response = await api.get(f"{S}/current", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["hasPremium"] is True
    sub = body["subscription"]
    assert set(sub) == SUBSCRIPTION_KEYS
    assert sub["stripeSubscriptionId"] in stripe_world.subscriptions
    assert (sub["plan"], sub["status"], sub["interval"]) == ("premium", "active", "monthly")
    assert (sub["amount"], sub["currency"], sub["quantity"]) == (699, "USD", 1)
    assert sub["cancelAtPeriodEnd"] is False
    assert sub["currentPeriodEnd"].endswith("Z")
    assert sub["currentPeriodStart"] < sub["currentPeriodEnd"]


async def test_update_changes_the_plan_with_proration(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "alice")
    none_yet = await api.put(f"{S}/update", json={"planId": "premium"}, headers=headers)
    assert none_yet.status_code == 400
    assert none_yet.json()["error"]["message"] == "No active Stripe subscription found"

    await _subscribe(api, stripe_world, headers)
    empty = await api.put(f"{S}/update", json={}, headers=headers)
    assert empty.status_code == 400
    same = await api.put(f"{S}/update", json={"planId": "premium"}, headers=headers)
    assert same.status_code == 400

    response = await api.put(
        f"{S}/update", json={"planId": "premium", "interval": "yearly"}, headers=headers
    )
    assert response.status_code == 200, response.text
    sub = response.json()["subscription"]
    assert set(sub) == SUBSCRIPTION_KEYS
    assert (sub["interval"], sub["amount"]) == ("yearly", 6000)
    customer = stripe_world.subscriptions[sub["stripeSubscriptionId"]]["customer"]
    prorations = stripe_world.proration_items(customer)
    # A new interval restarts the cycle: the unused monthly time is credited as a proration
    # (the yearly price is billed in full, as a plain line).
    assert [(_price_of(i), i["amount"] < 0) for i in prorations] == [
        (synced["billfold_premium_monthly_usd"], True)
    ]

    back = await api.put(
        f"{S}/update",
        json={"priceId": synced["billfold_premium_monthly_usd"], "prorationBehavior": "none"},
        headers=headers,
    )
    assert back.status_code == 200
    assert back.json()["subscription"]["interval"] == "monthly"
    assert len(stripe_world.proration_items(customer)) == len(prorations)
    bad = await api.put(
        f"{S}/update", json={"planId": "premium", "prorationBehavior": "later"}, headers=headers
    )
    assert bad.status_code == 422


async def test_cancel_at_period_end_then_now(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "alice")
    nothing = await api.post(f"{S}/cancel", headers=headers)
    assert nothing.status_code == 400
    await _subscribe(api, stripe_world, headers)

    at_end = await api.post(f"{S}/cancel", headers=headers)  # no body: at the period end
    assert at_end.status_code == 200, at_end.text
    sub = at_end.json()["subscription"]
    assert (sub["status"], sub["cancelAtPeriodEnd"]) == ("active", True)
    assert sub["cancelAt"] == sub["currentPeriodEnd"]
    current = (await api.get(f"{S}/current", headers=headers)).json()
    assert current["hasPremium"] is True

    bad = await api.post(f"{S}/cancel", json={"cancelImmediately": "soon"}, headers=headers)
    assert bad.status_code == 422
    now = await api.post(f"{S}/cancel", json={"cancelImmediately": True}, headers=headers)
    assert now.status_code == 200
    assert now.json()["subscription"]["status"] == "canceled"
    assert now.json()["subscription"]["canceledAt"] is not None
    current = (await api.get(f"{S}/current", headers=headers)).json()
    assert current["hasPremium"] is False
    assert current["subscription"]["status"] == "canceled"


async def test_portal(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "alice")
    before = await api.get(f"{S}/portal", headers=headers)
    assert before.status_code == 404
    assert before.json()["error"]["message"].startswith("no billing record")
    await api.post(f"{S}/subscribe", json={"planId": "premium"}, headers=headers)
    response = await api.get(
        f"{S}/portal", params={"returnUrl": f"{APP}/settings"}, headers=headers
    )
    assert response.status_code == 200
    assert set(response.json()) == {"url"}
    customer = stripe_world.portal_customer(response.json()["url"])
    assert customer is not None and customer.startswith("cus_")
    elsewhere = await api.get(
        f"{S}/portal", params={"returnUrl": "https://evil.example.net/"}, headers=headers
    )
    assert elsewhere.status_code == 400


async def test_shop_from_the_token_or_an_entitled_header(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Any,
    synced: dict[str, str],
) -> None:
    one = bearer(billing_settings, "owner", shop="one.myshopify.com")
    await _subscribe(api, stripe_world, one)
    assert (await api.get(f"{S}/current", headers=one)).json()["hasPremium"] is True

    both = bearer(billing_settings, "owner", shops=["one.myshopify.com", "two.myshopify.com"])
    two = both | {"X-Shopify-Shop-Domain": "two.myshopify.com"}
    assert (await api.get(f"{S}/current", headers=two)).json() == {
        "subscription": None,
        "hasPremium": False,
    }
    first = both | {"X-Shopify-Shop-Domain": "ONE.myshopify.com"}
    assert (await api.get(f"{S}/current", headers=first)).json()["hasPremium"] is True
    # Several shops and no header: the caller's own user account (billfold.auth.tenancy).
    own = await api.get(f"{S}/current", headers=both)
    assert own.json() == {"subscription": None, "hasPremium": False}
    foreign = one | {"X-Shopify-Shop-Domain": "other.myshopify.com"}
    refused = await api.post(f"{S}/subscribe", json={"planId": "premium"}, headers=foreign)
    assert refused.status_code == 403
    async with database.transaction() as session:
        kinds = (
            await session.execute(select(BillingAccount.kind, BillingAccount.external_id))
        ).all()
    assert sorted(kinds) == [
        ("shop", "one.myshopify.com"),
        ("shop", "two.myshopify.com"),
        ("user", "owner"),
    ]


async def test_the_whole_flow_against_the_stripe_sandbox(billfold_server: BillfoldServer) -> None:
    """The real SDK and the Stripe sandbox: subscribe, pay, change plan with proration, cancel."""
    server = billfold_server
    headers = server.bearer("owner", shop="demo.myshopify.com")

    async with server.http() as http:
        started = await http.post(f"{S}/subscribe", json={"planId": "premium"}, headers=headers)
        assert started.status_code == 200, started.text
        await pay_in_sandbox(server, started.json()["sessionId"])
        current = (await http.get(f"{S}/current", headers=headers)).json()
        assert current["hasPremium"] is True
        assert (current["subscription"]["interval"], current["subscription"]["amount"]) == (
            "monthly",
            699,
        )

        await asyncio.to_thread(
            sandbox_post, server, "/v1/test_helpers/sandbox/clock/advance", seconds=10 * 86400
        )
        changed = await http.put(
            f"{S}/update",
            json={"planId": "premium", "interval": "yearly", "prorationBehavior": "always_invoice"},
            headers=headers,
        )
        assert changed.status_code == 200, changed.text
        sub = changed.json()["subscription"]
        assert (sub["interval"], sub["amount"], sub["status"]) == ("yearly", 6000, "active")
        client = server.sandbox.client()
        customer = (
            await asyncio.to_thread(client.v1.subscriptions.retrieve, sub["stripeSubscriptionId"])
        ).customer
        invoice = (
            await asyncio.to_thread(client.v1.invoices.list, {"customer": customer, "limit": 1})
        ).data[0]
        amounts = sorted(int(line.amount) for line in invoice.lines.data)
        assert 6000 in amounts
        assert amounts[0] < 0  # the unused part of the month, credited

        portal = await http.get(
            f"{S}/portal", params={"returnUrl": f"{APP}/billing"}, headers=headers
        )
        assert portal.status_code == 200
        assert (await http.get(portal.json()["url"])).status_code == 200

        canceled = await http.post(f"{S}/cancel", headers=headers)
        assert canceled.json()["subscription"]["cancelAtPeriodEnd"] is True
        await server.settle()
        current = (await http.get(f"{S}/current", headers=headers)).json()
    assert current["hasPremium"] is True
    assert current["subscription"]["cancelAtPeriodEnd"] is True
    assert current["subscription"]["interval"] == "yearly"
