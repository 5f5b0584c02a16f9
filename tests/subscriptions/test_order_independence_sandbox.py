"""The order-independence property against the Stripe sandbox: a random history made in the
sandbox (customers subscribe through billfold, then their subscriptions are changed, canceled
and renewed in Stripe), whose webhooks the sandbox holds back and then delivers twice over in
a shuffled order (its `duplicate` and `shuffle` switches, seeded), ends with billfold holding
Stripe's state. The fake's variant, with invented events, is test_order_independence.py."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from billfold.stripe.models import WebhookEvent
from tests.e2e_fixtures import BillfoldServer
from tests.subscriptions.test_e2e_flow import P, advance_sandbox, sandbox_call
from tests.subscriptions.test_order_independence import billfold_state

DAY = 86400


async def play(server: BillfoldServer, rng: random.Random) -> None:
    """A few customers subscribe through billfold, then things happen in Stripe."""
    client = server.sandbox.client()
    prices = [price for key, price in server.prices.items() if key.endswith("_usd")]
    subs: list[str] = []
    async with server.http() as http:
        for n in range(rng.randint(1, 3)):
            response = await http.post(
                f"{P}/create-checkout-session",
                json={"price_id": prices[0], "interval": "monthly"},
                headers=server.bearer(f"u{n}"),
            )
            assert response.status_code == 200, response.text
            session_id = response.json()["data"]["session_id"]
            paid = sandbox_call(
                server, "POST", f"/v1/test_helpers/checkout/sessions/{session_id}/complete"
            )
            subs.append(str(paid["subscription"]))
    for _ in range(rng.randint(2, 8)):
        sub_id = rng.choice(subs)
        sub = client.v1.subscriptions.retrieve(sub_id)
        if sub.status == "canceled":
            continue
        action = rng.choice(["renew", "cancel_at_end", "reactivate", "change", "now"])
        if action == "renew":
            advance_sandbox(server, 31 * DAY)
        elif action in ("cancel_at_end", "reactivate"):
            client.v1.subscriptions.update(
                sub_id, {"cancel_at_period_end": action == "cancel_at_end"}
            )
        elif action == "change":
            item = sub["items"]["data"][0]
            client.v1.subscriptions.update(
                sub_id,
                {
                    "items": [
                        {"id": item.id, "price": rng.choice(prices), "quantity": rng.randint(1, 4)}
                    ],
                    "proration_behavior": "create_prorations",
                },
            )
        else:
            client.v1.subscriptions.cancel(sub_id)


def stripe_state(server: BillfoldServer) -> list[tuple[Any, ...]]:
    client = server.sandbox.client()
    found = client.v1.subscriptions.list({"status": "all", "limit": 100}).data
    return sorted(
        (
            s.id,
            s.status,
            s["items"]["data"][0]["price"]["id"],
            s["items"]["data"][0]["quantity"],
            s.cancel_at_period_end,
            s["items"]["data"][0]["current_period_end"],
        )
        for s in found
    )


async def check_history(server: BillfoldServer, seed: int) -> None:
    webhooks = server.sandbox.state.webhooks
    # Held back while the history is made, then sent twice each, shuffled (seeded).
    webhooks.configure(paused=True, duplicate=True, shuffle=True, seed=seed)
    await play(server, random.Random(seed))
    assert await billfold_state(server.database) == []  # nothing has reached billfold yet
    webhooks.configure(paused=False)
    await server.settle()
    sent = Counter(d["event"] for d in list(webhooks.deliveries))
    assert sent and min(sent.values()) >= 2  # every event arrived (at least) twice
    assert await billfold_state(server.database) == stripe_state(server)
    async with server.database.transaction() as session:
        statuses = set((await session.execute(select(WebhookEvent.status))).scalars())
    assert statuses == {"processed"}


@pytest.mark.parametrize("seed", range(4))
async def test_any_history_delivered_twice_and_shuffled_by_the_sandbox(
    billfold_server: BillfoldServer, seed: int
) -> None:
    await check_history(billfold_server, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1040))
async def test_any_history_delivered_twice_and_shuffled_by_the_sandbox_soak(
    billfold_server: BillfoldServer, seed: int
) -> None:
    await check_history(billfold_server, seed)
