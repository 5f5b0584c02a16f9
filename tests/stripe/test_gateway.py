"""The gateway's parsing against Stripe's own sample objects, and its error translation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import stripe

from billfold.errors import (
    ConfigurationError,
    IdempotencyConflict,
    NotFound,
    PaymentFailed,
    UpstreamUnavailable,
    ValidationFailed,
)
from billfold.stripe.gateway import (
    checkout_session_from_stripe,
    invoice_subscription_id,
    subscription_from_stripe,
    translate_stripe_error,
)
from tests.sandbox.shapes import stripe_resources


@pytest.fixture
def resources() -> dict[str, Any]:
    """Stripe's sample objects (a copy: tests may change them)."""
    return copy.deepcopy(stripe_resources())


def test_subscription_periods_come_from_the_item(resources: dict[str, Any]) -> None:
    sample = resources["subscription"]
    item = sample["items"]["data"][0]
    parsed = subscription_from_stripe(sample)
    assert parsed.id == sample["id"] and parsed.customer_id == sample["customer"]
    assert parsed.price_id == item["price"]["id"] and parsed.interval == "month"
    assert parsed.item_id == item["id"] and parsed.quantity == item["quantity"]
    assert parsed.current_period_end is not None
    assert int(parsed.current_period_end.timestamp()) == item["current_period_end"]
    assert int(parsed.current_period_start.timestamp()) == item["current_period_start"]  # type: ignore[union-attr]
    assert "current_period_end" not in sample  # API 2026-10-28: not on the subscription
    assert parsed.raw == sample


def test_invoice_subscription_lives_under_parent(resources: dict[str, Any]) -> None:
    invoice = dict(resources["invoice"])
    assert "payment_intent" not in invoice
    invoice.pop("subscription", None)
    invoice["parent"] = {
        "type": "subscription_details",
        "subscription_details": {"subscription": "sub_123", "metadata": {}},
    }
    assert invoice_subscription_id(invoice) == "sub_123"
    invoice["parent"] = None
    assert invoice_subscription_id(invoice) is None


def test_checkout_session(resources: dict[str, Any]) -> None:
    parsed = checkout_session_from_stripe(resources["checkout.session"])
    assert parsed.id.startswith("cs_") and parsed.url and parsed.mode == "payment"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (stripe.CardError("Your card was declined.", "card", "card_declined"), PaymentFailed),
        (stripe.APIConnectionError("connection refused"), UpstreamUnavailable),
        (stripe.RateLimitError("slow down"), UpstreamUnavailable),
        (stripe.APIError("boom", http_status=500), UpstreamUnavailable),
        (stripe.AuthenticationError("bad key", http_status=401), ConfigurationError),
        (
            stripe.IdempotencyError("Keys for idempotent requests ...", http_status=400),
            IdempotencyConflict,
        ),
        (stripe.InvalidRequestError("No such price", "price", http_status=400), ValidationFailed),
        (
            stripe.InvalidRequestError(
                "No such subscription", "id", code="resource_missing", http_status=404
            ),
            NotFound,
        ),
    ],
)
def test_errors_become_billfold_errors(error: stripe.StripeError, expected: type) -> None:
    assert type(translate_stripe_error(error)) is expected


def test_the_adapter_refuses_blocking_calls() -> None:
    """Only the SDK's async methods work through the adapter's client (a blocking call would
    stall the event loop, and deadlock against a sandbox served by the same process)."""
    from billfold.config import Settings
    from billfold.stripe.gateway import StripeClientGateway

    gateway = StripeClientGateway(
        Settings(stripe_secret_key="sk_test_x", stripe_webhook_secret=["whsec_x"])
    )
    with pytest.raises(RuntimeError, match="allow_sync_methods"):
        gateway.customers._v1.customers.create()
