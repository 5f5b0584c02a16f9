"""Bad input to the billing routes gets Stripe's 4xx, never a 500: random parameters (real ids
among them, so the deeper rules run too) against subscriptions, invoices, Checkout, the portal
and the hosted pages."""

from __future__ import annotations

import random
from urllib.parse import urlencode

import httpx
import stripe

from tests.sandbox.billing_support import complete_checkout, subscribed
from tests.sandbox_fixtures import SandboxServer


def test_random_parameters_never_500(
    stripe_client: stripe.StripeClient, sandbox_server: SandboxServer
) -> None:
    client = stripe_client
    catalog, who, sub = subscribed(client)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": catalog.monthly, "quantity": 1}],
            "success_url": "https://app.example/ok",
            "allow_promotion_codes": True,
        }
    )
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": who.customer, "return_url": "https://app.example/"}
    )
    invoice = str(sub.latest_invoice)
    item = sub["items"].data[0].id
    ids = [
        who.customer, sub.id, invoice, item, catalog.monthly, catalog.yearly, catalog.monthly_plus,
        catalog.product, session.id, str(who.payment_method), "cus_x", "price_x", "sub_x", "",
    ]  # fmt: skip
    values = [
        *ids, "0", "-1", "1", "3", "now", "true", "false", "x" * 600, "NaN", "1e9", "2000000000",
        "subscription", "payment", "setup", "month", "usd", "eur", "create_prorations", "none",
        "always_invoice", "error_if_incomplete", "default_incomplete", "allow_incomplete",
        "pm_card_visa", "pm_card_chargeDeclined", "https://x.example", "ftp://x", "[", "a]b",
    ]  # fmt: skip
    keys = [
        "customer", "items[0][price]", "items[0][quantity]", "items[0][id]", "items[0][deleted]",
        "items[1][price]", "items[0][price_data][currency]", "items[0][price_data][product]",
        "items[0][price_data][unit_amount]", "items[0][price_data][recurring][interval]",
        "trial_end", "trial_period_days", "payment_behavior", "cancel_at_period_end", "cancel_at",
        "proration_behavior", "proration_date", "default_payment_method", "metadata[a]",
        "metadata", "discounts[0][coupon]", "discounts[0][promotion_code]", "billing_cycle_anchor",
        "pause_collection[behavior]", "pause_collection",
        "trial_settings[end_behavior][missing_payment_method]",
        "mode", "line_items[0][price]", "line_items[0][quantity]",
        "line_items[0][price_data][currency]",
        "line_items[0][price_data][unit_amount]", "line_items[0][price_data][product_data][name]",
        "subscription_data[trial_period_days]", "success_url", "cancel_url", "customer_email",
        "customer_creation", "expires_at", "payment_method_types[0]", "allow_promotion_codes",
        "return_url", "configuration", "flow_data[type]",
        "flow_data[subscription_cancel][subscription]",
        "features[subscription_cancel][enabled]", "features[subscription_cancel][mode]",
        "status", "subscription", "invoice", "limit", "starting_after", "query", "price",
        "payment_method", "paid_out_of_band", "off_session", "prorate", "invoice_now", "email",
        "promotion_code", "expand[]", "expand[0]", "retry_days[0]", "after_final_failure",
        "x[0][y]",
    ]  # fmt: skip
    endpoints = [
        ("POST", "/v1/subscriptions"),
        ("POST", f"/v1/subscriptions/{sub.id}"),
        ("GET", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions/search"),
        ("DELETE", f"/v1/subscriptions/{sub.id}"),
        ("POST", f"/v1/subscriptions/{sub.id}/resume"),
        ("GET", "/v1/invoices"),
        ("POST", f"/v1/invoices/{invoice}"),
        ("POST", f"/v1/invoices/{invoice}/pay"),
        ("POST", f"/v1/invoices/{invoice}/void"),
        ("GET", "/v1/invoice_payments"),
        ("GET", "/v1/subscription_items"),
        ("POST", "/v1/checkout/sessions"),
        ("GET", "/v1/checkout/sessions"),
        ("POST", f"/v1/test_helpers/checkout/sessions/{session.id}/complete"),
        ("POST", "/v1/billing_portal/sessions"),
        ("POST", "/v1/billing_portal/configurations"),
        ("POST", "/v1/test_helpers/billing/settings"),
        ("POST", session.url.removeprefix(sandbox_server.url)),
        ("POST", portal.url.removeprefix(sandbox_server.url)),
    ]
    rng = random.Random(20261028)
    headers = {"Authorization": f"Bearer {sandbox_server.api_key}"}
    failures = []
    with httpx.Client(base_url=sandbox_server.url, headers=headers) as http:
        for _ in range(400):
            method, path = rng.choice(endpoints)
            pairs = [(rng.choice(keys), rng.choice(values)) for _ in range(rng.randint(0, 6))]
            if "action" not in dict(pairs) and not path.startswith("/v1/"):
                pairs.append(("action", rng.choice(["pay", "cancel", "switch", "add_pm", "x"])))
            if method == "GET":
                response = http.get(path, params=pairs)
            else:
                response = http.request(
                    method,
                    path,
                    content=urlencode(pairs),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            if response.status_code >= 500:
                failures.append((method, path, pairs, response.text[:300]))
    assert not failures, failures[:3]
    # The world is still consistent enough to serve a normal checkout.
    fresh = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 100,
                        "product_data": {"name": "x"},
                    },
                    "quantity": 1,
                }
            ],
            "success_url": "https://app.example/ok",
        }
    )
    assert complete_checkout(client, fresh.id, email="ok@example.com").status == "complete"
