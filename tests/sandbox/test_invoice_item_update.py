"""Updating an invoice item (pending, or on a draft invoice), with the real SDK."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.billing_support import event_types


def test_update_pending_and_draft_items(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "jenny@example.com"})
    pending = stripe_client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 1000, "currency": "usd", "description": "Setup"}
    )
    updated = stripe_client.v1.invoice_items.update(
        pending.id,
        params={"amount": 1500, "description": "Setup (revised)", "metadata": {"k": "v"}},
    )
    assert (updated.amount, updated.description, updated.metadata["k"]) == (
        1500,
        "Setup (revised)",
        "v",
    )
    assert "invoiceitem.updated" in event_types(stripe_client, prefixes=("invoiceitem.",))

    product = stripe_client.v1.products.create(params={"name": "Seats"})
    one_time = stripe_client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 700}
    )
    priced = stripe_client.v1.invoice_items.create(
        params={"customer": customer.id, "pricing": {"price": one_time.id}}
    )
    draft = stripe_client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    assert draft.total == 2200
    line_ids = [line.id for line in draft.lines.data]
    stripe_client.v1.invoice_items.update(priced.id, params={"quantity": 3})
    after = stripe_client.v1.invoices.retrieve(draft.id)
    assert after.total == 1500 + 2100
    assert [line.id for line in after.lines.data] == line_ids
    with pytest.raises(stripe.InvalidRequestError) as amount:
        stripe_client.v1.invoice_items.update(priced.id, params={"amount": 5})
    assert amount.value.param == "amount"

    final = stripe_client.v1.invoices.finalize_invoice(draft.id, params={"auto_advance": False})
    assert final.total == 3600
    with pytest.raises(stripe.InvalidRequestError) as finalized:
        stripe_client.v1.invoice_items.update(priced.id, params={"quantity": 1})
    assert finalized.value.code == "invoice_not_editable"
    assert stripe_client.v1.invoice_items.retrieve(priced.id).quantity == 3
