"""Fixtures of the payments tests: the route fixtures of tests/api (billfold's real Stripe
adapter on the sandbox, `stripe_world`), in development mode (`_dev/add-charge` is served),
and helpers that save methods, add charges and deliver the sandbox's events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from billfold.config import Settings
from billfold.stripe.gateway import StripeClientGateway

# After the star imports: billfold's real adapter on the sandbox instead of the fake gateway.
from tests.api.conftest import gateway
from tests.api.stripe_events import deliver_all
from tests.e2e_fixtures import *  # noqa: F403
from tests.sandbox_fixtures import SandboxServer
from tests.sandbox_stripe import SandboxStripe, sandbox_gateway, stripe_world  # noqa: F401
from tests.subscriptions.fixtures import *  # noqa: F403
from tests.subscriptions.fixtures import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, bearer

B = "/api/billing"
WEBHOOK = "/api/stripe/webhook"


@pytest.fixture
def billing_settings(tmp_path: Path) -> Settings:
    return Settings(
        jwt_secret="test-secret-that-is-long-enough-for-hs256-0123456789",
        data_dir=tmp_path / "data",
        frontend_url="https://app.example.com",
        allowed_redirect_hosts=["billing.example.com"],
        stripe_webhook_secret=[WEBHOOK_SECRET, OLD_WEBHOOK_SECRET],
        stripe_publishable_key="pk_test_billfold",
        environment="development",
    )


@pytest.fixture
def gateway(billing_settings: Settings, sandbox_server: SandboxServer) -> StripeClientGateway:  # noqa: F811
    """Billfold's real adapter on the sandbox (instead of the subscription tests' fake)."""
    return sandbox_gateway(billing_settings, sandbox_server)


class Billing:
    """One customer's calls to document 003's routes."""

    def __init__(self, api: httpx.AsyncClient, world: SandboxStripe, headers: dict[str, str]):
        self.api, self.world, self.headers = api, world, headers

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        headers = self.headers | kwargs.pop("headers", {})
        response = await self.api.request(method, B + path, headers=headers, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    async def card(self, pm: str = "pm_card_visa") -> str:
        body = await self.call("POST", "/setup-intent/card", json={"payment_method_id": pm})
        assert body["status"] == "succeeded", body
        return str(body["payment_method_id"])

    async def bank(self, account_number: str = "000123456789") -> str:
        body = await self.call(
            "POST",
            "/setup-intent/us-bank",
            json={
                "account_holder_name": "Ada Lovelace",
                "routing_number": "110000000",
                "account_number": account_number,
            },
        )
        assert (body["status"], body["next_action"]) == (
            "requires_action",
            "verify_with_microdeposits",
        )
        pm = str(body["payment_method_id"])
        verified = await self.call(
            "POST",
            "/us-bank/verify-microdeposits",
            json={"payment_method_id": pm, "descriptor_code": "SM11AA"},
        )
        assert verified["status"] == "active"
        return pm

    async def charge(self, amount: int, currency: str = "usd") -> Any:
        return await self.call(
            "POST", "/_dev/add-charge", json={"amount": amount, "currency": currency}
        )

    async def dues(self, currency: str = "usd") -> dict[str, int]:
        page = await self.call("GET", "/ledger")
        for found in page["dues"]:
            if found["currency"] == currency:
                return {"settled": found["settled"], "pending": found["pending"]}
        return {"settled": 0, "pending": 0}

    async def events(self) -> None:
        await deliver_all(self.api, self.world, path=WEBHOOK)

    async def payments(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/payments"))["payments"])

    def sandbox(self, path: str, **form: Any) -> Any:
        """A sandbox test-helper call (`/v1/test_helpers/...`)."""
        response = httpx.post(
            self.world.server.url + path,
            data={k: str(v) for k, v in form.items()},
            headers={"Authorization": f"Bearer {self.world.server.api_key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def card_reported_lost(self, pm: str) -> None:
        """The bank now declines this saved card as lost (Stripe's lost-card test number can
        not be saved, so the sandbox's card behind `pm` is swapped for it)."""
        self.world.server.state.get("payment_method", pm)["_card"] = "4000000000009987"

    async def methods(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/payment-methods"))["payment_methods"])


@pytest.fixture
def alice(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,  # noqa: F811
    billing_settings: Settings,
) -> Billing:
    return Billing(api, stripe_world, bearer(billing_settings, "alice"))


@pytest.fixture
def bob(
    api: httpx.AsyncClient,
    stripe_world: SandboxStripe,  # noqa: F811
    billing_settings: Settings,
) -> Billing:
    return Billing(api, stripe_world, bearer(billing_settings, "bob"))
