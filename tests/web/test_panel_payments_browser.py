"""The payment methods page in a real browser (Playwright with Debian's Chromium) against billfold
served by uvicorn and the Stripe sandbox (`billfold_server`), on both databases, with the
sandbox's Stripe.js stand-in (served by the sandbox, another origin than the panel): a customer
signs in by link, adds a card and one asking for 3-D Secure under the panel's own CSP (nothing
refused), adds another card and a US bank account (which the overview asks to verify),
verifies its microdeposits (a wrong answer first, shown), reorders by keyboard, sets the
default, removes a card, turns autopay on, sees what is owed on the overview, pays the balance
and reads the payments on the activity page. axe-core on each page (no serious or
critical violation), screenshots at desktop and phone widths into /tmp/panel-shots/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from billfold.customers.models import AccountKind
from billfold.customers.service import find_account
from billfold.payments import dues
from tests.e2e_fixtures import BillfoldServer
from tests.sandbox.browser_env import CHROMIUM, require_browser
from tests.sandbox.test_stripe_js_browser import _type_card
from tests.web.test_panel_browser import (  # noqa: F401 (database_name: a fixture)
    ARGS,
    DESKTOP,
    SHOTS,
    _link,
    check_page,
    database_name,
)

pytestmark = pytest.mark.browser


async def _order(page: Any) -> list[str]:
    names = await page.locator("ol.methods li strong").all_inner_texts()
    return [str(n) for n in names]


async def test_a_customers_payment_methods_in_the_browser(
    billfold_server: BillfoldServer,
    database_name: str,  # noqa: F811 (the fixture, imported)
) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    server = billfold_server
    # The stand-in Stripe.js of the sandbox billfold talks to (served on its own origin).
    server.settings.stripe_api_base_override = server.sandbox.url
    server.settings.public_url = server.url  # the sign-in link's address
    link = await _link(server, server.bearer("nora"))
    url = server.url

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # First under the panel's own CSP: Stripe.js loads and saves a card, refused nothing.
            strict = await browser.new_context(viewport=DESKTOP, locale="en-US")
            page = await strict.new_page()
            # Chromium reports what a CSP refuses on the console, whichever document it was.
            refused: list[str] = []
            page.on(
                "console",
                lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
            )
            await page.goto(link)
            await page.wait_for_url(f"{url}/")
            await page.get_by_role("link", name="Payment methods").click()
            await page.wait_for_url("**/payment-methods")
            assert "No payment methods yet." in await page.inner_text("main")
            await _type_card(page, "4242 4242 4242 4242")
            await page.get_by_role("button", name="Save card").click()
            await page.wait_for_url("**/payment-methods?done=card-added")
            assert "Your card is saved." in await page.inner_text("[role=status]")
            assert await _order(page) == ["Visa ending in 4242"]
            # A card whose bank asks for 3-D Secure: Stripe.js's challenge (a frame of the
            # sandbox's origin), then the setup is finished.
            await _type_card(page, "4000 0027 6000 3184")
            async with page.expect_navigation(url="**/payment-methods?done=card-added"):
                await page.get_by_role("button", name="Save card").click()
                challenge = page.frame_locator("iframe[name=stripe-challenge-frame]")
                await challenge.locator("#complete").click()
            assert await _order(page) == ["Visa ending in 4242", "Visa ending in 3184"]
            assert await page.evaluate("typeof window.Stripe") == "function"
            assert refused == []
            storage = await strict.storage_state()
            await strict.close()

            # bypass_csp: the test injects axe-core, which the panel's CSP would refuse.
            context = await browser.new_context(
                bypass_csp=True, viewport=DESKTOP, locale="en-US", storage_state=storage
            )
            page = await context.new_page()
            await page.goto(f"{url}/payment-methods")
            await check_page(page, "payment-methods-card", database_name)

            # A second card, typed wrong first: Stripe.js's message, then saved.
            await _type_card(page, "4242")
            await page.get_by_role("button", name="Save card").click()
            await page.wait_for_selector("#setup-status.bad")
            assert "incomplete" in await page.inner_text("#setup-status")
            await _type_card(page, "5555 5555 5555 4444")
            await page.get_by_role("button", name="Save card").click()
            await page.wait_for_url("**done=card-added")

            # A US bank account through Stripe.js (the stand-in's manual entry), then its
            # microdeposits: a wrong answer says how many are left.
            await page.fill("#bank-holder", "Nora Jones")
            await page.get_by_role("button", name="Add bank account").click()
            await page.click("#sandbox-bank-routing")
            await page.keyboard.type("110000000")
            await page.click("#sandbox-bank-account")
            await page.keyboard.type("000123456789")
            await page.click("#sandbox-bank-account-confirm")
            await page.keyboard.type("000123456789")
            await page.click("#sandbox-bank-submit")
            await page.wait_for_url("**done=bank-added")
            main = await page.inner_text("main")
            assert "STRIPE TEST BANK ending in 6789" in main and "Waiting for verification" in main
            await check_page(page, "payment-methods-pending", database_name)
            # The overview says the bank account waits for its deposits, and links back.
            await page.get_by_role("link", name="Overview").click()
            await page.wait_for_url(f"{url}/")
            attention = await page.inner_text("section.attention")
            assert "A bank account waits for verification" in attention, attention
            await check_page(page, "overview-unverified-bank", database_name)
            await page.get_by_role("link", name="Verify", exact=True).click()
            await page.wait_for_url("**/payment-methods")
            await page.get_by_label("First deposit").fill("12")
            await page.get_by_label("Second deposit").fill("34")
            await page.get_by_role("button", name="Verify").click()
            alert = await page.inner_text("[role=alert]")
            assert "2 attempts left" in alert, alert
            await check_page(page, "payment-methods-wrong-deposits", database_name)
            await page.get_by_label("First deposit").fill("32")
            await page.get_by_label("Second deposit").fill("45")
            await page.get_by_role("button", name="Verify").click()
            await page.wait_for_url("**done=verified")
            assert "Waiting for verification" not in await page.inner_text("main")
            assert await _order(page) == [
                "Visa ending in 4242",
                "Visa ending in 3184",
                "Mastercard ending in 4444",
                "STRIPE TEST BANK ending in 6789",
            ]

            # Reorder by keyboard alone: focus the bank account's "up" button, press Enter.
            for _ in range(3):
                up = page.get_by_role("button", name="Move STRIPE TEST BANK ending in 6789 up")
                await up.focus()
                async with page.expect_navigation(url="**done=reordered"):
                    await page.keyboard.press("Enter")
            assert (await _order(page))[0] == "STRIPE TEST BANK ending in 6789"
            default = page.locator("ol.methods li", has=page.locator(".badge"))
            assert "STRIPE TEST BANK" in await default.inner_text()

            # The default: the Visa, which moves to the front.
            await page.get_by_role("button", name="Make default: Visa ending in 4242").click()
            await page.wait_for_url("**done=default")
            assert (await _order(page))[0] == "Visa ending in 4242"
            assert "Visa ending in 4242" in await default.inner_text()

            # Remove the Mastercard.
            await page.get_by_role("button", name="Remove Mastercard ending in 4444").click()
            await page.wait_for_url("**done=removed")
            assert await _order(page) == [
                "Visa ending in 4242",
                "STRIPE TEST BANK ending in 6789",
                "Visa ending in 3184",
            ]

            # Autopay on, then what is owed (the host app's charge), paid now.
            await page.get_by_role("button", name="Turn autopay on").click()
            await page.wait_for_url("**done=autopay-on")
            assert "Autopay is on" in await page.inner_text("#autopay")
            async with server.database.transaction() as session:
                nora = await find_account(session, AccountKind.USER, "nora")
                assert nora is not None
                await dues.add_charge(
                    session, nora.id, amount=1250, currency="usd", charge_id="due_nora_1",
                    description="API usage, May", clock=server.container.clock,
                )  # fmt: skip
            await page.goto(f"{url}/payment-methods")
            assert "$12.50" in await page.inner_text("#balance")
            await check_page(page, "payment-methods-owing", database_name)
            # The overview: what is owed, and autopay on.
            await page.goto(f"{url}/")
            assert "Owed now (USD)\n$12.50" in await page.inner_text("#money")
            assert await page.inner_text("#autopay-state") == "On"
            await check_page(page, "overview-owing", database_name)
            await page.goto(f"{url}/payment-methods")
            await page.get_by_role("button", name="Pay $12.50 now").click()
            await page.wait_for_url("**done=paid")
            balance = await page.inner_text("#balance")
            assert "Nothing is owed right now." in balance and "Pay $" not in balance
            await page.get_by_role("button", name="Turn autopay off").click()
            await page.wait_for_url("**done=autopay-off")
            await check_page(page, "payment-methods", database_name)

            # The payment and the dues ledger on the activity page.
            await server.settle()
            await page.get_by_role("link", name="Activity").click()
            await page.wait_for_url("**/activity")
            payments = await page.inner_text("section:has(#payments-h)")
            assert "Balance paid" in payments and "Visa ending in 4242" in payments
            assert re.search(r"Succeeded\s+\$12\.50", payments), payments
            ledger = await page.inner_text("section:has(#dues-h)")
            assert "API usage, May" in ledger
            await check_page(page, "activity-payments", database_name)
        finally:
            await browser.close()
