"""Document 004's `/api/v1/payments/*`: every route in its `{success, message, data}` envelope,
errors included, over HTTP with billfold's Stripe adapter on the sandbox, on SQLite and
PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from billfold.config import Settings
from billfold.container import Container
from billfold.stripe.models import WebhookEvent
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import OLD_WEBHOOK_SECRET, bearer, deliver

P = "/api/v1/payments"


def _envelope(response: httpx.Response, status: int, success: bool) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "message", "data"}
    assert body["success"] is success
    assert isinstance(body["message"], str) and body["message"]
    return body["data"]


async def _deliver_all(api: httpx.AsyncClient, stripe_world: SandboxStripe) -> None:
    for event in stripe_world.events:
        response = await deliver(api, event)
        _envelope(response, 200, True)


async def _subscribe(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,
    settings: Settings,
    synced: dict[str, str],
    user: str = "alice",
) -> dict[str, str]:
    headers = bearer(settings, user)
    response = await api.post(
        f"{P}/create-checkout-session",
        json={"price_id": synced["billfold_premium_monthly_usd"], "interval": "monthly"},
        headers=headers,
    )
    data = _envelope(response, 200, True)
    stripe_world.complete_checkout(data["session_id"])
    await _deliver_all(api, stripe_world)
    return headers


async def test_plans_and_config_are_public(api: httpx.AsyncClient, synced: dict[str, str]) -> None:
    data = _envelope(await api.get(f"{P}/plans"), 200, True)
    assert data["total"] == 2 == len(data["plans"])
    monthly, yearly = data["plans"]
    assert monthly == {
        "id": "billfold_premium_monthly_usd",
        "name": "Premium",
        "plan_code": "premium_monthly",
        "duration": "monthly",
        "price": 6.99,
        "currency": "USD",
        "stripe_price_id": synced["billfold_premium_monthly_usd"],
        "plan_details": monthly["plan_details"],
        "description": "Premium monthly subscription",
        "is_active": "true",
        "display_order": "1",
    }
    assert yearly["price"] == 60.0 and yearly["duration"] == "yearly"
    assert yearly["display_order"] == "2"
    assert "Save 28% compared to monthly" in yearly["plan_details"]
    eur = _envelope(await api.get(f"{P}/plans", params={"currency": "EUR"}), 200, True)
    assert {p["currency"] for p in eur["plans"]} == {"EUR"}

    config = _envelope(await api.get(f"{P}/config"), 200, True)
    assert config == {
        "publishable_key": config["publishable_key"],
        "monthly_price_id": synced["billfold_premium_monthly_usd"],
        "yearly_price_id": synced["billfold_premium_yearly_usd"],
        "monthly_price": "$6.99",
        "yearly_price": "$60.00",
    }
    assert config["publishable_key"].startswith("pk_")


async def test_subscribe_status_details_cancel_reactivate(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,
    billing_settings: Settings,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "alice")
    before = _envelope(await api.get(f"{P}/subscription/status", headers=headers), 200, True)
    assert before["has_premium"] is False and before["status"] is None
    _envelope(await api.get(f"{P}/subscription", headers=headers), 404, False)

    await _subscribe(api, stripe_world, billing_settings, synced)
    status = _envelope(await api.get(f"{P}/subscription/status", headers=headers), 200, True)
    assert status == {
        "has_premium": True,
        "plan": "premium",
        "status": "active",
        "interval": "monthly",
        "current_period_end": status["current_period_end"],
        "cancel_at_period_end": False,
    }
    assert len(status["current_period_end"]) == 19  # "2024-03-01T00:00:00"

    details = _envelope(await api.get(f"{P}/subscription", headers=headers), 200, True)
    assert set(details) == {
        "id",
        "user_id",
        "plan",
        "interval",
        "status",
        "stripe_customer_id",
        "stripe_subscription_id",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
        "canceled_at",
        "created_at",
        "updated_at",
    }
    assert details["user_id"] == "alice" and details["stripe_subscription_id"].startswith("sub_")

    response = await api.post(f"{P}/subscription/reactivate", headers=headers)
    assert _envelope(response, 400, False) is None
    assert response.json()["message"] == "Subscription is not set to cancel"

    response = await api.post(f"{P}/subscription/cancel", headers=headers)  # no body
    data = _envelope(response, 200, True)
    assert response.json()["message"] == "Subscription will cancel at end of billing period"
    assert data == {
        "id": details["id"],
        "status": "active",
        "cancel_at_period_end": True,
        "current_period_end": details["current_period_end"],
    }
    response = await api.post(f"{P}/subscription/reactivate", headers=headers)
    data = _envelope(response, 200, True)
    assert response.json()["message"] == "Subscription reactivated successfully"
    assert data["cancel_at_period_end"] is False

    response = await api.post(
        f"{P}/subscription/cancel", json={"cancel_immediately": True}, headers=headers
    )
    data = _envelope(response, 200, True)
    assert response.json()["message"] == "Subscription canceled immediately"
    assert data["status"] == "canceled" and data["canceled_at"] is not None
    assert set(data) == {"id", "status", "cancel_at_period_end", "canceled_at"}

    response = await api.post(f"{P}/subscription/cancel", json={}, headers=headers)
    _envelope(response, 400, False)
    assert response.json()["message"] == "No active Stripe subscription found"


async def test_errors_use_the_envelope(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,
    billing_settings: Settings,
    synced: dict[str, str],
) -> None:
    headers = bearer(billing_settings, "bob")
    # No token.
    _envelope(await api.get(f"{P}/subscription/status"), 401, False)
    _envelope(
        await api.post(
            f"{P}/create-checkout-session", json={"price_id": "x", "interval": "monthly"}
        ),
        401,
        False,
    )
    # Validation: missing field, bad interval, unknown price, foreign redirect -> 400.
    for body in (
        {"interval": "monthly"},
        {"price_id": synced["billfold_premium_monthly_usd"], "interval": "weekly"},
        {"price_id": "price_nope", "interval": "monthly"},
        {"price_id": synced["billfold_premium_monthly_usd"], "interval": "yearly"},
        {
            "price_id": synced["billfold_premium_monthly_usd"],
            "interval": "monthly",
            "success_url": "https://phish.example.org/",
        },
    ):
        response = await api.post(f"{P}/create-checkout-session", json=body, headers=headers)
        _envelope(response, 400, False)
    response = await api.post(f"{P}/subscription/cancel", content=b"{not json", headers=headers)
    _envelope(response, 400, False)
    # Stripe failing -> 500 with the document's message.
    stripe_world.fail_next("/v1/customers", count=2)  # the call and the SDK's one retry
    response = await api.post(
        f"{P}/create-checkout-session",
        json={"price_id": synced["billfold_premium_monthly_usd"], "interval": "monthly"},
        headers=headers,
    )
    _envelope(response, 500, False)
    assert response.json()["message"].startswith("Failed to create checkout session: ")
    # A second subscription while one is live -> 409.
    await _subscribe(api, stripe_world, billing_settings, synced, user="bob")
    response = await api.post(
        f"{P}/create-checkout-session",
        json={"price_id": synced["billfold_premium_yearly_usd"], "interval": "yearly"},
        headers=headers,
    )
    _envelope(response, 409, False)
    # Unknown route under the prefix.
    _envelope(await api.get(f"{P}/nope"), 404, False)


async def _count_events(container: Container) -> int:
    async with container.db.transaction() as session:
        return int(
            (await session.execute(select(func.count()).select_from(WebhookEvent))).scalar_one()
        )


async def test_webhook_signatures(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,
    billing_settings: Settings,
    synced: dict[str, str],
    container: Container,
) -> None:
    await _subscribe(api, stripe_world, billing_settings, synced)
    event = dict(stripe_world.events[0], id="evt_signature_test")
    stored = await _count_events(container)
    # Forged: signed with a secret billfold does not know.
    response = await deliver(api, event, secret="whsec_attacker")
    _envelope(response, 400, False)
    # Stale: a valid signature, but from ten minutes ago (tolerance is 300 s).
    response = await deliver(api, event, timestamp=int(time.time()) - 600)
    _envelope(response, 400, False)
    # Unsigned.
    response = await api.post(f"{P}/webhook", json=event)
    _envelope(response, 400, False)
    # Tampered body after signing.
    import json as _json

    from tests.fakes.stripe_gateway import sign

    payload = _json.dumps(event).encode()
    header = sign(payload, "whsec_subscriptions_tests_current")
    response = await api.post(
        f"{P}/webhook",
        content=payload.replace(b"evt_signature_test", b"evt_signature_tamp"),
        headers={"Stripe-Signature": header},
    )
    _envelope(response, 400, False)
    assert await _count_events(container) == stored
    # The previous secret still works during rotation; a repeat is acknowledged as duplicate.
    data = _envelope(await deliver(api, event, secret=OLD_WEBHOOK_SECRET), 200, True)
    assert data == {"event_id": "evt_signature_test", "type": event["type"], "duplicate": False}
    data = _envelope(await deliver(api, event), 200, True)
    assert data["duplicate"] is True
    assert await _count_events(container) == stored + 1
    metrics = (await api.get("/metrics")).text
    assert "billfold_stripe_webhooks_refused_total" in metrics
    assert 'billfold_stripe_events_received_total{outcome="duplicate"}' in metrics
    assert "billfold_stripe_events_applied_total" in metrics


def test_no_webhook_secret_refuses_everything(tmp_path: Any) -> None:
    """A deployment with a Stripe key but no webhook secret does not start; the inbox itself
    refuses every delivery, whatever it is signed with."""
    from billfold.app import create_app
    from billfold.errors import ConfigurationError
    from billfold.stripe.inbox import verify_signature
    from tests.fakes.stripe_gateway import sign

    settings = Settings(stripe_secret_key="sk_test_configured", data_dir=tmp_path / "d")
    assert settings.webhook_secrets == []
    with pytest.raises(ConfigurationError, match="STRIPE_WEBHOOK_SECRET"):
        create_app(settings)
    payload = b'{"id": "evt_x", "type": "invoice.paid"}'
    for secret in ("whsec_anything", "whsec_billfold_sandbox_local_only"):
        with pytest.raises(ConfigurationError, match="STRIPE_WEBHOOK_SECRET"):
            verify_signature(settings, payload, sign(payload, secret))


async def test_idempotency_key_replays_the_same_session_per_account(
    api: httpx.AsyncClient, billing_settings: Settings, synced: dict[str, str]
) -> None:
    body = {"price_id": synced["billfold_premium_monthly_usd"], "interval": "monthly"}
    alice = {**bearer(billing_settings, "alice"), "Idempotency-Key": "k-1"}
    bob = {**bearer(billing_settings, "bob"), "Idempotency-Key": "k-1"}
    first = _envelope(
        await api.post(f"{P}/create-checkout-session", json=body, headers=alice), 200, True
    )
    again = _envelope(
        await api.post(f"{P}/create-checkout-session", json=body, headers=alice), 200, True
    )
    other = _envelope(
        await api.post(f"{P}/create-checkout-session", json=body, headers=bob), 200, True
    )
    assert again["session_id"] == first["session_id"]
    assert other["session_id"] != first["session_id"]


async def test_signed_but_malformed_events_are_400(
    api: httpx.AsyncClient, container: Container
) -> None:
    from tests.fakes.stripe_gateway import sign
    from tests.subscriptions.fixtures import WEBHOOK_SECRET

    for payload in (
        b"not json at all",
        b"[1, 2, 3]",
        b'{"type": "invoice.paid"}',
        b'{"id": "evt_1"}',
        ('{"id": "' + "e" * 300 + '", "type": "invoice.paid"}').encode(),
    ):
        response = await api.post(
            f"{P}/webhook",
            content=payload,
            headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET)},
        )
        _envelope(response, 400, False)
    assert await _count_events(container) == 0
