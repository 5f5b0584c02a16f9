"""Issue 10, "no 500 from a client's input": every malformed input a client can send is a 4xx
in the route's own error shape, never a 500, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billfold.config import Settings
from billfold.container import Container
from billfold.stripe.models import WebhookEvent
from tests.subscriptions.fixtures import bearer, deliver

WEBHOOK = "/api/stripe/webhook"


def event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "evt_client_input_1",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": 1_768_478_400,
        "livemode": False,
        "data": {"object": {"id": "sub_missing", "object": "subscription"}},
    }
    body.update(overrides)
    return body


async def stored_ids(container: Container) -> list[str]:
    async with container.db.transaction() as session:
        return list((await session.execute(select(WebhookEvent.id))).scalars())


@pytest.mark.parametrize(
    "overrides",
    [
        {"created": "1768478400"},
        {"created": {"a": 1}},
        {"created": 10**30},
        {"created": -1},
        {"created": True},
        {"id": "not-an-event-id"},
        {"id": "evt_" + "x" * 300},
        {"id": 12},
        {"type": ""},
        {"type": ["invoice.paid"]},
        {"data": {"object": "sub_1"}},
        {"data": []},
        {"data": {}},
        {"id": "evt_nul\u0000"},
        {"type": "invoice.paid\u0000"},
        {"data": {"object": {"id": "sub_\u0000"}}},
    ],
    ids=repr,
)
async def test_a_signed_event_with_a_bad_envelope_is_a_400_and_not_stored(
    api: httpx.AsyncClient, container: Container, overrides: dict[str, Any]
) -> None:
    response = await deliver(api, event(**overrides), path=WEBHOOK)
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    assert await stored_ids(container) == []


@pytest.mark.parametrize(
    ("text", "escaped", "status"),
    [("\ud800", b"\\ud800", 400), ("\U0001f600", b"\\ud83d\\ude00", 200)],
    ids=["lone surrogate", "surrogate pair"],
)
async def test_a_lone_surrogate_in_a_signed_event_is_a_400(
    api: httpx.AsyncClient, container: Container, text: str, escaped: bytes, status: int
) -> None:
    payload = json.dumps(event(data={"object": {"id": "sub_1", "name": text}})).encode()
    assert escaped in payload
    response = await deliver(api, payload, path=WEBHOOK)
    assert response.status_code == status, response.text
    assert len(await stored_ids(container)) == (status == 200)


async def test_deeply_nested_signed_json_is_a_400(
    api: httpx.AsyncClient, container: Container
) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    payload = json.dumps(event()).encode()[:-1] + b', "extra": ' + nested.encode() + b"}"
    response = await deliver(api, payload, path=WEBHOOK)
    assert response.status_code == 400, response.text
    assert await stored_ids(container) == []


async def test_a_signature_dated_in_the_future_is_refused(
    api: httpx.AsyncClient, container: Container
) -> None:
    payload = json.dumps(event()).encode()
    response = await deliver(api, payload, path=WEBHOOK, timestamp=int(time.time()) + 3600)
    assert response.status_code == 400, response.text
    assert await stored_ids(container) == []


async def test_a_completed_checkout_with_an_empty_object_is_kept_as_failed(
    api: httpx.AsyncClient, container: Container
) -> None:
    body = event(id="evt_empty_checkout", type="checkout.session.completed")
    body["data"] = {"object": {}}
    response = await deliver(api, body, path=WEBHOOK)
    assert response.status_code == 200, response.text
    async with container.db.transaction() as session:
        row = await session.get(WebhookEvent, "evt_empty_checkout")
    assert row is not None
    assert row.status == "failed"
    assert row.last_error


async def test_a_body_over_the_limit_is_a_413(api: httpx.AsyncClient) -> None:
    big = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = await api.post(
        "/api/subscriptions/subscribe", content=big, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    response = await deliver(api, big, path=WEBHOOK)
    assert response.status_code == 413, response.text


async def test_a_streamed_body_over_the_limit_is_a_413(
    api: httpx.AsyncClient, billing_settings: Settings
) -> None:
    chunks_sent = 0

    async def body() -> Any:
        nonlocal chunks_sent
        for _ in range(64):
            chunks_sent += 1
            yield b"a" * 65536

    response = await api.post(
        "/api/subscriptions/subscribe",
        content=body(),
        headers={"Content-Type": "application/json", **bearer(billing_settings, "alice")},
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert chunks_sent < 64  # refused as the limit was passed, not after the whole body


@pytest.mark.parametrize("path", ["/api/subscriptions/subscribe", "/api/billing/checkout_session"])
async def test_deeply_nested_json_to_a_route_is_a_400(
    api: httpx.AsyncClient, billing_settings: Settings, path: str
) -> None:
    nested = '{"priceId": ' + "[" * 10_000 + "]" * 10_000 + "}"
    response = await api.post(
        path,
        content=nested,
        headers={"Content-Type": "application/json", **bearer(billing_settings, "alice")},
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("value", ["price_\u0000", "price_\udc00"], ids=["nul", "surrogate"])
async def test_nul_and_lone_surrogates_in_a_json_body_are_a_400(
    api: httpx.AsyncClient, billing_settings: Settings, value: str
) -> None:
    response = await api.post(
        "/api/subscriptions/subscribe",
        content=json.dumps({"priceId": value}),
        headers={"Content-Type": "application/json", **bearer(billing_settings, "alice")},
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("cursor", ["99999999999999999999", "\uff11\uff12\uff13", "²", "-1", "1.5"])
async def test_a_garbage_audit_cursor_is_a_400(
    api: httpx.AsyncClient, billing_settings: Settings, cursor: str
) -> None:
    response = await api.get(
        "/api/v1/audit", params={"cursor": cursor}, headers=bearer(billing_settings, "alice")
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "params",
    [{"account_id": "acct_\u0000"}, {"account": "user:a\u0000"}],
    ids=["account_id", "account"],
)
async def test_a_nul_in_an_account_id_is_a_400(
    api: httpx.AsyncClient, billing_settings: Settings, params: dict[str, str]
) -> None:
    response = await api.get(
        "/api/v1/audit", params=params, headers=bearer(billing_settings, "alice")
    )
    assert response.status_code == 400, response.text


async def test_a_nul_in_a_path_parameter_is_a_400(
    api: httpx.AsyncClient, billing_settings: Settings
) -> None:
    response = await api.get(
        "/api/v1/organizations/o%001/billing/subscription",
        headers=bearer(billing_settings, "alice", org_id="o\u00001", role="admin"),
    )
    assert response.status_code == 400, response.text


async def test_deeply_nested_json_to_trpc_is_a_400_in_trpcs_shape(
    api: httpx.AsyncClient, billing_settings: Settings
) -> None:
    nested = "[" * 10_000 + "]" * 10_000
    response = await api.post(
        "/trpc/billing.createCheckoutSession",
        content=nested,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["data"]["code"] == "BAD_REQUEST"
    response = await api.get(
        "/trpc/billing.createCheckoutSession?batch=1", params={"input": nested}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["data"]["code"] == "BAD_REQUEST"


async def test_a_nul_escape_in_a_trpc_query_input_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/trpc/billing.createCheckoutSession", params={"input": '{"productId": "p\\u0000"}'}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["data"]["code"] == "BAD_REQUEST"


async def test_a_nul_in_trpc_input_is_a_400(
    api: httpx.AsyncClient, billing_settings: Settings
) -> None:
    response = await api.post(
        "/trpc/billing.createCustomerPortalSession",
        content=json.dumps({"returnUrl": "https://app.example.com/\u0000", "token": "x\u0000"}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/subscriptions/current", "GET"),
        ("GET", "/api/stripe/webhook", "POST"),
        ("PUT", "/api/v1/payments/webhook", "POST"),
        ("DELETE", "/trpc/billing.createCheckoutSession", "GET, POST"),
    ],
)
async def test_405_carries_allow(
    api: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await api.request(method, path)
    assert response.status_code == 405, response.text
    assert set(allowed.split(", ")) <= set(response.headers["allow"].split(", "))
    assert "error" in response.json() or response.json()["success"] is False


async def test_the_schema_lists_every_status_in_its_dialects_shape(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    paths = schema["paths"]

    def refs(path: str, method: str) -> dict[str, str]:
        responses = paths[path][method]["responses"]
        return {
            status: answer.get("content", {})
            .get("application/json", {})
            .get("schema", {})
            .get("$ref", "")
            .rsplit("/", 1)[-1]
            for status, answer in responses.items()
        }

    subscribe = refs("/api/subscriptions/subscribe", "post")
    for status in ("400", "401", "403", "404", "409", "413", "422", "429"):
        assert subscribe[status] == "ErrorResponse", status
    v1 = refs("/api/v1/payments/create-checkout-session", "post")
    for status in ("400", "401", "403", "404", "409", "413", "429", "500"):
        assert v1[status] == "V1Error", status
    trpc = refs("/trpc/{path}", "post")
    for status in ("400", "401", "403", "404", "405", "413", "429"):
        assert trpc[status] == "TRPCErrorResponse", status
    assert (
        paths["/trpc/{path}"]["get"]["operationId"] != paths["/trpc/{path}"]["post"]["operationId"]
    )
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
