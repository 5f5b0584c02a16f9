"""Credit notes (`cn_...`): money taken off a finalized invoice, the way Stripe Billing does.

On an `open` invoice a credit note is `pre_payment`: it lowers what is due
(`amount_due`, `amount_remaining`, `pre_payment_credit_notes_amount`); crediting all that is
left marks the invoice paid. On a `paid` invoice it is `post_payment`, and its amount goes
back as a refund of the invoice's payment (`refund_amount`), a credit to the customer balance
(`credit_amount`, a `credit_note` balance transaction), or money returned elsewhere
(`out_of_band_amount`); they add up to the credit note's total (with none given, the
customer balance is credited). Lines credit an invoice line (`invoice_line_item`, by amount or
quantity, never more than is left on it) or are custom (`unit_amount` x `quantity`). Voiding
undoes the invoice or balance change; a credit note whose money was refunded cannot be voided.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing import customer_balance, invoicing, payments_port
from billfold_sandbox.errors import invalid_request, missing_parameter
from billfold_sandbox.state import SandboxState, StripeObject

CREDIT_NOTE = "credit_note"
_REFUND_REASONS = {"duplicate": "duplicate", "fraudulent": "fraudulent"}


def notes_of(state: SandboxState, invoice_id: str) -> list[StripeObject]:
    return [cn for cn in state.all(CREDIT_NOTE, newest_first=False) if cn["invoice"] == invoice_id]


def _credited(state: SandboxState, invoice_id: str, line_id: str) -> int:
    """How much of an invoice line issued credit notes already credit."""
    return sum(
        int(line["amount"])
        for cn in notes_of(state, invoice_id)
        if cn["status"] == "issued"
        for line in cn["lines"]["data"]
        if line.get("invoice_line_item") == line_id
    )


def _line(
    state: SandboxState, invoice: StripeObject, entry: dict[str, Any], index: int
) -> StripeObject:
    where = f"lines[{index}]"
    base: StripeObject = {
        "id": state.new_id("cnli"),
        "object": "credit_note_line_item",
        "discount_amount": 0,
        "discount_amounts": [],
        "invoice_line_item": None,
        "livemode": False,
        "metadata": {k: v for k, v in (entry.get("metadata") or {}).items() if v is not None},
        "pretax_credit_amounts": [],
        "tax_rates": [],
        "taxes": [],
    }
    if entry["type"] == "custom_line_item":
        if "unit_amount" not in entry:
            raise missing_parameter(f"{where}[unit_amount]")
        if not entry.get("description"):
            raise missing_parameter(f"{where}[description]")
        quantity = int(entry.get("quantity", 1))
        return {
            **base,
            "amount": int(entry["unit_amount"]) * quantity,
            "description": entry["description"],
            "quantity": quantity,
            "type": "custom_line_item",
            "unit_amount": int(entry["unit_amount"]),
            "unit_amount_decimal": str(entry["unit_amount"]),
        }
    line_id = entry.get("invoice_line_item")
    if not line_id:
        raise missing_parameter(f"{where}[invoice_line_item]")
    line = next((li for li in invoice["lines"]["data"] if li["id"] == line_id), None)
    if line is None:
        raise invalid_request(
            f"No such invoice line item: '{line_id}' on invoice {invoice['id']}.",
            param=f"{where}[invoice_line_item]",
            code="resource_missing",
            status=404,
        )
    quantity = int(entry.get("quantity", line.get("quantity") or 1))
    if "amount" in entry and "quantity" in entry:
        raise invalid_request(
            "You may only specify one of these parameters: amount, quantity.",
            param=f"{where}[amount]",
        )
    if "amount" in entry:
        amount = int(entry["amount"])
    elif "quantity" in entry:
        per_unit = int(line["amount"]) // max(int(line.get("quantity") or 1), 1)
        if quantity > int(line.get("quantity") or 1):
            raise invalid_request(
                f"The quantity can be at most the line's quantity ({line['quantity']}).",
                param=f"{where}[quantity]",
            )
        amount = per_unit * quantity
    else:
        amount = int(line["amount"])
    left = int(line["amount"]) - _credited(state, invoice["id"], line_id)
    if amount > left:
        raise invalid_request(
            f"The credit note line amount ({amount}) is more than is left to credit on the "
            f"invoice line ({left}).",
            param=f"{where}[amount]",
        )
    return {
        **base,
        "amount": amount,
        "description": entry.get("description") or line.get("description"),
        "invoice_line_item": line_id,
        "quantity": quantity,
        "type": "invoice_line_item",
        "unit_amount": None,
        "unit_amount_decimal": None,
    }


def build(state: SandboxState, invoice: StripeObject, p: dict[str, Any]) -> StripeObject:
    """The credit note `p` describes for `invoice`, checked, not stored (nothing changes)."""
    if invoice["status"] not in ("open", "paid"):
        raise invalid_request(
            f"You can only create credit notes on open or paid invoices; this one is "
            f"{invoice['status']}.",
            param="invoice",
        )
    lines = [_line(state, invoice, entry, i) for i, entry in enumerate(p.get("lines") or [])]
    if any(line["amount"] <= 0 for line in lines):
        raise invalid_request("A credit note line must credit a positive amount.", param="lines")
    if lines:
        total = sum(int(line["amount"]) for line in lines)
        if "amount" in p and int(p["amount"]) != total:
            raise invalid_request(
                f"The amount ({p['amount']}) must equal the sum of the lines ({total}).",
                param="amount",
            )
    elif "amount" in p:
        total = int(p["amount"])
    else:
        raise invalid_request(
            "Missing required param: amount or lines.", param="amount", code="parameter_missing"
        )
    if total <= 0:
        raise invalid_request("A credit note must credit a positive amount.", param="amount")
    pre = invoice["status"] == "open"
    limit = (
        int(invoice["amount_remaining"])
        if pre
        else int(invoice["total"])
        - int(invoice["pre_payment_credit_notes_amount"])
        - int(invoice["post_payment_credit_notes_amount"])
    )
    if total > limit:
        raise invalid_request(
            f"The credit note amount ({total}) is more than can be credited on this invoice "
            f"({limit}).",
            param="amount",
        )
    refund, credit, out_of_band, linked = _distribution(state, invoice, p, total, pre=pre)
    now = state.now_for(invoice)
    sequence = len(notes_of(state, invoice["id"])) + 1
    note: StripeObject = {
        "id": state.new_id("cn"),
        "object": CREDIT_NOTE,
        "amount": total,
        "amount_shipping": 0,
        "created": now,
        "currency": invoice["currency"],
        "customer": invoice["customer"],
        "customer_account": None,
        "customer_balance_transaction": None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": p.get("effective_at") or now,
        "invoice": invoice["id"],
        "lines": {"object": "list", "data": lines, "has_more": False, "url": None},
        "livemode": False,
        "memo": p.get("memo"),
        "metadata": {k: v for k, v in (p.get("metadata") or {}).items() if v is not None},
        "number": f"{invoice['number']}-CN-{sequence:02d}",
        "out_of_band_amount": out_of_band or None,
        "pdf": None,
        "post_payment_amount": 0 if pre else total,
        "pre_payment_amount": total if pre else 0,
        "pretax_credit_amounts": [],
        "reason": p.get("reason"),
        "refunds": linked,
        "shipping_cost": None,
        "status": "issued",
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_excluding_tax": total,
        "total_taxes": [],
        "type": "pre_payment" if pre else "post_payment",
        "voided_at": None,
        "_refund_amount": refund,
        "_credit_amount": credit,
    }
    note["lines"]["url"] = f"/v1/credit_notes/{note['id']}/lines"
    return note


def _distribution(
    state: SandboxState, invoice: StripeObject, p: dict[str, Any], total: int, *, pre: bool
) -> tuple[int, int, int, list[StripeObject]]:
    """(refund now, customer balance credit, out of band, existing refunds linked)."""
    names = ("refund_amount", "credit_amount", "out_of_band_amount", "refunds")
    if pre:
        for name in names:
            if name in p:
                raise invalid_request(
                    f"{name} applies to a paid invoice; a credit note on an open invoice "
                    "lowers the amount due.",
                    param=name,
                )
        return 0, 0, 0, []
    linked: list[StripeObject] = []
    for index, entry in enumerate(p.get("refunds") or []):
        if not entry.get("refund"):
            raise missing_parameter(f"refunds[{index}][refund]")
        found = state.require("refund", entry["refund"], param=f"refunds[{index}][refund]")
        amount = int(entry.get("amount_refunded", found["amount"]))
        linked.append(
            {
                "amount_refunded": amount,
                "payment_record_refund": None,
                "refund": found["id"],
                "type": "refund",
            }
        )
    refund = int(p.get("refund_amount", 0))
    out_of_band = int(p.get("out_of_band_amount", 0))
    given = any(name in p for name in names)
    credit = int(p.get("credit_amount", 0)) if given else total
    if refund + credit + out_of_band + sum(int(r["amount_refunded"]) for r in linked) != total:
        raise invalid_request(
            "The sum of refund_amount, refunds, credit_amount and out_of_band_amount must "
            f"equal the credit note amount ({total}).",
            param="credit_amount",
        )
    if refund:
        intent = invoicing.paid_with(state, invoice)
        left = payments_port.refundable(state, intent)
        if refund > left:
            raise invalid_request(
                f"The refund_amount ({refund}) is more than is left to refund of the invoice's "
                f"payment ({left}).",
                param="refund_amount",
            )
    return refund, credit, out_of_band, linked


def issue(state: SandboxState, invoice: StripeObject, note: StripeObject) -> StripeObject:
    """Store a built credit note and move the money it says (`credit_note.created`)."""
    state.insert(note)
    total = int(note["total"])
    if note["type"] == "pre_payment":
        remaining = int(invoice["amount_remaining"]) - total
        previous = state.update(
            invoice,
            {
                "amount_due": int(invoice["amount_due"]) - total,
                "amount_remaining": remaining,
                "pre_payment_credit_notes_amount": int(invoice["pre_payment_credit_notes_amount"])
                + total,
            },
        )
        state.emit("invoice.updated", invoice, previous)
        payments_port.set_amount(state, invoicing.open_payment_intent(state, invoice), remaining)
        if remaining == 0:
            payments_port.cancel(state, invoicing.open_payment_intent(state, invoice))
            invoicing.mark_paid(state, invoice, payment_intent=None)
    else:
        if note["_refund_amount"]:
            intent = str(invoicing.paid_with(state, invoice))
            refund_id = payments_port.refund(
                state,
                intent,
                int(note["_refund_amount"]),
                reason=_REFUND_REASONS.get(str(note.get("reason"))),
            )
            note["refunds"] = [
                *note["refunds"],
                {
                    "amount_refunded": int(note["_refund_amount"]),
                    "payment_record_refund": None,
                    "refund": refund_id,
                    "type": "refund",
                },
            ]
        if note["_credit_amount"]:
            note["customer_balance_transaction"] = _balance(
                state, note, -int(note["_credit_amount"])
            )
        state.touch()
        previous = state.update(
            invoice,
            {
                "post_payment_credit_notes_amount": int(invoice["post_payment_credit_notes_amount"])
                + total
            },
        )
        state.emit("invoice.updated", invoice, previous)
    state.emit("credit_note.created", note)
    return note


def _balance(state: SandboxState, note: StripeObject, amount: int) -> str:
    customer = state.require("customer", note["customer"])
    txn = customer_balance.record(
        state,
        customer,
        amount=amount,
        kind="credit_note",
        currency=str(note["currency"]),
        invoice=note["invoice"],
    )
    txn["credit_note"] = note["id"]
    state.touch()
    return str(txn["id"])


def void(state: SandboxState, note: StripeObject) -> StripeObject:
    """issued -> void (`credit_note.voided`): the invoice or the customer balance gets back
    what the credit note took."""
    if note["status"] != "issued":
        raise invalid_request("This credit note is already voided.", param="id")
    if note["refunds"]:
        raise invalid_request(
            "A credit note whose amount was refunded cannot be voided.", param="id"
        )
    invoice = state.require("invoice", note["invoice"])
    total = int(note["total"])
    if note["type"] == "pre_payment":
        if invoice["status"] != "open":
            raise invalid_request(
                f"The invoice is {invoice['status']}: this credit note can no longer be voided.",
                param="id",
            )
        previous = state.update(
            invoice,
            {
                "amount_due": int(invoice["amount_due"]) + total,
                "amount_remaining": int(invoice["amount_remaining"]) + total,
                "pre_payment_credit_notes_amount": int(invoice["pre_payment_credit_notes_amount"])
                - total,
            },
        )
        payments_port.set_amount(
            state, invoicing.open_payment_intent(state, invoice), int(invoice["amount_remaining"])
        )
    else:
        if note["_credit_amount"]:
            _balance(state, note, int(note["_credit_amount"]))
        previous = state.update(
            invoice,
            {
                "post_payment_credit_notes_amount": int(invoice["post_payment_credit_notes_amount"])
                - total
            },
        )
    state.emit("invoice.updated", invoice, previous)
    state.update(note, {"status": "void", "voided_at": state.now_for(note)})
    state.emit("credit_note.voided", note)
    return note
