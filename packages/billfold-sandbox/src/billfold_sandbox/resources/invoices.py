"""Invoices and invoice payments: retrieve, list, lines, finalize, pay, void, uncollectible.

Invoices are made by subscriptions (`billing/lifecycle.py`); the rules are in
`billing/invoicing.py`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from billfold_sandbox.billing import invoicing, lifecycle, payments_port, sending
from billfold_sandbox.errors import StripeError, card_error, invalid_request, missing_parameter
from billfold_sandbox.pages import (
    object_for_page,
    remember_base,
    render_page,
    sandbox_base_url,
)
from billfold_sandbox.params import (
    Field,
    anything,
    apply_metadata,
    array,
    boolean,
    enum,
    in_range,
    integer,
    metadata,
    obj,
    range_filter,
    string,
)
from billfold_sandbox.resources import common_params
from billfold_sandbox.resources.prices import new_price
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.search import search_response
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

LIST: dict[str, Field] = {
    "customer": string(),
    "subscription": string(),
    "status": enum("draft", "open", "paid", "uncollectible", "void"),
    "collection_method": enum("charge_automatically", "send_invoice"),
    "created": range_filter(),
    "due_date": range_filter(),
    "customer_account": string(),
}
PAY: dict[str, Field] = {
    "payment_method": string(),
    "off_session": boolean(),
    "paid_out_of_band": boolean(),
    "forgive": boolean(),
    "mandate": string(nullable=True),
    "source": string(),
}
# Accepted like Stripe does for drafts; the sandbox does not model them.
_UNMODELLED = (
    "account_tax_ids", "application_fee_amount", "automatic_tax", "automatically_finalizes_at",
    "collection_method", "days_until_due", "default_source", "default_tax_rates", "discounts",
    "due_date", "effective_at", "issuer", "number", "on_behalf_of", "payment_settings",
    "rendering", "shipping_cost", "shipping_details", "statement_descriptor", "transfer_data",
    "custom_fields",
)  # fmt: skip
UPDATE: dict[str, Field] = {
    "metadata": metadata(),
    "description": string(nullable=True),
    "default_payment_method": string(nullable=True),
    "auto_advance": boolean(),
    "footer": string(nullable=True),
    **{name: anything() for name in _UNMODELLED},
    **common_params.INVOICE,
    "collection_method": enum("charge_automatically", "send_invoice"),
    "days_until_due": integer(min=0, max=3650),
    "due_date": integer(),
}


def _check_payment_method(call: Call, pm_id: str | None, customer_id: str) -> None:
    """An invoice's `default_payment_method` must be attached to its customer."""
    if not pm_id:
        return
    pm = call.require("payment_method", pm_id, param="default_payment_method")
    if pm.get("customer") != customer_id:
        raise invalid_request(
            "The payment method must be attached to the invoice's customer.",
            param="default_payment_method",
        )


@router.expander("invoice", "payments")
def _expand_payments(state: SandboxState, invoice: StripeObject) -> StripeObject:
    return invoicing.payments_list(state, invoice)


@router.expander("invoice", "discounts")
def _expand_invoice_discounts(state: SandboxState, invoice: StripeObject) -> list[Any]:
    """`expand[]=discounts`: the Discount objects instead of their ids."""
    return [state.get("discount", d) or d for d in invoice.get("discounts") or []]


@router.expander("invoice", "confirmation_secret")
def _expand_confirmation_secret(state: SandboxState, invoice: StripeObject) -> Any:
    """`expand[]=confirmation_secret`: the client secret of the invoice's PaymentIntent
    (`payment_behavior=default_incomplete`), for Stripe.js to confirm."""
    return invoice.get("_confirmation_secret")


@router.get("/v1/invoices/{id}")
def retrieve_invoice(call: Call) -> StripeObject:
    return call.require("invoice", call.path["id"])


@router.post("/v1/invoices/{id}", UPDATE)
def update_invoice(call: Call) -> StripeObject:
    invoice = call.require("invoice", call.path["id"])
    p = dict(call.params)
    p.pop("expand", None)
    if invoice["status"] in ("paid", "void") and set(p) - {"metadata"}:
        raise invalid_request(
            f"You can only update the metadata of a {invoice['status']} invoice.",
            code="invoice_not_editable",
        )
    _check_payment_method(call, p.get("default_payment_method"), invoice["customer"])
    if {"collection_method", "days_until_due", "due_date"} & set(p):
        _collection_changes(call, invoice, p)
    if "metadata" in p:
        p["metadata"] = apply_metadata(invoice["metadata"], p["metadata"])
    for name in _UNMODELLED:
        if name not in ("collection_method", "due_date"):  # checked above
            p.pop(name, None)
    previous = call.state.update(invoice, p)
    if previous:
        call.emit("invoice.updated", invoice, previous)
    return invoice


def _collection_changes(call: Call, invoice: StripeObject, p: dict[str, Any]) -> None:
    """A draft's `collection_method`, `days_until_due`, `due_date` (checked, then put in `p`)."""
    if invoice["status"] != "draft":
        raise invalid_request(
            "The collection method and due date can only change on a draft invoice.",
            code="invoice_not_editable",
        )
    given: dict[str, Any] = {
        k: p.pop(k) for k in ("collection_method", "days_until_due", "due_date") if k in p
    }
    method, days = sending.collection_settings(
        given, invoice["collection_method"], invoice.get("_days_until_due"), due_date_ok=True
    )
    sending.check_due_date(given.get("due_date"), call.state.now_for(invoice))
    invoice["_days_until_due"] = days
    p["collection_method"] = method
    if method != sending.SEND:
        p["due_date"] = None
    elif given.get("due_date") is not None:
        p["due_date"] = given["due_date"]
    elif "days_until_due" in given or invoice.get("due_date") is None:
        p["due_date"] = int(invoice["created"]) + int(days or 0) * sending.DAY


def _matches(invoice: StripeObject, p: dict[str, object]) -> bool:
    return (
        ("customer" not in p or invoice["customer"] == p["customer"])
        and ("subscription" not in p or invoicing.subscription_of(invoice) == p["subscription"])
        and ("status" not in p or invoice["status"] == p["status"])
        and in_range(invoice["created"], p.get("created"))  # type: ignore[arg-type]
    )


@router.get("/v1/invoices", LIST, list=True)
def list_invoices(call: Call) -> StripeObject:
    found = [i for i in call.state.all("invoice", newest_first=True) if _matches(i, call.params)]
    return call.list_response(found)


@router.get("/v1/invoices/search", search=True)
def search_invoices(call: Call) -> StripeObject:
    return search_response(
        call,
        call.state.all("invoice", newest_first=True),
        {
            "status": lambda i: i.get("status"),
            "customer": lambda i: i.get("customer"),
            "subscription": invoicing.subscription_of,
            "total": lambda i: i.get("total"),
            "number": lambda i: i.get("number"),
            "created": lambda i: i.get("created"),
        },
    )


@router.get("/v1/invoices/{id}/lines", list=True)
def list_invoice_lines(call: Call) -> StripeObject:
    invoice = call.require("invoice", call.path["id"])
    return call.list_response(list(invoice["lines"]["data"]))


@router.post("/v1/invoices/{id}/finalize", {"auto_advance": boolean()})
def finalize_invoice(call: Call) -> StripeObject:
    remember_base(call.state, call.request)
    invoice = call.require("invoice", call.path["id"])
    if invoice["status"] != "draft":
        raise invalid_request(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable",
        )
    if "auto_advance" in call.params:
        invoice["auto_advance"] = call.params["auto_advance"]
    call.state.cancel_timers(invoice["id"], invoicing.FINALIZE_TIMER)
    invoicing.finalize(call.state, invoice)
    return invoice


@router.post("/v1/invoices/{id}/pay", PAY)
def pay_invoice(call: Call) -> StripeObject:
    """Pay now: with `payment_method` (attached to the customer), or the default one; or
    `paid_out_of_band=true` to record a payment made elsewhere. A decline answers 402."""
    state = call.state
    remember_base(state, call.request)
    invoice = call.require("invoice", call.path["id"])
    p = call.params
    if invoice["status"] == "draft":
        call.state.cancel_timers(invoice["id"], invoicing.FINALIZE_TIMER)
        invoicing.finalize(state, invoice)
        if invoice["status"] == "paid":
            return invoice
    if invoice["status"] == "paid":
        raise invalid_request("Invoice is already paid.")
    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid_request(
            f"You cannot pay an invoice that is {invoice['status']}.", code="invoice_not_open"
        )
    if invoice["status"] == "uncollectible":
        invoice["status"] = "open"
    if p.get("paid_out_of_band"):
        invoice["_paid_out_of_band"] = invoice["amount_remaining"]
        invoicing.mark_paid(state, invoice, payment_intent=None)
        return invoice
    pm = p.get("payment_method")
    if pm:
        method = call.require("payment_method", pm, param="payment_method")
        if method.get("customer") not in (None, invoice["customer"]):
            raise invalid_request(
                "The payment method must be attached to the invoice's customer.",
                param="payment_method",
            )
    outcome = invoicing.collect(
        state,
        invoice,
        payment_method=pm,
        off_session=bool(p.get("off_session", True)),
        schedule_retry=False,
    )
    if outcome.status == "paid":
        return invoice
    if outcome.status == "no_payment_method":
        raise invalid_request(
            "This invoice cannot be paid: the customer has no default payment method. Pass "
            "payment_method or set the customer's invoice_settings.default_payment_method.",
        )
    error = outcome.error or {}
    raise card_error(
        error.get("message", "Your card was declined."),
        code=error.get("code", "card_declined"),
        decline_code=error.get("decline_code"),
        extra={
            k: v for k, v in error.items() if k in ("payment_intent", "charge", "payment_method")
        },
    )


@router.post("/v1/invoices/{id}/void")
def void_invoice(call: Call) -> StripeObject:
    invoice = call.require("invoice", call.path["id"])
    return invoicing.void(call.state, invoice)


@router.post("/v1/invoices/{id}/mark_uncollectible")
def mark_uncollectible(call: Call) -> StripeObject:
    invoice = call.require("invoice", call.path["id"])
    return invoicing.mark_uncollectible(call.state, invoice)


@router.delete("/v1/invoices/{id}")
def delete_invoice(call: Call) -> StripeObject:
    invoice = call.require("invoice", call.path["id"])
    if invoice["status"] != "draft":
        raise invalid_request("You can only delete draft invoices.", code="invoice_not_editable")
    if invoicing.subscription_of(invoice):
        raise invalid_request(
            "You can't delete invoices created by subscriptions.", code="invoice_not_editable"
        )
    call.state.cancel_timers(invoice["id"])
    snapshot = dict(invoice)
    deleted = call.state.mark_deleted(invoice)
    call.emit("invoice.deleted", snapshot)
    return deleted


# --- creating invoices and invoice items ----------------------------------------------------


CREATE: dict[str, Field] = {
    "customer": string(required=True),
    "auto_advance": boolean(),
    "collection_method": enum("charge_automatically", "send_invoice"),
    "days_until_due": integer(min=0, max=3650),
    "due_date": integer(),
    "currency": string(),
    "description": string(max_length=1500),
    "metadata": metadata(),
    "default_payment_method": string(),
    "pending_invoice_items_behavior": enum("exclude", "include"),
    "subscription": string(),
    "footer": string(),
    **{
        name: anything()
        for name in (*_UNMODELLED, "customer_account", "from_invoice")
        if name not in ("collection_method", "days_until_due", "due_date")
    },
    **common_params.INVOICE,
}
ITEM_CREATE: dict[str, Field] = {
    "customer": string(required=True),
    "amount": integer(),
    "currency": string(),
    "description": string(max_length=500),
    "pricing": obj({"price": string()}),
    "price_data": obj(
        {
            "currency": string(required=True),
            "product": string(required=True),
            "unit_amount": integer(min=0),
            "unit_amount_decimal": string(),
            "tax_behavior": enum("exclusive", "inclusive", "unspecified"),
        }
    ),
    "quantity": integer(min=1),
    "invoice": string(),
    "metadata": metadata(),
    "period": obj({"start": integer(required=True), "end": integer(required=True)}),
    "subscription": string(),
    "discountable": boolean(),
    **{
        name: anything()
        for name in (
            "customer_account", "discounts", "quantity_decimal", "tax_behavior", "tax_code",
            "tax_rates", "unit_amount_decimal",
        )
    },
}  # fmt: skip


@router.post("/v1/invoices", CREATE)
def create_invoice(call: Call) -> StripeObject:
    """A one-off draft invoice (`billing_reason=manual`); with `auto_advance=true` Stripe
    finalizes and charges it about an hour later."""
    state = call.state
    remember_base(state, call.request)
    p = call.params
    collection, days_until_due = sending.collection_settings(
        p, "charge_automatically", None, due_date_ok=True
    )
    customer = call.require("customer", p["customer"], param="customer")
    sending.check_due_date(p.get("due_date"), state.now_for(customer))
    subscription = None
    if p.get("subscription"):
        subscription = call.require("subscription", p["subscription"], param="subscription")
        if subscription["customer"] != customer["id"]:
            raise invalid_request(
                "The subscription does not belong to this customer.", param="subscription"
            )
    _check_payment_method(call, p.get("default_payment_method"), customer["id"])
    include = p.get("pending_invoice_items_behavior", "exclude") == "include"
    currency = str(p.get("currency") or customer.get("currency") or "usd").lower()
    if include:
        pending = invoicing.pending_items(
            state, customer["id"], subscription["id"] if subscription else None
        )
        if any(item["currency"] != currency for item in pending):
            raise invalid_request(
                "The customer's pending invoice items are in another currency; pass `currency`.",
                param="currency",
            )
    auto_advance = bool(p.get("auto_advance", False))
    invoice = invoicing.create_invoice(
        state,
        customer=customer,
        currency=currency,
        lines=[],
        billing_reason="manual",
        subscription=subscription,
        include_pending=include,
        auto_advance=auto_advance,
        metadata=apply_metadata({}, p.get("metadata", {})),
        description=p.get("description"),
    )
    if p.get("default_payment_method"):
        invoice["default_payment_method"] = p["default_payment_method"]
    if p.get("footer"):
        invoice["footer"] = p["footer"]
    invoice["collection_method"] = collection
    if collection == sending.SEND:
        invoice["_days_until_due"] = days_until_due
        invoice["due_date"] = (
            p.get("due_date") or int(invoice["created"]) + int(days_until_due or 0) * sending.DAY
        )
    if auto_advance:
        state.schedule(
            int(invoice["automatically_finalizes_at"]),
            invoicing.FINALIZE_TIMER,
            invoice["id"],
            clock_id=state.clock_of(invoice),
        )
    state.touch()
    return invoice


PREVIEW: dict[str, Field] = {
    "customer": string(),
    "subscription": string(),
    "subscription_details": obj(
        {
            "items": array(
                obj(
                    {
                        "id": string(),
                        "price": string(),
                        "quantity": integer(min=0),
                        "deleted": boolean(),
                        "metadata": metadata(),
                        **{
                            name: anything()
                            for name in (
                                "billing_thresholds", "clear_usage", "discounts", "plan",
                                "price_data", "tax_rates", "current_trial",
                            )
                        },
                    }
                ),
                max_items=20,
            ),
            "proration_behavior": enum("always_invoice", "create_prorations", "none"),
            "proration_date": integer(),
            "billing_cycle_anchor": enum("now", "unchanged"),
            **{
                name: anything()
                for name in (
                    "billing_mode", "billing_schedules", "cancel_at", "cancel_at_period_end",
                    "cancel_now", "default_tax_rates", "metadata", "pause", "resume_at",
                    "start_date", "trial_end",
                )
            },
        }
    ),
    **{
        name: anything()
        for name in (
            "automatic_tax", "currency", "customer_account", "customer_details", "discounts",
            "invoice_items", "issuer", "on_behalf_of", "preview_mode", "schedule",
            "schedule_details",
        )
    },
}  # fmt: skip


@router.post("/v1/invoices/create_preview", PREVIEW)
def create_preview(call: Call) -> StripeObject:
    """The invoice a subscription change would produce, nothing stored: the next renewal, or
    with `subscription_details[items]` the change's prorations (`proration_behavior`,
    `proration_date`), or the invoice a new billing cycle would bring at once."""
    from billfold_sandbox.resources.subscriptions import updated_items

    state = call.state
    p = call.params
    if not p.get("subscription"):
        raise invalid_request(
            "The sandbox previews subscription invoices: pass `subscription`.",
            param="subscription",
            code="parameter_missing",
        )
    sub = call.require("subscription", p["subscription"], param="subscription")
    if p.get("customer") and p["customer"] != sub["customer"]:
        raise invalid_request(
            "The subscription does not belong to this customer.", param="customer"
        )
    if sub["status"] in lifecycle.ENDED:
        raise invalid_request(
            "A canceled subscription has no upcoming invoice.", param="subscription"
        )
    details = p.get("subscription_details") or {}
    new_items = updated_items(call, sub, details["items"]) if details.get("items") else None
    return lifecycle.preview_invoice(
        state,
        sub,
        new_items,
        proration_behavior=details.get("proration_behavior", "create_prorations"),
        proration_date=details.get("proration_date"),
        reset_anchor=details.get("billing_cycle_anchor") == "now",
    )


@router.post("/v1/invoiceitems", ITEM_CREATE)
def create_invoice_item(call: Call) -> StripeObject:
    """An invoice item: pending until the customer's next invoice, or added to a draft
    `invoice` at once. Priced by `amount` + `currency`, `pricing[price]`, or `price_data`."""
    state = call.state
    p = call.params
    customer = call.require("customer", p["customer"], param="customer")
    given = [name for name in ("amount", "pricing", "price_data") if name in p]
    if len(given) != 1:
        raise invalid_request(
            "You must pass exactly one of amount, pricing[price] or price_data.",
            param="amount",
        )
    invoice = None
    if p.get("invoice"):
        invoice = call.require("invoice", p["invoice"], param="invoice")
        if invoice["customer"] != customer["id"] or invoice["status"] != "draft":
            raise invalid_request(
                "Invoice items can only be added to a draft invoice of the same customer.",
                param="invoice",
                code="invoice_not_editable",
            )
    subscription = None
    if p.get("subscription"):
        subscription = call.require("subscription", p["subscription"], param="subscription")
    now = state.now_for(customer)
    period = p.get("period") or {"start": now, "end": now}
    quantity = int(p.get("quantity", 1))
    price = None
    amount = None
    currency = None
    if "amount" in p:
        if not p.get("currency"):
            raise missing_parameter("currency")
        amount, currency = int(p["amount"]), str(p["currency"]).lower()
    elif "pricing" in p:
        if not p["pricing"].get("price"):
            raise missing_parameter("pricing[price]")
        price = call.require("price", p["pricing"]["price"], param="pricing[price]")
        if price.get("recurring"):
            raise invalid_request(
                "The price specified is a recurring price; invoice items take one-time prices.",
                param="pricing[price]",
            )
    else:
        data = dict(p["price_data"])
        call.require("product", data["product"], param="price_data[product]")
        price = new_price(call, data)
        state.update(price, {"active": False})
    currency = currency or str(price["currency"] if price else "usd")
    if invoice is not None and invoice["currency"] != currency:
        raise invalid_request(
            f"The invoice is in {invoice['currency']}, not {currency}.", param="currency"
        )
    line = invoicing.price_line(
        state,
        price,
        quantity,
        period=(int(period["start"]), int(period["end"])),
        amount=amount,
        currency=currency,
        description=p.get("description") or (None if price else "Invoice item"),
        subscription=subscription["id"] if subscription else None,
        metadata=apply_metadata({}, p.get("metadata", {})),
    )
    if "discountable" in p:
        line["discountable"] = bool(p["discountable"])
    item = invoicing.add_invoice_item(
        state,
        customer=customer["id"],
        line=line,
        subscription=subscription["id"] if subscription else None,
        proration=False,
        metadata=apply_metadata({}, p.get("metadata", {})),
    )
    if invoice is not None:
        state.update(item, {"invoice": invoice["id"]})
        invoicing.add_line(state, invoice, dict(line))
    return item


@router.get(
    "/v1/invoiceitems",
    {
        "customer": string(),
        "invoice": string(),
        "pending": boolean(),
        "created": range_filter(),
        "customer_account": string(),
    },
    list=True,
)
def list_invoice_items(call: Call) -> StripeObject:
    p = call.params
    found = [
        i
        for i in call.state.all("invoiceitem", newest_first=True)
        if ("customer" not in p or i["customer"] == p["customer"])
        and ("invoice" not in p or i["invoice"] == p["invoice"])
        and ("pending" not in p or (i["invoice"] is None) == p["pending"])
        and in_range(i["date"], p.get("created"))
    ]
    return call.list_response(found)


@router.get("/v1/invoiceitems/{id}")
def retrieve_invoice_item(call: Call) -> StripeObject:
    return call.require("invoiceitem", call.path["id"])


@router.delete("/v1/invoiceitems/{id}")
def delete_invoice_item(call: Call) -> StripeObject:
    """Only a pending item, or one on a draft invoice, can be deleted."""
    state = call.state
    item = call.require("invoiceitem", call.path["id"])
    invoice = state.get("invoice", item["invoice"]) if item.get("invoice") else None
    if invoice is not None and invoice["status"] != "draft":
        raise invalid_request(
            "This invoice item is on a finalized invoice and cannot be deleted.",
            code="invoice_not_editable",
        )
    if invoice is not None:
        invoicing.remove_line(state, invoice, str(item["_line"]["id"]))
    snapshot = dict(item)
    deleted = state.mark_deleted(item)
    state.emit("invoiceitem.deleted", snapshot)
    return deleted


# --- invoice payments ---------------------------------------------------------------------------


@router.get(
    "/v1/invoice_payments",
    {
        "invoice": string(),
        "status": enum("canceled", "open", "paid"),
        "payment": anything(),
        "created": range_filter(),
    },
    list=True,
)
def list_invoice_payments(call: Call) -> StripeObject:
    p = call.params
    raw_payment = p.get("payment")
    payment: dict[str, Any] = raw_payment if isinstance(raw_payment, dict) else {}
    found = [
        ip
        for ip in call.state.all("invoice_payment", newest_first=True)
        if ("invoice" not in p or ip["invoice"] == p["invoice"])
        and ("status" not in p or ip["status"] == p["status"])
        and (
            not payment.get("payment_intent")
            or ip["payment"].get("payment_intent") == payment["payment_intent"]
        )
        and in_range(ip["created"], p.get("created"))
    ]
    return call.list_response(found)


@router.get("/v1/invoice_payments/{id}")
def retrieve_invoice_payment(call: Call) -> StripeObject:
    return call.require("invoice_payment", call.path["id"])


# --- the hosted invoice page (`hosted_invoice_url`) -----------------------------------------------


def _invoice_context(state: SandboxState, invoice: StripeObject, base: str) -> dict[str, Any]:
    currency = str(invoice["currency"])
    return {
        "invoice": invoice,
        "lines": [
            {
                "description": line["description"],
                "amount": invoicing.money(int(line["amount"]), currency),
            }
            for line in invoice["lines"]["data"]
        ],
        "subtotal": invoicing.money(int(invoice["subtotal"]), currency),
        "discount": invoicing.money(
            sum(int(d["amount"]) for d in invoice["total_discount_amounts"] or []), currency
        ),
        "total": invoicing.money(int(invoice["total"]), currency),
        "due": invoicing.money(int(invoice["amount_remaining"]), currency),
        "paid": invoicing.money(int(invoice["amount_paid"]), currency),
        "methods": payments_port.hosted_page_methods(["card"]),
        "action": f"{base}/i/{invoice['_page']}",
    }


@router.page("GET", "/i/{page}")
def invoice_page(call: Call) -> Response:
    invoice = object_for_page(call.state, "invoice", call.path["page"])
    if invoice is None:
        return render_page("link_gone.html", {}, status=404)
    remember_base(call.state, call.request)
    context = _invoice_context(call.state, invoice, sandbox_base_url(call.request))
    context["error"] = call.raw.get("error")
    return render_page("invoice.html", context)


@router.page("POST", "/i/{page}")
def pay_on_invoice_page(call: Call) -> Response:
    """The customer pays an open invoice with a test card (3-D Secure: a challenge page)."""
    state = call.state
    invoice = object_for_page(state, "invoice", call.path["page"])
    if invoice is None:
        return render_page("link_gone.html", {}, status=404)
    here = f"{sandbox_base_url(call.request)}/i/{invoice['_page']}"
    if invoice["status"] not in ("open", "uncollectible"):
        return RedirectResponse(here, status_code=303)
    try:
        method = payments_port.payment_method_for_token(
            state, str(call.raw.get("payment_method") or ""), param="payment_method"
        )
        if invoice["status"] == "uncollectible":
            invoice["status"] = "open"
        outcome = invoicing.collect(
            state, invoice, payment_method=method["id"], off_session=False, schedule_retry=False
        )
    except StripeError as exc:
        return RedirectResponse(f"{here}?error={quote(exc.message)}", status_code=303)
    if outcome.status == "requires_action":
        invoice["_pending_action"] = outcome.payment_intent
        state.touch()
        return RedirectResponse(f"{here}/authenticate", status_code=303)
    if outcome.status not in ("paid", "processing"):
        message = (outcome.error or {}).get("message", "Your card was declined.")
        return RedirectResponse(f"{here}?error={quote(str(message))}", status_code=303)
    return RedirectResponse(here, status_code=303)


@router.page("GET", "/i/{page}/authenticate")
def invoice_challenge(call: Call) -> Response:
    invoice = object_for_page(call.state, "invoice", call.path["page"])
    if invoice is None or not invoice.get("_pending_action"):
        return render_page("link_gone.html", {}, status=404)
    base = sandbox_base_url(call.request)
    return render_page(
        "authenticate.html",
        {
            "action": f"{base}/i/{invoice['_page']}/authenticate",
            "total": invoicing.money(int(invoice["amount_remaining"]), invoice["currency"]),
        },
    )


@router.page("POST", "/i/{page}/authenticate")
def invoice_challenge_done(call: Call) -> Response:
    state = call.state
    invoice = object_for_page(state, "invoice", call.path["page"])
    if invoice is None or not invoice.get("_pending_action"):
        return render_page("link_gone.html", {}, status=404)
    here = f"{sandbox_base_url(call.request)}/i/{invoice['_page']}"
    intent = str(invoice.pop("_pending_action"))
    state.touch()
    try:
        payments_port.authenticate(state, intent, succeeded=call.raw.get("outcome") == "complete")
    except StripeError as exc:
        return RedirectResponse(f"{here}?error={quote(exc.message)}", status_code=303)
    if invoice["status"] != "paid":
        message = "We are unable to authenticate your payment method."
        return RedirectResponse(f"{here}?error={quote(message)}", status_code=303)
    return RedirectResponse(here, status_code=303)
