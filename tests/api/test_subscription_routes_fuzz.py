"""Bad input to the subscription routes is a 4xx, never a 500: random JSON bodies and query
strings against document 004's and document 002's routes."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from billfold.config import Settings
from tests.subscriptions.fixtures import bearer

ROUTES = [
    ("POST", "/api/v1/payments/create-checkout-session"),
    ("POST", "/api/v1/payments/subscription/cancel"),
    ("POST", "/api/v1/payments/subscription/reactivate"),
    ("GET", "/api/v1/payments/plans"),
    ("POST", "/api/v1/organizations/o1/billing/checkout"),
    ("POST", "/api/v1/organizations/o1/billing/portal"),
    ("GET", "/api/v1/organizations/o1/billing/subscription"),
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 2 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 10**20, 3.5, float("1e308")])
    if choice == 3:
        return rng.choice(["", "x" * 5000, "price_\u0000", "https://evil.example/", "monthly"])
    if choice == 4:
        return rng.choice(["yearly", "billfold_premium_monthly_usd", "premium", "javascript:x"])
    if choice == 5:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(20)))
    if choice == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    keys = ["price_id", "interval", "quantity", "success_url", "cancel_url", "return_url",
            "cancel_immediately", "x"]  # fmt: skip
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randrange(5))}


async def test_random_bodies_never_500(
    api: httpx.AsyncClient, billing_settings: Settings, synced: dict[str, str]
) -> None:
    rng = random.Random(404)
    headers = bearer(billing_settings, "fuzz", org_id="o1", role="admin")
    for _ in range(60):
        for method, path in ROUTES:
            body = _value(rng)
            if method == "GET":
                response = await api.get(path, params={"currency": str(body)[:50]}, headers=headers)
            else:
                raw = json.dumps(body) if rng.random() < 0.9 else "{" + str(body)
                response = await api.post(
                    path,
                    content=raw.encode(),
                    headers={**headers, "Content-Type": "application/json"},
                )
            assert response.status_code < 500, (method, path, body, response.text)
