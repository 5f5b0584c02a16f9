"""Inside `billfold serve` (sandbox mode) the payment pages live under `/stripe-sandbox`: the
3-D Secure challenge (`redirect_to_url`, `use_stripe_sdk`) and the microdeposit verification
page keep the mount prefix, and the pages answer there."""

from __future__ import annotations

from pathlib import Path

import httpx
import stripe

from tests.sandbox.payments_support import bank_setup
from tests.sandbox_fixtures import served_billfold


def _needs_authentication(client: stripe.StripeClient, **extra: str) -> stripe.PaymentIntent:
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
            **extra,  # type: ignore[typeddict-item]
        }
    )
    assert pi.status == "requires_action"
    return pi


def test_payment_pages_through_billfold_serve(tmp_path: Path, sqlite_url: str) -> None:
    with served_billfold(tmp_path / "data", sqlite_url) as (base, client):
        redirected = _needs_authentication(client, return_url="https://app.example/back")
        url = redirected.next_action.redirect_to_url.url
        assert url == f"{base}/pages/authenticate/{redirected.id}"
        page = httpx.get(url)
        assert page.status_code == 200
        assert "Complete authentication" in page.text
        answer = httpx.post(url, data={"outcome": "succeed"})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("https://app.example/back?payment_intent=")
        assert client.v1.payment_intents.retrieve(redirected.id).status == "succeeded"

        with_sdk = _needs_authentication(client)
        assert with_sdk.next_action.type == "use_stripe_sdk"
        sdk_url = with_sdk.next_action.use_stripe_sdk["stripe_js"]
        assert sdk_url == f"{base}/pages/authenticate/{with_sdk.id}"
        assert "Complete authentication" in httpx.get(sdk_url).text

        customer = client.v1.customers.create(params={"email": "ach@example.com"})
        setup = client.v1.setup_intents.retrieve(bank_setup(client, customer.id))
        verify = setup.next_action.verify_with_microdeposits.hosted_verification_url
        assert verify == f"{base}/pages/microdeposits/{setup.id}"
        page = httpx.get(verify)
        assert page.status_code == 200
        assert "SM11AA" in page.text
        assert httpx.post(verify, data={"descriptor_code": "SM11AA"}).status_code == 200
        assert client.v1.setup_intents.retrieve(setup.id).status == "succeeded"


def test_stripe_js_through_billfold_serve(tmp_path: Path, sqlite_url: str) -> None:
    """Stripe.js is served at the mount, and calls the API there (mount prefix kept), with a
    publishable key limited to what it needs."""
    with served_billfold(tmp_path / "data", sqlite_url) as (base, client):
        script = httpx.get(f"{base}/js/v3")
        assert script.status_code == 200
        assert f'var BASE = "{base}";' in script.text
        pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
        seen = httpx.get(
            f"{base}/v1/payment_intents/{pi.id}",
            params={"client_secret": pi.client_secret},
            headers={"Authorization": "Bearer pk_test_shop"},
        )
        assert seen.json()["id"] == pi.id
        refused = httpx.get(
            f"{base}/v1/customers", headers={"Authorization": "Bearer pk_test_shop"}
        )
        assert refused.status_code == 401
