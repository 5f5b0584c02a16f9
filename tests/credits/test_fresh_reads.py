"""Issue 12's remaining "done when" cases, on both databases against the sandbox:

- a cached balance and history are never stale after a write (a top-up, usage, a hold and its
  capture, a hold's expiry, a refund), with the Redis cache (127.0.0.1:6379) as well as the
  in-process one: each read after a write sees it, and the version only grows;
- an ACH top-up grants nothing until it settles, and nothing when the debit fails.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from billfold.audit.context import system_audit_context
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.credits import service
from billfold.db.engine import Database
from tests.api.stripe_events import deliver_all
from tests.credits.test_routes import (
    _clean,
    _session_id,
    _topup,
    ach_topup,
    backend,
    deliver_shuffled_twice,
)
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import bearer

B = "/api/billing"
WEBHOOK = "/api/stripe/webhook"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["in_process", "redis"])
def billing_settings(billing_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The credits tests' settings, with the history cache in process or in Redis (a prefix
    of the test's own)."""
    if request.param == "in_process":
        return billing_settings
    return billing_settings.model_copy(
        update={"redis_url": REDIS_URL, "redis_prefix": f"billfold-test-{uuid.uuid4().hex[:12]}"}
    )


@pytest.fixture
async def redis_keys(billing_settings: Settings) -> AsyncIterator[Any]:
    """The cache's keys in Redis (none for the in-process cache); removed afterwards."""
    if billing_settings.redis_url is None:

        async def none() -> list[bytes]:
            return []

        yield none
        return
    client = Redis.from_url(billing_settings.redis_url)

    async def keys() -> list[bytes]:
        return list(await client.keys(f"{billing_settings.redis_prefix}*"))

    yield keys
    for key in await keys():
        await client.delete(key)
    await client.aclose()


async def _read(api: httpx.AsyncClient, headers: dict[str, str]) -> tuple[int, int, list[Any]]:
    """(credits, version, history) as a client reads them, twice: the second read is the one
    the cache answers, and must say the same."""
    first = await api.get(f"{B}/balance", headers=headers)
    history = await api.get(f"{B}/history", headers=headers)
    again = await api.get(f"{B}/history", headers=headers)
    assert history.json() == again.json()
    assert history.headers["X-Balance-Version"] == first.headers["X-Balance-Version"]
    rows = [(t["type"], t["credits"], t["status"]) for t in history.json()["transactions"]]
    return int(first.json()["credits"]), int(first.headers["X-Balance-Version"]), rows


async def test_a_cached_read_is_never_stale_after_a_write(
    api: httpx.AsyncClient,
    billing_app: Any,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Database,
    clock: FrozenClock,
    redis_keys: Any,
) -> None:
    user = bearer(billing_settings, "cached")
    host = await backend(database, "cached")
    seen = await _read(api, user)
    assert seen[0] == 0 and seen[2] == []
    versions = [seen[1]]

    async def after(expected: tuple[int, list[Any]]) -> None:
        credits, version, rows = await _read(api, user)
        assert (credits, rows) == expected
        assert version > versions[-1]
        versions.append(version)

    await _topup(api, user, 100)
    session_id = _session_id(stripe_world)
    stripe_world.complete_checkout(session_id)
    await deliver_all(api, stripe_world, path=WEBHOOK)
    await after((100, [("topup", 100, "completed")]))
    spent = await api.post(f"{B}/usage", json={"credits": 30, "idempotencyKey": "u"}, headers=host)
    assert spent.status_code == 200, spent.text
    await after((70, [("topup", 100, "completed")]))
    hold = await api.post(
        f"{B}/holds", json={"credits": 20, "idempotencyKey": "h1", "expiresIn": 60}, headers=host
    )
    assert hold.status_code == 200, hold.text
    await after((50, [("topup", 100, "completed")]))
    captured = await api.post(
        f"{B}/holds/{hold.json()['hold']['id']}/capture", json={"credits": 5}, headers=host
    )
    assert captured.status_code == 200, captured.text
    await after((65, [("topup", 100, "completed")]))
    # A hold that expires gives its credits back through the job runner's sweep.
    await api.post(
        f"{B}/holds", json={"credits": 15, "idempotencyKey": "h2", "expiresIn": 60}, headers=host
    )
    await after((50, [("topup", 100, "completed")]))
    clock.advance(timedelta(seconds=61))
    container = billing_app.state.container
    async with database.transaction() as session:
        await service.expire_due(session, clock, system_audit_context("jobs", clock))
    await after((65, [("topup", 100, "completed")]))
    intent = stripe_world.sessions[session_id]["payment_intent"]
    await asyncio.to_thread(
        stripe_world.client.v1.refunds.create, {"payment_intent": intent, "amount": 500}
    )
    await deliver_shuffled_twice(api, stripe_world, seed=11)
    await after((15, [("refund", 50, "completed"), ("topup", 100, "completed")]))
    # The cache really was in Redis when configured.
    assert bool(await redis_keys()) == (container.settings.redis_url is not None)
    await _clean(database)


async def test_an_ach_top_up_grants_nothing_when_the_debit_fails(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    headers = bearer(billing_settings, "ach-fails")
    await ach_topup(api, stripe_world, headers, "pm_usBankAccount_insufficientFunds", seed=12)
    assert (await api.get(f"{B}/balance", headers=headers)).json()["credits"] == 0
    (row,) = (await api.get(f"{B}/history", headers=headers)).json()["transactions"]
    assert row["status"] == "pending"
    stripe_world.advance_clock(5 * 24 * 3600)
    await deliver_shuffled_twice(api, stripe_world, seed=13)
    assert (await api.get(f"{B}/balance", headers=headers)).json()["credits"] == 0
    (row,) = (await api.get(f"{B}/history", headers=headers)).json()["transactions"]
    assert (row["type"], row["status"], row["credits"]) == ("topup", "failed", 100)
    await _clean(database)
