"""Credit notes: preview (and its lines), create, retrieve, update, list, void, lines.

The rules are in `billfold_sandbox.billing.credit_notes`."""

from __future__ import annotations

from billfold_sandbox.billing import credit_notes
from billfold_sandbox.params import (
    Field,
    anything,
    apply_metadata,
    array,
    enum,
    in_range,
    integer,
    metadata,
    obj,
    range_filter,
    string,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

LINE = obj(
    {
        "type": enum("custom_line_item", "invoice_line_item", required=True),
        "invoice_line_item": string(),
        "amount": integer(min=0),
        "quantity": integer(min=1),
        "unit_amount": integer(min=0),
        "description": string(max_length=500),
        "metadata": metadata(),
        # Accepted as Stripe does; the sandbox does not model taxes.
        "tax_amounts": anything(),
        "tax_rates": anything(),
        "unit_amount_decimal": anything(),
    }
)
PARAMS: dict[str, Field] = {
    "invoice": string(required=True),
    "amount": integer(min=0),
    "lines": array(LINE, max_items=100),
    "credit_amount": integer(min=0),
    "refund_amount": integer(min=0),
    "out_of_band_amount": integer(min=0),
    "refunds": array(
        obj(
            {
                "refund": string(),
                "amount_refunded": integer(min=0),
                "type": enum("refund", "payment_record_refund"),
                "payment_record_refund": anything(),
            }
        ),
        max_items=20,
    ),
    "memo": string(max_length=5000),
    "metadata": metadata(),
    "reason": enum("duplicate", "fraudulent", "order_change", "product_unsatisfactory"),
    "effective_at": integer(),
    "email_type": enum("credit_note", "none"),
    "shipping_cost": anything(),
}


def _built(call: Call) -> StripeObject:
    invoice = call.require("invoice", call.params["invoice"], param="invoice")
    return credit_notes.build(call.state, invoice, call.params)


@router.get("/v1/credit_notes/preview", PARAMS)
def preview_credit_note(call: Call) -> StripeObject:
    """The credit note these parameters would make; nothing is stored."""
    return _built(call)


@router.get("/v1/credit_notes/preview/lines", PARAMS, list=True)
def preview_credit_note_lines(call: Call) -> StripeObject:
    lines = _built(call)["lines"]["data"]
    return call.list_response(lines)


@router.post("/v1/credit_notes", PARAMS)
def create_credit_note(call: Call) -> StripeObject:
    note = _built(call)
    return credit_notes.issue(call.state, call.require("invoice", note["invoice"]), note)


@router.get("/v1/credit_notes/{id}")
def retrieve_credit_note(call: Call) -> StripeObject:
    return call.require(credit_notes.CREDIT_NOTE, call.path["id"])


@router.post(
    "/v1/credit_notes/{id}",
    {"memo": string(max_length=5000, nullable=True), "metadata": metadata()},
)
def update_credit_note(call: Call) -> StripeObject:
    note = call.require(credit_notes.CREDIT_NOTE, call.path["id"])
    changes: dict[str, object] = {}
    if "memo" in call.params:
        changes["memo"] = call.params["memo"]
    if "metadata" in call.params:
        changes["metadata"] = apply_metadata(note["metadata"], call.params["metadata"])
    previous = call.state.update(note, changes)
    if previous:
        call.emit("credit_note.updated", note, previous)
    return note


@router.post("/v1/credit_notes/{id}/void")
def void_credit_note(call: Call) -> StripeObject:
    note = call.require(credit_notes.CREDIT_NOTE, call.path["id"])
    return credit_notes.void(call.state, note)


@router.get("/v1/credit_notes/{id}/lines", list=True)
def list_credit_note_lines(call: Call) -> StripeObject:
    note = call.require(credit_notes.CREDIT_NOTE, call.path["id"])
    return call.list_response(list(note["lines"]["data"]))


@router.get(
    "/v1/credit_notes",
    {
        "invoice": string(),
        "customer": string(),
        "customer_account": string(),
        "created": range_filter(),
    },
    list=True,
)
def list_credit_notes(call: Call) -> StripeObject:
    p = call.params
    found = [
        cn
        for cn in call.state.all(credit_notes.CREDIT_NOTE, newest_first=True)
        if ("invoice" not in p or cn["invoice"] == p["invoice"])
        and ("customer" not in p or cn["customer"] == p["customer"])
        and in_range(cn["created"], p.get("created"))
    ]
    return call.list_response(found)
