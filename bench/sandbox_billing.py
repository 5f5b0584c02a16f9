"""Stripe sandbox billing throughput over loopback with the official SDK.

Measures, against a sandbox served by uvicorn on 127.0.0.1: subscriptions created per second
(each charges its first invoice through a PaymentIntent), Checkout sessions created and completed
per second (customer, payment method, subscription, invoice and 13 events each), and renewals per
second when one test clock carrying N subscriptions is advanced a month (invoice created,
finalized an hour later, charged), checking that every subscription renewed and was paid.

    .venv/bin/python bench/sandbox_billing.py [--subscriptions 300]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where bench/http.py would hide the
# standard library's `http` package (imported by httpx, PyJWT, asyncpg...): it goes last.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import sys
import time
from pathlib import Path

import stripe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox_fixtures import ServedApp

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState

JAN_1_2026 = 1_767_225_600
DAY = 86_400


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_bench",
        base_addresses={"api": url},
        max_network_retries=0,
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
    )


def _rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<60} {count / seconds:>8.0f}/s  ({count} in {seconds:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=300)
    n = parser.parse_args().subscriptions

    state = SandboxState()
    served = ServedApp(create_sandbox_app(state))
    try:
        client = _client(served.url)
        product = client.v1.products.create(params={"name": "Bench"})
        price = client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": 2000,
                "recurring": {"interval": "month"},
            }
        )
        clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN_1_2026})
        customers = []
        for i in range(n):
            customer = client.v1.customers.create(
                params={"email": f"s{i}@example.com", "test_clock": clock.id}
            )
            pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
            client.v1.customers.update(
                customer.id, {"invoice_settings": {"default_payment_method": pm.id}}
            )
            customers.append(customer.id)

        started = time.perf_counter()
        subs = [
            client.v1.subscriptions.create(
                params={"customer": c, "items": [{"price": price.id}]}
            ).id
            for c in customers
        ]
        _rate("subscriptions created (first invoice charged)", n, time.perf_counter() - started)

        started = time.perf_counter()
        for i in range(n):
            session = client.v1.checkout.sessions.create(
                params={
                    "mode": "subscription",
                    "line_items": [{"price": price.id, "quantity": 1}],
                    "success_url": "https://app.example/ok?id={CHECKOUT_SESSION_ID}",
                    "customer_email": f"c{i}@example.com",
                }
            )
            response = client.raw_request(
                "post", f"/v1/test_helpers/checkout/sessions/{session.id}/complete"
            )
            assert response.code == 200
        _rate("Checkout sessions created and completed", n, time.perf_counter() - started)

        started = time.perf_counter()
        client.v1.test_helpers.test_clocks.advance(
            clock.id, params={"frozen_time": JAN_1_2026 + 31 * DAY + 2 * 3600}
        )
        elapsed = time.perf_counter() - started
        _rate(f"renewals in one test clock advance ({n} subscriptions)", n, elapsed)

        paid = 0
        for sub_id in subs:
            sub = client.v1.subscriptions.retrieve(sub_id)
            invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
            assert sub.status == "active", sub.status
            assert invoice.billing_reason == "subscription_cycle", invoice.billing_reason
            paid += invoice.status == "paid"
        assert paid == n, f"{paid} of {n} renewals paid"
        events = len(list(client.v1.events.list(params={"limit": 100}).auto_paging_iter()))
        print(f"end state: {n} renewals paid; {events} events recorded")
    finally:
        served.stop()


if __name__ == "__main__":
    main()
