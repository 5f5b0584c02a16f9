"""Route, tRPC and worker tests run billfold's real Stripe adapter against the sandbox
(`sandbox_server`), in process: the app is called through `httpx.ASGITransport`, its gateway
talks to the sandbox over loopback with the official SDK, and the sandbox's own events (its
shapes, its order) are delivered signed to a webhook route by `deliver_all`, without waiting on
the sandbox's delivery thread. (End-to-end tests with real deliveries use `billfold_server`.)

    async def test_x(api, stripe_world: SandboxStripe, synced) -> None:
        ...  # POST a checkout route
        stripe_world.complete_checkout(session_id)      # the customer pays
        await deliver_all(api, stripe_world)            # Stripe's events reach billfold

`stripe_world` also reads the sandbox's objects the way tests want them (`sessions[id]` with
the price and quantity of its line item, `subscriptions`, `events`, `proration_items()`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe

from billfold.stripe.gateway import as_dict
from tests.e2e_fixtures import sandbox_gateway
from tests.sandbox_fixtures import SandboxServer

__all__ = ["SandboxStripe", "sandbox_gateway", "stripe_world"]


class _Sessions:
    def __init__(self, world: SandboxStripe) -> None:
        self.world = world

    def __getitem__(self, session_id: str) -> dict[str, Any]:
        """The Checkout session as Stripe shows it, plus its (first) line's price and quantity."""
        v1 = self.world.client.v1.checkout.sessions
        found = as_dict(v1.retrieve(session_id))
        lines = v1.line_items.list(session_id).data
        if lines:
            found["price"] = lines[0].price.id if lines[0].price else None
            found["quantity"] = lines[0].quantity
        return found


class _Subscriptions:
    def __init__(self, world: SandboxStripe) -> None:
        self.world = world

    def __getitem__(self, subscription_id: str) -> dict[str, Any]:
        return as_dict(self.world.client.v1.subscriptions.retrieve(subscription_id))

    def __contains__(self, subscription_id: object) -> bool:
        return self.world.server.state.get("subscription", str(subscription_id)) is not None


@dataclass
class SandboxStripe:
    """The Stripe world of a route test: the sandbox behind billfold's real adapter."""

    server: SandboxServer

    @property
    def client(self) -> stripe.StripeClient:
        return self.server.client()

    @property
    def sessions(self) -> _Sessions:
        return _Sessions(self)

    @property
    def subscriptions(self) -> _Subscriptions:
        return _Subscriptions(self)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event so far, oldest first."""
        page = self.client.v1.events.list({"limit": 100})
        return [as_dict(e) for e in page.auto_paging_iter()][::-1]

    def complete_checkout(self, session_id: str) -> str | None:
        """The customer pays the session on the hosted page; its subscription's id, if any."""
        response = httpx.post(
            f"{self.server.url}/v1/test_helpers/checkout/sessions/{session_id}/complete",
            headers={"Authorization": f"Bearer {self.server.api_key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        subscription = response.json().get("subscription")
        return subscription if isinstance(subscription, str) else None

    def proration_items(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's proration lines: pending invoice items and lines of its invoices."""
        v1 = self.client.v1
        items = [as_dict(i) for i in v1.invoice_items.list({"customer": customer_id}).data]
        for invoice in v1.invoices.list({"customer": customer_id}).data:
            items += [as_dict(line) for line in invoice.lines.data]
        return [i for i in items if _is_proration(i)]

    def advance_clock(self, seconds: int) -> None:
        """Move the sandbox-wide clock forward (what falls due meanwhile happens)."""
        response = httpx.post(
            f"{self.server.url}/v1/test_helpers/sandbox/clock/advance",
            data={"seconds": str(seconds)},
            headers={"Authorization": f"Bearer {self.server.api_key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def portal_customer(self, url: str) -> str | None:
        """The customer a billing portal URL the sandbox made is for (None: not the sandbox's)."""
        for session in self.server.state.all("billing_portal.session"):
            if session.get("url") == url:
                return str(session["customer"])
        return None

    def fail_next(self, path: str, *, count: int = 1, status: int = 500) -> None:
        """The next `count` calls to `path` (a glob) fail as Stripe failing would."""
        self.server.state.faults.add(path, status=status, count=count)


def _is_proration(item: dict[str, Any]) -> bool:
    if item.get("proration"):
        return True
    parent = item.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    return bool(details.get("proration"))


@pytest.fixture
def stripe_world(sandbox_server: SandboxServer) -> Iterator[SandboxStripe]:
    yield SandboxStripe(sandbox_server)
