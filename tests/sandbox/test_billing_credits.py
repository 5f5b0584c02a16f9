"""Billing credit grants, the credit balance summary and its transactions, with the real SDK;
credits applied to metered usage on invoices."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.sandbox.billing_support import (
    DAY,
    HOUR,
    JAN_1_2026,
    advance,
    customer_on_clock,
    event_types,
)
from tests.sandbox.shapes import assert_stripe_shape
from tests.sandbox.test_billing_meters import make_meter, metered_price, send


def grant(client: stripe.StripeClient, customer: str, value: int, **params: Any) -> Any:
    return client.v1.billing.credit_grants.create(
        params={
            "customer": customer,
            "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": value}},
            "applicability_config": {"scope": {"price_type": "metered"}},
            "category": "promotional",
            **params,
        }
    )


def summary(client: stripe.StripeClient, customer: str, **filter_: Any) -> int:
    found = client.v1.billing.credit_balance_summary.retrieve(
        params={
            "customer": customer,
            "filter": filter_
            or {"type": "applicability_scope", "applicability_scope": {"price_type": "metered"}},
        }
    )
    if not found.balances:
        return 0
    return int(found.balances[0].available_balance.monetary.value)


def test_grant_lifecycle(stripe_client: stripe.StripeClient) -> None:
    who = customer_on_clock(stripe_client, card=None)
    created = grant(stripe_client, who.customer, 1000, name="Welcome", metadata={"k": "v"})
    assert_stripe_shape(created, "billing.credit_grant")
    assert created.id.startswith("credgr_")
    assert created.test_clock == who.clock
    assert created.priority == 50
    assert stripe_client.v1.billing.credit_grants.retrieve(created.id).name == "Welcome"
    listed = stripe_client.v1.billing.credit_grants.list(params={"customer": who.customer})
    assert [g.id for g in listed.data] == [created.id]
    assert summary(stripe_client, who.customer) == 1000
    assert (
        summary(stripe_client, who.customer, type="credit_grant", credit_grant=created.id) == 1000
    )

    updated = stripe_client.v1.billing.credit_grants.update(
        created.id, params={"expires_at": JAN_1_2026 + 10 * DAY, "metadata": {"k": ""}}
    )
    assert updated.expires_at == JAN_1_2026 + 10 * DAY
    assert updated.metadata.to_dict() == {}

    txns = stripe_client.v1.billing.credit_balance_transactions.list(
        params={"customer": who.customer}
    )
    assert len(txns.data) == 1
    assert_stripe_shape(txns.data[0], "billing.credit_balance_transaction")
    assert txns.data[0].type == "credit"
    assert txns.data[0].credit.type == "credits_granted"
    again = stripe_client.v1.billing.credit_balance_transactions.retrieve(txns.data[0].id)
    assert again.credit_grant == created.id

    # Reaching expires_at on the customer's clock debits the remainder.
    advance(stripe_client, who.clock, JAN_1_2026 + 11 * DAY)
    assert summary(stripe_client, who.customer) == 0
    expired = stripe_client.v1.billing.credit_balance_transactions.list(
        params={"customer": who.customer, "credit_grant": created.id}
    ).data[0]
    assert (expired.type, expired.debit.type) == ("debit", "credits_expired")
    assert expired.debit.amount.monetary.value == 1000
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.billing.credit_grants.expire(created.id)

    voided = stripe_client.v1.billing.credit_grants.void_grant(
        grant(stripe_client, who.customer, 300).id
    )
    assert voided.voided_at is not None
    expired_now = stripe_client.v1.billing.credit_grants.expire(
        grant(stripe_client, who.customer, 200).id
    )
    assert expired_now.expires_at is not None
    assert summary(stripe_client, who.customer) == 0
    debits = [
        t.debit.type
        for t in stripe_client.v1.billing.credit_balance_transactions.list(
            params={"customer": who.customer}
        ).data
        if t.type == "debit"
    ]
    assert sorted(debits) == ["credits_expired", "credits_expired", "credits_voided"]
    assert event_types(stripe_client, prefixes=("billing.credit_grant.",))[:2] == [
        "billing.credit_grant.created",
        "billing.credit_grant.updated",
    ]


def test_grant_refusals(stripe_client: stripe.StripeClient) -> None:
    who = customer_on_clock(stripe_client, card=None)
    with pytest.raises(stripe.InvalidRequestError) as no_customer:
        stripe_client.v1.billing.credit_grants.create(
            params={
                "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 1}},
                "applicability_config": {"scope": {"price_type": "metered"}},
            }
        )
    assert no_customer.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as zero:
        grant(stripe_client, who.customer, 0)
    assert zero.value.param == "amount[monetary][value]"
    with pytest.raises(stripe.InvalidRequestError) as scope:
        grant(
            stripe_client,
            who.customer,
            5,
            applicability_config={
                "scope": {"price_type": "metered", "prices": [{"id": "price_x"}]}
            },
        )
    assert scope.value.param == "applicability_config[scope]"
    with pytest.raises(stripe.InvalidRequestError) as price:
        grant(
            stripe_client,
            who.customer,
            5,
            applicability_config={"scope": {"prices": [{"id": "price_nope"}]}},
        )
    assert price.value.param == "applicability_config[scope][prices][0][id]"
    with pytest.raises(stripe.InvalidRequestError) as past:
        grant(stripe_client, who.customer, 5, expires_at=JAN_1_2026 - 1)
    assert past.value.param == "expires_at"
    assert stripe_client.v1.billing.credit_grants.list().data == []


def test_credits_pay_metered_usage(stripe_client: stripe.StripeClient) -> None:
    """Usage of 120 units at 3 cents (360) with a 250 grant: the invoice charges 110; voiding
    an invoice would give the credits back."""
    who = customer_on_clock(stripe_client)
    meter = make_meter(stripe_client)
    price = metered_price(stripe_client, meter.id, unit_amount=3)
    sub = stripe_client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": price}]}
    )
    credit = grant(stripe_client, who.customer, 250)
    advance(stripe_client, who.clock, JAN_1_2026 + 3 * DAY)
    send(stripe_client, who.customer, 120, JAN_1_2026 + DAY)
    period_end = int(sub["items"].data[0].current_period_end)
    advance(stripe_client, who.clock, period_end + 2 * HOUR)

    invoice = stripe_client.v1.invoices.retrieve(
        str(stripe_client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert invoice.subtotal == 360
    assert invoice.total == 110
    assert invoice.amount_paid == 110
    applied = invoice.total_pretax_credit_amounts[0]
    assert (applied.type, applied.amount) == ("credit_balance_transaction", 250)
    line = invoice.lines.data[0]
    assert line.pretax_credit_amounts[0].amount == 250
    txn = stripe_client.v1.billing.credit_balance_transactions.retrieve(
        str(applied.credit_balance_transaction)
    )
    assert txn.debit.type == "credits_applied"
    assert txn.debit.credits_applied.invoice == invoice.id
    assert txn.debit.credits_applied.invoice_line_item == line.id
    assert summary(stripe_client, who.customer, type="credit_grant", credit_grant=credit.id) == 0


def test_voided_invoice_gives_credits_back(stripe_client: stripe.StripeClient) -> None:
    who = customer_on_clock(stripe_client, card=None)
    meter = make_meter(stripe_client)
    price = metered_price(stripe_client, meter.id, unit_amount=10)
    stripe_client.v1.billing.credit_grants.create(
        params={
            "customer": who.customer,
            "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 500}},
            "applicability_config": {"scope": {"prices": [{"id": price}]}},
        }
    )
    sub = stripe_client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": price}]}
    )
    advance(stripe_client, who.clock, JAN_1_2026 + 3 * DAY)
    send(stripe_client, who.customer, 80, JAN_1_2026 + DAY)  # 800
    period_end = int(sub["items"].data[0].current_period_end)
    advance(stripe_client, who.clock, period_end + 2 * HOUR)  # no card: the invoice stays open
    final = stripe_client.v1.invoices.retrieve(
        str(stripe_client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert final.status == "open"
    assert final.total == 300
    scoped = {"type": "applicability_scope", "applicability_scope": {"prices": [{"id": price}]}}
    assert summary(stripe_client, who.customer, **scoped) == 0
    stripe_client.v1.invoices.void_invoice(final.id)
    assert summary(stripe_client, who.customer, **scoped) == 500
    given = stripe_client.v1.billing.credit_balance_transactions.list(
        params={"customer": who.customer}
    ).data[0]
    assert given.credit.type == "credits_application_invoice_voided"
    assert given.credit.credits_application_invoice_voided.invoice == final.id
