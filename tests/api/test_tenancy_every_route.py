"""Issue 10: one rule for the account a request acts on, on every route of every dialect.

The routes are walked from the app itself (`app.routes`, included routers flattened; tRPC's
catch-all expanded to its procedures), so a new route is covered without touching this test;
the few that act on no account are skipped by name below. Each is called by alice, whose token
is not entitled to the victims, with (a) `X-Shopify-Shop-Domain` naming someone else's shop and
(b) `X-Billfold-Account` naming bob's account: 403 in the dialect's error shape, and nothing
changed anywhere. Then a token entitled to several shops names one: the route acts on it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import func, select

from billfold.api.trpc import app_procedures
from billfold.audit.models import AuditEntry
from billfold.auth.apikeys import create_api_key
from billfold.config import Settings
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import find_account
from billfold.db.engine import Database
from billfold.subscriptions.models import Subscription
from billfold.web.visitors import PanelRoute
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import bearer, deliver

ORG = "o1"
VICTIM_SHOP = "victim.myshopify.com"
APP = "https://app.example.com"

# Routes that act on no billing account, so have no tenant to pick: skipped by name.
SKIPPED = {
    ("GET", "/healthz"),  # ops
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/docs"),  # the API's docs page (Swagger UI served from the package)
    ("POST", "/api/v1/payments/webhook"),  # Stripe's webhooks
    ("POST", "/api/stripe/webhook"),
    ("GET", "/api/v1/payments/plans"),  # document 004's public catalogue
    ("GET", "/api/v1/payments/config"),
    ("GET", "/trpc"),  # tRPC's bare prefix names no procedure (NOT_FOUND)
    ("POST", "/trpc"),
    # Development mode only: outside it (these tests run in test mode) it does not exist (404);
    # in development it resolves its account like every route (tests/payments).
    ("POST", "/api/billing/_dev/add-charge"),
    # API keys only (the host app's backend): a user's token is 403 whatever the account.
    ("POST", "/api/billing/charges"),
}
# Not API routes: the sandbox's mount and FastAPI's own pages.
NOT_API = {
    "/stripe-sandbox",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/docs-assets",
    "/panel-static",  # the billing panel's stylesheet and htmx
}
TRPC = "/trpc/{path:path}"


@pytest.fixture
def billing_settings(billing_settings: Settings) -> Settings:
    """Rate limits out of the way: the walk calls each checkout route several times."""
    return billing_settings.model_copy(
        update={"rate_limit": "100000/minute", "rate_limit_checkout": "100000/minute"}
    )


def _bodies(prices: dict[str, str]) -> dict[tuple[str, str], Any]:
    """A valid body for the routes that need one (the default is none)."""
    monthly = prices["billfold_premium_monthly_usd"]
    yearly = prices["billfold_premium_yearly_usd"]
    return {
        ("POST", "/api/v1/payments/create-checkout-session"): {
            "price_id": monthly,
            "interval": "monthly",
        },
        ("POST", "/api/v1/payments/subscription/cancel"): {"cancel_immediately": True},
        ("POST", "/api/v1/organizations/{org_id}/billing/checkout"): {"price_id": monthly},
        ("POST", "/api/subscriptions/subscribe"): {"priceId": monthly},
        ("PUT", "/api/subscriptions/update"): {"priceId": yearly},
        ("POST", "/api/subscriptions/cancel"): {"cancelImmediately": True},
        ("POST", "/api/billing/checkout_session"): {"price_id": monthly},
        ("POST", "/trpc/billing.createCheckoutSession"): {
            "productId": monthly,
            "successUrl": f"{APP}/ok",
            "cancelUrl": f"{APP}/no",
        },
        ("POST", "/trpc/billing.createCustomerPortalSession"): {"returnUrl": f"{APP}/"},
        ("POST", "/api/billing/autopay"): {"enabled": False},
        ("POST", "/api/billing/us-bank/verify-microdeposits"): {
            "payment_method_id": "pm_unknown",
            "amounts": [32, 45],
        },
        ("POST", "/api/billing/payment-methods/priority"): {"payment_method_ids": []},
        ("POST", "/api/billing/payment-methods/default"): {"payment_method_id": "pm_unknown"},
        ("POST", "/api/billing/charge-once"): {"amount": 100, "currency": "usd"},
    }


def walked_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) a client can call that acts on an account."""
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            assert context.path in NOT_API, f"an unexpected non-API route {context.path}"
            continue
        if isinstance(route, PanelRoute):
            continue  # the panel's pages act on their session's account (tests/web)
        for method in context.methods or ():
            if method == "HEAD":
                continue
            if context.path == TRPC:
                # One route serves every procedure: walk each, by its kind's method.
                for procedure in app_procedures:
                    kind_method = "POST" if procedure.kind == "mutation" else "GET"
                    if kind_method == method:
                        found.add((method, f"/trpc/{procedure.path}"))
            elif (method, context.path) not in SKIPPED:
                found.add((method, context.path))
    return sorted(found)


async def _call(
    api: httpx.AsyncClient,
    method: str,
    template: str,
    bodies: dict[tuple[str, str], Any],
    headers: dict[str, str],
) -> httpx.Response:
    path = template.replace("{org_id}", ORG)
    body = bodies.get((method, template))
    if method == "GET":
        return await api.get(path, headers=headers)
    return await api.request(method, path, json=body if body is not None else {}, headers=headers)


def _assert_forbidden(template: str, response: httpx.Response, why: str) -> None:
    """403, in the shape of the route's dialect."""
    assert response.status_code == 403, (why, response.text)
    body = response.json()
    if template.startswith("/api/v1/payments/"):
        assert body == {"success": False, "message": body["message"], "data": None}, body
    elif template.startswith("/trpc/"):
        assert body["error"]["data"]["code"] == "FORBIDDEN", body
        assert body["error"]["data"]["httpStatus"] == 403, body
    else:
        assert body["error"]["code"] and body["error"]["message"], body
        assert set(body) == {"error", "request_id"}, body


async def _subscribe(
    api: httpx.AsyncClient, stripe_world: SandboxStripe, price: str, headers: dict[str, str]
) -> None:
    response = await api.post(
        "/api/v1/payments/create-checkout-session",
        json={"price_id": price, "interval": "monthly"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    stripe_world.complete_checkout(response.json()["data"]["session_id"])
    for event in stripe_world.events:
        assert (await deliver(api, event)).status_code == 200


async def _snapshot(database: Database) -> Any:
    """Every account, subscription and audit entry, as far as a request could change them."""
    async with database.transaction() as session:
        accounts = (
            await session.execute(
                select(BillingAccount.kind, BillingAccount.external_id).order_by(
                    BillingAccount.kind, BillingAccount.external_id
                )
            )
        ).all()
        subs = (
            await session.execute(
                select(
                    Subscription.account_id,
                    Subscription.status,
                    Subscription.plan_code,
                    Subscription.interval,
                    Subscription.cancel_at_period_end,
                    Subscription.canceled_at,
                ).order_by(Subscription.id)
            )
        ).all()
        audit = (await session.execute(select(func.count()).select_from(AuditEntry))).scalar()
    return accounts, subs, audit


def test_the_walk_covers_every_dialect(billing_app: FastAPI) -> None:
    paths = {path for _method, path in walked_routes(billing_app)}
    for dialect in ("/api/v1/payments/", "/api/v1/audit", "/api/v1/organizations/", "/trpc/"):
        assert any(path.startswith(dialect) for path in paths), dialect
    assert any(p.startswith("/api/subscriptions/") for p in paths)
    assert any(p.startswith("/api/billing/") for p in paths)


async def test_every_route_refuses_an_account_the_caller_is_not_entitled_to(
    api: httpx.AsyncClient,
    billing_app: FastAPI,
    billing_settings: Settings,
    synced: dict[str, str],
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    monthly = synced["billfold_premium_monthly_usd"]
    # Bob, a shop and alice herself each have a live subscription.
    await _subscribe(api, stripe_world, monthly, bearer(billing_settings, "bob"))
    victim_shop = bearer(billing_settings, "sam", shop=VICTIM_SHOP)
    await _subscribe(api, stripe_world, monthly, victim_shop)
    alice = bearer(billing_settings, "alice", org_id=ORG, role="admin")
    await _subscribe(api, stripe_world, monthly, alice)
    before = await _snapshot(database)

    bodies = _bodies(synced)
    routes = walked_routes(billing_app)
    for method, template in routes:
        for header in (
            {"X-Shopify-Shop-Domain": VICTIM_SHOP},
            {"X-Billfold-Account": "user:bob"},
        ):
            response = await _call(api, method, template, bodies, {**alice, **header})
            _assert_forbidden(template, response, f"{method} {template} {header}")
    # Nothing changed: no account, subscription or audit entry, bob's, the shop's or alice's.
    assert await _snapshot(database) == before


API_KEY_ONLY = frozenset(
    {
        "/api/billing/usage",
        "/api/billing/usage/batch",
        "/api/billing/usage/check",
        "/api/billing/holds",
    }
)
BODY_NAMES_ACCOUNT = frozenset({"/api/billing/credits/grants"})


async def test_every_route_acts_on_the_shop_the_header_names(
    api: httpx.AsyncClient,
    billing_app: FastAPI,
    billing_settings: Settings,
    synced: dict[str, str],
    database: Database,
) -> None:
    bodies = _bodies(synced)
    # Routes naming their account in the path (an organization's) refuse any other: 403 above.
    # A promotional grant names its account in the body, not in a header.
    routes = [
        r for r in walked_routes(billing_app) if "{" not in r[1] and r[1] not in BODY_NAMES_ACCOUNT
    ]
    shops = [f"shop{index}.myshopify.com" for index in range(len(routes))]
    carol = bearer(billing_settings, "carol", shops=shops)
    async with database.transaction() as session:
        backend = {"X-API-Key": (await create_api_key(session, "backend")).secret}
    for (method, template), shop in zip(routes, shops, strict=True):
        # Usage and holds are the host app's backend's: its API key, naming the shop.
        caller = backend if template in API_KEY_ONLY else carol
        response = await _call(
            api, method, template, bodies, {**caller, "X-Shopify-Shop-Domain": shop}
        )
        # Any answer of the account itself (a 404 or 400 with no subscription yet), not a refusal.
        assert response.status_code not in (401, 403, 422), (template, response.text)
        async with database.transaction() as session:
            assert await find_account(session, AccountKind.SHOP, shop) is not None, template
            assert await find_account(session, AccountKind.USER, "carol") is None, template
