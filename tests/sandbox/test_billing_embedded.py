"""Inside `billfold serve` (sandbox mode) the hosted pages live under `/stripe-sandbox`: the
Checkout URL, the form it posts to, the portal and invoice pages all keep the prefix."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.sandbox.billing_support import make_catalog
from tests.sandbox_fixtures import served_billfold


def test_hosted_pages_through_billfold_serve(tmp_path: Path, sqlite_url: str) -> None:
    with served_billfold(tmp_path / "data", sqlite_url) as (base, client):
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
