"""The auto top-up form on the Credits page, in process: saved through the same service as
`PUT /api/billing/auto-topup` (the monthly limit typed in major units), the state shown (on,
off, stopped with its reason and the failures in a row), bad input refused with a 400 page
naming the field and nothing written, the CSRF token required, and one customer's settings
never shown to or changed by another."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.catalog.credits import read_credit_catalog
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.credits import autotopup
from billfold.credits.models import AutoTopupStatus, CreditAutoTopup
from billfold.db.engine import Database
from billfold.money import format_money
from tests.web.conftest import csrf_of, sign_in
from tests.web.test_credit_pages import START, _account


async def _signed_in(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> tuple[str, str]:
    """Alice signed in (on START): her account's id and her Credits page."""
    clock.advance(START - clock.now())
    alice = (await _account(database, clock, "alice")).id
    await sign_in(panel, settings, clock, "user:alice")
    page = await panel.get("/credits")
    assert page.status_code == 200
    return alice, page.text


def _form(token: str, **values: str) -> dict[str, str]:
    base = {
        "csrf_token": token,
        "enabled": "on",
        "threshold": "50",
        "credits": "200",
        "max_per_day": "2",
        "monthly_limit": "100.50",
        "currency": "eur",
    }
    return {**base, **values}


async def test_a_customer_sets_auto_top_up_and_sees_it_saved(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    alice, page = await _signed_in(panel, settings, clock, database)
    assert "<dt>Status</dt><dd>Off</dd>" in page
    assert 'id="auto-enabled" name="enabled" value="on">' in page  # not checked

    saved = await panel.post("/credits/auto-topup", data=_form(csrf_of(page)))
    assert saved.status_code == 303
    assert saved.headers["location"] == "/credits?done=auto-topup#auto-topup"
    async with database.read() as s:
        found = await autotopup.read_settings(s, alice)
        audited = (
            (
                await s.execute(
                    select(AuditEntry).where(AuditEntry.action == "credits.auto_topup_updated")
                )
            )
            .scalars()
            .all()
        )
    assert (found.enabled, found.status) == (True, AutoTopupStatus.ACTIVE)
    assert (found.threshold, found.credits, found.max_per_day) == (50, 200, 2)
    assert (found.monthly_limit, found.currency) == (10050, "eur")
    assert [a.actor for a in audited] == ["panel:user:alice"]

    shown = await panel.get("/credits?done=auto-topup")
    text = shown.text
    assert "Your auto top-up settings are saved." in text
    assert "<dt>Status</dt><dd>On</dd>" in text
    assert 'id="auto-enabled" name="enabled" value="on" checked>' in text
    assert 'name="threshold" type="number"' in text and 'value="50"' in text
    assert (
        'name="monthly_limit" type="text" inputmode="decimal" placeholder="200.00" value="100.50"'
        in text
    )
    price = read_credit_catalog(settings).topup_price(200, "eur")
    assert f"Price: <strong>{format_money(price, 'eur', 'en_US')}</strong> for 200 credits" in text

    # Off again: the settings are kept, the status says off; an empty field keeps its value.
    off = await panel.post(
        "/credits/auto-topup",
        data={**_form(csrf_of(text), threshold=""), "enabled": ""},
    )
    assert off.status_code == 303
    async with database.read() as s:
        found = await autotopup.read_settings(s, alice)
    assert (found.enabled, found.status, found.threshold) == (False, "disabled", 50)


async def test_a_stopped_auto_top_up_shows_why(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    alice, page = await _signed_in(panel, settings, clock, database)
    saved = await panel.post("/credits/auto-topup", data=_form(csrf_of(page)))
    assert saved.status_code == 303
    async with database.transaction() as s:
        row = await s.get(CreditAutoTopup, alice)
        assert row is not None
        row.status = AutoTopupStatus.STOPPED
        row.failures_in_row = 3
        row.stopped_reason = "stopped after 3 failed charges in a row (last: card_declined)"
        row.last_attempt_at = START
    text = (await panel.get("/credits")).text
    assert "<dt>Status</dt><dd>Stopped</dd>" in text
    assert "Stopped after 3 failed charges in a row (last: card_declined)." in text
    assert "<dt>Failed charges in a row</dt><dd>3</dd>" in text
    assert "Mar 1, 2026, 12:00:00" in text  # the last attempt

    # Saving it on again resumes it (the service's rule, as through the API).
    again = await panel.post("/credits/auto-topup", data=_form(csrf_of(text)))
    assert again.status_code == 303
    async with database.read() as s:
        found = await autotopup.read_settings(s, alice)
    assert (found.status, found.failures_in_row, found.stopped_reason) == ("active", 0, None)


async def test_bad_input_is_a_400_page_naming_the_field_and_nothing_is_written(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    alice, page = await _signed_in(panel, settings, clock, database)
    token = csrf_of(page)
    cases = [
        ({"threshold": "lots"}, "threshold", "Threshold: threshold must be a whole number"),
        ({"threshold": "0"}, "threshold", "Threshold: threshold must be 1 to"),
        ({"credits": "5"}, "credits", "Credits to buy: a top-up is at least 10 credits"),
        ({"max_per_day": "101"}, "max_per_day", "Daily limit: max_per_day must be 1 to 100"),
        ({"monthly_limit": "12,50"}, "monthly_limit", "Monthly limit: monthly_limit must be an"),
        ({"monthly_limit": "1.005"}, "monthly_limit", "more decimals than EUR"),
        ({"monthly_limit": "1.00"}, "monthly_limit", "monthly_limit must cover one top-up"),
        ({"monthly_limit": ""}, "monthly_limit", "monthly_limit is required to turn"),
        ({"currency": "gbp"}, "currency", "Currency: currency must be one of"),
    ]
    for values, field, message in cases:
        refused = await panel.post("/credits/auto-topup", data=_form(token, **values))
        assert refused.status_code == 400, (values, refused.text)
        assert message in refused.text, (values, refused.text)
        assert 'role="alert" id="auto-error"' in refused.text
        # The field is marked, and what was typed is shown again.
        assert f'name="{field}"' in refused.text
        assert 'aria-invalid="true" aria-errormessage="auto-error"' in refused.text
        for value in values.values():
            if field != "currency":
                assert f'value="{value}"' in refused.text
    async with database.read() as s:
        assert await s.get(CreditAutoTopup, alice) is None
        updates = await s.execute(
            select(AuditEntry).where(AuditEntry.action == "credits.auto_topup_updated")
        )
        assert updates.first() is None

    # Without its CSRF token, or with another: refused, nothing written.
    for data in (
        {k: v for k, v in _form(token).items() if k != "csrf_token"},
        _form(token + "x"),
    ):
        forbidden = await panel.post("/credits/auto-topup", data=data)
        assert forbidden.status_code == 403 and "security token" in forbidden.text
    async with database.read() as s:
        assert await s.get(CreditAutoTopup, alice) is None


async def test_one_customer_never_sees_or_changes_anothers_auto_top_up(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: Database
) -> None:
    clock.advance(START - clock.now())
    alice = (await _account(database, clock, "alice")).id
    bob = (await _account(database, clock, "bob")).id
    await sign_in(panel, settings, clock, "user:bob")
    bobs = _form(csrf_of((await panel.get("/credits")).text), threshold="4321")
    assert (await panel.post("/credits/auto-topup", data=bobs)).status_code == 303

    panel.cookies.clear()
    await sign_in(panel, settings, clock, "user:alice")
    page = await panel.get("/credits")
    assert "4321" not in page.text and "<dt>Status</dt><dd>Off</dd>" in page.text
    # Alice's form acts on her account only (no page takes an account from the form).
    mine = _form(csrf_of(page.text), threshold="77", account="user:bob", account_id=bob)
    assert (await panel.post("/credits/auto-topup", data=mine)).status_code == 303
    async with database.read() as s:
        assert (await autotopup.read_settings(s, alice)).threshold == 77
        assert (await autotopup.read_settings(s, bob)).threshold == 4321
