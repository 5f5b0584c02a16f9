"""End to end: billfold served on a loopback port, the Stripe sandbox over the real SDK, the
sandbox's signed webhooks delivered to billfold, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billfold.audit.context import system_audit_context
from billfold.clock import SystemClock
from billfold.container import Container
from billfold.customers.models import AccountKind, BillingAccount
from billfold.stripe.models import WebhookEvent
from billfold.subscriptions import changes, reads
from billfold.subscriptions.models import Subscription
from billfold_sandbox.resources import RESOURCE_MODULES
from tests.e2e_fixtures import BillfoldServer, sandbox_gateway
from tests.fakes.stripe_gateway import sign

P = "/api/v1/payments"
DAY = 86400


def sandbox_call(server: BillfoldServer, method_: str, path_: str, **form: Any) -> Any:
    """A plain HTTP call to the sandbox (its test helper routes are not in the SDK)."""
    response = httpx.request(
        method_,
        server.sandbox.url + path_,
        data={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in form.items()},
        headers={"Authorization": f"Bearer {server.sandbox.api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def subscribe(
    server: BillfoldServer, http: httpx.AsyncClient, user: str, lookup_key: str
) -> dict[str, str]:
    """Plans -> checkout -> the hosted page is paid (helper route) -> webhooks applied."""
    headers = server.bearer(user)
    plans = (await http.get(f"{P}/plans")).json()["data"]["plans"]
    plan = next(p for p in plans if p["id"] == lookup_key)
    response = await http.post(
        f"{P}/create-checkout-session",
        json={"price_id": plan["stripe_price_id"], "interval": plan["duration"]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    started = response.json()["data"]
    assert started["url"].startswith("http")
    sandbox_call(
        server, "POST", f"/v1/test_helpers/checkout/sessions/{started['session_id']}/complete"
    )
    await server.settle()
    return headers


async def status_of(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await http.get(f"{P}/subscription/status", headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def advance_sandbox(server: BillfoldServer, seconds: int) -> None:
    sandbox_call(server, "POST", "/v1/test_helpers/sandbox/clock/advance", seconds=seconds)


def advance_sandbox_to(server: BillfoldServer, at: datetime) -> None:
    sandbox_call(
        server, "POST", "/v1/test_helpers/sandbox/clock/advance", frozen_time=int(at.timestamp())
    )


async def _subscription_row(server: BillfoldServer, user: str) -> Subscription:
    async with server.database.transaction() as session:
        account = (
            await session.execute(
                select(BillingAccount).where(
                    BillingAccount.kind == AccountKind.USER.value,
                    BillingAccount.external_id == user,
                )
            )
        ).scalar_one()
        found = await reads.current_subscription(session, account)
        assert found is not None
        return found


async def test_subscribe_cancel_reactivate_cancel_and_the_period_ends(
    billfold_server: BillfoldServer,
) -> None:
    server = billfold_server
    async with server.http() as http:
        headers = await subscribe(server, http, "alice", "billfold_premium_monthly_usd")
        status = await status_of(http, headers)
        assert status["has_premium"] is True and status["status"] == "active"
        assert status["plan"] == "premium" and status["interval"] == "monthly"

        response = await http.post(f"{P}/subscription/cancel", json={}, headers=headers)
        assert response.json()["data"]["cancel_at_period_end"] is True
        response = await http.post(f"{P}/subscription/reactivate", headers=headers)
        assert response.json()["data"]["cancel_at_period_end"] is False
        response = await http.post(f"{P}/subscription/reactivate", headers=headers)
        assert response.status_code == 400
        assert response.json()["message"] == "Subscription is not set to cancel"
        response = await http.post(
            f"{P}/subscription/cancel", json={"cancel_immediately": False}, headers=headers
        )
        assert response.status_code == 200
        await server.settle()
        status = await status_of(http, headers)
        assert status["cancel_at_period_end"] is True and status["has_premium"] is True

        advance_sandbox(server, 32 * DAY)
        await server.settle()
        status = await status_of(http, headers)
        assert status["status"] == "canceled" and status["has_premium"] is False
        # Stripe agrees.
        row = await _subscription_row(server, "alice")
        stripe_sub = server.sandbox.client().v1.subscriptions.retrieve(row.stripe_subscription_id)
        assert stripe_sub.status == "canceled"
        # A new subscription may start now.
        response = await http.post(
            f"{P}/create-checkout-session",
            json={"price_id": server.prices["billfold_premium_yearly_usd"], "interval": "yearly"},
            headers=headers,
        )
        assert response.status_code == 200


async def test_a_renewal_that_fails_makes_the_subscription_past_due(
    billfold_server: BillfoldServer,
) -> None:
    server = billfold_server
    async with server.http() as http:
        headers = await subscribe(server, http, "bob", "billfold_premium_monthly_usd")
        row = await _subscription_row(server, "bob")
        client = server.sandbox.client()
        failing = client.v1.payment_methods.attach(
            "pm_card_chargeCustomerFail", {"customer": row.stripe_customer_id}
        )
        client.v1.subscriptions.update(
            row.stripe_subscription_id, {"default_payment_method": failing.id}
        )
        client.v1.customers.update(
            row.stripe_customer_id, {"invoice_settings": {"default_payment_method": failing.id}}
        )
        await server.settle()
        # Past the renewal and its invoice's finalization an hour later, whatever the month's
        # length (31 days from the 15th of January was still before it).
        assert row.current_period_end is not None
        advance_sandbox_to(server, row.current_period_end + timedelta(hours=2))
        await server.settle()
        status = await status_of(http, headers)
        assert status["status"] == "past_due"
        assert status["has_premium"] is True  # the grace period (3 days by default)
        async with server.database.transaction() as session:
            types = (await session.execute(select(WebhookEvent.type))).scalars().all()
        assert "invoice.payment_failed" in types
        # Stripe's retries all fail: the subscription ends up unpaid or canceled, no premium.
        for _ in range(4):
            advance_sandbox(server, 8 * DAY)
            await server.settle()
        status = await status_of(http, headers)
        assert status["status"] in ("unpaid", "canceled")
        assert status["has_premium"] is False


def _proration_amounts(server: BillfoldServer, customer_id: str) -> list[tuple[int, bool]]:
    """(amount, is proration) of every line of the customer's newest invoice."""
    client = server.sandbox.client()
    newest = client.v1.invoices.list({"customer": customer_id, "limit": 1}).data[0]
    lines = [item.to_dict() for item in newest.lines.data]
    return sorted(
        (
            int(line["amount"]),
            bool(
                ((line.get("parent") or {}).get("subscription_item_details") or {}).get("proration")
            ),
        )
        for line in lines
    )


async def test_a_plan_change_prorates(billfold_server: BillfoldServer) -> None:
    server = billfold_server
    async with server.http() as http:
        await subscribe(server, http, "carol", "billfold_premium_monthly_usd")
    container = Container(
        settings=server.settings,
        db=server.database,
        clock=SystemClock(),
        stripe_gateway=sandbox_gateway(server.settings, server.sandbox),
    )
    audit = system_audit_context("test")
    advance_sandbox(server, 10 * DAY)
    row = await _subscription_row(server, "carol")
    assert row.current_period_end and row.current_period_start
    period = (row.current_period_end - row.current_period_start).total_seconds()
    unused = 1 - 10 * DAY / period

    async def change(**kwargs: Any) -> Subscription:
        async with server.database.transaction() as session:
            account = (
                await session.execute(
                    select(BillingAccount).where(BillingAccount.external_id == "carol")
                )
            ).scalar_one()
        return await changes.change_plan(
            container, account, audit=audit, proration="always_invoice", **kwargs
        )

    # Three seats instead of one, same price: credit the unused time, charge it three times.
    changed = await change(quantity=3)
    assert changed.quantity == 3
    lines = _proration_amounts(server, changed.stripe_customer_id)
    assert [is_proration for _, is_proration in lines] == [True, True]
    credit, charge = lines[0][0], lines[1][0]
    assert credit == pytest.approx(-699 * unused, abs=2)
    assert charge == pytest.approx(3 * 699 * unused, abs=3)

    # Monthly to yearly: the unused month is credited and the year starts now.
    changed = await change(price_id=server.prices["billfold_premium_yearly_usd"])
    assert changed.interval == "yearly"
    assert changed.price_id == server.prices["billfold_premium_yearly_usd"]
    lines = _proration_amounts(server, changed.stripe_customer_id)
    assert (3 * 6000, False) in lines
    assert any(amount < 0 and is_proration for amount, is_proration in lines)
    await server.settle()
    row = await _subscription_row(server, "carol")
    assert row.interval == "yearly" and row.status == "active" and row.quantity == 3


async def test_duplicated_and_shuffled_webhooks_end_in_the_same_state(
    billfold_server: BillfoldServer,
) -> None:
    server = billfold_server
    sandbox_call(server, "POST", "/v1/test_helpers/sandbox/webhooks", duplicate=True, shuffle=True)
    async with server.http() as http:
        headers = await subscribe(server, http, "dave", "billfold_premium_monthly_usd")
        await http.post(f"{P}/subscription/cancel", json={}, headers=headers)
        await http.post(f"{P}/subscription/reactivate", headers=headers)
        await http.post(f"{P}/subscription/cancel", json={}, headers=headers)
        await server.settle()
        advance_sandbox(server, 32 * DAY)
        await server.settle()
        status = await status_of(http, headers)
    assert status["status"] == "canceled" and status["has_premium"] is False
    row = await _subscription_row(server, "dave")
    stripe_sub = server.sandbox.client().v1.subscriptions.retrieve(row.stripe_subscription_id)
    item = stripe_sub["items"]["data"][0]
    assert (row.status, row.cancel_at_period_end, int(row.current_period_end.timestamp())) == (  # type: ignore[union-attr]
        stripe_sub.status,
        stripe_sub.cancel_at_period_end,
        item["current_period_end"],
    )
    with server.sandbox.state.webhooks.cond:
        log = list(server.sandbox.state.webhooks.deliveries)
    delivered = Counter(d["event"] for d in log if d["succeeded"])
    async with server.database.transaction() as session:
        rows = (await session.execute(select(WebhookEvent))).scalars().all()
    assert rows and all(r.status == "processed" for r in rows)
    # Every event arrived twice and was stored (and applied) once.
    assert {r.id for r in rows} == set(delivered)
    assert all(count >= 2 for count in delivered.values())


async def test_forged_and_stale_webhooks_are_refused_over_the_wire(
    billfold_server: BillfoldServer,
) -> None:
    import json
    import time

    server = billfold_server
    event = {
        "id": "evt_forged",
        "type": "invoice.paid",
        "created": int(time.time()),
        "data": {"object": {}},
    }
    body = json.dumps(event).encode()
    async with server.http() as http:
        for header in (
            sign(body, "whsec_not_the_secret"),
            sign(body, server.settings.webhook_secrets[0], int(time.time()) - 301 - 60),
            "",
        ):
            response = await http.post(
                "/api/stripe/webhook", content=body, headers={"Stripe-Signature": header}
            )
            assert response.status_code == 400, response.text
            response = await http.post(
                f"{P}/webhook", content=body, headers={"Stripe-Signature": header}
            )
            assert response.status_code == 400
            assert response.json()["success"] is False
    async with server.database.transaction() as session:
        assert await session.get(WebhookEvent, "evt_forged") is None


async def test_organization_members_cannot_check_out(billfold_server: BillfoldServer) -> None:
    server = billfold_server
    base = "/api/v1/organizations/org_e2e/billing"
    body = {"price_id": server.prices["billfold_premium_monthly_usd"], "quantity": 3}
    async with server.http() as http:
        member = server.bearer("m", org_id="org_e2e", role="member")
        admin = server.bearer("a", org_id="org_e2e", role="admin")
        assert (await http.post(f"{base}/checkout", json=body, headers=member)).status_code == 403
        response = await http.post(f"{base}/checkout", json=body, headers=admin)
        assert response.status_code == 200, response.text
        session_id = response.json()["session_id"]
        sandbox_call(server, "POST", f"/v1/test_helpers/checkout/sessions/{session_id}/complete")
        await server.settle()
        response = await http.get(f"{base}/subscription", headers=member)
        assert response.json()["status"] == "active" and response.json()["plan"] == "premium"
        assert (await http.post(f"{base}/portal", headers=member)).status_code == 403
        if "billfold_sandbox.resources.portal" in RESOURCE_MODULES:
            portal = await http.post(f"{base}/portal", headers=admin)
            assert portal.status_code == 200, portal.text
    row = await _org_subscription(server, "org_e2e")
    assert row.quantity == 3


async def _org_subscription(server: BillfoldServer, org: str) -> Subscription:
    async with server.database.transaction() as session:
        account = (
            await session.execute(select(BillingAccount).where(BillingAccount.external_id == org))
        ).scalar_one()
        found = await reads.current_subscription(session, account)
        assert found is not None
        return found


# The Checkout and PaymentMethod resources of the sandbox are what these flows drive.
_needed = {"billfold_sandbox.resources.checkout", "billfold_sandbox.resources.payment_methods"}
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.skipif(
        not _needed <= set(RESOURCE_MODULES),
        reason="the sandbox does not serve Checkout sessions and payment methods yet",
    ),
]


async def test_an_event_that_fails_to_apply_is_retried_by_the_server(
    billfold_server: BillfoldServer,
) -> None:
    """Stripe answers 500 while billfold re-reads the subscription: the event is kept with its
    error and traceback, and once Stripe is back the server's retry loop applies it."""
    server = billfold_server
    sandbox_call(
        server,
        "POST",
        "/v1/test_helpers/sandbox/faults",
        path="/v1/subscriptions/*",
        method="GET",
        status=500,
        count=1000,
    )
    async with server.http() as http:
        headers = server.bearer("erin")
        response = await http.post(
            f"{P}/create-checkout-session",
            json={"price_id": server.prices["billfold_premium_monthly_usd"], "interval": "monthly"},
            headers=headers,
        )
        session_id = response.json()["data"]["session_id"]
        sandbox_call(server, "POST", f"/v1/test_helpers/checkout/sessions/{session_id}/complete")

        async def failed() -> list[WebhookEvent]:
            async with server.database.transaction() as session:
                return list(
                    (
                        await session.execute(
                            select(WebhookEvent).where(WebhookEvent.status == "failed")
                        )
                    ).scalars()
                )

        deadline = time.monotonic() + 20
        while not (failing := await failed()):
            assert time.monotonic() < deadline, "no event failed"
            await asyncio.sleep(0.1)
        assert "Stripe" in (failing[0].last_error or "")
        assert "UpstreamUnavailable" in (failing[0].last_traceback or "")
        assert (await status_of(http, headers))["has_premium"] is False

        sandbox_call(server, "DELETE", "/v1/test_helpers/sandbox/faults")
        await server.settle()
        assert (await status_of(http, headers))["has_premium"] is True
    async with server.database.transaction() as session:
        rows = (await session.execute(select(WebhookEvent))).scalars().all()
    assert all(r.status == "processed" and r.last_error is None for r in rows)
    assert any(r.attempts > 1 for r in rows)
