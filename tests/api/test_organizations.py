"""Document 002's organization billing: admins act, members read, others are refused."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.config import Settings
from billfold.container import Container
from billfold.customers.models import BillingAccount
from tests.api.stripe_events import pay_checkout
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import bearer

ORG = "org_acme"
BASE = f"/api/v1/organizations/{ORG}/billing"


async def test_admin_checks_out_members_read_others_refused(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,
    billing_settings: Settings,
    synced: dict[str, str],
    container: Container,
) -> None:
    admin = bearer(billing_settings, "ada", org_id=ORG, role="admin")
    member = bearer(billing_settings, "max", org_id=ORG, role="member")
    outsider = bearer(billing_settings, "eve", org_id="org_other", role="admin")
    body = {"price_id": synced["billfold_premium_monthly_usd"], "quantity": 5}

    response = await api.post(f"{BASE}/checkout", json=body, headers=member)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    assert (await api.post(f"{BASE}/checkout", json=body, headers=outsider)).status_code == 403
    assert (await api.post(f"{BASE}/portal", headers=member)).status_code == 403
    assert (await api.get(f"{BASE}/subscription", headers=outsider)).status_code == 403
    assert (await api.get(f"{BASE}/subscription")).status_code == 401

    response = await api.get(f"{BASE}/subscription", headers=member)
    assert response.status_code == 200
    assert response.json() == {
        "status": None,
        "plan": None,
        "current_period_end": None,
        "cancel_at_period_end": False,
    }
    # No Stripe customer yet: the portal says so.
    assert (await api.post(f"{BASE}/portal", headers=admin)).status_code == 404

    response = await api.post(f"{BASE}/checkout", json=body, headers=admin)
    assert response.status_code == 200, response.text
    started = response.json()
    assert set(started) == {"session_id", "url"}
    assert stripe_world.sessions[started["session_id"]]["quantity"] == 5

    async with container.db.transaction() as session:
        account = (
            await session.execute(select(BillingAccount).where(BillingAccount.external_id == ORG))
        ).scalar_one()
        assert account.kind == "organization" and account.stripe_customer_id
        entries = (
            (await session.execute(select(AuditEntry).where(AuditEntry.account_id == account.id)))
            .scalars()
            .all()
        )
    assert {e.action for e in entries} >= {"customer.created", "checkout.created"}
    assert any(e.actor == "user:ada" for e in entries)

    await pay_checkout(api, stripe_world, started["session_id"])
    response = await api.get(f"{BASE}/subscription", headers=member)
    status = response.json()
    assert status["status"] == "active" and status["plan"] == "premium"
    assert status["current_period_end"] is not None and status["cancel_at_period_end"] is False

    response = await api.post(
        f"{BASE}/portal", json={"return_url": "https://app.example.com/org"}, headers=admin
    )
    assert response.status_code == 200
    assert stripe_world.portal_customer(response.json()["url"]) == account.stripe_customer_id
    response = await api.post(
        f"{BASE}/portal", json={"return_url": "https://elsewhere.example/"}, headers=admin
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "return_url"
    # A second checkout while subscribed conflicts; bad input is 4xx.
    assert (await api.post(f"{BASE}/checkout", json=body, headers=admin)).status_code == 409
    response = await api.post(
        f"{BASE}/checkout", json={"price_id": "x", "quantity": 0}, headers=admin
    )
    assert response.status_code == 422
