"""Document 003's `X-SESSION-ID` on API routes (`billfold.api.session_deps`): optional by
default, required with BILLFOLD_REQUIRE_SESSION_ID, and always of the account acted on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from billfold.api.session_deps import SessionCheckedAccountDep, SessionCheckedReadingAccountDep
from billfold.app import create_app
from billfold.auth.tokens import issue_token
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.db.engine import Database
from tests.web.conftest import sign_in


def _app(settings: Settings, database: Database, clock: FrozenClock) -> Any:
    app = create_app(settings, database=database, clock=clock)

    async def acting(account: SessionCheckedAccountDep) -> dict[str, str]:
        return {"account": account.external_id}

    async def reading(account: SessionCheckedReadingAccountDep) -> dict[str, str]:
        return {"account": account.external_id}

    app.add_api_route("/test/acting", acting, methods=["POST"])
    app.add_api_route("/test/reading", reading, methods=["GET"])
    return app


async def _session_token(app: Any, settings: Settings, clock: FrozenClock, account: str) -> str:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://billfold.test"
    ) as browser:
        await sign_in(browser, settings, clock, account)
        return browser.cookies["billfold_session"]


@pytest.mark.parametrize("required", [False, True])
async def test_x_session_id(
    settings: Settings, database: Database, clock: FrozenClock, required: bool
) -> None:
    settings = settings.model_copy(update={"require_session_id": required})
    app = _app(settings, database, clock)
    alice = {"Authorization": f"Bearer {issue_token(settings, 'alice')}"}
    alices = await _session_token(app, settings, clock, "user:alice")
    bobs = await _session_token(app, settings, clock, "user:bob")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://billfold.test"
    ) as api:
        for method, path in (("POST", "/test/acting"), ("GET", "/test/reading")):
            bare = await api.request(method, path, headers=alice)
            assert bare.status_code == (401 if required else 200), bare.text
            own = await api.request(method, path, headers={**alice, "X-SESSION-ID": alices})
            assert own.status_code == 200 and own.json() == {"account": "alice"}
            other = await api.request(method, path, headers={**alice, "X-SESSION-ID": bobs})
            assert other.status_code == 403, other.text
            unknown = await api.request(method, path, headers={**alice, "X-SESSION-ID": "nope"})
            assert unknown.status_code == 401


async def test_document_003_routes_take_the_session(
    settings: Settings, database: Database, clock: FrozenClock
) -> None:
    """Document 003: "All endpoints below require a valid UI session (`X-SESSION-ID`) + auth
    token". With BILLFOLD_REQUIRE_SESSION_ID its routes refuse a request without one (401) or
    with another account's (403); `POST /api/billing/charges` (the host's backend, API key) and
    document 001's routes take none."""
    settings = settings.model_copy(update={"require_session_id": True})
    app = create_app(settings, database=database, clock=clock)
    alice = {"Authorization": f"Bearer {issue_token(settings, 'alice')}"}
    alices = await _session_token(app, settings, clock, "user:alice")
    bobs = await _session_token(app, settings, clock, "user:bob")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://billfold.test"
    ) as api:
        for method, path, body in (
            ("GET", "/api/billing/settings", None),
            ("GET", "/api/billing/payment-methods", None),
            ("GET", "/api/billing/subscriptions", None),
            ("POST", "/api/billing/autopay", {"enabled": False}),
        ):
            bare = await api.request(method, path, headers=alice, json=body)
            assert bare.status_code == 401, (path, bare.text)
            other = await api.request(
                method, path, headers={**alice, "X-SESSION-ID": bobs}, json=body
            )
            assert other.status_code == 403, (path, other.text)
            own = await api.request(
                method, path, headers={**alice, "X-SESSION-ID": alices}, json=body
            )
            assert own.status_code == 200, (path, own.text)
        credits = await api.get("/api/billing/balance", headers=alice)
        assert credits.status_code == 200, credits.text
