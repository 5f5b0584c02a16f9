"""Random but valid sequences of billing operations keep Stripe's invariants: known statuses,
invoice amounts that add up, payments that match, one live period per subscription."""

from __future__ import annotations

import random

import pytest
import stripe

from tests.sandbox.billing_support import DAY, HOUR, attach_card, clock_time, subscribed

CARDS = ["pm_card_visa", "pm_card_chargeCustomerFail", "pm_card_mastercard"]
STATUSES = {
    "incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled",
    "paused",
}  # fmt: skip


def _check(client: stripe.StripeClient, customer: str, now: int) -> None:
    for sub in client.v1.subscriptions.list(
        params={"customer": customer, "status": "all"}
    ).auto_paging_iter():
        assert sub.status in STATUSES
        for item in sub["items"].data:
            assert item.current_period_start < item.current_period_end
            if sub.status in ("active", "trialing", "past_due", "unpaid"):
                assert item.current_period_start <= now < item.current_period_end
        latest = client.v1.invoices.retrieve(str(sub.latest_invoice))
        if sub.status == "past_due":
            assert latest.status in ("open", "draft")
        if sub.status == "active":
            assert latest.status in ("paid", "draft")
        if sub.status == "canceled":
            assert sub.ended_at is not None
        if sub.cancel_at_period_end:
            assert sub.cancel_at == sub["items"].data[0].current_period_end
    for invoice in client.v1.invoices.list(params={"customer": customer}).auto_paging_iter():
        assert invoice.total == invoice.subtotal - sum(
            d.amount for d in invoice.total_discount_amounts or []
        )
        assert invoice.subtotal == sum(line.amount for line in invoice.lines.data)
        if invoice.status == "paid":
            assert invoice.amount_remaining == 0
            assert invoice.amount_paid == invoice.amount_due
            paid = client.v1.invoice_payments.list(
                params={"invoice": invoice.id, "status": "paid"}
            ).data
            assert sum(p.amount_paid or 0 for p in paid) in (0, invoice.amount_paid)
        if invoice.status == "open":
            assert invoice.amount_remaining == invoice.amount_due - invoice.amount_paid


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_operation_sequences_keep_invariants(
    stripe_client: stripe.StripeClient, seed: int
) -> None:
    client = stripe_client
    rng = random.Random(seed)
    catalog, who, sub = subscribed(client)
    prices = [catalog.monthly, catalog.monthly_plus, catalog.yearly]
    for _ in range(40):
        sub = client.v1.subscriptions.retrieve(sub.id)
        live = sub.status not in ("canceled", "incomplete_expired")
        choice = (
            "new"
            if not live
            else rng.choice(
                ["advance"] * 4
                + ["change"] * 3
                + ["cancel_toggle", "card", "card", "quantity"]
                + ["cancel"] * (1 if rng.random() < 0.3 else 0)
            )
        )
        if choice == "advance":
            now = clock_time(client, who.clock)
            step = rng.choice([HOUR, DAY, 3 * DAY, 10 * DAY, 32 * DAY])
            client.v1.test_helpers.test_clocks.advance(
                who.clock, params={"frozen_time": now + step}
            )
        elif choice == "change" and live and sub.status != "incomplete":
            client.v1.subscriptions.update(
                sub.id,
                params={
                    "items": [{"id": sub["items"].data[0].id, "price": rng.choice(prices)}],
                    "proration_behavior": rng.choice(
                        ["create_prorations", "always_invoice", "none"]
                    ),
                },
            )
        elif choice == "quantity" and live and sub.status != "incomplete":
            client.v1.subscriptions.update(
                sub.id,
                params={"items": [{"id": sub["items"].data[0].id, "quantity": rng.randint(1, 4)}]},
            )
        elif choice == "cancel_toggle" and live and sub.status != "incomplete":
            client.v1.subscriptions.update(
                sub.id, params={"cancel_at_period_end": not sub.cancel_at_period_end}
            )
        elif choice == "card":
            attach_card(client, who.customer, rng.choice(CARDS))
        elif choice == "cancel" and live:
            client.v1.subscriptions.cancel(sub.id, params={"prorate": rng.random() < 0.5})
        elif choice == "new" and not live:
            sub = client.v1.subscriptions.create(
                params={"customer": who.customer, "items": [{"price": rng.choice(prices)}]}
            )
        _check(client, who.customer, clock_time(client, who.clock))
