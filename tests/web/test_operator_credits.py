"""The operator's console grants promotional credits with a reason and revokes a grant's
unspent remainder (in process, both databases): CSRF as every console form, once per form
(a resent form grants once), audited as the operator's, posted on the ledger."""

from __future__ import annotations

import json
import re

import httpx
from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.credits import service
from billfold.db.engine import Database
from billfold.ledger.verify import verify_ledger
from tests.web.conftest import csrf_of, sign_in
from tests.web.factories import account_with_history


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, name
    return found.group(1)


async def test_the_operator_grants_and_revokes_credits(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    alice = await account_with_history(database, clock, "alice", movements=0, audit_entries=0)
    await sign_in(panel, settings, clock, None, operator=True)
    page = await panel.get(f"/operator/accounts/{alice.id}")
    assert page.status_code == 200 and "Grant credits" in page.text
    form = {
        "csrf_token": csrf_of(page.text),
        "grant_key": _field(page.text, "grant_key"),
        "credits": "40",
        "reason": "welcome gift",
        "expires_on": "2026-12-31",
    }
    grant_url = f"/operator/accounts/{alice.id}/credits/grant"
    no_csrf = await panel.post(grant_url, data={**form, "csrf_token": "wrong"})
    assert no_csrf.status_code == 403
    for bad in ({"credits": "4x"}, {"credits": "0"}, {"reason": ""}, {"expires_on": "soon"}):
        assert (await panel.post(grant_url, data={**form, **bad})).status_code == 400, bad
    # A day already begun is refused under the form's own field name.
    past = await panel.post(grant_url, data={**form, "expires_on": "2020-01-01"})
    assert past.status_code == 400 and "expires_on must be in the future" in past.text
    done = await panel.post(grant_url, data=form)
    assert done.status_code == 303, done.text
    assert (await panel.post(grant_url, data=form)).status_code == 303  # resent: once
    shown = await panel.get(done.headers["location"])
    assert (
        "Granted 40 credits" in shown.text and "Balance: <strong>40 credits</strong>" in shown.text
    )
    async with database.read() as session:
        (grant,) = await service.promotional_grants(session, alice.id)
        assert (grant["granted"], grant["remaining"]) == (40, 40)
        assert grant["expires_at"].isoformat().startswith("2026-12-31T00:00:00")
    async with database.transaction() as session:
        await service.spend(
            session,
            account_id=alice.id,
            credits=15,
            idempotency_key="used",
            clock=clock,
            audit=None,
        )
    revoke_url = f"/operator/accounts/{alice.id}/credits/grants/{grant['id']}/revoke"
    token = csrf_of(shown.text)
    assert (await panel.post(revoke_url, data={"reason": "x"})).status_code == 403
    assert (await panel.post(revoke_url, data={"csrf_token": token})).status_code == 400
    other = await account_with_history(database, clock, "bob", movements=0, audit_entries=0)
    wrong_account = f"/operator/accounts/{other.id}/credits/grants/{grant['id']}/revoke"
    assert (
        await panel.post(wrong_account, data={"csrf_token": token, "reason": "x"})
    ).status_code == 404
    revoked = await panel.post(revoke_url, data={"csrf_token": token, "reason": "test account"})
    assert revoked.status_code == 303
    after = await panel.get(revoked.headers["location"])
    assert (
        "Took back 25 credits" in after.text and "Balance: <strong>0 credits</strong>" in after.text
    )
    async with database.read() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.actor, AuditEntry.details_json).where(
                AuditEntry.action.in_(["credits.promotion_granted", "credits.grant_revoked"])
            )
        )
        audited = [(a, actor, json.loads(d)["reason"]) for a, actor, d in rows]
        assert await verify_ledger(session) == []
    assert [(a, r) for a, _, r in audited] == [
        ("credits.promotion_granted", "welcome gift"),
        ("credits.grant_revoked", "test account"),
    ]
    assert all(actor.startswith("panel:") for _, actor, _ in audited)
