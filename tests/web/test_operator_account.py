"""The operator console's account page, in process on both databases: balance, lots, holds,
auto top-up, payment methods, dues, payments and the dues ledger, ledger and audit trail, and
what needs attention, for that account only; the same number of queries for an account with
a few rows as for one with many (every list bounded); the CSV files the page links to, for
operators only."""

from __future__ import annotations

import csv
import io

import httpx

from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.db.engine import Database
from tests.web.conftest import sign_in
from tests.web.test_credit_pages import START, _credits_history
from tests.web.test_overview_money import _troubled, counted


async def test_the_account_page_shows_credits_payments_and_attention(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    clock.advance(START - clock.now())
    alice = await _troubled(database, clock, "alice", rows=2)
    await _credits_history(database, clock, alice)
    bob = await _troubled(database, clock, "bob", rows=1)
    await sign_in(panel, settings, clock, None, operator=True)
    page = await panel.get(f"/operator/accounts/{alice}")
    assert page.status_code == 200
    text = page.text

    def section(heading: str) -> str:
        return text.split(f'id="{heading}"')[1].split("</section>")[0]

    attention = section("attention-h")
    assert "Your latest payment of €10.02 failed: Your card was declined." in attention
    assert "2 bank accounts wait for verification" in attention
    assert "Autopay is off: autopay stopped after 4 failed payments" in attention
    assert "Auto top-up stopped: stopped after 3 failed charges in a row" in attention
    lots = section("lots-h")
    assert "Top-up" in lots and "Never" in lots  # the top-up's lot, which never expires
    assert "Promotion" not in lots  # expired, written off
    holds = section("holds-h")
    assert "render job 7" in holds and "export in progress" in holds and "Active" in holds
    auto = section("autotopup-h")
    assert "<dd>Stopped</dd>" in auto and "Below 10 credits, buy 100 credits" in auto
    assert "at most 2 a day and €50.00 a month" in auto
    methods = section("methods-h")
    assert "<dt>Owed now (EUR)</dt><dd>€30.00</dd>" in methods
    assert '<dd id="operator-autopay">Off (autopay stopped after 4 failed payments' in methods
    assert methods.count("Visa ending in") == 2 and methods.count("STRIPE TEST BANK") == 2
    assert "Pending verification" in methods
    payments = section("payments-h")
    assert "Your card was declined." in payments and payments.count("<tr><td") == 3
    assert f'href="/operator/accounts/{alice}/payments.csv"' in payments
    dues = section("dues-h")
    assert "€42.00" in dues and "€12.00" in dues
    assert "render job 7" in section("ledger-h")  # the ledger, by balance
    audit = section("audit-h")
    assert "credits.hold_captured" in audit and f"g1:{alice}" in audit
    # Bob's rows are never on Alice's page.
    assert bob[-6:] not in text


async def test_the_account_page_is_a_fixed_number_of_queries(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    clock.advance(START - clock.now())
    few = await _troubled(database, clock, "few", rows=1)
    many = await _troubled(database, clock, "many", rows=40)
    await sign_in(panel, settings, clock, None, operator=True)
    counts = []
    for account_id in (few, many):
        await panel.get(f"/operator/accounts/{account_id}")  # warm: the session's first use
        with counted(database) as statements:
            page = await panel.get(f"/operator/accounts/{account_id}")
        assert page.status_code == 200
        counts.append(len(statements))
    assert counts[0] == counts[1], counts
    # The many's payments are pages: 25, and a link to the older ones, which htmx swaps in.
    first = await panel.get(f"/operator/accounts/{many}")
    assert first.text.count("Older payments") == 1
    cursor = first.text.split("?payments_before=")[1].split('"')[0]
    older = await panel.get(
        f"/operator/accounts/{many}",
        params={"payments_before": cursor},
        headers={"HX-Request": "true"},
    )
    assert older.status_code == 200 and "<h1>" not in older.text  # the tables only
    assert 'id="payments-h"' in older.text and 'id="ledger-h"' in older.text
    assert older.text.count('<span class="status status-succeeded">') == 16  # 41 - 25


async def test_the_account_csv_files_for_operators_only(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    clock.advance(START - clock.now())
    alice = await _troubled(database, clock, "alice", rows=2)
    await _troubled(database, clock, "bob", rows=5)
    await sign_in(panel, settings, clock, None, operator=True)
    base = f"/operator/accounts/{alice}"

    def rows(response: httpx.Response) -> list[list[str]]:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        return list(csv.reader(io.StringIO(response.text)))

    payments = rows(await panel.get(f"{base}/payments.csv"))
    assert payments[0][0] == "payment_id" and len(payments) == 1 + 3
    assert all(alice[-6:] in row[0] for row in payments[1:])
    dues = rows(await panel.get(f"{base}/dues.csv"))
    assert sorted(row[5] for row in dues[1:]) == ["-1200", "1200", "4200"]
    audit = rows(await panel.get(f"{base}/audit.csv"))
    assert audit[0][:3] == ["seq", "occurred_at", "action"]
    ledger = rows(await panel.get(f"{base}/ledger.csv"))
    assert ledger[0][0] == "entry_id"
    assert (await panel.get("/operator/accounts/acct_nope/payments.csv")).status_code == 404
    assert (await panel.get(f"{base}/secrets.csv")).status_code in (404, 400)

    # A customer's session opens none of them.
    panel.cookies.clear()
    await sign_in(panel, settings, clock, "user:alice")
    for name in ("payments", "dues", "audit", "ledger"):
        assert (await panel.get(f"{base}/{name}.csv")).status_code == 403
