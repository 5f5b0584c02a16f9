"""Bad input gets Stripe's 4xx, never a 500: random parameters against the core endpoints."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sandbox_fixtures import SandboxServer

ENDPOINTS = [
    ("POST", "/v1/customers"),
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/search"),
    ("POST", "/v1/products"),
    ("POST", "/v1/prices"),
    ("GET", "/v1/prices"),
    ("POST", "/v1/coupons"),
    ("POST", "/v1/promotion_codes"),
    ("GET", "/v1/promotion_codes"),
    ("GET", "/v1/events"),
    ("POST", "/v1/webhook_endpoints"),
    ("POST", "/v1/test_helpers/test_clocks"),
    ("POST", "/v1/test_helpers/sandbox/faults"),
]
KEYS = [
    "email",
    "name",
    "metadata[a]",
    "metadata",
    "currency",
    "unit_amount",
    "product",
    "product_data[name]",
    "recurring[interval]",
    "recurring[interval_count]",
    "lookup_key",
    "lookup_keys[0]",
    "percent_off",
    "amount_off",
    "duration",
    "duration_in_months",
    "promotion[type]",
    "promotion[coupon]",
    "code",
    "limit",
    "starting_after",
    "ending_before",
    "query",
    "type",
    "types[0]",
    "created[gte]",
    "created",
    "url",
    "enabled_events[0]",
    "frozen_time",
    "expand[0]",
    "expand[]",
    "invoice_settings[default_payment_method]",
    "test_clock",
    "path",
    "status",
    "count",
    "rate",
    "a[b][c]",
    "x[0][y]",
    "[",
    "a]b",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1",
            "100",
            "101",
            "usd",
            "month",
            "true",
            "x" * 6000,
            "forever",
            "repeating",
            "coupon",
            "cus_x",
            "price_x",
            "http://x",
            "*",
            "email:'a'",
            "metadata['a']:'b'",
            "1e9",
            "NaN",
            "data.customer",
        ]
    ),
    st.text(max_size=20),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    pairs=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=6),
)
def test_random_parameters_never_500(
    sandbox_server: SandboxServer, endpoint: tuple[str, str], pairs: list[tuple[str, str]]
) -> None:
    method, path = endpoint
    headers = {"Authorization": f"Bearer {sandbox_server.api_key}"}
    if method == "GET":
        response = httpx.get(sandbox_server.url + path, params=pairs, headers=headers)
    else:
        response = httpx.post(
            sandbox_server.url + path,
            content=urlencode(pairs),
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code < 500, (path, pairs, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["type"] in ("invalid_request_error", "idempotency_error")
        assert error["message"]
    sandbox_server.state.faults.clear()


def test_a_bad_integer_carries_stripes_error_code(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.raw_request("post", "/v1/prices", currency="usd", unit_amount="12.5x")
    assert (info.value.code, info.value.param) == ("parameter_invalid_integer", "unit_amount")
