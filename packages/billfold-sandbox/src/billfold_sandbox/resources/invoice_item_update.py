"""`POST /v1/invoiceitems/{id}`: update a pending invoice item, or one on a draft invoice (its
line follows, the invoice's totals too), with `invoiceitem.updated`.

Accepted: `amount` (an item without a price), `pricing[price]` (a one-time price), `quantity`,
`description`, `discountable`, `metadata`, `period`. Not emulated (refused as unknown parameters):
tax rates and codes, `discounts`, `price_data`, `unit_amount_decimal`.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing import invoicing
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import apply_metadata, boolean, integer, metadata, obj, string
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

UPDATE = {
    "amount": integer(),
    "description": string(max_length=500),
    "discountable": boolean(),
    "metadata": metadata(),
    "period": obj({"start": integer(required=True), "end": integer(required=True)}),
    "pricing": obj({"price": string(required=True)}),
    "quantity": integer(min=0),
}


@router.post("/v1/invoiceitems/{id}", UPDATE)
def update_invoice_item(call: Call) -> StripeObject:
    state = call.state
    p = call.params
    item = call.require("invoiceitem", call.path["id"])
    invoice = state.get("invoice", item["invoice"]) if item.get("invoice") else None
    if invoice is not None and invoice["status"] != "draft":
        raise invalid_request(
            "This invoice item is on a finalized invoice and cannot be updated.",
            code="invoice_not_editable",
        )
    old_line: StripeObject = item["_line"]
    price_id = ((old_line.get("pricing") or {}).get("price_details") or {}).get("price")
    price = state.get("price", price_id) if price_id else None
    if "pricing" in p:
        price = call.require("price", p["pricing"]["price"], param="pricing[price]")
        if price.get("recurring"):
            raise invalid_request(
                "The price specified is a recurring price; invoice items take one-time prices.",
                param="pricing[price]",
            )
        if price["currency"] != item["currency"]:
            raise invalid_request(
                f"The price is in {price['currency']}, the invoice item in {item['currency']}.",
                param="pricing[price]",
            )
    if "amount" in p and price is not None:
        raise invalid_request(
            "You cannot update the amount of an invoice item with a price: update "
            "`quantity` or `pricing[price]` instead.",
            param="amount",
        )
    period = p.get("period") or old_line["period"]
    if int(period["end"]) < int(period["start"]):
        raise invalid_request("The period's end must not be before its start.", param="period")
    quantity = int(p["quantity"] if "quantity" in p else old_line["quantity"])
    amount = (
        None if price is not None else int(p["amount"] if "amount" in p else old_line["amount"])
    )
    line = invoicing.price_line(
        state,
        price,
        quantity,
        period=(int(period["start"]), int(period["end"])),
        amount=amount,
        currency=str(item["currency"]),
        description=p.get("description", item["description"] if "pricing" not in p else None),
        subscription=old_line.get("subscription"),
        metadata=apply_metadata(old_line.get("metadata") or {}, p.get("metadata", {})),
        proration=bool(item.get("proration")),
    )
    line["id"] = old_line["id"]
    line["discountable"] = bool(p.get("discountable", old_line.get("discountable", True)))
    details = line["parent"].get("invoice_item_details")
    if details is not None:
        details["invoice_item"] = item["id"]
    changes: dict[str, Any] = {
        "amount": line["amount"],
        "description": line["description"],
        "discountable": line["discountable"],
        "metadata": apply_metadata(item["metadata"], p.get("metadata", {})),
        "net_amount": line["amount"],
        "period": dict(line["period"]),
        "pricing": line["pricing"],
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "_line": line,
    }
    previous = state.update(item, changes)
    previous.pop("_line", None)
    if invoice is not None:
        # The line changes in place (same id, same position); the totals follow.
        placed = dict(line, invoice=invoice["id"])
        lines = [placed if x["id"] == old_line["id"] else x for x in invoice["lines"]["data"]]
        before = {"total": invoice["total"], "amount_due": invoice["amount_due"]}
        invoice["lines"] = dict(invoice["lines"], data=lines)
        invoicing._compute_totals(state, invoice)
        state.touch()
        call.emit("invoice.updated", invoice, before)
    if previous:
        call.emit("invoiceitem.updated", item, previous)
    return item
