"""Invoice lines on draft invoices through the official SDK: add_lines, update_lines,
remove_lines, one line's update, and the lines list."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.billing_support import (
    DAY,
    HOUR,
    JAN_1_2026,
    advance,
    customer_on_clock,
    make_catalog,
    subscribed,
)
from tests.sandbox.shapes import assert_stripe_shape


def _one_time(client: stripe.StripeClient, product: str, amount: int = 1500) -> str:
    price = client.v1.prices.create(
        params={"product": product, "currency": "usd", "unit_amount": amount}
    )
    return str(price.id)


def test_add_update_remove_lines_and_totals(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    setup_fee = _one_time(client, catalog.product)
    pending = client.v1.invoice_items.create(
        params={"customer": who.customer, "amount": 300, "currency": "usd"}
    )
    invoice = client.v1.invoices.create(params={"customer": who.customer})

    invoice = client.v1.invoices.add_lines(
        invoice.id,
        params={
            "lines": [
                {"amount": 1000, "description": "Consulting"},
                {"pricing": {"price": setup_fee}, "quantity": 2, "metadata": {"k": "v"}},
                {"invoice_item": pending.id},
            ],
            "invoice_metadata": {"order": "7"},
        },
    )

    assert invoice.metadata.to_dict() == {"order": "7"}
    lines = invoice.lines.data
    assert [line.amount for line in lines] == [1000, 3000, 300]
    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (4300, 4300, 4300)
    assert_stripe_shape(lines[0], "line_item")
    assert lines[1].metadata.to_dict() == {"k": "v"}
    assert client.v1.invoice_items.retrieve(pending.id).invoice == invoice.id
    listed = client.v1.invoices.line_items.list(invoice.id)
    assert [line.id for line in listed.data] == [line.id for line in lines]

    invoice = client.v1.invoices.update_lines(
        invoice.id,
        params={
            "lines": [
                {"id": lines[0].id, "amount": 1200, "description": "More consulting"},
                {"id": lines[1].id, "quantity": 3},
            ]
        },
    )
    assert [line.amount for line in invoice.lines.data] == [1200, 4500, 300]
    assert invoice.total == 6000
    item = client.v1.invoice_items.retrieve(lines[1].parent.invoice_item_details.invoice_item)
    assert (item.quantity, item.amount) == (3, 4500)

    line = client.v1.invoices.line_items.update(
        invoice.id, lines[0].id, params={"metadata": {"note": "x"}}
    )
    assert (line.id, line.metadata.to_dict()) == (lines[0].id, {"note": "x"})

    invoice = client.v1.invoices.remove_lines(
        invoice.id,
        params={
            "lines": [
                {"id": lines[0].id, "behavior": "delete"},
                {"id": lines[2].id, "behavior": "unassign"},
            ]
        },
    )
    assert [line.id for line in invoice.lines.data] == [lines[1].id]
    assert invoice.total == 4500
    assert client.v1.invoice_items.retrieve(pending.id).invoice is None
    deleted = lines[0].parent.invoice_item_details.invoice_item
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.retrieve(deleted)

    invoice = client.v1.invoices.finalize_invoice(invoice.id)
    assert invoice.amount_due == 4500
    with pytest.raises(stripe.InvalidRequestError) as finalized:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 100}]})
    assert finalized.value.code == "invoice_not_editable"


def test_line_refusals_change_nothing(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    invoice = client.v1.invoices.create(params={"customer": who.customer})

    def refused(method: str, lines: list[dict[str, object]]) -> stripe.InvalidRequestError:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            getattr(client.v1.invoices, method)(invoice.id, params={"lines": lines})
        return caught.value

    # The first line is fine; the second is not: nothing is added.
    assert (
        refused("add_lines", [{"amount": 100}, {"pricing": {"price": catalog.monthly}}]).param
        == "lines[1][pricing][price]"
    )
    assert refused("add_lines", [{"amount": 100, "pricing": {"price": "x"}}]).param == (
        "lines[0][amount]"
    )
    assert refused("add_lines", [{"description": "nothing"}]).param == "lines[0][amount]"
    missing = refused("add_lines", [{"pricing": {"price": "price_nope"}}])
    assert (missing.http_status, missing.param) == (404, "lines[0][pricing][price]")
    assert refused("update_lines", [{"id": "il_nope", "amount": 5}]).param == "lines[0][id]"
    assert refused("remove_lines", [{"id": "il_nope", "behavior": "delete"}]).http_status == 404
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert (invoice.lines.data, invoice.total) == ([], 0)
    assert client.v1.invoice_items.list(params={"customer": who.customer}).data == []


def test_a_subscription_line_keeps_its_amount(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    # The renewal invoice is a draft for an hour after the period ends.
    advance(client, who.clock, JAN_1_2026 + 31 * DAY + 60)
    draft = client.v1.invoices.retrieve(
        str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    )
    assert draft.status == "draft"
    line = draft.lines.data[0]

    with pytest.raises(stripe.InvalidRequestError) as amount:
        client.v1.invoices.update_lines(draft.id, params={"lines": [{"id": line.id, "amount": 1}]})
    assert amount.value.param == "lines[0][amount]"
    with pytest.raises(stripe.InvalidRequestError) as removed:
        client.v1.invoices.remove_lines(
            draft.id, params={"lines": [{"id": line.id, "behavior": "delete"}]}
        )
    assert removed.value.param == "lines[0][id]"
    updated = client.v1.invoices.update_lines(
        draft.id, params={"lines": [{"id": line.id, "description": "Premium, February"}]}
    )
    assert (updated.lines.data[0].description, updated.total) == ("Premium, February", 2000)
    updated = client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 250}]})
    assert updated.total == 2250
    advance(client, who.clock, JAN_1_2026 + 31 * DAY + 2 * HOUR)
    paid = client.v1.invoices.retrieve(draft.id)
    assert (paid.status, paid.amount_paid) == ("paid", 2250)


def test_price_data_lines_with_product_data(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    invoice = client.v1.invoices.create(params={"customer": who.customer})

    invoice = client.v1.invoices.add_lines(
        invoice.id,
        params={
            "lines": [
                {
                    "price_data": {
                        "currency": "usd",
                        "product_data": {"name": "Onboarding"},
                        "unit_amount": 2500,
                    },
                    "quantity": 2,
                },
                {"price_data": {"currency": "usd", "product": catalog.product, "unit_amount": 99}},
            ]
        },
    )

    first, second = invoice.lines.data
    assert (first.amount, second.amount, invoice.total) == (5000, 99, 5099)
    price = client.v1.prices.retrieve(first.pricing.price_details.price)
    assert (price.active, price.unit_amount) == (False, 2500)
    assert client.v1.products.retrieve(str(price.product)).name == "Onboarding"
    invoice = client.v1.invoices.update_lines(
        invoice.id,
        params={
            "lines": [
                {
                    "id": second.id,
                    "price_data": {
                        "currency": "usd",
                        "product": catalog.product,
                        "unit_amount": 150,
                    },
                    "quantity": 3,
                }
            ]
        },
    )
    assert (invoice.lines.data[1].amount, invoice.total) == (450, 5450)
    with pytest.raises(stripe.InvalidRequestError) as neither:
        client.v1.invoices.add_lines(
            invoice.id, params={"lines": [{"price_data": {"currency": "usd", "unit_amount": 1}}]}
        )
    assert neither.value.param == "lines[0][price_data][product]"
