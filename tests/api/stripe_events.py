"""The step many API tests share: the customer pays on the fake Stripe's hosted Checkout page,
and every event Stripe sent reaches a billfold webhook route, signed, and is accepted."""

from __future__ import annotations

import httpx

from tests.subscriptions.fake_stripe import FakeStripeGateway
from tests.subscriptions.fixtures import deliver

PAYMENTS_WEBHOOK = "/api/v1/payments/webhook"


async def deliver_all(
    api: httpx.AsyncClient, gateway: FakeStripeGateway, *, path: str = PAYMENTS_WEBHOOK
) -> None:
    """Every event the fake Stripe has sent so far, delivered to `path`; each must get a 200."""
    for event in gateway.stripe.events:
        response = await deliver(api, event, path=path)
        assert response.status_code == 200, response.text


async def pay_checkout(
    api: httpx.AsyncClient,
    gateway: FakeStripeGateway,
    session_id: str,
    *,
    path: str = PAYMENTS_WEBHOOK,
) -> None:
    """The customer pays Checkout session `session_id`; Stripe's events reach `path`."""
    gateway.stripe.complete_checkout(session_id)
    await deliver_all(api, gateway, path=path)
