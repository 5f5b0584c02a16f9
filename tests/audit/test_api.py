"""`GET /api/v1/audit`: each tenant reads its own log and nobody else's."""

from __future__ import annotations

import httpx

from billfold.audit.service import record_event
from billfold.auth.apikeys import create_api_key
from billfold.auth.principal import Principal
from billfold.auth.tenancy import account_for_organization, account_for_shop, account_for_user
from billfold.auth.tokens import issue_token
from billfold.config import Settings
from billfold.db.engine import Database


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _seed(database: Database, settings: Settings) -> dict[str, str]:
    """Accounts for alice, bob and organization o1, each with audit entries of its own."""
    async with database.transaction() as session:
        alice = await account_for_user(session, Principal(kind="user", subject="alice"), settings)
        bob = await account_for_user(session, Principal(kind="user", subject="bob"), settings)
        org = await account_for_organization(
            session,
            Principal(kind="user", subject="ann", org_id="o1", role="admin"),
            "o1",
            settings,
            require_admin=True,
        )
        for account, n in ((alice, 3), (bob, 2), (org, 4)):
            for i in range(n):
                await record_event(
                    session,
                    action="credits.used",
                    actor=f"user:{account.external_id}",
                    account_id=account.id,
                    details={"credits": i + 1},
                )
        created = await create_api_key(session, "backend")
    return {"alice": alice.id, "bob": bob.id, "org": org.id, "key": created.secret}


async def test_a_user_reads_only_their_own_log(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    ids = await _seed(database, settings)
    alice = bearer(issue_token(settings, "alice"))
    own = await client.get("/api/v1/audit", headers=alice)
    assert own.status_code == 200
    assert {e["account_id"] for e in own.json()["data"]} == {ids["alice"]}
    assert len(own.json()["data"]) == 3
    explicit = await client.get("/api/v1/audit", params={"account_id": ids["alice"]}, headers=alice)
    assert explicit.json() == own.json()
    for params in (
        {"account_id": ids["bob"]},
        {"account": "user:bob"},
        {"account_id": ids["org"]},
        {"account_id": "acct_does_not_exist"},
    ):
        response = await client.get("/api/v1/audit", params=params, headers=alice)
        assert response.status_code == 404, params
        assert ids["bob"] not in response.text
    newcomer = await client.get("/api/v1/audit", headers=bearer(issue_token(settings, "zoe")))
    assert newcomer.status_code == 200 and newcomer.json()["data"] == []


async def test_organization_log_is_for_admins(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    ids = await _seed(database, settings)
    admin = bearer(issue_token(settings, "ann", org_id="o1", role="admin"))
    member = bearer(issue_token(settings, "mo", org_id="o1", role="member"))
    outsider = bearer(issue_token(settings, "eve", org_id="o2", role="admin"))
    params = {"account": "organization:o1"}
    ok = await client.get("/api/v1/audit", params=params, headers=admin)
    assert ok.status_code == 200 and len(ok.json()["data"]) == 4
    assert (await client.get("/api/v1/audit", params=params, headers=member)).status_code == 403
    assert (await client.get("/api/v1/audit", params=params, headers=outsider)).status_code == 404
    by_id = await client.get("/api/v1/audit", params={"account_id": ids["org"]}, headers=outsider)
    assert by_id.status_code == 404


async def test_api_key_reads_any_log_and_pages(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    ids = await _seed(database, settings)
    key = bearer(ids["key"])
    everything = await client.get("/api/v1/audit", params={"limit": 200}, headers=key)
    assert everything.status_code == 200 and len(everything.json()["data"]) == 9
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"account_id": ids["org"], "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/audit", params=params, headers=key)).json()
        seen += [e["seq"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            assert cursor is None
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 4
    entry = everything.json()["data"][0]
    assert set(entry) >= {"id", "seq", "occurred_at", "action", "actor", "details", "entry_hash"}


async def test_bad_queries_are_4xx(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    ids = await _seed(database, settings)
    key = bearer(ids["key"])
    assert (await client.get("/api/v1/audit")).status_code == 401
    for params, status in (
        ({"limit": 0}, 422),
        ({"limit": 500}, 422),
        ({"cursor": "abc"}, 400),
        ({"account": "team:o1"}, 400),
        ({"account": "user:alice", "account_id": ids["alice"]}, 400),
    ):
        response = await client.get("/api/v1/audit", params=params, headers=key)
        assert response.status_code == status, (params, response.text)


async def test_a_shop_token_reads_its_shop_log(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    await _seed(database, settings)
    sam = Principal(kind="user", subject="sam", shop="a.myshopify.com")
    async with database.transaction() as session:
        shop = await account_for_shop(session, sam, None, settings)
        await record_event(session, action="topup.created", actor="user:sam", account_id=shop.id)
    token = bearer(issue_token(settings, "sam", shop="a.myshopify.com"))
    own = await client.get("/api/v1/audit", headers=token)
    assert [e["action"] for e in own.json()["data"]] == ["topup.created"]
    other = await client.get(
        "/api/v1/audit", params={"account": "shop:b.myshopify.com"}, headers=token
    )
    assert other.status_code == 404


async def test_a_query_and_a_header_naming_different_accounts_is_403(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    ids = await _seed(database, settings)
    key = {**bearer(ids["key"]), "X-Billfold-Account": "user:alice"}
    for params in ({"account_id": ids["bob"]}, {"account": "user:bob"}, {"account_id": "acct_x"}):
        response = await client.get("/api/v1/audit", params=params, headers=key)
        assert response.status_code == 403, (params, response.text)
        assert ids["bob"] not in response.text
    # The two agree: read as either alone would.
    agreed = await client.get("/api/v1/audit", params={"account_id": ids["alice"]}, headers=key)
    assert agreed.status_code == 200
    assert {e["account_id"] for e in agreed.json()["data"]} == {ids["alice"]}
    # A user's own account in the query, a shop they are not entitled to in the header.
    alice = {**bearer(issue_token(settings, "alice")), "X-Shopify-Shop-Domain": "b.myshopify.com"}
    response = await client.get("/api/v1/audit", params={"account_id": ids["alice"]}, headers=alice)
    assert response.status_code == 403
