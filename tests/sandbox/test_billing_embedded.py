"""Inside `billfold serve` (sandbox mode) the hosted pages live under `/stripe-sandbox`: the
Checkout URL, the form it posts to, the portal and invoice pages all keep the prefix."""

from __future__ import annotations

from pathlib import Path

import httpx
import stripe

from billfold.app import create_app
from billfold.config import SANDBOX_MOUNT_PATH, SANDBOX_SECRET_KEY, Settings
from billfold.db.engine import Database
from tests.sandbox.billing_support import make_catalog
from tests.sandbox_fixtures import ServedApp


def test_hosted_pages_through_billfold_serve(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(jwt_secret="x" * 40, data_dir=tmp_path / "data", environment="test")
    assert settings.sandbox_mode
    served = ServedApp(create_app(settings, database=Database(sqlite_url)))
    try:
        base = served.url + SANDBOX_MOUNT_PATH
        client = stripe.StripeClient(
            SANDBOX_SECRET_KEY, base_addresses={"api": base}, max_network_retries=0
        )
        catalog = make_catalog(client)
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "line_items": [{"price": catalog.monthly, "quantity": 1}],
                "success_url": "https://app.example/ok?session_id={CHECKOUT_SESSION_ID}",
                "customer_email": "served@example.com",
            }
        )
        assert session.url.startswith(f"{base}/checkout/pay/")
        page = httpx.get(session.url)
        assert page.status_code == 200
        assert f'action="{base}/checkout/pay/{session.id}"' in page.text
        paid = httpx.post(session.url, data={"payment_method": "pm_card_visa"})
        assert paid.headers["location"] == f"https://app.example/ok?session_id={session.id}"

        session = client.v1.checkout.sessions.retrieve(session.id)
        sub = client.v1.subscriptions.retrieve(str(session.subscription))
        invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert str(invoice.hosted_invoice_url).startswith(f"{base}/i/")
        assert httpx.get(str(invoice.hosted_invoice_url)).status_code == 200
        portal = client.v1.billing_portal.sessions.create(
            params={"customer": str(session.customer), "return_url": "https://app.example/"}
        )
        assert portal.url.startswith(f"{base}/p/session/")
        assert "Premium" in httpx.get(portal.url).text
    finally:
        served.stop()
