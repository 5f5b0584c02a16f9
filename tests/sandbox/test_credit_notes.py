"""Credit notes through the official SDK: preview, create on an open invoice (lower amount due)
and on a paid one (refund, customer balance credit, out of band), lines, update, void, list,
and `credit_note.created` / `.voided`."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.billing_support import (
    customer_on_clock,
    event_types,
    last_event_id,
    subscribed,
)
from tests.sandbox.shapes import assert_stripe_shape


def _open_invoice(client: stripe.StripeClient, customer: str) -> stripe.Invoice:
    invoice = client.v1.invoices.create(
        params={"customer": customer, "collection_method": "send_invoice", "days_until_due": 30}
    )
    client.v1.invoices.add_lines(
        invoice.id,
        params={
            "lines": [
                {"amount": 3000, "description": "Setup"},
                {"amount": 1000, "description": "Support"},
            ]
        },
    )
    return client.v1.invoices.finalize_invoice(invoice.id)


def test_open_invoice_credit_lowers_the_amount_due(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    who = customer_on_clock(client)
    invoice = _open_invoice(client, who.customer)
    setup, support = invoice.lines.data
    params = {
        "invoice": invoice.id,
        "lines": [
            {"type": "invoice_line_item", "invoice_line_item": setup.id, "amount": 500},
            {
                "type": "custom_line_item",
                "description": "Goodwill",
                "unit_amount": 200,
                "quantity": 2,
            },
        ],
        "memo": "Sorry",
    }

    preview = client.v1.credit_notes.preview(params=params)  # type: ignore[arg-type]
    assert (preview.total, preview.type) == (900, "pre_payment")
    preview_lines = client.v1.credit_notes.preview_lines.list(params=params)  # type: ignore[arg-type]
    assert [line.amount for line in preview_lines.data] == [500, 400]
    assert client.v1.credit_notes.list().data == []
    mark = last_event_id(client)

    note = client.v1.credit_notes.create(params=params)  # type: ignore[arg-type]

    assert_stripe_shape(note, "credit_note")
    assert_stripe_shape(note.lines.data[0], "credit_note_line_item")
    assert (note.status, note.type, note.total, note.pre_payment_amount) == (
        "issued",
        "pre_payment",
        900,
        900,
    )
    assert note.number == f"{invoice.number}-CN-01"
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert (invoice.amount_due, invoice.amount_remaining, invoice.status) == (3100, 3100, "open")
    assert invoice.pre_payment_credit_notes_amount == 900
    lines = client.v1.credit_notes.line_items.list(note.id)
    assert [line.type for line in lines.data] == ["invoice_line_item", "custom_line_item"]
    assert "credit_note.created" in event_types(client, since=mark)

    # Not more than is left on a line.
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.credit_notes.create(
            params={
                "invoice": invoice.id,
                "lines": [
                    {"type": "invoice_line_item", "invoice_line_item": setup.id, "amount": 2600}
                ],
            }
        )
    assert too_much.value.param == "lines[0][amount]"

    note = client.v1.credit_notes.update(
        note.id, params={"memo": "Really sorry", "metadata": {"a": "1"}}
    )
    assert (note.memo, note.metadata.to_dict()) == ("Really sorry", {"a": "1"})
    voided = client.v1.credit_notes.void_credit_note(note.id)
    assert voided.status == "void"
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 4000
    assert "credit_note.voided" in event_types(client, since=mark)

    # Crediting everything left marks the invoice paid.
    client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [
                {"type": "invoice_line_item", "invoice_line_item": support.id, "quantity": 1}
            ],
            "amount": 1000,
        }
    )
    client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 3000})
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"
    listed = client.v1.credit_notes.list(params={"invoice": invoice.id})
    assert len(listed.data) == 3


def test_paid_invoice_credit_refunds_and_credits_the_balance(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    _catalog, who, sub = subscribed(client)
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.status == "paid"

    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "amount": 1500,
            "refund_amount": 1000,
            "credit_amount": 400,
            "out_of_band_amount": 100,
            "reason": "product_unsatisfactory",
        }
    )

    assert (note.type, note.post_payment_amount, note.out_of_band_amount) == (
        "post_payment",
        1500,
        100,
    )
    assert len(note.refunds) == 1 and note.refunds[0].amount_refunded == 1000
    refund = client.v1.refunds.retrieve(str(note.refunds[0].refund))
    assert (refund.amount, refund.status) == (1000, "succeeded")
    txn = client.v1.customers.balance_transactions.retrieve(
        who.customer, str(note.customer_balance_transaction)
    )
    assert (txn.amount, txn.type, txn.credit_note) == (-400, "credit_note", note.id)
    assert client.v1.customers.retrieve(who.customer).balance == -400
    assert client.v1.invoices.retrieve(invoice.id).post_payment_credit_notes_amount == 1500
    with pytest.raises(stripe.InvalidRequestError) as refunded:
        client.v1.credit_notes.void_credit_note(note.id)
    assert refunded.value.param == "id"

    # With no split given, the customer balance is credited; voiding takes it back.
    credit = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 500})
    assert client.v1.customers.retrieve(who.customer).balance == -900
    client.v1.credit_notes.void_credit_note(credit.id)
    assert client.v1.customers.retrieve(who.customer).balance == -400

    with pytest.raises(stripe.InvalidRequestError) as over:
        client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 600})
    assert over.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as split:
        client.v1.credit_notes.create(
            params={"invoice": invoice.id, "amount": 300, "refund_amount": 100}
        )
    assert split.value.param == "credit_amount"


def test_credit_note_refusals(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    who = customer_on_clock(client)
    draft = client.v1.invoices.create(params={"customer": who.customer})
    invoice = _open_invoice(client, who.customer)

    def refused(params: dict[str, object]) -> stripe.InvalidRequestError:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.credit_notes.create(params=params)  # type: ignore[arg-type]
        return caught.value

    assert refused({"invoice": draft.id, "amount": 100}).param == "invoice"
    assert refused({"invoice": "in_nope", "amount": 100}).http_status == 404
    assert refused({"invoice": invoice.id}).param == "amount"
    assert refused({"invoice": invoice.id, "amount": 100, "refund_amount": 100}).param == (
        "refund_amount"
    )
    assert (
        refused(
            {
                "invoice": invoice.id,
                "lines": [{"type": "invoice_line_item", "invoice_line_item": "il_x"}],
            }
        ).param
        == "lines[0][invoice_line_item]"
    )
    assert (
        refused(
            {"invoice": invoice.id, "lines": [{"type": "custom_line_item", "unit_amount": 100}]}
        ).param
        == "lines[0][description]"
    )
    assert refused({"invoice": invoice.id, "amount": 5000}).param == "amount"
    assert client.v1.credit_notes.list().data == []
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 4000


def test_a_credit_note_lowers_what_the_next_attempt_charges(
    stripe_client: stripe.StripeClient,
) -> None:
    client = stripe_client
    who = customer_on_clock(client, card="pm_card_chargeCustomerFail")
    invoice = client.v1.invoices.create(params={"customer": who.customer})
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 3000}]})
    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.CardError) as declined:
        client.v1.invoices.pay(invoice.id)
    intent_id = str(declined.value.error.payment_intent.id)  # type: ignore[union-attr]

    client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 1000})

    assert client.v1.payment_intents.retrieve(intent_id).amount == 2000
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": who.customer})
    paid = client.v1.invoices.pay(invoice.id, params={"payment_method": good.id})
    assert (paid.status, paid.amount_paid) == ("paid", 2000)
    intent = client.v1.payment_intents.retrieve(intent_id)
    assert (intent.status, intent.amount_received) == ("succeeded", 2000)
