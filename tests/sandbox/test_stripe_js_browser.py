"""The Stripe.js stand-in (`<sandbox>/js/v3`) in Chromium: a merchant's page written against
Stripe.js (another origin, only the script's URL changed) saves a card with 3-D Secure, pays
with 3-D Secure, and saves a bank account verified with microdeposits, all typed as a person
would. Skipped, visibly, without /usr/bin/chromium (a failure under BILLFOLD_REQUIRE_BROWSER=1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from tests.sandbox.browser_env import CHROMIUM, require_browser
from tests.sandbox_fixtures import SandboxServer, ServedApp

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="{sandbox}/js/v3"></script></head><body>
<form id="checkout"><div id="card-element"></div><div id="payment-element"></div></form>
<pre id="result"></pre>
<script>
const stripe = Stripe("pk_test_shop");
const elements = stripe.elements();
const card = elements.create("card");
card.mount("#card-element");
function show(result) {{
  document.getElementById("result").textContent = JSON.stringify(result);
  return result;
}}
window.saveCard = (secret) => stripe.confirmCardSetup(secret, {{
  payment_method: {{card: card, billing_details: {{name: "Jenny Rosen"}}}}
}}).then(show);
window.payCard = (secret) => stripe.confirmCardPayment(secret, {{
  payment_method: {{card: card}}
}}).then(show);
window.saveBank = async (secret) => {{
  const collected = await stripe.collectBankAccountForSetup({{
    clientSecret: secret,
    params: {{
      payment_method_type: "us_bank_account",
      payment_method_data: {{billing_details: {{name: "Jenny Rosen", email: "j@example.com"}}}}
    }}
  }});
  if (collected.error) return show(collected);
  return show(await stripe.confirmUsBankAccountSetup(secret));
}};
window.verify = (secret, code) =>
  stripe.verifyMicrodepositsForSetup(secret, {{descriptor_code: code}}).then(show);
</script></body></html>"""


@pytest.fixture
def shop(sandbox_server: SandboxServer) -> Iterator[str]:
    """The merchant's page, served on its own: another origin than the sandbox (`localhost`
    against `127.0.0.1`, so the API calls are cross-origin) and, like a developer's, on
    loopback (Chromium keeps public pages away from loopback addresses)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse(PAGE.format(sandbox=sandbox_server.url))

    served = ServedApp(Starlette(routes=[Route("/{path:path}", page)]))
    try:
        yield served.url.replace("127.0.0.1", "localhost")
    finally:
        served.stop()


async def _type_card(page: Any, number: str) -> None:
    """Type a card into the card element as a person would (after clearing it)."""
    for name, value in (
        ("cardnumber", number),
        ("exp-date", "12 / 34"),
        ("cvc", "123"),
        ("postal", "94107"),
    ):
        await page.fill(f"input[name={name}]", "")
        await page.click(f"input[name={name}]")
        await page.keyboard.type(value)


async def _complete_challenge(page: Any) -> None:
    frame = page.frame_locator("iframe[name=stripe-challenge-frame]")
    await frame.locator("#complete").click()


async def test_a_page_saves_and_pays_by_card_with_3ds(
    stripe_client: stripe.StripeClient, shop: str
) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    customer = stripe_client.v1.customers.create(params={"email": "js@example.com"})
    setup = stripe_client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method_types": ["card"]}
    )
    payment = stripe_client.v1.payment_intents.create(
        params={"amount": 4200, "currency": "usd", "payment_method_types": ["card"]}
    )
    declined = stripe_client.v1.payment_intents.create(
        params={"amount": 4200, "currency": "usd", "payment_method_types": ["card"]}
    )

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{shop}/account/card")

            # Saving a card that asks for 3-D Secure: the challenge opens in a modal.
            await _type_card(page, "4000 0027 6000 3184")
            saving = asyncio.ensure_future(page.evaluate("s => saveCard(s)", setup.client_secret))
            await _complete_challenge(page)
            saved = await saving
            assert saved["setupIntent"]["status"] == "succeeded", saved

            # Paying with the 3-D Secure 2 card.
            await _type_card(page, "4000000000003220")
            paying = asyncio.ensure_future(page.evaluate("s => payCard(s)", payment.client_secret))
            await _complete_challenge(page)
            paid = await paying
            assert paid["paymentIntent"]["status"] == "succeeded", paid

            # A declined card: Stripe.js's error shape.
            await _type_card(page, "4000 0000 0000 9995")
            refused = await page.evaluate("s => payCard(s)", declined.client_secret)
            error = refused["error"]
            assert (error["type"], error["code"], error["decline_code"]) == (
                "card_error",
                "card_declined",
                "insufficient_funds",
            )
            # An incomplete number never reaches the sandbox.
            await page.fill("input[name=cardnumber]", "4242")
            incomplete = await page.evaluate("s => payCard(s)", declined.client_secret)
            assert incomplete["error"]["code"] == "incomplete_number"
            assert json.loads(await page.inner_text("#result")) == incomplete
        finally:
            await browser.close()

    saved_si = stripe_client.v1.setup_intents.retrieve(setup.id)
    pm = stripe_client.v1.payment_methods.retrieve(str(saved_si.payment_method))
    assert (pm.customer, pm.card.last4, pm.billing_details.name) == (
        customer.id,
        "3184",
        "Jenny Rosen",
    )
    assert stripe_client.v1.payment_intents.retrieve(payment.id).status == "succeeded"


async def test_a_page_saves_a_bank_account_verified_by_microdeposits(
    stripe_client: stripe.StripeClient, shop: str
) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    customer = stripe_client.v1.customers.create(params={"email": "ach@example.com"})
    setup = stripe_client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method_types": ["us_bank_account"]}
    )

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{shop}/account/bank")
            saving = asyncio.ensure_future(page.evaluate("s => saveBank(s)", setup.client_secret))
            await page.click("#sandbox-bank-routing")
            await page.keyboard.type("110000000")
            await page.click("#sandbox-bank-account")
            await page.keyboard.type("000123456789")
            await page.click("#sandbox-bank-account-confirm")
            await page.keyboard.type("000123456789")
            await page.click("#sandbox-bank-submit")
            waiting = await saving
            intent = waiting["setupIntent"]
            assert intent["status"] == "requires_action", waiting
            assert intent["next_action"]["type"] == "verify_with_microdeposits"
            wrong = await page.evaluate("s => verify(s, 'SM00ZZ')", setup.client_secret)
            assert wrong["error"]["type"] == "invalid_request_error"
            verified = await page.evaluate("s => verify(s, 'SM11AA')", setup.client_secret)
            assert verified["setupIntent"]["status"] == "succeeded", verified
        finally:
            await browser.close()
    saved = stripe_client.v1.setup_intents.retrieve(setup.id)
    pm = stripe_client.v1.payment_methods.retrieve(str(saved.payment_method))
    assert (pm.type, pm.customer, pm.us_bank_account.last4) == (
        "us_bank_account",
        customer.id,
        "6789",
    )


def test_a_publishable_key_reaches_only_what_stripe_js_needs(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient
) -> None:
    import httpx

    pk = {"Authorization": "Bearer pk_test_shop"}
    refused = httpx.get(sandbox_server.url + "/v1/customers", headers=pk)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "secret_key_required"
    pi = stripe_client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    without = httpx.get(sandbox_server.url + f"/v1/payment_intents/{pi.id}", headers=pk)
    assert without.status_code == 404
    with_secret = httpx.get(
        sandbox_server.url + f"/v1/payment_intents/{pi.id}",
        params={"client_secret": pi.client_secret},
        headers={**pk, "Origin": "http://localhost:8000"},
    )
    assert with_secret.status_code == 200
    assert with_secret.headers["access-control-allow-origin"] == "*"
    script = httpx.get(sandbox_server.url + "/js/v3")
    assert script.headers["content-type"].startswith("application/javascript")
    assert sandbox_server.url in script.text
