"""A real browser (Playwright, Debian's Chromium) completes 3-D Secure on the sandbox's bank page
and verifies a bank account on the microdeposit page.

Skipped, visibly, without /usr/bin/chromium; BILLFOLD_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import stripe

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SHOP = "https://shop.example"


@pytest.fixture
def chromium() -> str:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
        if os.environ.get("BILLFOLD_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return str(CHROMIUM)


async def test_customer_completes_three_d_secure_in_a_browser(
    stripe_client: stripe.StripeClient, chromium: str
) -> None:
    from playwright.async_api import Route, async_playwright

    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 4500,
            "currency": "usd",
            "payment_method": "pm_card_threeDSecure2Required",
            "confirm": True,
            "return_url": f"{SHOP}/order/7/complete",
        }
    )
    assert pi.status == "requires_action"

    async def shop(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body="<h1>Thanks</h1>")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            page = await browser.new_page()
            await page.route(f"{SHOP}/**", shop)
            await page.goto(pi.next_action.redirect_to_url.url)
            assert "45.00 USD" in await page.inner_text("body")
            await page.click("#complete")
            await page.wait_for_url(f"{SHOP}/order/7/complete**")
            assert f"payment_intent={pi.id}" in page.url
            assert "redirect_status=succeeded" in page.url
        finally:
            await browser.close()
    assert stripe_client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


async def test_customer_verifies_microdeposits_in_a_browser(
    stripe_client: stripe.StripeClient, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    customer = stripe_client.v1.customers.create(params={"email": "bank@example.com"})
    si = stripe_client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method_types": ["us_bank_account"],
            "payment_method_data": {
                "type": "us_bank_account",
                "us_bank_account": {
                    "routing_number": "110000000",
                    "account_number": "000123456789",
                },
                "billing_details": {"name": "Jenny Rosen"},
            },
            "confirm": True,
        }
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            page = await browser.new_page()
            await page.goto(si.next_action.verify_with_microdeposits.hosted_verification_url)
            await page.fill("#descriptor_code", "SM00ZZ")
            await page.click("#verify")
            assert "attempts remaining" in await page.inner_text("body")
            await page.go_back()
            await page.fill("#descriptor_code", "SM11AA")
            await page.click("#verify")
            assert "verified" in await page.inner_text("h1")
        finally:
            await browser.close()
    saved = stripe_client.v1.setup_intents.retrieve(si.id)
    assert saved.status == "succeeded"
    assert stripe_client.v1.payment_methods.retrieve(saved.payment_method).customer == customer.id
