"""A real browser (Playwright with Debian's Chromium) on the hosted pages: pays a Checkout Session,
gets a decline then a 3-D Secure challenge, cancels and renews in the customer portal.

Skipped, visibly, when /usr/bin/chromium is not installed; with BILLFOLD_REQUIRE_BROWSER=1 (CI)
a missing browser fails the test instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.sandbox.billing_support import make_catalog

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
APP = "https://app.example"


def _require_browser() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    if os.environ.get("BILLFOLD_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


async def _launch(playwright: Any) -> Any:
    return await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


async def test_browser_pays_a_subscription_checkout(stripe_client: stripe.StripeClient) -> None:
    _require_browser()
    from playwright.async_api import Route, async_playwright

    client = stripe_client
    catalog = make_catalog(client)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": catalog.monthly, "quantity": 1}],
            "success_url": f"{APP}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{APP}/billing/cancel",
            "allow_promotion_codes": True,
        }
    )

    async def app_page(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body="<h1>Welcome back</h1>")

    async with async_playwright() as playwright:
        browser = await _launch(playwright)
        try:
            page = await browser.new_page()
            await page.route(f"{APP}/**", app_page)
            await page.goto(session.url)
            assert "$20.00" in await page.inner_text("[data-testid=total]")
            await page.fill("#email", "browser@example.com")
            await page.check("[data-testid=method-4242424242424242]")
            await page.click("[data-testid=submit]")
            await page.wait_for_url(f"{APP}/billing/success**")
            landed = page.url
            assert await page.inner_text("h1") == "Welcome back"
        finally:
            await browser.close()

    assert landed == f"{APP}/billing/success?session_id={session.id}"
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    assert session.customer_details.email == "browser@example.com"
    sub = client.v1.subscriptions.retrieve(str(session.subscription))
    assert sub.status == "active"
    card = client.v1.payment_methods.retrieve(str(sub.default_payment_method)).card
    assert card.last4 == "4242"


async def test_browser_declined_card_then_3d_secure(stripe_client: stripe.StripeClient) -> None:
    _require_browser()
    from playwright.async_api import Route, async_playwright

    client = stripe_client
    catalog = make_catalog(client)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": catalog.monthly, "quantity": 1}],
            "success_url": f"{APP}/done?session_id={{CHECKOUT_SESSION_ID}}",
            "customer_email": "sca@example.com",
        }
    )

    async def app_page(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body="<h1>Done</h1>")

    async with async_playwright() as playwright:
        browser = await _launch(playwright)
        try:
            page = await browser.new_page()
            await page.route(f"{APP}/**", app_page)
            await page.goto(session.url)
            await page.check("[data-testid=method-4000000000000002]")
            await page.click("[data-testid=submit]")
            assert "declined" in (await page.inner_text("[data-testid=error]")).lower()
            await page.check("[data-testid=method-4000002760003184]")
            await page.click("[data-testid=submit]")
            await page.wait_for_url("**/authenticate")
            await page.click("[data-testid=authenticate-complete]")
            await page.wait_for_url(f"{APP}/done**")
        finally:
            await browser.close()

    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.status == "complete"
    assert client.v1.subscriptions.retrieve(str(session.subscription)).status == "active"


async def test_browser_cancels_and_renews_in_the_portal(
    stripe_client: stripe.StripeClient,
) -> None:
    _require_browser()
    from playwright.async_api import async_playwright

    from tests.sandbox.billing_support import subscribed

    client = stripe_client
    _, who, sub = subscribed(client)
    session = client.v1.billing_portal.sessions.create(
        params={"customer": who.customer, "return_url": f"{APP}/account"}
    )

    async with async_playwright() as playwright:
        browser = await _launch(playwright)
        try:
            page = await browser.new_page()
            await page.goto(session.url)
            await page.click("[data-testid=cancel]")
            notice = await page.inner_text("[data-testid=notice]")
            assert "will end on" in notice
            canceled = client.v1.subscriptions.retrieve(sub.id)
            assert canceled.cancel_at_period_end is True
            await page.click("[data-testid=reactivate]")
            await page.wait_for_selector("[data-testid=cancel]")
            assert await page.get_attribute("[data-testid=return]", "href") == f"{APP}/account"
        finally:
            await browser.close()

    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False
