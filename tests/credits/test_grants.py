"""Promotional grants, on both databases: by an API key over HTTP (a user's token is refused),
and by `billfold credits grant|revoke`; each with a reason, once per key, posted on the ledger,
audited; a revocation takes back only what is unspent."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billfold.audit.context import system_audit_context
from billfold.audit.models import AuditEntry
from billfold.auth.apikeys import create_api_key
from billfold.clock import FrozenClock
from billfold.credits import service
from billfold.customers.models import AccountKind
from billfold.customers.service import find_account, get_or_create_account
from billfold.db.engine import Database
from billfold.errors import ValidationFailed
from billfold.ledger.verify import verify_ledger
from tests.audit.test_cli import cli_database, invoke  # noqa: F401
from tests.subscriptions.fixtures import bearer

B = "/api/billing"


async def _audit(database: Database, action: str) -> list[dict[str, Any]]:
    async with database.read() as session:
        found = await session.execute(
            select(AuditEntry.details_json)
            .where(AuditEntry.action == action)
            .order_by(AuditEntry.seq)
        )
        return [json.loads(d) for d in found.scalars()]


async def _clean(database: Database) -> None:
    async with database.read() as session:
        assert await verify_ledger(session) == []


async def test_an_api_key_grants_and_revokes_with_a_reason(
    api: httpx.AsyncClient, billing_app: Any, database: Database, clock: FrozenClock
) -> None:
    container = billing_app.state.container
    async with database.transaction() as session:
        key = await create_api_key(session, "backend", now=clock.now())
    backend = {"X-API-Key": key.secret, "X-Billfold-Account": "user:dana"}
    body = {
        "account": "user:dana",
        "credits": 200,
        "reason": "sorry for the outage",
        "expires_at": "2026-12-31T00:00:00Z",
        "idempotency_key": "outage-dana",
    }
    # A user's token may not grant itself credits.
    user = bearer(container.settings, "dana")
    refused = await api.post(f"{B}/credits/grants", json=body, headers=user)
    assert refused.status_code == 403, refused.text
    for bad, field in (
        ({"credits": 0}, "credits"),
        ({"credits": "many"}, "credits"),
        ({"reason": ""}, "reason"),
        ({"reason": None}, "reason"),
        ({"account": "nobody"}, "account"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"expires_at": "2026-12-31T00:00:00"}, "expires_at"),  # no offset
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),  # the past
        ({"idempotency_key": None}, "idempotency_key"),
    ):
        response = await api.post(f"{B}/credits/grants", json={**body, **bad}, headers=backend)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["field"] == field, (bad, response.text)
    granted = await api.post(f"{B}/credits/grants", json=body, headers=backend)
    assert granted.status_code == 200, granted.text
    first = granted.json()
    assert (first["credits"], first["balance"], first["replayed"]) == (200, 200, False)
    again = await api.post(f"{B}/credits/grants", json=body, headers=backend)
    assert again.json()["replayed"] is True and again.json()["grant_id"] == first["grant_id"]
    spent = await api.post(
        f"{B}/usage", json={"credits": 70, "idempotencyKey": "u1"}, headers=backend
    )
    assert spent.json()["balance"] == 130
    grant_id = first["grant_id"]
    assert (
        await api.post(f"{B}/credits/grants/{grant_id}/revoke", json={"reason": "x"}, headers=user)
    ).status_code == 403
    no_reason = await api.post(f"{B}/credits/grants/{grant_id}/revoke", json={}, headers=backend)
    assert (no_reason.status_code, no_reason.json()["error"]["field"]) == (400, "reason")
    missing = await api.post(
        f"{B}/credits/grants/999999/revoke", json={"reason": "x"}, headers=backend
    )
    assert missing.status_code == 404
    revoked = await api.post(
        f"{B}/credits/grants/{grant_id}/revoke",
        json={"reason": "granted twice by mistake"},
        headers=backend,
    )
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["revoked"], revoked.json()["balance"]) == (130, 0)
    twice = await api.post(
        f"{B}/credits/grants/{grant_id}/revoke", json={"reason": "again"}, headers=backend
    )
    assert (twice.json()["revoked"], twice.json()["balance"]) == (0, 0)
    (audited,) = await _audit(database, "credits.promotion_granted")
    assert audited["reason"] == "sorry for the outage" and audited["credits"] == 200
    (took,) = await _audit(database, "credits.grant_revoked")
    assert (took["credits"], took["reason"]) == (130, "granted twice by mistake")
    await _clean(database)


async def test_the_cli_grants_and_revokes(cli_database: Database) -> None:  # noqa: F811
    granted = await invoke(
        "credits", "grant", "user:erin", "75", "--reason", "beta tester", "--key", "beta-erin"
    )
    assert granted.exit_code == 0, granted.output
    assert "75 credits" in granted.output and "balance 75" in granted.output
    again = await invoke(
        "credits", "grant", "user:erin", "75", "--reason", "beta tester", "--key", "beta-erin"
    )
    assert again.exit_code == 0 and "already granted" in again.output
    grant_id = granted.output.split("grant ")[1].split(":")[0]
    bad = await invoke("credits", "grant", "user:erin", "0", "--reason", "nothing")
    assert bad.exit_code == 1
    for expiry, said in (
        ("tomorrow", "--expires-at must be an ISO 8601 time with its offset"),
        ("2020-01-01T00:00:00Z", "--expires-at must be in the future"),
    ):
        refused = await invoke(
            "credits", "grant", "user:erin", "5", "--reason", "x", "--expires-at", expiry
        )
        assert refused.exit_code == 1 and said in refused.output, refused.output
    async with cli_database.read() as session:
        account = await find_account(session, AccountKind.USER, "erin")
        assert account is not None
        assert (await service.get_balance(session, account.id)).credits == 75
    revoked = await invoke("credits", "revoke", grant_id, "--reason", "beta over")
    assert revoked.exit_code == 0, revoked.output
    assert "75 unspent credits taken back; balance 0" in revoked.output
    unknown = await invoke("credits", "revoke", "999999", "--reason", "x")
    assert unknown.exit_code == 1 and "no grant" in unknown.output
    actors = []
    async with cli_database.read() as session:
        found = await session.execute(
            select(AuditEntry.actor).where(
                AuditEntry.action.in_(["credits.promotion_granted", "credits.grant_revoked"])
            )
        )
        actors = list(found.scalars())
    assert len(actors) == 2 and all(a.startswith("cli:") for a in actors)
    await _clean(cli_database)


async def test_the_engine_names_the_expiry_as_the_api_does(
    database: Database, clock: FrozenClock
) -> None:
    """`service.grant`, under every caller (API, CLI, console, allowances), refuses a past
    expiry naming `expires_at`, the API's field."""
    async with database.transaction() as session:
        account = await get_or_create_account(
            session, AccountKind.USER, "fay", currency="eur", clock=clock
        )
        with pytest.raises(ValidationFailed) as refused:
            await service.grant(
                session,
                account_id=account.id,
                credits=5,
                key="past",
                source="promotion",
                clock=clock,
                audit=system_audit_context("test", clock),
                expires_at=clock.now() - timedelta(seconds=1),
            )
    assert refused.value.field == "expires_at"
    now = clock.now()
    for value in (None, now + timedelta(days=1), "2999-01-01T00:00:00+02:00"):
        found = service.check_expiry(value, now)
        assert found is None or (found > now and found.utcoffset() == timedelta(0))
    for value, said in (
        ("2999-01-01T00:00:00", "offset"),
        (now, "future"),
        (17, "offset"),
    ):
        with pytest.raises(ValidationFailed, match=said) as bad:
            service.check_expiry(value, now)
        assert bad.value.field == "expires_at"
