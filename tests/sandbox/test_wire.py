"""The wire contract: auth, parameters, errors, idempotency, pagination, expand, faults."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from billfold_sandbox.errors import StripeError
from billfold_sandbox.wire import decode_form
from tests.sandbox_fixtures import SandboxServer


def _http(server: SandboxServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=10
    )


def test_decode_nested_keys() -> None:
    decoded = decode_form(
        [
            ("items[0][price]", "price_a"),
            ("items[0][quantity]", "2"),
            ("items[1][price]", "price_b"),
            ("metadata[k]", "v"),
            ("expand[]", "customer"),
            ("expand[]", "data.customer"),
            ("a[b][c]", "d"),
        ]
    )
    assert decoded == {
        "items": [{"price": "price_a", "quantity": "2"}, {"price": "price_b"}],
        "metadata": {"k": "v"},
        "expand": ["customer", "data.customer"],
        "a": {"b": {"c": "d"}},
    }
    # Indexes sort numerically, not as text.
    pairs = [(f"x[{i}]", str(i)) for i in (10, 2, 1)]
    assert decode_form(pairs) == {"x": ["1", "2", "10"]}
    with pytest.raises(StripeError):
        decode_form([("a", "1"), ("a[b]", "2")])


def test_auth_is_required(sandbox_server: SandboxServer) -> None:
    anonymous = httpx.get(f"{sandbox_server.url}/v1/customers")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    wrong = httpx.get(
        f"{sandbox_server.url}/v1/customers", headers={"Authorization": "Bearer pk_test_x"}
    )
    assert wrong.status_code == 401
    bad_client = stripe.StripeClient(
        "sk_live_nope", base_addresses={"api": sandbox_server.url}, max_network_retries=0
    )
    with pytest.raises(stripe.AuthenticationError):
        bad_client.v1.customers.list()
    basic = httpx.get(f"{sandbox_server.url}/v1/customers", auth=("sk_test_curl", ""))
    assert basic.status_code == 200


def test_unknown_parameters_are_refused(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.create(params={"emial": "x@example.com"})  # type: ignore[typeddict-unknown-key]
    assert info.value.http_status == 400
    assert info.value.param == "emial"
    assert info.value.user_message == "Received unknown parameter: emial"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.create(
            params={"invoice_settings": {"default_pm": "pm_x"}}  # type: ignore[typeddict-unknown-key]
        )
    assert info.value.param == "invoice_settings[default_pm]"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.list(params={"limit": 101})
    assert info.value.param == "limit"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.customers.list(params={"limit": "ten"})  # type: ignore[typeddict-item]
    assert "Invalid integer" in str(info.value.user_message)


def test_error_shape_and_headers(sandbox_server: SandboxServer) -> None:
    with _http(sandbox_server) as http:
        missing = http.get(
            "/v1/customers/cus_missing", headers={"Stripe-Version": "2026-10-28.endive"}
        )
        assert missing.status_code == 404
        error = missing.json()["error"]
        assert error == {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "doc_url": "https://stripe.com/docs/error-codes#resource-missing",
            "param": "id",
            "message": "No such customer: 'cus_missing'",
        }
        assert missing.headers["Request-Id"].startswith("req_")
        assert missing.headers["Stripe-Version"] == "2026-10-28.endive"
        unknown_route = http.get("/v1/nothing_here")
        assert unknown_route.status_code == 404
        assert (
            "Unrecognized request URL (GET: /v1/nothing_here)"
            in unknown_route.json()["error"]["message"]
        )
        required = http.post("/v1/prices", data={"unit_amount": "5"})
        assert required.status_code == 400
        assert required.json()["error"]["param"] == "currency"
        assert required.json()["error"]["code"] == "parameter_missing"


def test_idempotency_replays_and_conflicts(
    stripe_client: stripe.StripeClient, sandbox_server: SandboxServer
) -> None:
    first = stripe_client.v1.customers.create(
        params={"email": "idem@example.com"}, options={"idempotency_key": "key-1"}
    )
    again = stripe_client.v1.customers.create(
        params={"email": "idem@example.com"}, options={"idempotency_key": "key-1"}
    )
    assert again.id == first.id
    assert len(stripe_client.v1.customers.list().data) == 1
    assert len(stripe_client.v1.events.list(params={"type": "customer.created"}).data) == 1
    with pytest.raises(stripe.IdempotencyError) as info:
        stripe_client.v1.customers.create(
            params={"email": "other@example.com"}, options={"idempotency_key": "key-1"}
        )
    assert info.value.http_status == 400
    with _http(sandbox_server) as http:
        replay = http.post(
            "/v1/customers",
            data={"email": "idem@example.com"},
            headers={"Idempotency-Key": "key-1"},
        )
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == first.id
        # Errors (4xx) are replayed too, like Stripe does.
        bad1 = http.post("/v1/customers", data={"nope": "1"}, headers={"Idempotency-Key": "k2"})
        bad2 = http.post("/v1/customers", data={"nope": "1"}, headers={"Idempotency-Key": "k2"})
        assert bad1.status_code == bad2.status_code == 400
        assert bad2.headers["Idempotent-Replayed"] == "true"
        other_endpoint = http.post(
            "/v1/products", data={"email": "idem@example.com"}, headers={"Idempotency-Key": "key-1"}
        )
        assert other_endpoint.status_code == 400
        assert other_endpoint.json()["error"]["type"] == "idempotency_error"


def test_pagination(stripe_client: stripe.StripeClient) -> None:
    created = [
        stripe_client.v1.customers.create(params={"email": f"c{i}@example.com"}).id
        for i in range(7)
    ]
    newest_first = list(reversed(created))
    page1 = stripe_client.v1.customers.list(params={"limit": 3})
    assert [c.id for c in page1.data] == newest_first[:3]
    assert page1.has_more is True
    assert page1.url == "/v1/customers"
    page2 = stripe_client.v1.customers.list(
        params={"limit": 3, "starting_after": page1.data[-1].id}
    )
    assert [c.id for c in page2.data] == newest_first[3:6]
    page3 = stripe_client.v1.customers.list(
        params={"limit": 3, "starting_after": page2.data[-1].id}
    )
    assert [c.id for c in page3.data] == newest_first[6:]
    assert page3.has_more is False
    back = stripe_client.v1.customers.list(params={"limit": 2, "ending_before": page2.data[0].id})
    assert [c.id for c in back.data] == newest_first[1:3]
    assert back.has_more is True
    every = [c.id for c in stripe_client.v1.customers.list(params={"limit": 2}).auto_paging_iter()]
    assert every == newest_first


def test_expand_nested_and_errors(stripe_client: stripe.StripeClient) -> None:
    coupon = stripe_client.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    stripe_client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "TEN"}
    )
    listed = stripe_client.v1.promotion_codes.list(params={"expand": ["data.promotion.coupon"]})
    assert listed.data[0].promotion.coupon.id == coupon.id
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.coupons.retrieve(coupon.id, params={"expand": ["duration"]})
    assert info.value.param == "expand"


def _raw(client: stripe.StripeClient, method_: str, url_: str, **params: Any) -> dict[str, Any]:
    response = client.raw_request(method_, url_, **params)
    parsed: dict[str, Any] = client.deserialize(response, api_mode="V1").to_dict()
    return parsed


def test_faults_fail_the_next_calls(
    stripe_client: stripe.StripeClient, sandbox_server: SandboxServer
) -> None:
    fault = _raw(
        stripe_client,
        "post",
        "/v1/test_helpers/sandbox/faults",
        path="/v1/customers",
        method="POST",
        count=2,
    )
    assert fault["remaining"] == 2
    for _ in range(2):
        with pytest.raises(stripe.APIError) as info:
            stripe_client.v1.customers.create(params={"email": "f@example.com"})
        assert info.value.http_status == 500
    assert stripe_client.v1.customers.create(params={"email": "f@example.com"}).id
    # GETs were never affected by a POST fault; a 429 fault sets Stripe-Should-Retry.
    _raw(
        stripe_client, "post", "/v1/test_helpers/sandbox/faults", path="/v1/customers/*", status=429
    )
    with pytest.raises(stripe.RateLimitError) as rate:
        stripe_client.v1.customers.retrieve("cus_whatever")
    assert rate.value.http_status == 429
    assert rate.value.json_body["error"]["code"] == "rate_limit"
    assert rate.value.headers["Stripe-Should-Retry"] == "true"


def test_fault_after_the_call_is_survived_by_an_idempotent_retry(
    make_stripe_client: Any, sandbox_server: SandboxServer
) -> None:
    sandbox_server.state.faults.add("/v1/customers", method="POST", count=1, after=True)
    retrying: stripe.StripeClient = make_stripe_client(max_network_retries=2)
    customer = retrying.v1.customers.create(params={"email": "once@example.com"})
    # The first attempt was carried out (its answer lost); the retry replayed it.
    assert [c.id for c in retrying.v1.customers.list().data] == [customer.id]
    hits = [a for a in sandbox_server.state.faults.list()]
    assert hits == []


def test_fault_timeout_and_share(make_stripe_client: Any, sandbox_server: SandboxServer) -> None:
    sandbox_server.state.faults.add("/v1/products", method="GET", timeout=1.5, count=1)
    impatient: stripe.StripeClient = make_stripe_client(
        http_client=stripe.HTTPXClient(timeout=0.5, allow_sync_methods=True)
    )
    with pytest.raises(stripe.APIConnectionError) as gave_up:
        impatient.v1.products.list()
    # The client's own timeout ended the call (the held answer, a 500, never reached it).
    assert "ReadTimeout" in str(gave_up.value.user_message)
    sandbox_server.state.faults.clear()
    sandbox_server.state.faults.add("/v1/coupons", rate=0.5, count=None)
    client: stripe.StripeClient = make_stripe_client()
    outcomes = []
    for _ in range(40):
        try:
            client.v1.coupons.list()
            outcomes.append(True)
        except stripe.APIError:
            outcomes.append(False)
    assert 0 < outcomes.count(False) < 40
    with _http(sandbox_server) as http:
        assert http.delete("/v1/test_helpers/sandbox/faults").status_code == 200
    assert all(client.v1.coupons.list() is not None for _ in range(5))


async def test_concurrent_calls_are_safe(stripe_client: stripe.StripeClient) -> None:
    import asyncio

    created = await asyncio.gather(
        *(
            stripe_client.v1.customers.create_async(params={"email": f"p{i}@example.com"})
            for i in range(40)
        )
    )
    assert len({c.id for c in created}) == 40
    same_key = await asyncio.gather(
        *(
            stripe_client.v1.customers.create_async(
                params={"email": "once@example.com"}, options={"idempotency_key": "race"}
            )
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    ids = {c.id for c in same_key if not isinstance(c, Exception)}
    assert len(ids) == 1  # the others replayed it or were told the key is in use (409)
    for outcome in same_key:
        if isinstance(outcome, Exception):
            assert isinstance(outcome, stripe.StripeError)
            assert outcome.http_status == 409
    listed = stripe_client.v1.customers.list(params={"limit": 100}).data
    assert len(listed) == 41
