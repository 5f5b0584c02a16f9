"""The panel's credits, in process: the Credits page (balance and version, lots, holds, the
top-up's price as it is typed, packages only with an active subscription), the overview's
chart of the last 30 days, the credit and billing histories on the Activity page with their
CSV; a customer never sees another's credits; every form needs its CSRF token. Buying runs on
billfold's real Stripe adapter and the sandbox: top up and buy a package through Checkout,
granted once the webhooks are applied."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from billfold.audit.context import system_audit_context
from billfold.audit.models import AuditEntry
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.credits import service
from billfold.credits.models import BillingHistoryItem, CreditPurchase
from billfold.credits.summary import daily_movements
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.web import customer
from tests.sandbox_stripe import SandboxStripe
from tests.web.conftest import csrf_of, sign_in
from tests.web.test_subscription_pages import _deliver_all

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _account(database: Database, clock: FrozenClock, name: str) -> BillingAccount:
    async with database.transaction() as session:
        return await get_or_create_account(
            session, AccountKind.USER, name, currency="eur", clock=clock
        )


async def _credits_history(database: Database, clock: FrozenClock, account_id: str) -> None:
    """Over a few days: grants (one expiring), usage, a hold captured in part, one active hold,
    and an expiry written off."""
    audit = system_audit_context("test", clock)
    async with database.transaction() as s:
        await service.grant(
            s,
            account_id=account_id,
            credits=500,
            key=f"g1:{account_id}",
            source="topup",
            clock=clock,
            audit=audit,
        )
        await service.grant(
            s,
            account_id=account_id,
            credits=100,
            key=f"g2:{account_id}",
            source="promotion",
            clock=clock,
            audit=audit,
            expires_at=clock.now() + timedelta(days=2),
        )
    clock.advance(timedelta(days=1))
    async with database.transaction() as s:
        await service.spend(
            s, account_id=account_id, credits=25, idempotency_key="u1", clock=clock, audit=audit
        )
        await service.create_hold(
            s,
            account_id=account_id,
            credits=30,
            idempotency_key="h1",
            clock=clock,
            audit=audit,
            description="render job 7",
        )
        await service.capture_hold(
            s,
            account_id=account_id,
            hold_id=service._hold_id(account_id, "h1"),
            clock=clock,
            audit=audit,
            credits=10,
        )
        await service.create_hold(
            s,
            account_id=account_id,
            credits=7,
            idempotency_key="h2",
            clock=clock,
            audit=audit,
            description="export in progress",
            expires_in=86400 * 5,
        )
    clock.advance(timedelta(days=2))
    async with database.transaction() as s:  # the promotion's expiry passed: written off
        await service.expire_due(s, clock, audit)


async def test_the_credits_page_and_the_overview_chart(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    clock.advance(START - clock.now())
    alice = await _account(database, clock, "alice")
    bob = await _account(database, clock, "bob")
    await _credits_history(database, clock, alice.id)
    async with database.transaction() as s:
        await service.grant(
            s,
            account_id=bob.id,
            credits=777,
            key="bob-grant",
            source="grant",
            clock=clock,
            audit=system_audit_context("test", clock),
        )
        await service.create_hold(
            s,
            account_id=bob.id,
            credits=3,
            idempotency_key="bobs-hold",
            clock=clock,
            audit=system_audit_context("test", clock),
            description="bob's secret job",
        )
    async with database.read() as s:
        balance = await service.get_balance(s, alice.id)
        days = await daily_movements(s, alice.id, days=30, now=clock.now())
    # The chart's numbers: both grants, the usage and the capture (a hold is no spending), and
    # what was left of the promotion when it expired.
    assert sum(d.granted for d in days) == 600
    assert sum(d.spent for d in days) == 35  # usage 25 + capture 10; holds are not spending
    expired = sum(d.expired for d in days)
    assert expired > 0 and [d.day.isoformat() for d in days if d.expired] == ["2026-03-04"]
    assert balance.credits == 600 - 35 - 7 - expired and balance.held == 7

    await sign_in(panel, settings, clock, "user:alice")
    page = await panel.get("/credits")
    assert page.status_code == 200
    text = page.text
    assert f'<strong id="credit-balance">{balance.credits} credits</strong>' in text
    assert f"<dt>Version</dt><dd>{balance.version}</dd>" in text
    assert "render job 7" in text and "export in progress" in text and "Captured" in text
    assert "Top-up" in text  # the top-up's lot, with what is left of it
    assert "Credit packages come with an active subscription" in text
    assert re.search(r"Price: <strong>€10\.00</strong> for 100 credits", text)
    assert "777" not in text and "bob&#39;s secret job" not in text  # bob's, never alice's

    # The price as it is typed: the catalog's tiers (500 and more at 0.09 EUR).
    price = await panel.get("/credits/topup/price?credits=500")
    assert "<html" not in price.text and "€45.00" in price.text and "500 credits" in price.text
    assert "at least 10 credits" in (await panel.get("/credits/topup/price?credits=3")).text
    assert "whole number" in (await panel.get("/credits/topup/price?credits=1e3")).text
    assert "Credits is required" in (await panel.get("/credits/topup/price?credits=")).text

    overview = await panel.get("/")
    assert overview.status_code == 200
    assert '<svg viewBox="0 0 630 172" role="img"' in overview.text
    assert "In total 600 added, 35 spent and " + str(expired) + " expired." in overview.text
    assert f"{balance.credits} credits" in overview.text and "(7 reserved)" in overview.text
    assert overview.text.count('class="bar-granted"') == 1  # both grants on one day
    assert "777" not in overview.text

    # German: the same numbers, German formats.
    german = await panel.get("/credits/topup/price?credits=2000", headers={"Accept-Language": "de"})
    assert "160,00\xa0€" in german.text and "2.000 credits" in german.text


async def test_forms_need_their_csrf_token_and_packages_a_subscription(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    await sign_in(panel, settings, clock, "user:alice")
    token = csrf_of((await panel.get("/credits")).text)
    for path, data in (
        ("/credits/topup", {"credits": "100"}),
        ("/credits/purchase", {"package": "starter"}),
    ):
        refused = await panel.post(path, data=data)
        assert refused.status_code == 403 and "security token" in refused.text
        wrong = await panel.post(path, data={**data, "csrf_token": token + "x"})
        assert wrong.status_code == 403
    # A package without an active subscription: the reason, as a page; nothing reserved.
    needs = await panel.post("/credits/purchase", data={"package": "starter", "csrf_token": token})
    assert needs.status_code == 402 and "active subscription" in needs.text
    bad = await panel.post("/credits/topup", data={"credits": "5", "csrf_token": token})
    assert bad.status_code == 400 and "at least 10 credits" in bad.text
    huge = await panel.post("/credits/topup", data={"credits": "9" * 30, "csrf_token": token})
    assert huge.status_code == 400 and "credits" in huge.text
    unknown = await panel.post("/credits/purchase", data={"package": "nope", "csrf_token": token})
    assert unknown.status_code == 400 and "unknown package" in unknown.text
    async with database.read() as s:
        assert (await s.execute(select(CreditPurchase))).first() is None
    # Signed out: every credits page asks to sign in.
    anonymous = httpx.AsyncClient(transport=panel._transport, base_url=str(panel.base_url))
    async with anonymous:
        for path in ("/credits", "/credits/topup/price?credits=100", "/activity/credits.csv"):
            assert (await anonymous.get(path)).status_code == 401


async def _history_rows(
    database: Database, clock: FrozenClock, account: BillingAccount, n: int, tag: str
) -> None:
    now = clock.now()
    async with database.transaction() as s:
        for i in range(n):
            at = now - timedelta(hours=i)
            s.add(
                CreditPurchase(
                    id=f"cpur_{tag}_{i:03d}",
                    account_id=account.id,
                    kind="topup",
                    credits=100 + i,
                    amount=1000 + i,
                    currency="eur",
                    state="completed",
                    request={},
                    created_at=at,
                    updated_at=at,
                )
            )
            s.add(
                BillingHistoryItem(
                    id=f"ch_{tag}_{i:03d}",
                    account_id=account.id,
                    type="charge",
                    amount=1000 + i,
                    currency="eur",
                    status="succeeded",
                    description=f"charge {tag} #{i}",
                    created_at=at,
                    updated_at=at,
                )
            )


async def test_the_histories_on_the_activity_page_paged_with_csv(
    panel: httpx.AsyncClient,
    settings: Settings,
    clock: FrozenClock,
    database: Database,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(customer, "CSV_BATCH", 10)  # several batches in the CSV, one exactly full
    from billfold.web import credits as pages

    monkeypatch.setattr(pages, "CSV_BATCH", 10)
    alice = await _account(database, clock, "alice")
    bob = await _account(database, clock, "bob")
    await _history_rows(database, clock, alice, 30, "alice")
    await _history_rows(database, clock, bob, 3, "bob")
    await sign_in(panel, settings, clock, "user:alice")
    page = await panel.get("/activity")
    assert page.status_code == 200
    assert "charge alice #0" in page.text and "charge alice #24" in page.text
    assert "charge alice #25" not in page.text and "Page 1 of 2" in page.text
    assert "€10.00" in page.text and "€10.24" in page.text
    assert "bob" not in page.text
    second = await panel.get("/activity?credit_page=2&billing_page=2")
    assert "charge alice #25" in second.text and "charge alice #0<" not in second.text
    # htmx pages the histories alone.
    partial = await panel.get("/activity/histories?billing_page=2", headers={"HX-Request": "true"})
    assert "<html" not in partial.text and "charge alice #29" in partial.text
    assert "Ledger" not in partial.text

    rows = list(csv.reader(io.StringIO((await panel.get("/activity/credits.csv")).text)))
    assert rows[0] == [
        "id",
        "created_at",
        "type",
        "description",
        "credits",
        "amount",
        "currency",
        "status",
    ]
    assert len(rows) == 31 and len({r[0] for r in rows}) == 31
    assert rows[1][0] == "cpur_alice_000" and rows[1][4:7] == ["100", "10.00", "EUR"]
    billing = list(csv.reader(io.StringIO((await panel.get("/activity/billing.csv")).text)))
    assert len(billing) == 31 and not any("bob" in cell for r in billing for cell in r)


async def test_top_up_and_buy_a_package_through_checkout(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    clock: FrozenClock,
    synced: dict[str, str],
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    await sign_in(api, billing_settings, clock, "user:carol")
    page = (await api.get("/credits")).text
    token, key = csrf_of(page), re.search(r'name="purchase_key" value="([^"]+)"', page)
    assert key
    topup = {"credits": "150", "csrf_token": token, "purchase_key": key.group(1)}
    started = await api.post("/credits/topup", data=topup)
    assert started.status_code == 303, started.text
    assert started.headers["location"].startswith(stripe_world.server.url)
    # The same form sent twice (a double click): the same Checkout session.
    again = await api.post("/credits/topup", data=topup)
    assert again.headers["location"] == started.headers["location"]
    sessions = [s for s in stripe_world.server.state.all("checkout.session")]
    assert len(sessions) == 1 and sessions[0]["mode"] == "payment"
    assert sessions[0]["amount_total"] == 1500 and sessions[0]["currency"] == "eur"
    stripe_world.complete_checkout(sessions[0]["id"])
    await _deliver_all(api, stripe_world)
    page = (await api.get("/credits")).text
    assert '<strong id="credit-balance">150 credits</strong>' in page
    activity = (await api.get("/activity")).text
    assert "Top-up" in activity and "€15.00" in activity and "Completed" in activity

    # A package needs a subscription: subscribe, then buy one.
    token = csrf_of(page)
    subscribed = await api.post(
        "/subscription/checkout",
        data={"price": synced["billfold_premium_monthly_eur"], "csrf_token": token},
    )
    assert subscribed.status_code == 303
    stripe_world.complete_checkout(stripe_world.server.state.all("checkout.session")[-1]["id"])
    await _deliver_all(api, stripe_world)
    page = (await api.get("/credits")).text
    assert "Credit packages come with an active subscription" not in page
    bought = await api.post(
        "/credits/purchase", data={"package": "starter", "csrf_token": csrf_of(page)}
    )
    assert bought.status_code == 303, bought.text
    session = stripe_world.server.state.all("checkout.session")[-1]
    assert session["mode"] == "payment" and session["amount_total"] == 999
    stripe_world.complete_checkout(session["id"])
    await _deliver_all(api, stripe_world)
    assert '<strong id="credit-balance">250 credits</strong>' in (await api.get("/credits")).text
    async with database.read() as s:
        actors = set(
            (
                await s.execute(
                    select(AuditEntry.actor).where(AuditEntry.action == "credits.checkout_created")
                )
            )
            .scalars()
            .all()
        )
    assert actors and all(a.startswith("panel:") for a in actors)


async def test_the_chart_counts_by_utc_day_within_its_30_days(
    clock: FrozenClock, database: Database
) -> None:
    """Movements a second either side of midnight (UTC) fall on their own days, one older
    than the window is left out, and every day of the window is present."""
    alice = await _account(database, clock, "alice")
    audit = system_audit_context("test", clock)
    for at, credits in (
        (datetime(2026, 2, 1, 12, tzinfo=UTC), 1),  # 31 days before the end: outside
        (datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), 20),
        (datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC), 300),
    ):
        clock.advance(at - clock.now())
        async with database.transaction() as s:
            await service.grant(
                s,
                account_id=alice.id,
                credits=credits,
                key=f"at:{at.isoformat()}",
                source="grant",
                clock=clock,
                audit=audit,
            )
    clock.advance(datetime(2026, 3, 3, 9, tzinfo=UTC) - clock.now())
    async with database.read() as s:
        days = await daily_movements(s, alice.id, days=30, now=clock.now())
    assert len(days) == 30
    assert days[0].day.isoformat() == "2026-02-02" and days[-1].day.isoformat() == "2026-03-03"
    assert {d.day.isoformat(): d.granted for d in days if d.granted} == {
        "2026-03-01": 20,
        "2026-03-02": 300,
    }
