"""Rate limits (billfold.api.ratelimit): per caller, in memory or shared through Redis, in each
dialect's error shape, never on Stripe's webhooks, the sandbox or the ops routes.

The Redis tests need the server at 127.0.0.1:6379; they are skipped (visibly) when it does not
answer, unless BILLFOLD_REQUIRE_REDIS=1, where they fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from billfold.api.ratelimit import RateLimitClass, caller_key, rate_limit_class
from billfold.app import create_app
from billfold.config import Settings
from billfold.db.engine import Database
from billfold.errors import ConfigurationError
from tests.conftest import TEST_JWT_SECRET

REDIS_URL = "redis://127.0.0.1:6379/0"
PLANS = "/api/v1/payments/plans"
CHECKOUT = "/api/v1/payments/create-checkout-session"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_secret": TEST_JWT_SECRET,
        "data_dir": tmp_path / "data",
        "frontend_url": "https://app.example.com",
        "environment": "test",
        "rate_limit": "3/minute",
        "rate_limit_checkout": "100/minute",
    }
    values.update(overrides)
    return Settings(**values)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://billfold.test"
    )


@pytest.fixture
async def limited(tmp_path: Path, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(create_app(_settings(tmp_path), database=database)) as client:
        yield client


def _assert_rate_headers(response: httpx.Response, *, limit: int, remaining: int) -> None:
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == str(remaining)
    reset = int(response.headers["x-ratelimit-reset"])
    assert time.time() - 1 <= reset <= time.time() + 61


# --- which requests count, and as whom ---------------------------------------------------


def _class_of(app: Any, method: str, path: str) -> RateLimitClass:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    return rate_limit_class(app.router.routes, scope)


def test_routes_declare_their_rate_limit_class(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))  # no STRIPE_SECRET_KEY: the sandbox is mounted
    api, checkout, exempt = RateLimitClass.API, RateLimitClass.CHECKOUT, RateLimitClass.EXEMPT
    expected = {
        ("GET", PLANS): api,
        ("GET", "/api/billing/subscriptions"): api,
        ("GET", "/api/subscriptions/current"): api,
        ("GET", "/api/v1/audit"): api,
        ("GET", "/api/nowhere"): api,  # no route: counted all the same
        ("GET", "/trpc"): api,
        ("GET", "/trpc/billing.getStatus"): api,
        ("POST", "/trpc/billing.unknown"): api,
        ("POST", CHECKOUT): checkout,
        ("GET", CHECKOUT): checkout,  # the route's 405 counts as the route
        ("POST", "/api/v1/organizations/org_1/billing/checkout"): checkout,
        ("POST", "/api/v1/organizations/org_1/billing/portal"): checkout,
        ("POST", "/api/subscriptions/subscribe"): checkout,
        ("PUT", "/api/subscriptions/update"): checkout,
        ("GET", "/api/subscriptions/portal"): checkout,
        ("POST", "/api/billing/checkout_session"): checkout,
        ("POST", "/trpc/billing.createCheckoutSession"): checkout,
        ("GET", "/trpc/billing.getStatus,billing.createCustomerPortalSession"): checkout,
        ("POST", "/api/v1/payments/webhook"): exempt,
        ("POST", "/api/stripe/webhook"): exempt,
        ("GET", "/stripe-sandbox/v1/customers"): exempt,
        ("GET", "/healthz"): exempt,
        ("GET", "/readyz"): exempt,
        ("GET", "/metrics"): exempt,
        ("GET", "/docs"): exempt,
    }
    for (method, path), declared in expected.items():
        assert _class_of(app, method, path) is declared, (method, path)


def test_caller_is_a_digest_of_the_credential_else_the_address() -> None:
    token = "bf_live_secret_key_value"
    digest = "key:" + hashlib.sha256(token.encode()).hexdigest()
    bearer = {"headers": [(b"authorization", f"Bearer {token}".encode())], "client": ("1.2.3.4", 1)}
    api_key = {"headers": [(b"x-api-key", token.encode())], "client": ("1.2.3.4", 1)}
    assert caller_key(bearer) == caller_key(api_key) == digest
    assert token not in caller_key(bearer)
    assert caller_key({"headers": [], "client": ("1.2.3.4", 5)}) == "addr:1.2.3.4"
    basic = {"headers": [(b"authorization", b"Basic abc")], "client": ("1.2.3.4", 1)}
    assert caller_key(basic) == "addr:1.2.3.4"


@pytest.mark.parametrize(
    ("variable", "field", "value"),
    [
        ("BILLFOLD_RATE_LIMIT", "rate_limit", "lots"),
        ("BILLFOLD_RATE_LIMIT", "rate_limit", "0/minute"),
        ("BILLFOLD_RATE_LIMIT_CHECKOUT", "rate_limit_checkout", "10 every minute"),
        ("BILLFOLD_REDIS_URL", "redis_url", "http://127.0.0.1:6379"),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, variable: str, field: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        _settings(tmp_path, **{field: value}).check()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLFOLD_RATE_LIMIT", "50 per second")
    monkeypatch.setenv("BILLFOLD_RATE_LIMIT_CHECKOUT", "5/hour")
    settings = Settings()
    assert (settings.rate_limit, settings.rate_limit_checkout) == ("50 per second", "5/hour")
    assert Settings.model_fields["rate_limit"].default == "120/minute"
    assert Settings.model_fields["rate_limit_checkout"].default == "10/minute"


# --- in-process limits -------------------------------------------------------------------


async def test_memory_limit_refuses_the_fourth_call_in_the_envelope(
    limited: httpx.AsyncClient,
) -> None:
    for remaining in (2, 1, 0):
        response = await limited.get(PLANS)
        assert response.status_code == 200
        _assert_rate_headers(response, limit=3, remaining=remaining)
        assert "retry-after" not in response.headers

    refused = await limited.get(PLANS)
    assert refused.status_code == 429
    # Document 004's envelope, as every other error under /api/v1/payments.
    body = refused.json()
    assert body["success"] is False and body["data"] is None
    assert "too many requests" in body["message"]
    _assert_rate_headers(refused, limit=3, remaining=0)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-request-id"]


async def test_callers_have_budgets_of_their_own(limited: httpx.AsyncClient) -> None:
    alice = {"Authorization": "Bearer token-of-alice"}
    bob = {"X-API-Key": "bf_test_key_of_bob"}
    for _ in range(3):
        assert (await limited.get(PLANS, headers=alice)).status_code == 200
    assert (await limited.get(PLANS, headers=alice)).status_code == 429
    assert (await limited.get(PLANS, headers=bob)).status_code == 200
    assert (await limited.get(PLANS)).status_code == 200  # by address


async def test_the_window_moves_on(tmp_path: Path, database: Database) -> None:
    app = create_app(_settings(tmp_path, rate_limit="3/second"), database=database)
    async with _client(app) as client:
        for _ in range(3):
            assert (await client.get(PLANS)).status_code == 200
        refused = await client.get(PLANS)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        await asyncio.sleep(max(0.0, int(refused.headers["x-ratelimit-reset"]) - time.time()))
        again = await client.get(PLANS)
        assert again.status_code == 200
        # Counted in the moving window: how many of the 3 are left depends on how many of the
        # first hits have left the window, but this request is one of them.
        assert again.headers["x-ratelimit-limit"] == "3"
        assert int(again.headers["x-ratelimit-remaining"]) in (0, 1, 2)


async def test_checkout_routes_have_a_tighter_limit(tmp_path: Path, database: Database) -> None:
    settings = _settings(tmp_path, rate_limit="10/minute", rate_limit_checkout="2/minute")
    async with _client(create_app(settings, database=database)) as client:
        headers = {"Authorization": "Bearer not-a-real-token"}
        for remaining in (1, 0):
            response = await client.post(CHECKOUT, json={}, headers=headers)
            assert response.status_code == 401  # counted all the same
            _assert_rate_headers(response, limit=2, remaining=remaining)
        refused = await client.post(CHECKOUT, json={}, headers=headers)
        assert refused.status_code == 429
        _assert_rate_headers(refused, limit=2, remaining=0)
        # The general budget (10) is not used up: other routes still answer.
        response = await client.get(PLANS, headers=headers)
        assert response.status_code == 200
        _assert_rate_headers(response, limit=10, remaining=6)


async def test_trpc_refusal_is_a_trpc_error(limited: httpx.AsyncClient) -> None:
    for _ in range(3):
        response = await limited.post("/trpc/billing.createCheckoutSession", json={})
        assert response.status_code != 429
    refused = await limited.post("/trpc/billing.createCheckoutSession", json={})
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["data"]["code"] == "TOO_MANY_REQUESTS"
    assert error["data"]["httpStatus"] == 429
    assert error["data"]["path"] == "billing.createCheckoutSession"
    assert "too many requests" in error["message"]
    assert refused.headers["retry-after"]


async def test_other_api_routes_get_the_default_error_shape(limited: httpx.AsyncClient) -> None:
    for _ in range(3):
        await limited.get("/api/subscriptions/current")
    refused = await limited.get("/api/subscriptions/current")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"


async def test_webhooks_sandbox_and_ops_are_never_limited(limited: httpx.AsyncClient) -> None:
    for _ in range(6):
        for path in ("/api/v1/payments/webhook", "/api/stripe/webhook"):
            response = await limited.post(path, content=b"{}")
            assert response.status_code != 429, path
            assert "x-ratelimit-limit" not in response.headers
        for path in ("/healthz", "/readyz", "/metrics", "/stripe-sandbox/v1/customers"):
            response = await limited.get(path)
            assert response.status_code != 429, path
            assert "x-ratelimit-limit" not in response.headers
    # None of that used the API budget.
    response = await limited.get(PLANS)
    _assert_rate_headers(response, limit=3, remaining=2)


async def test_memory_budgets_are_per_instance(tmp_path: Path, database: Database) -> None:
    first = create_app(_settings(tmp_path), database=database)
    second = create_app(_settings(tmp_path), database=database)
    async with _client(first) as a, _client(second) as b:
        for _ in range(3):
            assert (await a.get(PLANS)).status_code == 200
        assert (await a.get(PLANS)).status_code == 429
        assert (await b.get(PLANS)).status_code == 200


async def test_redis_down_counts_in_the_process(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1: billfold neither 500s nor drops the limit.
    settings = _settings(tmp_path, redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings, database=database)
    with caplog.at_level(logging.WARNING, logger="billfold.api.ratelimit"):
        async with _client(app) as client:
            for _ in range(3):
                assert (await client.get(PLANS)).status_code == 200
            assert (await client.get(PLANS)).status_code == 429
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per retry interval, not once per request


# --- shared through Redis ----------------------------------------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        if os.environ.get("BILLFOLD_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is required (BILLFOLD_REQUIRE_REDIS=1): {exc}")
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {exc}")
    prefix = f"billfold-test-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_instances_sharing_redis_share_the_budget(
    tmp_path: Path, database: Database, redis_prefix: str
) -> None:
    settings = _settings(tmp_path, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    first = create_app(settings, database=database)
    second = create_app(settings, database=database)
    assert first.state.rate_limiter.shared
    headers = {"Authorization": "Bearer shared-caller"}
    try:
        async with _client(first) as a, _client(second) as b:
            assert (await a.get(PLANS, headers=headers)).status_code == 200
            assert (await b.get(PLANS, headers=headers)).status_code == 200
            last = await a.get(PLANS, headers=headers)
            assert last.status_code == 200
            _assert_rate_headers(last, limit=3, remaining=0)
            refused = await b.get(PLANS, headers=headers)
            assert refused.status_code == 429
            assert refused.json()["success"] is False
            assert refused.headers["retry-after"]
            # Another caller still has its own budget on either instance.
            assert (await b.get(PLANS, headers={"X-API-Key": "bf_other"})).status_code == 200
    finally:
        await first.state.rate_limiter.close()
        await second.state.rate_limiter.close()

    # The raw token is nowhere in Redis, only its digest.
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key.decode() async for key in client.scan_iter(match=f"{redis_prefix}:*")]
    finally:
        await client.aclose()
    assert keys and not any("shared-caller" in key for key in keys)
    assert any(hashlib.sha256(b"shared-caller").hexdigest() in key for key in keys)


# --- a tRPC batch counts each of its calls ----------------------------------------------

TRPC_CHECKOUT = "billing.createCheckoutSession"


def _batch(n: int, procedure: str = TRPC_CHECKOUT) -> tuple[str, dict[str, Any]]:
    return f"/trpc/{','.join([procedure] * n)}?batch=1", {str(i): {} for i in range(n)}


async def test_each_call_of_a_trpc_batch_counts(tmp_path: Path, database: Database) -> None:
    settings = _settings(tmp_path, rate_limit="100/minute", rate_limit_checkout="3/minute")
    async with _client(create_app(settings, database=database)) as client:
        url, body = _batch(2)
        response = await client.post(url, json=body)
        assert response.status_code != 429
        _assert_rate_headers(response, limit=3, remaining=1)
        assert (await client.post(f"/trpc/{TRPC_CHECKOUT}", json={})).status_code != 429
        refused = await client.post(f"/trpc/{TRPC_CHECKOUT}", json={})
        assert refused.status_code == 429
        assert refused.json()["error"]["data"]["code"] == "TOO_MANY_REQUESTS"
        # A batch larger than what is left is refused whole, not partly run.
        other = {"Authorization": "Bearer another-caller"}
        url, body = _batch(4)
        refused = await client.post(url, json=body, headers=other)
        assert refused.status_code == 429
        assert refused.headers["retry-after"]


async def test_a_batch_over_the_cap_is_a_trpc_413(limited: httpx.AsyncClient) -> None:
    url, body = _batch(21, "billing.getStatus")
    refused = await limited.post(url, json=body)
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["data"]["code"] == "PAYLOAD_TOO_LARGE"
    assert error["data"]["httpStatus"] == 413
    assert "at most 20" in error["message"]
