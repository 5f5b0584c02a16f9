from __future__ import annotations

import os
import re
from typing import Any

import httpx

from billfold.api.request_context import RequestIds


async def test_healthz_answers_with_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["x-request-id"].startswith("req_")


async def test_request_ids_are_distinct_and_of_one_shape(client: httpx.AsyncClient) -> None:
    ids = [(await client.get("/healthz")).headers["x-request-id"] for _ in range(5)]
    assert len(set(ids)) == 5
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", rid) for rid in ids)


async def test_a_new_process_draws_a_new_request_id_prefix(monkeypatch: Any) -> None:
    ids = RequestIds()
    first = ids.next()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a worker forked after the app was built
    second = ids.next()
    assert first[:20] != second[:20]
    assert second.endswith("0" * 16)


async def test_metrics_count_each_route_and_status(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.get("/healthz")
    await client.get("/no/such/route")
    text = (await client.get("/metrics")).text
    healthz = re.search(
        r'billfold_http_requests_total\{method="GET",route="/healthz",status="200"\} ([0-9.]+)',
        text,
    )
    unmatched = re.search(
        r'billfold_http_requests_total\{method="GET",route="unmatched",status="404"\} ([0-9.]+)',
        text,
    )
    assert healthz is not None and float(healthz.group(1)) >= 3
    assert unmatched is not None and float(unmatched.group(1)) >= 1


async def test_caller_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_a_request_id_with_a_trailing_newline_is_replaced() -> None:
    # `$` also matches before a final newline: the whole value must be of the allowed form.
    from billfold.api.request_context import RequestContextMiddleware

    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"]["request_id"])

    middleware = RequestContextMiddleware(app)
    for incoming, kept in ((b"abc-123", True), (b"abc-123\n", False), (b"a" * 129, False)):
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/healthz",
            "headers": [(b"x-request-id", incoming)],
        }
        await middleware(scope, None, None)
        assert (seen[-1] == incoming.decode()) is kept
        assert kept or seen[-1].startswith("req_")


async def test_readyz_reports_current_migrations(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"ready": True, "checks": {"database": "ok", "migrations": "ok"}}


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_metrics_are_exposed(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "billfold_http_requests_total" in response.text


async def test_malformed_json_names_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/billing/checkout_session",
        content=b"{bad",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "request body is not valid JSON",
        "field": "body",
    }


def test_log_lines_are_json_with_the_request_id() -> None:
    import json
    import logging

    from billfold.observability import JsonFormatter, request_id_var

    record = logging.LogRecord("billfold.x", logging.INFO, __file__, 1, "paid %s", ("in_1",), None)
    token = request_id_var.set("req_abc")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    assert json.loads(line) | {"ts": "-"} == {
        "ts": "-",
        "level": "info",
        "logger": "billfold.x",
        "msg": "paid in_1",
        "request_id": "req_abc",
    }
