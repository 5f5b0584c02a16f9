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
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from billfold.api.ratelimit import (
    RateLimitClass,
    caller_key,
    client_address,
    rate_limit_class,
    subject_key,
    trusted_networks,
)
from billfold.app import create_app
from billfold.auth.tokens import issue_token
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


def _app_client(tmp_path: Path, database: Database, **overrides: Any) -> httpx.AsyncClient:
    return _client(create_app(_settings(tmp_path, **overrides), database=database))


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
        ("POST", "/api/v1/payments/webhook"): RateLimitClass.WEBHOOK,
        ("POST", "/api/stripe/webhook"): RateLimitClass.WEBHOOK,
        ("GET", "/stripe-sandbox/v1/customers"): exempt,
        ("GET", "/healthz"): exempt,
        ("GET", "/readyz"): exempt,
        ("GET", "/metrics"): exempt,
        ("GET", "/docs"): exempt,
    }
    for (method, path), declared in expected.items():
        assert _class_of(app, method, path) is declared, (method, path)


def test_an_unauthenticated_caller_is_its_address_an_authenticated_one_its_subject() -> None:
    token = "bf_live_secret_key_value"
    bearer = {"headers": [(b"authorization", f"Bearer {token}".encode())], "client": ("1.2.3.4", 1)}
    assert caller_key(bearer) == "addr:1.2.3.4"  # a credential alone proves nothing
    key = subject_key("user", "alice")
    assert (
        key
        == "subj:" + hashlib.sha256(b"user:alice").hexdigest()
        != subject_key("api_key", "alice")
    )


def test_x_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    forwarded = [(b"x-forwarded-for", b"6.6.6.6, 9.9.9.9, 10.0.0.7")]
    scope = {"headers": forwarded, "client": ("10.0.0.5", 1)}
    assert client_address(scope) == "10.0.0.5"  # off by default
    trusted = trusted_networks(["10.0.0.0/8"])
    # The right-most address no trusted proxy wrote: what the client put left of it is ignored.
    assert client_address(scope, trusted) == "9.9.9.9"
    # A peer that is not a trusted proxy is the client, whatever it forwards.
    assert client_address({"headers": forwarded, "client": ("8.8.8.8", 1)}, trusted) == "8.8.8.8"
    only_proxies = {"headers": [(b"x-forwarded-for", b"10.1.1.1")], "client": ("10.0.0.5", 1)}
    assert client_address(only_proxies, trusted) == "10.1.1.1"


@pytest.mark.parametrize(
    ("variable", "field", "value"),
    [
        ("BILLFOLD_RATE_LIMIT", "rate_limit", "lots"),
        ("BILLFOLD_RATE_LIMIT", "rate_limit", "0/minute"),
        ("BILLFOLD_RATE_LIMIT_CHECKOUT", "rate_limit_checkout", "10 every minute"),
        ("BILLFOLD_REDIS_URL", "redis_url", "http://127.0.0.1:6379"),
        ("BILLFOLD_RATE_LIMIT_ADDRESS", "rate_limit_address", "many"),
        ("BILLFOLD_RATE_LIMIT_WEBHOOK", "rate_limit_webhook", "0/minute"),
        ("BILLFOLD_TRUSTED_PROXIES", "trusted_proxies", ["10.0.0.0/33"]),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, variable: str, field: str, value: Any) -> None:
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


CURRENT = "/api/subscriptions/current"


def _token(tmp_path: Path, subject: str, minutes: int = 60) -> dict[str, str]:
    token = issue_token(_settings(tmp_path), subject, ttl=timedelta(minutes=minutes))
    return {"Authorization": f"Bearer {token}"}


async def test_callers_have_budgets_of_their_own(
    tmp_path: Path, limited: httpx.AsyncClient
) -> None:
    alice, bob = _token(tmp_path, "alice"), _token(tmp_path, "bob")
    for _ in range(3):
        assert (await limited.get(CURRENT, headers=alice)).status_code != 429
    assert (await limited.get(CURRENT, headers=alice)).status_code == 429
    assert (await limited.get(CURRENT, headers=bob)).status_code != 429
    assert (await limited.get(PLANS)).status_code == 200  # by address


async def test_every_token_of_a_user_shares_one_budget(
    tmp_path: Path, limited: httpx.AsyncClient
) -> None:
    tokens = [_token(tmp_path, "alice", minutes) for minutes in (10, 20, 30, 40)]
    assert len({t["Authorization"] for t in tokens}) == 4
    for headers in tokens[:3]:
        response = await limited.get(CURRENT, headers=headers)
        assert response.status_code != 429
    refused = await limited.get(CURRENT, headers=tokens[3])
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["retry-after"]
    _assert_rate_headers(refused, limit=3, remaining=0)


async def test_rotating_bogus_credentials_is_limited_by_address(
    tmp_path: Path, database: Database
) -> None:
    async with _app_client(tmp_path, database, rate_limit_auth_failures="3/minute") as client:
        for i in range(3):
            response = await client.get(CURRENT, headers={"X-API-Key": f"bf_test_bogus_{i}"})
            assert response.status_code == 401
        # The address's failed attempts are used up: refused before any lookup, whatever the
        # credential (a valid one from that address too, until the window moves on).
        for headers in ({"X-API-Key": "bf_test_bogus_9"}, {"Authorization": "Bearer x"}):
            refused = await client.get(CURRENT, headers=headers)
            assert refused.status_code == 429
            assert refused.headers["retry-after"]


async def test_every_address_has_a_ceiling(tmp_path: Path, database: Database) -> None:
    async with _app_client(
        tmp_path, database, rate_limit="100/minute", rate_limit_address="4/minute"
    ) as client:
        for i in range(4):
            headers = _token(tmp_path, f"user-{i}")  # a different caller each time
            assert (await client.get(CURRENT, headers=headers)).status_code != 429
        refused = await client.get(CURRENT, headers=_token(tmp_path, "user-9"))
        assert refused.status_code == 429
        _assert_rate_headers(refused, limit=4, remaining=0)


async def test_forwarded_addresses_from_a_trusted_proxy(tmp_path: Path, database: Database) -> None:
    # httpx's ASGI transport connects from 127.0.0.1.
    settings = _settings(tmp_path, trusted_proxies=["127.0.0.1"])
    async with _client(create_app(settings, database=database)) as client:
        one = {"X-Forwarded-For": "203.0.113.1"}
        for _ in range(3):
            assert (await client.get(PLANS, headers=one)).status_code == 200
        assert (await client.get(PLANS, headers=one)).status_code == 429
        other = {"X-Forwarded-For": "203.0.113.2"}
        assert (await client.get(PLANS, headers=other)).status_code == 200
    # Untrusted (the default): the header changes nothing.
    async with _client(create_app(_settings(tmp_path), database=database)) as client:
        for i in range(3):
            headers = {"X-Forwarded-For": f"203.0.113.{i}"}
            assert (await client.get(PLANS, headers=headers)).status_code == 200
        refused = await client.get(PLANS, headers={"X-Forwarded-For": "203.0.113.9"})
        assert refused.status_code == 429


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
        headers = _token(tmp_path, "alice")
        for remaining in (1, 0):
            response = await client.post(CHECKOUT, json={}, headers=headers)
            assert response.status_code != 429  # refused input, counted all the same
            _assert_rate_headers(response, limit=2, remaining=remaining)
        refused = await client.post(CHECKOUT, json={}, headers=headers)
        assert refused.status_code == 429
        _assert_rate_headers(refused, limit=2, remaining=0)
        # The general budget (10) is not used up: other routes still answer.
        response = await client.get(CURRENT, headers=headers)
        assert response.status_code != 429
        _assert_rate_headers(response, limit=10, remaining=6)


def _trpc_checkout_input(token: str) -> dict[str, str]:
    return {
        "token": token,
        "productId": "price_unknown",
        "successUrl": "https://app.example.com/ok",
        "cancelUrl": "https://app.example.com/cancel",
    }


def _bare_token(tmp_path: Path, subject: str, minutes: int = 60) -> str:
    return _token(tmp_path, subject, minutes)["Authorization"].removeprefix("Bearer ")


async def test_trpc_refusal_is_a_trpc_error(tmp_path: Path, limited: httpx.AsyncClient) -> None:
    body = _trpc_checkout_input(_bare_token(tmp_path, "alice"))
    for _ in range(3):
        response = await limited.post("/trpc/billing.createCheckoutSession", json=body)
        assert response.status_code != 429
    refused = await limited.post("/trpc/billing.createCheckoutSession", json=body)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["data"]["code"] == "TOO_MANY_REQUESTS"
    assert error["data"]["httpStatus"] == 429
    assert error["data"]["path"] == "billing.createCheckoutSession"
    assert "too many requests" in error["message"]
    assert refused.headers["retry-after"]


async def test_trpc_tokens_in_the_body_are_counted_by_subject(
    tmp_path: Path, limited: httpx.AsyncClient
) -> None:
    # Callers behind one address, each with the token in the input (document 000): each has
    # a budget of their own, and every token of one of them shares it.
    url = "/trpc/billing.createCheckoutSession"
    alice = [_bare_token(tmp_path, "alice", minutes) for minutes in (10, 20, 30)]
    for token in alice:
        response = await limited.post(url, json=_trpc_checkout_input(token))
        assert response.status_code != 429
        _assert_rate_headers(response, limit=3, remaining=3 - 1 - alice.index(token))
    refused = await limited.post(url, json=_trpc_checkout_input(_bare_token(tmp_path, "alice", 5)))
    assert refused.status_code == 429
    for subject in ("bob", "carol"):  # the address is not what was counted
        response = await limited.post(
            url, json=_trpc_checkout_input(_bare_token(tmp_path, subject))
        )
        assert response.status_code != 429
        _assert_rate_headers(response, limit=3, remaining=2)


async def test_credentials_never_authenticated_cost_failed_attempts(
    tmp_path: Path, database: Database
) -> None:
    async with _app_client(
        tmp_path, database, rate_limit="100/minute", rate_limit_auth_failures="3/minute"
    ) as client:
        # Input refused before the caller is looked at: the bogus credential is never checked,
        # but each such request costs the address's failed attempts all the same.
        for i in range(3):
            response = await client.post(
                "/trpc/billing.createCheckoutSession",
                json={"token": f"bogus-{i}"},
                headers={"Authorization": f"Bearer bogus-{i}"},
            )
            assert response.status_code == 400
        for headers in ({"Authorization": "Bearer bogus-9"}, {"X-API-Key": "bf_test_bogus"}):
            refused = await client.get(CURRENT, headers=headers)
            assert refused.status_code == 429
            assert refused.headers["retry-after"]
        # A body token from that address too, before it is looked up.
        refused = await client.post(
            "/trpc/billing.createCheckoutSession",
            json=_trpc_checkout_input(_bare_token(tmp_path, "alice")),
        )
        assert refused.status_code == 429
        assert refused.json()["error"]["data"]["code"] == "TOO_MANY_REQUESTS"


async def test_a_public_route_served_with_a_credential_costs_the_address(
    limited: httpx.AsyncClient,
) -> None:
    # A credential a public route never looks at buys no budget of its own: the address pays,
    # as it does for a request without one.
    for i in range(3):
        response = await limited.get(PLANS, headers={"Authorization": f"Bearer rotated-{i}"})
        assert response.status_code == 200
    refused = await limited.get(PLANS)
    assert refused.status_code == 429
    _assert_rate_headers(refused, limit=3, remaining=0)


async def test_other_api_routes_get_the_default_error_shape(limited: httpx.AsyncClient) -> None:
    for _ in range(3):
        await limited.get("/api/subscriptions/current")
    refused = await limited.get("/api/subscriptions/current")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"


async def test_sandbox_and_ops_are_never_limited(limited: httpx.AsyncClient) -> None:
    for _ in range(6):
        for path in ("/api/v1/payments/webhook", "/api/stripe/webhook"):
            response = await limited.post(path, content=b"{}")
            assert response.status_code != 429, path
            assert response.headers["x-ratelimit-limit"] == "1200"  # the webhooks' own
        for path in ("/healthz", "/readyz", "/metrics", "/stripe-sandbox/v1/customers"):
            response = await limited.get(path)
            assert response.status_code != 429, path
            assert "x-ratelimit-limit" not in response.headers
    # None of that used the API budget.
    response = await limited.get(PLANS)
    _assert_rate_headers(response, limit=3, remaining=2)


async def test_webhooks_have_their_own_limit_per_address(
    tmp_path: Path, database: Database
) -> None:
    async with _app_client(tmp_path, database, rate_limit_webhook="4/minute") as client:
        for path in ("/api/v1/payments/webhook", "/api/stripe/webhook") * 2:
            assert (await client.post(path, content=b"{}")).status_code != 429
        refused = await client.post("/api/stripe/webhook", content=b"{}")
        assert refused.status_code == 429
        assert refused.headers["retry-after"]
        _assert_rate_headers(refused, limit=4, remaining=0)
        # The API budget of the address is untouched.
        _assert_rate_headers(await client.get(PLANS), limit=3, remaining=2)


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
    headers = _token(tmp_path, "shared-caller")
    try:
        async with _client(first) as a, _client(second) as b:
            assert (await a.get(CURRENT, headers=headers)).status_code != 429
            assert (await b.get(CURRENT, headers=headers)).status_code != 429
            last = await a.get(CURRENT, headers=headers)
            assert last.status_code != 429
            _assert_rate_headers(last, limit=3, remaining=0)
            refused = await b.get(CURRENT, headers=headers)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert refused.headers["retry-after"]
            # Another caller still has its own budget on either instance.
            assert (await b.get(CURRENT, headers=_token(tmp_path, "bob"))).status_code != 429
    finally:
        await first.state.rate_limiter.close()
        await second.state.rate_limiter.close()

    # Neither the token nor the subject is in Redis as it is, only the subject's digest.
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key.decode() async for key in client.scan_iter(match=f"{redis_prefix}:*")]
    finally:
        await client.aclose()
    assert keys and not any(headers["Authorization"][7:] in key for key in keys)
    assert any(subject_key("user", "shared-caller")[5:] in key for key in keys)


# --- a tRPC batch counts each of its calls ----------------------------------------------

TRPC_CHECKOUT = "billing.createCheckoutSession"


def _batch(n: int, procedure: str = TRPC_CHECKOUT) -> tuple[str, dict[str, Any]]:
    return f"/trpc/{','.join([procedure] * n)}?batch=1", {str(i): {} for i in range(n)}


async def test_each_call_of_a_trpc_batch_counts(tmp_path: Path, database: Database) -> None:
    settings = _settings(tmp_path, rate_limit="100/minute", rate_limit_checkout="3/minute")
    app = create_app(settings, database=database)
    token = _bare_token(tmp_path, "alice")

    def batch(n: int, who: str) -> tuple[str, dict[str, Any]]:
        url, _ = _batch(n)
        body = _trpc_checkout_input(_bare_token(tmp_path, who))
        return url, {str(i): body for i in range(n)}

    async with _client(app) as client:
        url, body = batch(2, "alice")
        response = await client.post(url, json=body)
        assert response.status_code != 429
        _assert_rate_headers(response, limit=3, remaining=1)
        single = _trpc_checkout_input(token)
        assert (await client.post(f"/trpc/{TRPC_CHECKOUT}", json=single)).status_code != 429
        refused = await client.post(f"/trpc/{TRPC_CHECKOUT}", json=single)
        assert refused.status_code == 429
        assert refused.json()["error"]["data"]["code"] == "TOO_MANY_REQUESTS"
        # A batch larger than what is left is refused whole, not partly run.
        url, body = batch(4, "bob")
        refused = await client.post(url, json=body)
        assert refused.status_code == 429
        assert all(item["error"]["data"]["code"] == "TOO_MANY_REQUESTS" for item in refused.json())


async def test_a_batch_over_the_cap_is_a_trpc_413(limited: httpx.AsyncClient) -> None:
    url, body = _batch(21, "billing.getStatus")
    refused = await limited.post(url, json=body)
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["data"]["code"] == "PAYLOAD_TOO_LARGE"
    assert error["data"]["httpStatus"] == 413
    assert "at most 20" in error["message"]
