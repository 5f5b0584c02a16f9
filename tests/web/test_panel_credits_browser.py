"""The panel's credits in a real browser (Playwright with Debian's Chromium) against billfold
served by uvicorn and the Stripe sandbox (`billfold_server`), on both databases: a customer
signs in by link, types a top-up's amount and sees its price, pays it on the sandbox's hosted
Checkout, sees the balance change once the webhooks are applied, sets auto top-up and sees it
saved, subscribes, buys a credit package, and reads the overview's chart and the credit
history. Every new page is checked with axe-core (no serious or critical violation) and
photographed at desktop and phone widths into /tmp/panel-shots/ (the frame of
test_panel_browser.py). Skipped without Chromium; with
BILLFOLD_REQUIRE_BROWSER=1 (CI), failed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e_fixtures import BillfoldServer
from tests.sandbox.browser_env import CHROMIUM, require_browser
from tests.web.test_panel_browser import (
    ARGS,
    DESKTOP,
    SHOTS,
    _link,
    check_page,
    database_name,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.browser


async def _pay_on_checkout(page: Any, back: str) -> None:
    """The sandbox's hosted Checkout: pay with the test card, then back on the panel."""
    await page.wait_for_url("**/checkout/**")
    await page.check("[data-testid=method-4242424242424242]")
    await page.click("[data-testid=submit]")
    await page.wait_for_url(back)


async def test_a_customer_tops_up_and_buys_credits_in_the_browser(
    billfold_server: BillfoldServer,
    database_name: str,  # noqa: F811 (the fixture imported above)
) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)  # once, before the browser

    server = billfold_server
    server.settings.public_url = server.url  # Checkout sends the customer back to the panel
    link = await _link(server, server.bearer("erin"))

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(bypass_csp=True, viewport=DESKTOP, locale="en-US")
            page = await context.new_page()

            await page.goto(link)
            await page.wait_for_url(f"{server.url}/")
            assert "No credits were added, spent or expired" in await page.inner_text("main")

            await page.get_by_role("link", name="Credits", exact=True).click()
            await page.wait_for_url("**/credits")
            main = await page.inner_text("main")
            assert (
                "0 credits" in main and "Credit packages come with an active subscription" in main
            )
            assert "Price: €10.00 for 100 credits" in main
            await check_page(page, "credits-empty", database_name)

            # The price follows the amount as it is typed (htmx asks the panel).
            await page.fill("#topup-credits", "3")
            await page.locator("#topup-price").filter(has_text="at least 10 credits").wait_for()
            await page.fill("#topup-credits", "600")
            await page.locator("#topup-price").filter(has_text="€54.00").wait_for()
            assert "600 credits" in await page.inner_text("#topup-price")

            await page.get_by_role("button", name="Top up").click()
            await _pay_on_checkout(page, "**/credits?done=topup-success")
            assert "Your credits show here" in await page.inner_text("[role=status]")
            await server.settle()
            await page.goto(f"{server.url}/credits")
            assert await page.inner_text("#credit-balance") == "600 credits"
            assert "Top-up" in await page.inner_text("main")  # its lot, 600 left
            await check_page(page, "credits-topped-up", database_name)

            # Auto top-up: set with its guardrails, the price of its credits shown as typed.
            assert "Off" in await page.inner_text("#auto-topup-status")
            await page.get_by_label("Top up automatically").check()
            await page.get_by_label("Threshold: top up when the balance falls under").fill("50")
            await page.get_by_label("Credits to buy each time").fill("200")
            await page.locator("#auto-price").filter(has_text="for 200 credits").wait_for()
            await page.get_by_label("Daily limit").fill("2")
            # A monthly limit under one top-up's price: refused, the field named and marked.
            await page.get_by_label("Monthly limit").fill("1")
            await page.get_by_role("button", name="Save auto top-up").click()
            alert = await page.inner_text("#auto-error")
            assert alert.startswith("Monthly limit: monthly_limit must cover one top-up"), alert
            assert await page.get_attribute("#auto-monthly-limit", "aria-invalid") == "true"
            assert "Off" in await page.inner_text("#auto-topup-status")  # nothing saved
            await check_page(page, "credits-auto-topup-refused", database_name)
            await page.get_by_label("Monthly limit").fill("100.50")
            await page.get_by_role("button", name="Save auto top-up").click()
            await page.wait_for_url("**/credits?done=auto-topup*")
            assert "auto top-up settings are saved" in await page.inner_text("[role=status]")
            assert "On" in await page.inner_text("#auto-topup-status")
            assert await page.input_value("#auto-monthly-limit") == "100.50"
            assert await page.is_checked("#auto-enabled")
            await check_page(page, "credits-auto-topup", database_name)

            # The overview's balance and its chart, with the numbers as a table.
            await page.get_by_role("link", name="Overview").click()
            await page.wait_for_url(f"{server.url}/")
            chart = page.get_by_role("img", name="Credits added, spent and expired per day")
            assert await chart.count() == 1
            await page.get_by_text("The numbers, day by day").click()
            assert "600" in await page.inner_text("details table")
            await check_page(page, "overview-credits", database_name)

            # A package needs a subscription: subscribe, then buy one.
            await page.goto(f"{server.url}/subscription")
            await page.get_by_role("button", name="Subscribe to Premium, monthly, EUR").click()
            await _pay_on_checkout(page, "**/subscription?done=checkout-success")
            await server.settle()
            await page.goto(f"{server.url}/credits")
            assert "come with an active subscription" not in await page.inner_text("main")
            await page.get_by_role("button", name="Buy Starter, 100 credits for €9.99").click()
            await _pay_on_checkout(page, "**/credits?done=purchase-success")
            await server.settle()
            await page.reload()
            assert await page.inner_text("#credit-balance") == "700 credits"
            await check_page(page, "credits-package", database_name)

            # The credit history on the Activity page.
            await page.get_by_role("link", name="Activity").click()
            await page.wait_for_url("**/activity")
            history = await page.inner_text("#histories")
            assert "Top-up" in history and "Credit package" in history and "€54.00" in history
            await check_page(page, "activity-histories", database_name)
        finally:
            await browser.close()
