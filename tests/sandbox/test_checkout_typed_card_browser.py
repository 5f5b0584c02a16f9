"""The hosted Checkout page takes card details typed as on Stripe's own page (the same field
ids: `#email`, `#cardNumber`, `#cardExpiry`, `#cardCvc`, `#billingName`, `.SubmitButton`), so a
browser test written for Stripe test mode's Checkout fills it unchanged. Chromium; skipped,
visibly, without it (a failure under BILLFOLD_REQUIRE_BROWSER=1)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.sandbox.billing_support import make_catalog
from tests.sandbox.browser_env import CHROMIUM, require_browser

pytestmark = pytest.mark.browser

APP = "https://app.example"


async def _fill_card(page: Any, number: str) -> None:
    # As a Stripe Checkout test does it.
    await page.fill("#cardNumber", "")
    await page.type("#cardNumber", number)
    await page.fill("#cardExpiry", "")
    await page.type("#cardExpiry", "12 / 34")
    await page.fill("#cardCvc", "")
    await page.type("#cardCvc", "123")
    await page.fill("#billingName", "Jenny Rosen")


async def test_a_typed_card_pays_checkout_after_a_decline(
    stripe_client: stripe.StripeClient,
) -> None:
    require_browser()
    from playwright.async_api import Route, async_playwright

    client = stripe_client
    catalog = make_catalog(client)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": catalog.monthly, "quantity": 1}],
            "success_url": f"{APP}/done?session_id={{CHECKOUT_SESSION_ID}}",
        }
    )

    async def app_page(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body="<h1>Thanks</h1>")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            page = await browser.new_page()
            await page.route(f"{APP}/**", app_page)
            await page.goto(session.url)
            await page.fill("#email", "typed@example.com")
            await _fill_card(page, "4000 0000 0000 0002")
            await page.click(".SubmitButton")
            assert "declined" in (await page.inner_text("[data-testid=error]")).lower()
            await page.fill("#email", "typed@example.com")
            await _fill_card(page, "4242 4242 4242 4242")
            await page.click(".SubmitButton")
            await page.wait_for_url(f"{APP}/done**")
        finally:
            await browser.close()

    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    sub = client.v1.subscriptions.retrieve(str(done.subscription))
    pm = client.v1.payment_methods.retrieve(str(sub.default_payment_method))
    assert (pm.card.last4, pm.card.exp_month, pm.card.exp_year) == ("4242", 12, 2034)
    assert pm.billing_details.name == "Jenny Rosen"
