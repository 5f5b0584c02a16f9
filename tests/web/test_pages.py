"""The customer's pages and the operator's console, in process: what they show, that a
customer only ever sees their own account, the CSV exports, and the operator's tasks."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.customers.models import AccountKind
from billfold.db.engine import Database
from billfold.jobs.models import Job
from billfold.ledger.models import LedgerAccount
from billfold.stripe.models import WebhookEvent
from billfold.web import customer
from tests.web.conftest import csrf_of, sign_in
from tests.web.factories import account_with_history


async def test_the_activity_page_shows_the_ledger_and_audit_trail_paged(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    await account_with_history(database, clock, "alice", movements=30, audit_entries=30)
    await sign_in(panel, settings, clock, "user:alice")
    page = await panel.get("/activity")
    assert page.status_code == 200
    assert "usage by alice #29" in page.text  # newest first
    assert "grant for alice #3<" not in page.text  # on page 2 (25 a page)
    assert "Page 1 of 2" in page.text
    assert "Balance: <strong>190 credits</strong>" in page.text  # 20 grants of 10, 10 debits
    second = await panel.get("/activity?page=2")
    assert "grant for alice #3<" in second.text
    # htmx asks for the tables only.
    partial = await panel.get("/activity?page=2", headers={"HX-Request": "true"})
    assert "<html" not in partial.text and "grant for alice #3<" in partial.text
    # The audit trail goes by cursor: the next page starts below the last entry shown.
    assert "alice-target-29" in page.text and "alice-target-0<" not in page.text
    older = page.text.split("before=")[1].split('"')[0]
    rest = await panel.get(f"/activity?before={older}")
    assert "alice-target-0" not in page.text and "test.happened" in rest.text


async def test_csv_exports_hold_every_row(
    panel: httpx.AsyncClient,
    settings: Settings,
    clock: FrozenClock,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(customer, "CSV_BATCH", 100)  # several batches, and one exactly full
    await account_with_history(database, clock, "alice", movements=400, audit_entries=3)
    await sign_in(panel, settings, clock, "user:alice")
    ledger = await panel.get("/activity/ledger.csv")
    assert ledger.status_code == 200
    assert ledger.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(ledger.text)))
    assert rows[0][:3] == ["entry_id", "created_at", "kind"]
    assert len(rows) == 401  # the header and every movement, over several batches
    assert rows[1][3:5] == ["grant for alice #399", "10"]
    assert rows[-1][3] == "grant for alice #0"
    assert len({r[0] for r in rows}) == 401  # no movement twice
    audit = list(csv.reader(io.StringIO((await panel.get("/activity/audit.csv")).text)))
    # Three entries, and the sign-in itself.
    assert [r[2] for r in audit[1:]] == ["panel.signed_in", *["test.happened"] * 3]


async def test_a_customer_never_sees_another_customers_pages(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    await account_with_history(database, clock, "alice", movements=5, audit_entries=2)
    bob = await account_with_history(database, clock, "bob", movements=5, audit_entries=2)
    async with database.read() as session:
        bobs_ledger = (
            await session.execute(
                select(LedgerAccount.id).where(LedgerAccount.billing_account_id == bob.id)
            )
        ).scalar_one()
    await sign_in(panel, settings, clock, "user:alice")
    attempts = [
        "/",
        "/subscription",
        "/activity",
        f"/activity?ledger={bobs_ledger}",
        "/activity/audit.csv",
        f"/activity/ledger.csv?ledger={bobs_ledger}",
        f"/operator/accounts/{bob.id}",
        f"/operator?q={bob.id}",
    ]
    for path in attempts:
        # Naming bob's account in the headers the API reads changes nothing either.
        response = await panel.get(
            path, headers={"X-Billfold-Account": "user:bob", "X-Shopify-Shop-Domain": "b.test"}
        )
        assert "bob" not in response.text, path
        if path.startswith("/operator"):
            assert response.status_code == 403, path
        else:
            assert response.status_code == 200, path
    assert "alice" in (await panel.get(f"/activity?ledger={bobs_ledger}")).text


async def test_an_operators_session_has_no_customer_pages(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    await sign_in(panel, settings, clock, None, operator=True)
    for path in ("/", "/subscription", "/activity"):
        assert (await panel.get(path)).status_code == 403, path


async def test_the_operator_finds_an_account_and_sees_its_history(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    alice = await account_with_history(
        database, clock, "alice", movements=4, audit_entries=2, email="Alice@example.com"
    )
    shop = await account_with_history(
        database, clock, "demo.myshopify.com", kind=AccountKind.SHOP, movements=1
    )
    org = await account_with_history(
        database, clock, "org-7", kind=AccountKind.ORGANIZATION, movements=1
    )
    await sign_in(panel, settings, clock, None, operator=True)
    for query, expected in (
        (alice.id, alice),
        ("alice@example.com", alice),
        ("alice", alice),
        ("demo.myshopify.com", shop),
        ("org-7", org),
    ):
        page = await panel.get("/operator", params={"q": query})
        assert page.status_code == 200
        assert f"/operator/accounts/{expected.id}" in page.text, query
    none = await panel.get("/operator", params={"q": "alice", "kind": "shop"})
    assert "No account matches" in none.text
    detail = await panel.get(f"/operator/accounts/{alice.id}")
    assert "grant for alice #3" in detail.text and "alice-target-1" in detail.text
    assert (await panel.get("/operator/accounts/acct_nope")).status_code == 404


async def test_the_operator_retries_a_dead_job_and_runs_the_checks(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    await account_with_history(database, clock, "alice", movements=3)
    async with database.transaction() as session:
        job = Job(
            kind="test.kind",
            payload={},
            key="test-job-1",
            status="dead",
            attempts=5,
            max_attempts=5,
            run_at=clock.now(),
            last_error="ValueError: the thing broke",
            created_at=clock.now(),
            finished_at=clock.now(),
        )
        session.add(job)
    await sign_in(panel, settings, clock, None, operator=True)
    page = await panel.get("/operator/jobs")
    assert "ValueError: the thing broke" in page.text
    token = csrf_of(page.text)
    assert (await panel.post(f"/operator/jobs/{job.id}/retry")).status_code == 403  # no CSRF
    retried = await panel.post(f"/operator/jobs/{job.id}/retry", data={"csrf_token": token})
    assert retried.status_code == 303
    async with database.read() as session:
        again = await session.get(Job, job.id)
        assert again is not None and again.status == "queued" and again.attempts == 0
        actions = (await session.execute(select(AuditEntry.action))).scalars().all()
    assert "operator.job_retried" in actions
    assert "No failed or dead jobs" in (await panel.get("/operator/jobs")).text
    missing = await panel.post("/operator/jobs/999999/retry", data={"csrf_token": token})
    assert missing.status_code == 404

    checks = await panel.post("/operator/checks", data={"csrf_token": token})
    assert checks.status_code == 200
    assert "The ledger is consistent." in checks.text
    assert "The hash chain is intact" in checks.text


async def test_the_operator_sees_failed_events_with_their_errors(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    async with database.transaction() as session:
        session.add(
            WebhookEvent(
                id="evt_broken_1",
                type="customer.subscription.updated",
                stripe_created=1,
                payload={"id": "evt_broken_1"},
                status="dead",
                attempts=8,
                last_error="KeyError: 'items'",
                received_at=clock.now() - timedelta(hours=1),
            )
        )
    await sign_in(panel, settings, clock, None, operator=True)
    page = await panel.get("/operator/events")
    assert "evt_broken_1" in page.text and "KeyError: &#39;items&#39;" in page.text
    missing = await panel.post(
        "/operator/events/evt_nope/retry", data={"csrf_token": csrf_of(page.text)}
    )
    assert missing.status_code == 404
