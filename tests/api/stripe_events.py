"""The step many API tests share: the customer pays on Stripe's hosted Checkout page, and
Stripe's events reach billfold. In process (`stripe_world`) every event the sandbox made is
delivered signed to a webhook route and must be accepted; end to end (`billfold_server`) the
sandbox sends them itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.e2e_fixtures import BillfoldServer
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import deliver

PAYMENTS_WEBHOOK = "/api/v1/payments/webhook"


async def deliver_all(
    api: httpx.AsyncClient, world: SandboxStripe, *, path: str = PAYMENTS_WEBHOOK
) -> None:
    """Every event the sandbox has made so far (oldest first; the ones delivered before come
    again, as Stripe's retries would), delivered to `path`; each must get a 200."""
    for event in world.events:
        response = await deliver(api, event, path=path)
        assert response.status_code == 200, response.text


async def pay_checkout(
    api: httpx.AsyncClient,
    world: SandboxStripe,
    session_id: str,
    *,
    path: str = PAYMENTS_WEBHOOK,
) -> None:
    """The customer pays Checkout session `session_id`; Stripe's events reach `path`."""
    world.complete_checkout(session_id)
    await deliver_all(api, world, path=path)


def sandbox_post(server: BillfoldServer, path: str, **form: Any) -> Any:
    """A call to one of the Stripe sandbox's test-helper routes (they are not in the SDK)."""
    response = httpx.post(
        server.sandbox.url + path,
        data={k: str(v) for k, v in form.items()},
        headers={"Authorization": f"Bearer {server.sandbox.api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def pay_in_sandbox(server: BillfoldServer, session_id: str) -> None:
    """The customer pays Checkout session `session_id` on the sandbox; returns once billfold
    has applied every webhook the sandbox sent."""
    await asyncio.to_thread(
        sandbox_post, server, f"/v1/test_helpers/checkout/sessions/{session_id}/complete"
    )
    await server.settle()
