"""Invoice lines on draft invoices: add, update and remove (`/v1/invoices/{id}/add_lines`,
`update_lines`, `remove_lines`, and `POST /v1/invoices/{id}/lines/{line}`).

As on Stripe, a line added this way is an invoice item on the invoice: `add_lines` creates one
(the same way `POST /v1/invoiceitems` with `invoice` does) or takes a pending one
(`invoice_item`); `remove_lines` deletes it or sends it back to pending (`unassign`). Every
line of a call is checked before any is changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from billfold_sandbox.billing import invoicing
from billfold_sandbox.errors import StripeError, invalid_request, missing_parameter
from billfold_sandbox.params import (
    Field,
    anything,
    apply_metadata,
    array,
    boolean,
    enum,
    integer,
    metadata,
    obj,
    string,
)
from billfold_sandbox.resources.invoices import create_invoice_item
from billfold_sandbox.resources.prices import new_price
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

PRICE_DATA = obj(
    {
        "currency": string(required=True),
        "product": string(),
        "product_data": obj(
            {
                "name": string(required=True),
                "description": string(),
                "images": anything(),
                "metadata": metadata(),
                "tax_code": string(),
                "tax_details": anything(),
                "unit_label": string(),
            }
        ),
        "unit_amount": integer(min=0),
        "unit_amount_decimal": string(),
        "tax_behavior": enum("exclusive", "inclusive", "unspecified"),
    }
)
_LINE: dict[str, Field] = {
    "amount": integer(),
    "description": string(max_length=500),
    "discountable": boolean(),
    "metadata": metadata(),
    "period": obj({"start": integer(required=True), "end": integer(required=True)}),
    "price_data": PRICE_DATA,
    "pricing": obj({"price": string()}),
    "quantity": integer(min=0),
    # Accepted as Stripe does; the sandbox does not model them.
    "discounts": anything(),
    "tax_amounts": anything(),
    "tax_rates": anything(),
    "quantity_decimal": anything(),
}
ADD: dict[str, Field] = {
    "lines": array(obj({**_LINE, "invoice_item": string()}), required=True, max_items=50),
    "invoice_metadata": metadata(),
}
UPDATE: dict[str, Field] = {
    "lines": array(obj({**_LINE, "id": string(required=True)}), required=True, max_items=50),
    "invoice_metadata": metadata(),
}
REMOVE: dict[str, Field] = {
    "lines": array(
        obj({"id": string(required=True), "behavior": enum("delete", "unassign", required=True)}),
        required=True,
        max_items=50,
    ),
    "invoice_metadata": metadata(),
}
# What a subscription's own line lets you change (its amount comes from the subscription).
_SUBSCRIPTION_LINE = {"id", "description", "metadata", "discountable"}


def _draft(call: Call) -> StripeObject:
    invoice = call.require("invoice", call.path["id"])
    if invoice["status"] != "draft":
        raise invalid_request(
            f"You can only change the lines of a draft invoice; this invoice is "
            f"{invoice['status']}.",
            code="invoice_not_editable",
        )
    return invoice


def _item_of(call: Call, line: StripeObject) -> StripeObject | None:
    """The invoice item behind a line (None for a subscription's own line)."""
    details = (line.get("parent") or {}).get("invoice_item_details") or {}
    if not details.get("invoice_item"):
        details = (line.get("parent") or {}).get("subscription_item_details") or {}
    item_id = details.get("invoice_item")
    return call.state.get("invoiceitem", str(item_id)) if item_id else None


def _price(
    call: Call, invoice: StripeObject, entry: dict[str, Any], where: str
) -> StripeObject | None:
    """The one-time price a line names (`pricing[price]`), checked (as `price_data` is); None
    for `price_data` (created once every line passed) or no price."""
    if "price_data" in entry:
        data = entry["price_data"]
        _check_currency(invoice, data["currency"], f"{where}[price_data]")
        if "product" in data and "product_data" in data:
            raise invalid_request(
                "You may only specify one of these parameters: product, product_data.",
                param=f"{where}[price_data][product]",
            )
        if "product" in data:
            call.require("product", data["product"], param=f"{where}[price_data][product]")
        elif "product_data" not in data:
            raise missing_parameter(f"{where}[price_data][product]")
    if "pricing" in entry and "price_data" in entry:
        raise invalid_request(
            "You may only specify one of these parameters: price_data, pricing.",
            param=f"{where}[pricing]",
        )
    if "pricing" not in entry:
        return None
    if not entry["pricing"].get("price"):
        raise missing_parameter(f"{where}[pricing][price]")
    price = call.require("price", entry["pricing"]["price"], param=f"{where}[pricing][price]")
    if price.get("recurring"):
        raise invalid_request(
            "The price specified is a recurring price; invoice lines take one-time prices.",
            param=f"{where}[pricing][price]",
        )
    _check_currency(invoice, str(price["currency"]), f"{where}[pricing][price]")
    return price


def _check_currency(invoice: StripeObject, currency: str, param: str) -> None:
    if currency.lower() != invoice["currency"]:
        raise invalid_request(
            f"The invoice is in {invoice['currency']}, not {currency.lower()}.", param=param
        )


def _apply_invoice_metadata(call: Call, invoice: StripeObject) -> None:
    if "invoice_metadata" in call.params:
        previous = call.state.update(
            invoice,
            {"metadata": apply_metadata(invoice["metadata"], call.params["invoice_metadata"])},
        )
        if previous:
            call.emit("invoice.updated", invoice, previous)


@router.post("/v1/invoices/{id}/add_lines", ADD)
def add_lines(call: Call) -> StripeObject:
    state = call.state
    invoice = _draft(call)
    pending: list[StripeObject | None] = []
    for index, entry in enumerate(call.params["lines"]):
        where = f"lines[{index}]"
        if "invoice_item" in entry:
            item = call.require(
                "invoiceitem", entry["invoice_item"], param=f"{where}[invoice_item]"
            )
            if item["invoice"] is not None or item["customer"] != invoice["customer"]:
                raise invalid_request(
                    "Only a pending invoice item of the invoice's customer can be added.",
                    param=f"{where}[invoice_item]",
                )
            _check_currency(invoice, str(item["currency"]), f"{where}[invoice_item]")
            pending.append(item)
            continue
        given = [name for name in ("amount", "pricing", "price_data") if name in entry]
        if len(given) != 1:
            raise invalid_request(
                "Each line takes exactly one of amount, pricing[price] or price_data.",
                param=f"{where}[amount]",
            )
        _price(call, invoice, entry, where)
        if "quantity" in entry and entry["quantity"] < 1:
            raise invalid_request(
                "Invalid integer: must be at least 1.", param=f"{where}[quantity]"
            )
        pending.append(None)
    for entry, found in zip(call.params["lines"], pending, strict=True):
        if found is not None:
            state.update(found, {"invoice": invoice["id"]})
            state.emit("invoiceitem.updated", found, {"invoice": None})
            invoicing.add_line(state, invoice, dict(found["_line"], invoice=invoice["id"]))
            continue
        params = {
            k: v
            for k, v in entry.items()
            if k not in ("discounts", "tax_amounts", "tax_rates", "quantity_decimal")
        }
        params.update(customer=invoice["customer"], invoice=invoice["id"])
        if "price_data" in params:
            params["pricing"] = {"price": _inline_price(call, params.pop("price_data"))["id"]}
        if "amount" in params:
            params["currency"] = invoice["currency"]
        create_invoice_item(dataclasses.replace(call, params=params, path={}))
    _apply_invoice_metadata(call, invoice)
    return invoice


def _edited_line(
    call: Call, invoice: StripeObject, line: StripeObject, entry: dict[str, Any], where: str
) -> StripeObject:
    """The line as `entry` changes it (checked; prices from `price_data` are created by the
    caller once every line passed)."""
    item = _item_of(call, line)
    if item is None or line["parent"]["type"] == "subscription_item_details":
        refused = sorted(set(entry) - _SUBSCRIPTION_LINE)
        if refused:
            raise invalid_request(
                "A subscription's line takes only description, metadata and discountable; "
                "change the subscription instead.",
                param=f"{where}[{refused[0]}]",
            )
    price = _price(call, invoice, entry, where)
    if "amount" in entry and (price is not None or "price_data" in entry):
        raise invalid_request(
            "You may only specify one of these parameters: amount, pricing, price_data.",
            param=f"{where}[amount]",
        )
    edited = dict(line)
    if "description" in entry:
        edited["description"] = entry["description"]
    if "metadata" in entry:
        edited["metadata"] = apply_metadata(line.get("metadata") or {}, entry["metadata"])
    if "discountable" in entry:
        edited["discountable"] = entry["discountable"]
    if "period" in entry:
        edited["period"] = {"start": entry["period"]["start"], "end": entry["period"]["end"]}
    if "quantity" in entry:
        edited["quantity"] = entry["quantity"]
        edited["quantity_decimal"] = str(entry["quantity"])
    if "amount" in entry:
        edited["amount"] = entry["amount"]
        edited["pricing"] = None
    elif price is not None:
        edited["pricing"] = _pricing(price)
        edited["amount"] = int(price.get("unit_amount") or 0) * int(edited["quantity"])
    elif "quantity" in entry and edited.get("pricing") and "price_data" not in entry:
        edited["amount"] = _unit_amount(call, edited) * int(edited["quantity"])
    edited["subtotal"] = edited["amount"]
    return edited


def _inline_price(call: Call, data: dict[str, Any]) -> StripeObject:
    """The inactive one-time price a line's `price_data` makes (as Stripe does)."""
    price = new_price(call, dict(data))
    call.state.update(price, {"active": False})
    return price


def _pricing(price: StripeObject) -> StripeObject:
    return {
        "type": "price_details",
        "price_details": {"price": price["id"], "product": price["product"]},
        "unit_amount_decimal": price.get("unit_amount_decimal"),
    }


def _unit_amount(call: Call, line: StripeObject) -> int:
    price_id = line["pricing"]["price_details"]["price"]
    price = call.state.get("price", str(price_id))
    return int((price or {}).get("unit_amount") or 0)


def _update(call: Call, invoice: StripeObject, entries: list[dict[str, Any]]) -> StripeObject:
    state = call.state
    by_id = {line["id"]: line for line in invoice["lines"]["data"]}
    edits: dict[str, StripeObject] = {}
    for index, entry in enumerate(entries):
        where = f"lines[{index}]"
        line = by_id.get(entry["id"])
        if line is None:
            raise invalid_request(
                f"No such invoice line item: '{entry['id']}' on invoice {invoice['id']}.",
                param=f"{where}[id]",
                code="resource_missing",
                status=404,
            )
        changes = {k: v for k, v in entry.items() if k != "id"}
        edits[line["id"]] = _edited_line(call, invoice, edits.get(line["id"], line), changes, where)
    for entry in entries:
        if "price_data" in entry:
            price = _inline_price(call, entry["price_data"])
            edited = edits[entry["id"]]
            edited["pricing"] = _pricing(price)
            edited["amount"] = int(price.get("unit_amount") or 0) * int(edited["quantity"])
            edited["subtotal"] = edited["amount"]
    for line_id, edited in edits.items():
        item = _item_of(call, by_id[line_id])
        if item is not None and by_id[line_id]["parent"]["type"] == "invoice_item_details":
            previous = state.update(
                item,
                {
                    "amount": edited["amount"],
                    "net_amount": edited["amount"],
                    "description": edited["description"],
                    "discountable": edited["discountable"],
                    "metadata": dict(edited["metadata"]),
                    "period": dict(edited["period"]),
                    "pricing": edited["pricing"],
                    "quantity": edited["quantity"],
                    "quantity_decimal": edited["quantity_decimal"],
                    "_line": dict(edited, invoice=None),
                },
            )
            previous.pop("_line", None)
            state.emit("invoiceitem.updated", item, previous or None)
    lines = [edits.get(line["id"], line) for line in invoice["lines"]["data"]]
    invoicing.replace_lines(state, invoice, lines)
    _apply_invoice_metadata(call, invoice)
    return invoice


@router.post("/v1/invoices/{id}/update_lines", UPDATE)
def update_lines(call: Call) -> StripeObject:
    invoice = _draft(call)
    return _update(call, invoice, call.params["lines"])


@router.post("/v1/invoices/{id}/lines/{line}", _LINE)
def update_line(call: Call) -> StripeObject:
    """One line (`InvoiceLineItem.update`); answers the line."""
    invoice = _draft(call)
    entry = {k: v for k, v in call.params.items() if k != "expand"}
    try:
        _update(call, invoice, [{**entry, "id": call.path["line"]}])
    except StripeError as exc:
        if exc.param and exc.param.startswith("lines[0]"):
            inner = exc.param.removeprefix("lines[0]")
            exc.param = "id" if inner == "[id]" else inner[1:].replace("]", "", 1)
        raise
    return next(line for line in invoice["lines"]["data"] if line["id"] == call.path["line"])


@router.post("/v1/invoices/{id}/remove_lines", REMOVE)
def remove_lines(call: Call) -> StripeObject:
    state = call.state
    invoice = _draft(call)
    by_id = {line["id"]: line for line in invoice["lines"]["data"]}
    removals: list[tuple[StripeObject, str]] = []
    for index, entry in enumerate(call.params["lines"]):
        line = by_id.get(entry["id"])
        if line is None:
            raise invalid_request(
                f"No such invoice line item: '{entry['id']}' on invoice {invoice['id']}.",
                param=f"lines[{index}][id]",
                code="resource_missing",
                status=404,
            )
        item = _item_of(call, line)
        if item is None or line["parent"]["type"] != "invoice_item_details":
            raise invalid_request(
                "Only lines from invoice items can be removed; a subscription's lines follow "
                "the subscription.",
                param=f"lines[{index}][id]",
            )
        removals.append((item, str(entry["behavior"])))
    for item, behavior in removals:
        if behavior == "delete":
            snapshot = dict(item)
            state.mark_deleted(item)
            state.emit("invoiceitem.deleted", snapshot)
        else:
            previous = state.update(item, {"invoice": None})
            state.emit("invoiceitem.updated", item, previous)
    gone = {str(item["_line"]["id"]) for item, _ in removals}
    lines = [line for line in invoice["lines"]["data"] if line["id"] not in gone]
    invoicing.replace_lines(state, invoice, lines)
    _apply_invoice_metadata(call, invoice)
    return invoice
