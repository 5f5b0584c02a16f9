"""Signing in to the panel: links (single-use, short-lived, signed), the session cookie and
`X-SESSION-ID`, expiry and sign-out, CSRF on every form, framing, and no secret on a page."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from billfold.auth.apikeys import create_api_key
from billfold.auth.sessions import LINK_AUDIENCE, PanelSession
from billfold.auth.tokens import issue_token
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.db.engine import Database
from tests.web.conftest import csrf_of, link, sign_in


async def test_a_link_signs_in_with_a_secure_cookie(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock
) -> None:
    response = await sign_in(panel, settings, clock, "user:alice")
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("billfold_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    page = await panel.get("/")
    assert page.status_code == 200
    assert "user alice" in page.text
    assert "Sign out" in page.text


async def test_the_cookie_is_secure_over_https(
    panel_app: object, settings: Settings, clock: FrozenClock
) -> None:
    transport = httpx.ASGITransport(app=panel_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://billfold.test") as client:
        response = await client.get(link(settings, clock, "user:alice"))
    assert "Secure" in response.headers["set-cookie"]


async def test_a_used_link_is_refused(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    path = link(settings, clock, "user:alice")
    assert (await panel.get(path)).status_code == 303
    panel.cookies.clear()
    again = await panel.get(path)
    assert again.status_code == 401
    assert "used already" in again.text
    assert "set-cookie" not in again.headers
    async with database.read() as session:
        count = (await session.execute(select(func.count()).select_from(PanelSession))).scalar()
    assert count == 1


async def test_an_expired_link_is_refused(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock
) -> None:
    path = link(settings, clock, "user:alice", ttl_seconds=60)
    clock.advance(timedelta(seconds=60))
    response = await panel.get(path)
    assert response.status_code == 401
    assert "expired" in response.text


@pytest.mark.parametrize(
    "claims_change",
    [
        {"aud": "billfold"},  # an API token's audience: no link
        {"iss": "someone-else"},
        {"exp_after": 3600},  # lives longer than a link may
        {"account": "nobody"},
        {"drop": "jti"},
        {"drop": "account"},  # a customer's link names its account
    ],
)
async def test_a_malformed_link_is_refused(
    panel: httpx.AsyncClient,
    settings: Settings,
    clock: FrozenClock,
    claims_change: dict[str, object],
) -> None:
    now = int(clock.now().timestamp())
    claims: dict[str, object] = {
        "iss": settings.jwt_issuer,
        "aud": LINK_AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 60,
        "jti": "a-link-id-1234",
        "account": "user:alice",
    }
    change = dict(claims_change)
    if "exp_after" in change:
        claims["exp"] = now + int(str(change.pop("exp_after")))
    if "drop" in change:
        claims.pop(str(change.pop("drop")))
    claims.update(change)
    token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    response = await panel.get(f"/sign-in?token={token}")
    assert response.status_code == 401, response.text
    assert "set-cookie" not in response.headers


async def test_a_forged_link_is_refused(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock
) -> None:
    forger = settings.model_copy(update={"jwt_secret": "another-secret-that-is-long-enough-012345"})
    forged = link(forger, clock, "user:bob")
    assert (await panel.get(forged)).status_code == 401
    # alg none and a bare token are no links either.
    unsigned = jwt.encode(
        {"aud": LINK_AUDIENCE, "iss": settings.jwt_issuer, "sub": "x", "jti": "j" * 10},
        key=None,
        algorithm="none",
    )
    assert (await panel.get(f"/sign-in?token={unsigned}")).status_code == 401
    assert (await panel.get("/sign-in?token=not-a-jwt")).status_code == 401
    assert (await panel.get("/sign-in")).status_code == 401
    # An API bearer token is not a sign-in link.
    api_token = issue_token(settings, "bob")
    assert (await panel.get(f"/sign-in?token={api_token}")).status_code == 401


async def test_sessions_expire(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock
) -> None:
    await sign_in(panel, settings, clock, "user:alice")
    assert (await panel.get("/")).status_code == 200
    clock.advance(timedelta(minutes=settings.panel_session_minutes))
    response = await panel.get("/")
    assert response.status_code == 401
    assert "session has ended" in response.text


async def test_sign_out_ends_the_session(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock
) -> None:
    await sign_in(panel, settings, clock, "user:alice")
    token = panel.cookies["billfold_session"]
    page = await panel.get("/")
    out = await panel.post("/sign-out", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 200
    assert 'billfold_session=""' in out.headers["set-cookie"]
    # The old token is refused, as a cookie or as X-SESSION-ID.
    panel.cookies.set("billfold_session", token)
    assert (await panel.get("/")).status_code == 401
    panel.cookies.clear()
    assert (await panel.get("/", headers={"X-SESSION-ID": token})).status_code == 401


async def test_the_session_token_works_as_x_session_id(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock
) -> None:
    await sign_in(panel, settings, clock, "user:alice")
    token = panel.cookies["billfold_session"]
    panel.cookies.clear()
    page = await panel.get("/", headers={"X-SESSION-ID": token})
    assert page.status_code == 200 and "user alice" in page.text


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/sign-out", {}),
        ("/subscription/cancel", {"when": "now"}),
        ("/subscription/reactivate", {}),
        ("/subscription/portal", {}),
        ("/subscription/checkout", {"price": "billfold_premium_monthly_usd"}),
        ("/subscription/change", {"price": "billfold_premium_yearly_usd"}),
        ("/payment-methods/setup/card", {"payment_method_id": "pm_card_visa"}),
        ("/payment-methods/setup/us-bank", {}),
        ("/payment-methods/setup/finish", {"setup_intent_id": "seti_123"}),
        ("/payment-methods/verify", {"payment_method_id": "pm_x", "amount_1": "32"}),
        ("/payment-methods/default", {"payment_method_id": "pm_x"}),
        ("/payment-methods/move", {"payment_method_id": "pm_x", "direction": "up"}),
        ("/payment-methods/remove", {"payment_method_id": "pm_x"}),
        ("/payment-methods/autopay", {"enabled": "on"}),
        ("/payment-methods/pay-balance", {"currency": "usd"}),
    ],
)
async def test_a_form_without_its_csrf_token_is_refused(
    panel: httpx.AsyncClient,
    settings: Settings,
    clock: FrozenClock,
    database: Database,
    path: str,
    data: dict[str, str],
) -> None:
    await sign_in(panel, settings, clock, "user:alice")
    for sent in (data, {**data, "csrf_token": "wrong"}):
        response = await panel.post(path, data=sent)
        assert response.status_code == 403, (path, response.text)
        assert "security token" in response.text
    # Still signed in: the refused sign-out changed nothing.
    assert (await panel.get("/")).status_code == 200


async def test_another_sessions_csrf_token_is_refused(
    panel_app: object, panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock
) -> None:
    await sign_in(panel, settings, clock, "user:alice")
    transport = httpx.ASGITransport(app=panel_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://billfold.test") as bob:
        await sign_in(bob, settings, clock, "user:bob")
        bobs_token = csrf_of((await bob.get("/")).text)
    response = await panel.post("/sign-out", data={"csrf_token": bobs_token})
    assert response.status_code == 403


async def test_framing_is_refused_unless_the_origin_is_listed(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    page = await panel.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"


async def test_listed_origins_may_frame_the_panel(
    settings: Settings, database: Database, clock: FrozenClock
) -> None:
    from billfold.app import create_app

    listed = settings.model_copy(
        update={"panel_frame_ancestors": ["https://app.example.com", "https://admin.example.com"]}
    )
    app = create_app(listed, database=database, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://billfold.test") as client:
        response = await client.get(link(listed, clock, "user:alice"))
        assert "SameSite=none" in response.headers["set-cookie"]
        assert "Secure" in response.headers["set-cookie"]
        page = await client.get("/")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors https://app.example.com https://admin.example.com" in csp
    assert "x-frame-options" not in page.headers


async def test_no_secret_reaches_a_page(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    await sign_in(panel, settings, clock, "user:alice")
    secrets = [settings.jwt_secret or "", settings.stripe_api_key, *settings.webhook_secrets]
    for path in ("/", "/subscription", "/activity", "/activity/audit.csv"):
        body = (await panel.get(path)).text
        for secret in secrets:
            assert secret and secret not in body, path
    # The session token itself is in the HttpOnly cookie only, never in a page.
    token = panel.cookies["billfold_session"]
    for path in ("/", "/subscription", "/activity"):
        assert token not in (await panel.get(path)).text


async def test_the_api_issues_links_for_the_account_the_caller_acts_on(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    alice = {"Authorization": f"Bearer {issue_token(settings, 'alice')}"}
    response = await panel.post("/api/v1/panel/sign-in-links", headers=alice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"].startswith(f"{settings.base_url}/sign-in?token=")
    signed = await panel.get(body["url"].removeprefix(settings.base_url))
    assert signed.status_code == 303
    assert "user alice" in (await panel.get("/")).text
    # A user may not ask for an operator's link, nor for someone else's account.
    refused = await panel.post(
        "/api/v1/panel/sign-in-links", json={"operator": True}, headers=alice
    )
    assert refused.status_code == 403
    other = await panel.post(
        "/api/v1/panel/sign-in-links", headers={**alice, "X-Billfold-Account": "user:bob"}
    )
    assert other.status_code == 403
    assert (await panel.post("/api/v1/panel/sign-in-links")).status_code == 401
    too_long = await panel.post(
        "/api/v1/panel/sign-in-links", json={"ttlSeconds": 3600}, headers=alice
    )
    assert too_long.status_code == 422


async def test_an_api_key_issues_customer_and_operator_links(
    panel_app: object, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    async with database.transaction() as session:
        created = await create_api_key(session, "host app", now=clock.now())
    key = {"X-API-Key": created.secret}
    transport = httpx.ASGITransport(app=panel_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://billfold.test") as client:
        customer = await client.post(
            "/api/v1/panel/sign-in-links",
            headers={**key, "X-Billfold-Account": "shop:demo.myshopify.com"},
        )
        assert customer.status_code == 200, customer.text
        operator = await client.post(
            "/api/v1/panel/sign-in-links", json={"operator": True}, headers=key
        )
        assert operator.status_code == 200, operator.text
        first = await client.get(customer.json()["url"].removeprefix(settings.base_url))
        assert first.headers["location"] == "/"
        assert "shop demo.myshopify.com" in (await client.get("/")).text
        client.cookies.clear()
        second = await client.get(operator.json()["url"].removeprefix(settings.base_url))
        assert second.headers["location"] == "/operator"


async def test_the_development_sign_in_is_for_sandbox_mode_only(
    panel: httpx.AsyncClient, settings: Settings, database: Database, clock: FrozenClock
) -> None:
    form = await panel.get("/dev/sign-in")
    assert form.status_code == 200
    token = csrf_of(form.text)
    # Without the form's token (its cookie alone), refused.
    refused = await panel.post("/dev/sign-in", data={"account": "user:dev"})
    assert refused.status_code == 403
    done = await panel.post("/dev/sign-in", data={"account": "user:dev", "csrf_token": token})
    assert done.status_code == 303
    assert "user dev" in (await panel.get("/")).text

    from billfold.app import create_app

    production = settings.model_copy(
        update={
            "environment": "production",
            "stripe_secret_key": "sk_test_x",
            "stripe_webhook_secret": ["whsec_x"],
        }
    )
    app = create_app(production, database=database, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billfold.test") as client:
        assert (await client.get("/dev/sign-in")).status_code == 404
        assert (await client.post("/dev/sign-in", data={"account": "user:x"})).status_code == 404
        page = await client.get("/")
        assert page.status_code == 401 and "/dev/sign-in" not in page.text


async def test_the_operator_signs_in_with_an_api_key(
    panel: httpx.AsyncClient, clock: FrozenClock, database: Database
) -> None:
    async with database.transaction() as session:
        created = await create_api_key(session, "ops", now=clock.now())
    form = await panel.get("/operator/sign-in")
    token = csrf_of(form.text)
    wrong = await panel.post(
        "/operator/sign-in", data={"api_key": "bf_" + "x" * 43, "csrf_token": token}
    )
    assert wrong.status_code == 401
    done = await panel.post(
        "/operator/sign-in", data={"api_key": created.secret, "csrf_token": token}
    )
    assert done.status_code == 303 and done.headers["location"] == "/operator"
    assert created.secret not in (await panel.get("/operator")).text
