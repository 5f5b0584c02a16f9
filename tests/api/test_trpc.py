"""The tRPC dialect: the wire format (single calls, batches, errors, per-call transactions) on a
small procedure set of its own mounted at `/trpc-wire`, then document 000's billing procedures
at `/trpc` over billfold's Stripe adapter on the sandbox. test_trpc_node.py calls them with the
official client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy import select

from billfold import errors
from billfold.api.trpc.endpoint import build_router
from billfold.api.trpc.procedures import ProcedureContext, ProcedureRouter
from billfold.api.trpc.wire import TRPCError, parse_request, trpc_error_for
from billfold.audit import AuditEntry
from billfold.auth.tokens import issue_token
from billfold.config import Settings
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import get_or_create_account
from tests.api.stripe_events import pay_checkout
from tests.sandbox_stripe import SandboxStripe

PREFIX = "/trpc-wire"


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class HelloIn(Camel):
    first_name: str


class OpenAccountIn(Camel):
    external_id: str
    fail_after_write: bool = False


class WhoAmIIn(Camel):
    token: str | None = None


def _procedures() -> ProcedureRouter:
    greetings = ProcedureRouter()

    @greetings.query("hello", HelloIn)
    async def hello(ctx: ProcedureContext, data: HelloIn) -> dict[str, Any]:
        return {"greeting": f"hello {data.first_name}", "path": ctx.path}

    @greetings.query("broken")
    async def broken(ctx: ProcedureContext, data: None) -> None:
        raise RuntimeError("secret detail that must not leak")

    accounts = ProcedureRouter()

    @accounts.mutation("open", OpenAccountIn)
    async def open_account(ctx: ProcedureContext, data: OpenAccountIn) -> dict[str, str]:
        account = await get_or_create_account(
            ctx.session, AccountKind.USER, data.external_id, currency="usd"
        )
        if data.fail_after_write:
            raise errors.Conflict(f"account {data.external_id} refused after the write")
        return {"id": account.id, "externalId": account.external_id}

    @accounts.mutation("whoami", WhoAmIIn)
    async def whoami(ctx: ProcedureContext, data: WhoAmIIn) -> dict[str, str]:
        principal = await ctx.principal(data.token)
        return {"subject": principal.subject}

    root = ProcedureRouter()
    root.include(greetings, prefix="greetings")
    root.include(accounts, prefix="accounts")
    return root


# Built once: building a router also registers its error shape for the prefix.
WIRE_ROUTER = build_router(_procedures(), prefix=PREFIX)


@pytest.fixture
async def wire(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    app.include_router(WIRE_ROUTER)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billfold.test") as c:
        yield c


def _input(value: Any) -> dict[str, str]:
    return {"input": json.dumps(value)}


async def test_query_answers_with_result_data(wire: httpx.AsyncClient) -> None:
    response = await wire.get(f"{PREFIX}/greetings.hello", params=_input({"firstName": "Ada"}))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "result": {"data": {"greeting": "hello Ada", "path": "greetings.hello"}}
    }


async def test_missing_input_is_bad_request(wire: httpx.AsyncClient) -> None:
    response = await wire.get(f"{PREFIX}/greetings.hello")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "input is required",
            "code": -32600,
            "data": {"code": "BAD_REQUEST", "httpStatus": 400, "path": "greetings.hello"},
        }
    }


async def test_invalid_field_names_the_camel_case_field(wire: httpx.AsyncClient) -> None:
    response = await wire.get(f"{PREFIX}/greetings.hello", params=_input({"firstName": 7}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["data"]["code"] == "BAD_REQUEST"
    assert error["data"]["field"] == "firstName"
    assert error["message"].startswith("firstName:")


async def test_unreadable_json_is_a_parse_error(wire: httpx.AsyncClient) -> None:
    response = await wire.get(f"{PREFIX}/greetings.hello", params={"input": "{nope"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["data"]["code"]) == (-32700, "PARSE_ERROR")


async def test_unknown_procedure_is_not_found(wire: httpx.AsyncClient) -> None:
    response = await wire.post(f"{PREFIX}/greetings.nope", json={})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == -32004
    assert error["data"] == {"code": "NOT_FOUND", "httpStatus": 404, "path": "greetings.nope"}
    assert error["message"] == 'No procedure found on path "greetings.nope"'


async def test_mutation_refuses_get(wire: httpx.AsyncClient) -> None:
    response = await wire.get(f"{PREFIX}/accounts.open", params=_input({"externalId": "u1"}))
    assert response.status_code == 405
    error = response.json()["error"]
    assert (error["code"], error["data"]["code"]) == (-32005, "METHOD_NOT_SUPPORTED")


async def test_query_accepts_post_for_method_override(wire: httpx.AsyncClient) -> None:
    response = await wire.post(f"{PREFIX}/greetings.hello", json={"firstName": "Bo"})
    assert response.status_code == 200
    assert response.json()["result"]["data"]["greeting"] == "hello Bo"


async def test_other_http_methods_get_the_trpc_error_shape(wire: httpx.AsyncClient) -> None:
    response = await wire.put(f"{PREFIX}/accounts.open", json={})
    assert response.status_code == 405
    assert response.json()["error"]["data"]["code"] == "METHOD_NOT_SUPPORTED"
    assert response.json()["error"]["code"] == -32005


async def test_body_must_be_json(wire: httpx.AsyncClient) -> None:
    response = await wire.post(
        f"{PREFIX}/accounts.open", content=b"externalId=u1", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"]["data"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_huge_body_is_refused_before_parsing(wire: httpx.AsyncClient) -> None:
    huge = b'{"externalId": "' + b"x" * (1024 * 1024) + b'"}'
    response = await wire.post(
        f"{PREFIX}/accounts.open", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["data"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_no_procedure_path_is_not_found_in_trpc_shape(wire: httpx.AsyncClient) -> None:
    for path in (PREFIX, f"{PREFIX}/"):
        response = await wire.post(path, json={})
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == -32004, path


async def test_unexpected_failure_is_internal_and_says_nothing(wire: httpx.AsyncClient) -> None:
    response = await wire.get(f"{PREFIX}/greetings.broken")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error == {
        "message": "internal server error",
        "code": -32603,
        "data": {"code": "INTERNAL_SERVER_ERROR", "httpStatus": 500, "path": "greetings.broken"},
    }


async def test_batched_queries_answer_an_array_in_order(wire: httpx.AsyncClient) -> None:
    response = await wire.get(
        f"{PREFIX}/greetings.hello,greetings.hello",
        params={"batch": "1", **_input({"0": {"firstName": "A"}, "1": {"firstName": "B"}})},
    )
    assert response.status_code == 200
    assert [item["result"]["data"]["greeting"] for item in response.json()] == [
        "hello A",
        "hello B",
    ]


async def test_batch_with_one_failure_is_207_and_keeps_the_other_call(
    wire: httpx.AsyncClient, database: Any
) -> None:
    response = await wire.post(
        f"{PREFIX}/accounts.open,accounts.open,accounts.nope?batch=1",
        json={
            "0": {"externalId": "kept"},
            "1": {"externalId": "undone", "failAfterWrite": True},
            "2": {},
        },
    )
    assert response.status_code == 207
    first, second, third = response.json()
    assert first["result"]["data"]["externalId"] == "kept"
    assert second["error"]["data"] == {
        "code": "CONFLICT",
        "httpStatus": 409,
        "path": "accounts.open",
    }
    assert second["error"]["code"] == -32009
    assert second["error"]["message"] == "account undone refused after the write"
    assert third["error"]["data"]["code"] == "NOT_FOUND"
    # Each call had its own transaction: the failed one left nothing behind.
    async with database.transaction() as session:
        ids = (await session.execute(select(BillingAccount.external_id))).scalars().all()
    assert ids == ["kept"]


async def test_batch_with_the_same_error_keeps_its_status(wire: httpx.AsyncClient) -> None:
    response = await wire.post(
        f"{PREFIX}/accounts.whoami,accounts.whoami?batch=1", json={"0": {}, "1": {}}
    )
    assert response.status_code == 401
    assert [item["error"]["data"]["code"] for item in response.json()] == [
        "UNAUTHORIZED",
        "UNAUTHORIZED",
    ]


async def test_batch_input_must_be_keyed_by_position(wire: httpx.AsyncClient) -> None:
    response = await wire.post(f"{PREFIX}/accounts.open?batch=1", json=[{"externalId": "u"}])
    assert response.status_code == 400
    assert response.json()["error"]["data"]["code"] == "BAD_REQUEST"


async def test_token_in_body_or_header(wire: httpx.AsyncClient, settings: Settings) -> None:
    alice = issue_token(settings, "alice")
    bob = issue_token(settings, "bob")
    in_body = await wire.post(f"{PREFIX}/accounts.whoami", json={"token": alice})
    assert in_body.json() == {"result": {"data": {"subject": "alice"}}}
    in_header = await wire.post(
        f"{PREFIX}/accounts.whoami", json={}, headers={"Authorization": f"Bearer {alice}"}
    )
    assert in_header.json() == {"result": {"data": {"subject": "alice"}}}
    both = await wire.post(
        f"{PREFIX}/accounts.whoami",
        json={"token": alice},
        headers={"Authorization": f"Bearer {bob}"},
    )
    assert both.status_code == 401
    missing = await wire.post(f"{PREFIX}/accounts.whoami", json={})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == -32001
    forged = await wire.post(f"{PREFIX}/accounts.whoami", json={"token": alice[:-4] + "AAAA"})
    assert forged.status_code == 401
    assert forged.json()["error"]["data"]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ValidationFailed("bad"), "BAD_REQUEST"),
        (errors.Unauthenticated(), "UNAUTHORIZED"),
        (errors.PaymentRequired(), "PAYMENT_REQUIRED"),
        (errors.Forbidden(), "FORBIDDEN"),
        (errors.NotFound(), "NOT_FOUND"),
        (errors.Conflict(), "CONFLICT"),
        (errors.IdempotencyConflict(), "CONFLICT"),
        (errors.RateLimited(), "TOO_MANY_REQUESTS"),
        (errors.UpstreamUnavailable(), "BAD_GATEWAY"),
        (errors.ConfigurationError("STRIPE_X is wrong"), "INTERNAL_SERVER_ERROR"),
        (ValueError("boom"), "INTERNAL_SERVER_ERROR"),
    ],
)
def test_billfold_errors_map_to_trpc_codes(error: Exception, code: str) -> None:
    mapped = trpc_error_for(error)
    assert mapped.code == code
    if code == "INTERNAL_SERVER_ERROR":
        assert mapped.message == "internal server error"


def test_a_batch_may_not_be_huge() -> None:
    with pytest.raises(TRPCError) as caught:
        parse_request(
            method="POST",
            path=",".join(["a.b"] * 21),
            query_string="batch=1",
            body=b"{}",
            content_type="application/json",
        )
    assert caught.value.code == "PAYLOAD_TOO_LARGE"


def test_undefined_and_null_inputs_differ() -> None:
    none = parse_request(
        method="POST", path="a.b", query_string="", body=b"", content_type=None
    ).calls[0]
    null = parse_request(
        method="POST", path="a.b", query_string="", body=b"null", content_type=None
    ).calls[0]
    assert repr(none.input) == "UNDEFINED"
    assert null.input is None


# --- document 000's billing procedures, at /trpc, over the Stripe adapter on the sandbox ------

CHECKOUT = "/trpc/billing.createCheckoutSession"
PORTAL = "/trpc/billing.createCustomerPortalSession"
APP = "https://app.example.com"


def _checkout_input(token: str | None, product: str = "billfold_premium") -> dict[str, Any]:
    data: dict[str, Any] = {
        "productId": product,
        "successUrl": f"{APP}/success",
        "cancelUrl": f"{APP}/cancel",
    }
    if token is not None:
        data["token"] = token
    return data


async def test_checkout_returns_id_and_url_in_subscription_mode(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    database: Any,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    token = issue_token(billing_settings, "alice")
    response = await api.post(CHECKOUT, json=_checkout_input(token))
    assert response.status_code == 200, response.text
    data = response.json()["result"]["data"]
    assert set(data) == {"id", "url"}
    session = stripe_world.sessions[data["id"]]
    assert data["url"] == session["url"]
    assert session["mode"] == "subscription"
    assert session["allow_promotion_codes"] is True
    # productId "billfold_premium" (the plan's Stripe product) resolved to its monthly price.
    assert session["price"] == synced["billfold_premium_monthly_usd"]
    assert session["success_url"] == f"{APP}/success"
    async with database.transaction() as db:
        entries = (await db.execute(select(AuditEntry))).scalars().all()
    audited = {(e.action, e.actor, e.target) for e in entries}
    assert ("checkout.created", "user:alice", data["id"]) in audited


@pytest.mark.parametrize(
    "product",
    ["premium", "billfold_premium_yearly_usd", "PRICE:billfold_premium_yearly_usd"],
)
async def test_product_id_may_be_a_plan_code_lookup_key_or_price_id(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
    product: str,
) -> None:
    if product.startswith("PRICE:"):
        product = synced[product.removeprefix("PRICE:")]
    token = issue_token(billing_settings, "alice")
    response = await api.post(CHECKOUT, json=_checkout_input(token, product))
    assert response.status_code == 200, response.text
    session = stripe_world.sessions[response.json()["result"]["data"]["id"]]
    expected = "monthly" if product == "premium" else "yearly"
    assert session["price"] == synced[f"billfold_premium_{expected}_usd"]


async def test_checkout_errors(
    api: httpx.AsyncClient, billing_settings: Settings, synced: dict[str, str]
) -> None:
    token = issue_token(billing_settings, "alice")
    unknown = await api.post(CHECKOUT, json=_checkout_input(token, "prod_nope"))
    assert unknown.status_code == 400
    assert unknown.json()["error"]["data"]["code"] == "BAD_REQUEST"
    assert "prod_nope" in unknown.json()["error"]["message"]

    open_redirect = _checkout_input(token) | {"successUrl": "https://evil.example.net/x"}
    refused = await api.post(CHECKOUT, json=open_redirect)
    assert refused.status_code == 400
    assert "evil.example.net" in refused.json()["error"]["message"]

    missing = await api.post(CHECKOUT, json={"productId": "premium", "token": token})
    assert missing.status_code == 400
    assert missing.json()["error"]["data"]["field"] == "successUrl"

    anonymous = await api.post(CHECKOUT, json=_checkout_input(None))
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["data"]["code"] == "UNAUTHORIZED"


async def test_portal_needs_a_billing_record_then_opens(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    token = issue_token(billing_settings, "bob")
    portal = {"returnUrl": f"{APP}/dashboard", "token": token}
    before = await api.post(PORTAL, json=portal)
    assert before.status_code == 404
    assert before.json()["error"] == {
        "message": "no billing record for this account yet: start a checkout first",
        "code": -32004,
        "data": {
            "code": "NOT_FOUND",
            "httpStatus": 404,
            "path": "billing.createCustomerPortalSession",
        },
    }
    checkout = await api.post(CHECKOUT, json=_checkout_input(token))
    assert checkout.status_code == 200
    after = await api.post(PORTAL, json=portal)
    assert after.status_code == 200, after.text
    assert set(after.json()["result"]["data"]) == {"url"}
    customer = stripe_world.sessions[checkout.json()["result"]["data"]["id"]]["customer"]
    assert stripe_world.portal_customer(after.json()["result"]["data"]["url"]) == customer
    elsewhere = await api.post(PORTAL, json=portal | {"returnUrl": "https://evil.example.net/"})
    assert elsewhere.status_code == 400


async def test_second_checkout_while_subscribed_is_a_conflict(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    token = issue_token(billing_settings, "carol")
    first = await api.post(CHECKOUT, json=_checkout_input(token))
    await pay_checkout(api, stripe_world, first.json()["result"]["data"]["id"])
    again = await api.post(CHECKOUT, json=_checkout_input(token))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == -32009
    assert again.json()["error"]["data"]["code"] == "CONFLICT"


async def test_batched_checkout_then_portal_with_header_token(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    token = issue_token(billing_settings, "dave")
    response = await api.post(
        "/trpc/billing.createCustomerPortalSession,billing.createCheckoutSession,"
        "billing.createCustomerPortalSession?batch=1",
        json={
            "0": {"returnUrl": f"{APP}/dashboard"},
            "1": _checkout_input(None),
            "2": {"returnUrl": f"{APP}/dashboard"},
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 207
    before, checkout, after = response.json()
    assert before["error"]["data"]["code"] == "NOT_FOUND"
    assert checkout["result"]["data"]["id"].startswith("cs_")
    customer = stripe_world.sessions[checkout["result"]["data"]["id"]]["customer"]
    assert stripe_world.portal_customer(after["result"]["data"]["url"]) == customer


async def test_shop_token_bills_the_shop(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    database: Any,
    synced: dict[str, str],
) -> None:
    token = issue_token(billing_settings, "owner", shop="demo.myshopify.com")
    response = await api.post(CHECKOUT, json=_checkout_input(token))
    assert response.status_code == 200
    async with database.transaction() as session:
        rows = (await session.execute(select(BillingAccount))).scalars().all()
    assert [(a.kind, a.external_id) for a in rows] == [("shop", "demo.myshopify.com")]
    assert rows[0].stripe_customer_id is not None
    other = await api.post(
        CHECKOUT,
        json=_checkout_input(token),
        headers={"X-Shopify-Shop-Domain": "other.myshopify.com"},
    )
    assert other.status_code == 403
    assert other.json()["error"]["data"]["code"] == "FORBIDDEN"


async def test_the_apps_frontend_may_call_across_origins(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        CHECKOUT,
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-credentials" not in preflight.headers
    answer = await client.post(CHECKOUT, json={}, headers={"Origin": "http://app.example.com:3000"})
    assert answer.headers["access-control-allow-origin"] == "http://app.example.com:3000"
    for origin in ("https://evil.example.net", "https://app.example.com.evil.net"):
        refused = await client.options(
            CHECKOUT, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers


async def test_an_answer_varies_by_origin_with_or_without_one(client: httpx.AsyncClient) -> None:
    # Caches must not hand an answer without CORS headers to a page of another origin.
    plain = await client.get("/healthz")
    assert plain.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in plain.headers
    cross = await client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert cross.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "Origin" in cross.headers["vary"]
