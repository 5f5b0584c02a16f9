"""Fixtures for subscription tests: billfold wired to the in-memory fake gateway, a synced
catalog, bearer tokens, and signed webhook delivery."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from billfold.app import create_app
from billfold.audit.context import system_audit_context
from billfold.auth.tokens import issue_token
from billfold.catalog.service import load_catalog, sync_catalog
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.container import Container
from billfold.db.engine import Database
from billfold.wiring import wire
from tests.fakes.stripe_gateway import FakeStripeGateway, sign

WEBHOOK_SECRET = "whsec_subscriptions_tests_current"
OLD_WEBHOOK_SECRET = "whsec_subscriptions_tests_previous"


@pytest.fixture
def billing_settings(tmp_path: Path) -> Settings:
    return Settings(
        jwt_secret="test-secret-that-is-long-enough-for-hs256-0123456789",
        data_dir=tmp_path / "data",
        frontend_url="https://app.example.com",
        allowed_redirect_hosts=["billing.example.com"],
        stripe_webhook_secret=[WEBHOOK_SECRET, OLD_WEBHOOK_SECRET],
        environment="test",
    )


@pytest.fixture
def gateway() -> FakeStripeGateway:
    return FakeStripeGateway()


@pytest.fixture
def container(
    billing_settings: Settings, database: Database, clock: FrozenClock, gateway: FakeStripeGateway
) -> Container:
    return wire(
        Container(settings=billing_settings, db=database, clock=clock, stripe_gateway=gateway)
    )


@pytest.fixture
async def synced(container: Container, gateway: FakeStripeGateway) -> dict[str, str]:
    """The default catalog synced into the fake: lookup key -> Stripe price id."""
    async with container.db.transaction() as session:
        catalog = await load_catalog(session, container.settings)
        await sync_catalog(session, gateway, catalog, clock=container.clock)
        catalog = await load_catalog(session, container.settings)
    return {
        price.lookup_key: price.stripe_price_id or ""
        for _plan, price in catalog.prices(active_only=False)
    }


@pytest.fixture
async def billing_app(
    billing_settings: Settings, database: Database, clock: FrozenClock, gateway: FakeStripeGateway
) -> Any:
    return create_app(billing_settings, database=database, clock=clock, stripe_gateway=gateway)


@pytest.fixture
async def api(billing_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=billing_app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://billfold.test") as c:
        yield c


@pytest.fixture
def audit() -> Any:
    return system_audit_context("test")


def bearer(settings: Settings, subject: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, subject, **claims)}"}


async def deliver(
    client: httpx.AsyncClient,
    event: dict[str, Any] | bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    path: str = "/api/v1/payments/webhook",
    timestamp: int | None = None,
) -> httpx.Response:
    """`event` signed and posted to `path` (given as bytes: that body exactly)."""
    payload = event if isinstance(event, bytes) else json.dumps(event).encode()
    return await client.post(
        path,
        content=payload,
        headers={
            "Stripe-Signature": sign(payload, secret, timestamp),
            "Content-Type": "application/json",
        },
    )
