"""Authentication over HTTP: header and body credentials, API keys, the shop header, and the
audit context an endpoint gets."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from sqlalchemy import select

from billfold.api.audit_deps import AuditContextDep, audit_context_for
from billfold.api.auth_deps import (
    PrincipalDep,
    ShopHeaderDep,
    principal_from_token_or_header,
)
from billfold.api.deps import SessionDep
from billfold.audit.models import AuditEntry
from billfold.auth.apikeys import create_api_key, revoke_api_key
from billfold.auth.models import ApiKey
from billfold.auth.tenancy import account_for_shop
from billfold.auth.tokens import issue_token
from billfold.clock import utcnow
from billfold.config import Settings
from billfold.db.engine import Database


class TrpcInput(BaseModel):
    token: str | None = None


def _probe_router(settings: Settings) -> APIRouter:
    """Tiny routes that expose what the auth dependencies decided."""
    router = APIRouter(prefix="/_probe")

    @router.get("/whoami")
    async def whoami(principal: PrincipalDep) -> dict[str, Any]:
        return {
            "kind": principal.kind,
            "subject": principal.subject,
            "acting_for": str(principal.acting_for) if principal.acting_for else None,
        }

    @router.post("/body")
    async def body(request: Request, payload: TrpcInput, session: SessionDep) -> dict[str, Any]:
        principal = await principal_from_token_or_header(request, payload.token, session)
        await audit_context_for(request, principal).record(
            session, "portal.opened", account_id=None
        )
        return {"kind": principal.kind, "subject": principal.subject}

    @router.get("/shop")
    async def shop(
        session: SessionDep, principal: PrincipalDep, shop_domain: ShopHeaderDep
    ) -> dict[str, Any]:
        account = await account_for_shop(session, principal, shop_domain, settings)
        return {"kind": account.kind, "external_id": account.external_id}

    @router.post("/charge")
    async def charge(
        session: SessionDep, principal: PrincipalDep, audit: AuditContextDep
    ) -> dict[str, Any]:
        entry = await audit.record(
            session, "charge.created", account_id="acct_x", details={"amount": 500}
        )
        return {"id": entry.id}

    return router


@pytest.fixture
async def probe(app: FastAPI, settings: Settings) -> FastAPI:
    app.include_router(_probe_router(settings))
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _key(database: Database, name: str = "backend") -> tuple[str, str]:
    async with database.transaction() as session:
        created = await create_api_key(session, name)
    return created.key.id, created.secret


async def test_missing_and_bad_credentials_are_401(
    probe: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    for headers in (
        {},
        bearer("nonsense"),
        {"Authorization": "Basic YWxpY2U6cHc="},
        bearer(issue_token(settings, "a", now=utcnow() - timedelta(days=1))),
        {"X-API-Key": "bf_unknown"},
        bearer("bf_unknown"),
    ):
        response = await client.get("/_probe/whoami", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.headers["X-Request-ID"]


async def test_user_token(probe: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.get("/_probe/whoami", headers=bearer(issue_token(settings, "alice")))
    assert response.status_code == 200
    assert response.json() == {"kind": "user", "subject": "alice", "acting_for": None}


async def test_api_keys(probe: FastAPI, client: httpx.AsyncClient, database: Database) -> None:
    key_id, secret = await _key(database)
    for headers in (
        bearer(secret),
        {"X-API-Key": secret},
        {**bearer(secret), "X-API-Key": secret},
        {"Authorization": "Basic cHJveHk6cHc=", "X-API-Key": secret},
    ):
        response = await client.get(
            "/_probe/whoami", headers={**headers, "X-Billfold-Account": "organization:o1"}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "kind": "api_key",
            "subject": key_id,
            "acting_for": "organization:o1",
        }
    async with database.transaction() as session:
        key = await session.get(ApiKey, key_id)
        assert key is not None and key.last_used_at is not None
        await revoke_api_key(session, key_id)
    response = await client.get("/_probe/whoami", headers=bearer(secret))
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    # A near miss of a real key is just an unknown key.
    response = await client.get("/_probe/whoami", headers=bearer(secret[:-1] + "x"))
    assert response.status_code == 401


async def test_two_different_header_credentials_are_refused(
    probe: FastAPI, client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    _, secret = await _key(database)
    headers = {**bearer(issue_token(settings, "alice")), "X-API-Key": secret}
    assert (await client.get("/_probe/whoami", headers=headers)).status_code == 401


async def test_bad_account_header_is_400(
    probe: FastAPI, client: httpx.AsyncClient, database: Database
) -> None:
    _, secret = await _key(database)
    response = await client.get(
        "/_probe/whoami", headers={**bearer(secret), "X-Billfold-Account": "team:o1"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "X-Billfold-Account"


async def test_token_in_the_body(
    probe: FastAPI, client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    alice, bob = issue_token(settings, "alice"), issue_token(settings, "bob")
    only_body = await client.post("/_probe/body", json={"token": alice})
    assert only_body.status_code == 200 and only_body.json()["subject"] == "alice"
    both_same = await client.post("/_probe/body", json={"token": alice}, headers=bearer(alice))
    assert both_same.status_code == 200
    only_header = await client.post("/_probe/body", json={}, headers=bearer(alice))
    assert only_header.json()["subject"] == "alice"
    # A fresh token for the same user (a refreshed header) is still the same caller.
    refreshed = issue_token(settings, "alice", ttl=timedelta(hours=2))
    assert (
        await client.post("/_probe/body", json={"token": alice}, headers=bearer(refreshed))
    ).status_code == 200
    async with database.transaction() as session:
        actors = (await session.execute(select(AuditEntry.actor))).scalars().all()
    assert actors == ["user:alice"] * 4
    mixed = await client.post("/_probe/body", json={"token": bob}, headers=bearer(alice))
    assert mixed.status_code == 401
    forged = await client.post("/_probe/body", json={"token": alice + "x"}, headers=bearer(alice))
    assert forged.status_code == 401
    assert (await client.post("/_probe/body", json={})).status_code == 401
    _, secret = await _key(database)
    by_key = await client.post("/_probe/body", json={"token": secret})
    assert by_key.status_code == 200 and by_key.json()["kind"] == "api_key"


async def test_shop_header_selects_only_an_entitled_shop(
    probe: FastAPI, client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    one = bearer(issue_token(settings, "sam", shop="a.myshopify.com"))
    two = bearer(issue_token(settings, "max", shops=["a.myshopify.com", "b.myshopify.com"]))
    plain = bearer(issue_token(settings, "alice"))
    shop_header = "X-Shopify-Shop-Domain"

    async def shop(headers: dict[str, str]) -> httpx.Response:
        return await client.get("/_probe/shop", headers=headers)

    assert (await shop(one)).json()["external_id"] == "a.myshopify.com"
    assert (await shop({**one, shop_header: "A.MYSHOPIFY.COM"})).status_code == 200
    assert (await shop({**one, shop_header: "b.myshopify.com"})).status_code == 403
    assert (await shop(two)).status_code == 400
    assert (await shop({**two, shop_header: "b.myshopify.com"})).json()["external_id"] == (
        "b.myshopify.com"
    )
    assert (await shop({**two, shop_header: "c.myshopify.com"})).status_code == 403
    assert (await shop(plain)).status_code == 403
    assert (await shop({**plain, shop_header: "a.myshopify.com"})).status_code == 403
    assert (await shop({**one, shop_header: "not a domain"})).status_code == 400
    _, secret = await _key(database)
    by_key = await shop({**bearer(secret), shop_header: "c.myshopify.com"})
    assert by_key.status_code == 200 and by_key.json()["external_id"] == "c.myshopify.com"


async def test_audit_context_names_actor_address_and_request(
    probe: FastAPI, client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    response = await client.post(
        "/_probe/charge",
        headers={**bearer(issue_token(settings, "alice")), "X-Request-ID": "req-42"},
    )
    assert response.status_code == 200
    key_id, secret = await _key(database)
    await client.post("/_probe/charge", headers=bearer(secret))
    async with database.transaction() as session:
        entries = (await session.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars()
        first, second = list(entries)
    assert first.id == response.json()["id"]
    assert (first.action, first.actor, first.request_id) == (
        "charge.created",
        "user:alice",
        "req-42",
    )
    assert first.ip == "127.0.0.1" and first.details == {"amount": 500}
    assert second.actor == f"api_key:{key_id}" and second.request_id


async def test_concurrent_requests_with_one_api_key(
    probe: FastAPI, client: httpx.AsyncClient, database: Database
) -> None:
    """Every request of a busy key passes; `last_used_at` is written without contention errors."""
    key_id, secret = await _key(database)
    headers = {**bearer(secret), "X-Billfold-Account": "user:alice"}
    responses = await asyncio.gather(
        *(client.get("/_probe/whoami", headers=headers) for _ in range(25))
    )
    assert [r.status_code for r in responses] == [200] * 25
    async with database.transaction() as session:
        key = await session.get(ApiKey, key_id)
    assert key is not None and key.last_used_at is not None


async def test_an_expired_api_key_is_401(
    probe: FastAPI, client: httpx.AsyncClient, database: Database
) -> None:
    async with database.transaction() as session:
        fresh = await create_api_key(session, "rotating", expires_in=timedelta(days=90))
        stale = await create_api_key(
            session, "old", expires_in=timedelta(days=1), now=utcnow() - timedelta(days=2)
        )
    assert fresh.key.expires_at is not None and fresh.key.is_active(utcnow())
    assert (await client.get("/_probe/whoami", headers=bearer(fresh.secret))).status_code == 200
    response = await client.get("/_probe/whoami", headers=bearer(stale.secret))
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]
