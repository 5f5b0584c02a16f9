"""One tenant cannot read another's balance, whatever credential or header it sends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from billfold.api.account_deps import ReadingAccountDep
from billfold.api.deps import SessionDep
from billfold.auth.apikeys import create_api_key
from billfold.auth.principal import Principal
from billfold.auth.tenancy import account_for_shop, account_for_user
from billfold.auth.tokens import issue_token
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.db.engine import Database
from billfold.ledger.service import balance_of, grant_credits


@pytest.fixture
async def balance_app(app: FastAPI) -> FastAPI:
    """A balance route whose account comes from the dependency the dialects use."""
    router = APIRouter()

    @router.get("/_probe/balance")
    async def balance(session: SessionDep, account: ReadingAccountDep) -> dict[str, Any]:
        return {"account": account.external_id, "credits": await balance_of(session, account.id)}

    app.include_router(router)
    return app


async def _grant(database: Database, settings: Settings) -> str:
    """100 credits to alice, 7 to shop a.myshopify.com; returns an API key."""
    async with database.transaction() as session:
        alice = await account_for_user(session, Principal(kind="user", subject="alice"), settings)
        shop = await account_for_shop(
            session, Principal(kind="user", subject="sam", shop="a.myshopify.com"), None, settings
        )
        for account, credits in ((alice, 100), (shop, 7)):
            await grant_credits(
                session,
                billing_account_id=account.id,
                credits=credits,
                idempotency_key=f"seed-{account.id}",
                clock=FrozenClock(),
            )
        return (await create_api_key(session, "backend")).secret


async def test_each_tenant_sees_only_its_balance(
    balance_app: FastAPI, client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    key = await _grant(database, settings)

    async def balance(token: str, **headers: str) -> httpx.Response:
        sent = {"Authorization": f"Bearer {token}"}
        sent.update({name.replace("_", "-"): value for name, value in headers.items()})
        return await client.get("/_probe/balance", headers=sent)

    alice = issue_token(settings, "alice")
    bob = issue_token(settings, "bob")
    sam = issue_token(settings, "sam", shop="a.myshopify.com")
    assert (await balance(alice)).json() == {"account": "alice", "credits": 100}
    assert (await balance(bob)).json() == {"account": "bob", "credits": 0}
    assert (await balance(sam)).json() == {"account": "a.myshopify.com", "credits": 7}

    # Every way bob could try to reach alice's or sam's credits is refused.
    for attempt in (
        await balance(bob, X_Billfold_Account="user:alice"),
        await balance(bob, X_Shopify_Shop_Domain="a.myshopify.com"),
        await balance(bob, X_Billfold_Account="shop:a.myshopify.com"),
        await balance(alice, X_Shopify_Shop_Domain="a.myshopify.com"),
        await balance(sam, X_Shopify_Shop_Domain="b.myshopify.com"),
    ):
        assert attempt.status_code == 403, attempt.text
        # The error body, less its random request id, tells nothing of alice's 100 credits.
        body = {k: v for k, v in attempt.json().items() if k != "request_id"}
        assert "100" not in str(body) and "credits" not in str(body), body
    forged = issue_token(settings, "alice")[:-4] + "AAAA"
    assert (await balance(forged)).status_code == 401

    # The host app's backend names whichever account it acts for.
    assert (await balance(key, X_Billfold_Account="user:alice")).json()["credits"] == 100
    assert (await balance(key, X_Shopify_Shop_Domain="a.myshopify.com")).json()["credits"] == 7
    assert (await balance(key)).status_code == 400
