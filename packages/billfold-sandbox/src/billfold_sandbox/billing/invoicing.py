"""Invoices: built from lines, finalized, collected through a PaymentIntent, retried, voided.

An invoice's payments are InvoicePayment objects (`inpay_...`), one per PaymentIntent used,
listed by `expand[]=payments` and `/v1/invoice_payments`. Subscriptions hear about payment
outcomes through `on_paid` / `on_payment_failed` callbacks (registered by lifecycle.py), so
this module knows nothing of subscription statuses.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billfold_sandbox.billing import credit_grants, customer_balance, payments_port, sending
from billfold_sandbox.billing.settings import billing_settings
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.state import SandboxState, StripeObject

InvoiceCallback = Callable[[SandboxState, StripeObject], None]
_paid_callbacks: list[InvoiceCallback] = []
_failed_callbacks: list[InvoiceCallback] = []
_action_callbacks: list[InvoiceCallback] = []

RETRY_TIMER = "invoice.retry_payment"
FINALIZE_TIMER = "invoice.finalize_and_pay"


def on_paid(fn: InvoiceCallback) -> InvoiceCallback:
    """Call `fn(state, invoice)` after an invoice becomes paid."""
    if fn not in _paid_callbacks:
        _paid_callbacks.append(fn)
    return fn


def on_payment_failed(fn: InvoiceCallback) -> InvoiceCallback:
    """Call `fn(state, invoice)` after a payment attempt for an invoice fails."""
    if fn not in _failed_callbacks:
        _failed_callbacks.append(fn)
    return fn


def on_payment_action_required(fn: InvoiceCallback) -> InvoiceCallback:
    """Call `fn(state, invoice)` when a payment needs the customer (3-D Secure)."""
    if fn not in _action_callbacks:
        _action_callbacks.append(fn)
    return fn


# --- lines ------------------------------------------------------------------------------------


def price_line(
    state: SandboxState,
    price: StripeObject | None,
    quantity: int,
    *,
    period: tuple[int, int],
    amount: int | None = None,
    currency: str | None = None,
    description: str | None = None,
    subscription: str | None = None,
    subscription_item: str | None = None,
    invoice_item: str | None = None,
    proration: bool = False,
    metadata: dict[str, str] | None = None,
) -> StripeObject:
    """An invoice line (`il_...`) for `quantity` of `price` over `period`.

    `amount` defaults to unit_amount x quantity; prorations pass their own amount. A line with
    no price (an invoice item created with `amount`) gives `amount` and `currency`.
    """
    if amount is None:
        amount = int((price or {}).get("unit_amount") or 0) * quantity
    if description is None and price is not None:
        description = f"{quantity} \u00d7 {product_name(state, price)}"
        if price.get("recurring"):
            description += f" (at {format_amount(price)} / {price['recurring']['interval']})"
    if subscription_item is not None:
        parent: dict[str, Any] = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
                "subscription_item": subscription_item,
            },
        }
    else:
        parent = {
            "type": "invoice_item_details",
            "subscription_item_details": None,
            "invoice_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
            },
        }
    return {
        "id": state.new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"] if price is not None else currency,
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "parent": parent,
        "period": {"start": period[0], "end": period[1]},
        "pretax_credit_amounts": [],
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": price.get("unit_amount_decimal"),
        }
        if price is not None
        else None,
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "subscription": subscription,
        "subtotal": amount,
        "taxes": [],
    }


def product_name(state: SandboxState, price: StripeObject) -> str:
    """The name of the price's product (for descriptions and pages)."""
    product = state.get("product", str(price.get("product")))
    return str(product["name"]) if product else str(price.get("nickname") or price["id"])


def format_amount(price: StripeObject) -> str:
    """`$20.00`, `€9.50`, `¥500` - for descriptions and hosted pages."""
    return money(int(price.get("unit_amount") or 0), str(price["currency"]))


_ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}
_SYMBOLS = {
    "usd": "$",
    "eur": "\u20ac",
    "gbp": "\u00a3",
    "jpy": "\u00a5",
    "cad": "CA$",
    "aud": "A$",
}


def money(amount: int, currency: str) -> str:
    """Minor units as a display string."""
    symbol = _SYMBOLS.get(currency.lower(), currency.upper() + " ")
    sign = "-" if amount < 0 else ""
    if currency.lower() in _ZERO_DECIMAL:
        return f"{sign}{symbol}{abs(amount)}"
    return f"{sign}{symbol}{abs(amount) // 100:,}.{abs(amount) % 100:02d}"


# --- pending invoice items (prorations) --------------------------------------------------------


def add_invoice_item(
    state: SandboxState,
    *,
    customer: str,
    line: StripeObject,
    subscription: str | None,
    proration: bool = True,
    metadata: dict[str, str] | None = None,
) -> StripeObject:
    """A pending `invoiceitem` that the customer's next invoice picks up (a proration, or one
    created through `POST /v1/invoiceitems`)."""
    now = state.now_for(customer)
    item: StripeObject = {
        "id": state.new_id("ii"),
        "object": "invoiceitem",
        "amount": line["amount"],
        "currency": line["currency"],
        "customer": customer,
        "customer_account": None,
        "date": now,
        "description": line["description"],
        "discountable": True,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "net_amount": line["amount"],
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription, "subscription_item": None},
        }
        if subscription
        else None,
        "period": dict(line["period"]),
        "pricing": line["pricing"],
        "proration": proration,
        "quantity": line["quantity"],
        "quantity_decimal": line["quantity_decimal"],
        "tax_rates": [],
        "test_clock": state.clock_of(customer),
        "_line": line,
    }
    parent = line["parent"]
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details")
    if details is not None:
        details["invoice_item"] = item["id"]
    if item["parent"] is not None and parent.get("subscription_item_details"):
        item["parent"]["subscription_details"]["subscription_item"] = parent[
            "subscription_item_details"
        ]["subscription_item"]
    state.insert(item)
    state.emit("invoiceitem.created", item)
    return item


def pending_items(
    state: SandboxState, customer: str, subscription: str | None
) -> list[StripeObject]:
    """The customer's invoice items not yet on an invoice (of one subscription, if given)."""
    return [
        i
        for i in state.all("invoiceitem")
        if i["customer"] == customer
        and i["invoice"] is None
        and (
            subscription is None
            or (i.get("parent") or {}).get("subscription_details", {}).get("subscription")
            == subscription
        )
    ]


# --- invoices ---------------------------------------------------------------------------------


def create_invoice(
    state: SandboxState,
    *,
    customer: StripeObject,
    currency: str,
    lines: list[StripeObject],
    billing_reason: str,
    subscription: StripeObject | None = None,
    period: tuple[int, int] | None = None,
    include_pending: bool = True,
    discounts: list[str] | None = None,
    auto_advance: bool = True,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    preview: bool = False,
) -> StripeObject:
    """Create a draft invoice (`invoice.created`) with `lines`, pending prorations first.

    With `preview`, the invoice is only built (no id of its own, nothing stored or claimed):
    what `invoice.upcoming` shows.
    """
    now = state.now_for(customer)
    invoice_id = state.new_id("in") if not preview else None
    pending: list[StripeObject] = []
    if include_pending:
        pending = pending_items(state, customer["id"], subscription["id"] if subscription else None)
    all_lines = [dict(i["_line"]) for i in pending] + lines
    if not preview:
        for item in pending:
            state.update(item, {"invoice": invoice_id})
    for line in all_lines:
        line["invoice"] = invoice_id
    start, end = period or (now, now)
    parent: dict[str, Any] | None = None
    if subscription is not None:
        parent = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription.get("metadata") or {}),
                "subscription": subscription["id"],
            },
        }
    invoice: StripeObject = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "billfold sandbox",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": (subscription or {}).get("collection_method")
        or "charge_automatically",
        "created": now,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": customer.get("address"),
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "customer_phone": customer.get("phone"),
        "customer_shipping": customer.get("shipping"),
        "customer_tax_exempt": customer.get("tax_exempt", "none"),
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": list(discounts or []),
        "due_date": sending.due_date(subscription, now),
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": all_lines,
            "has_more": False,
            "total_count": len(all_lines),
            "url": f"/v1/invoices/{invoice_id}/lines"
            if invoice_id
            else "/v1/invoices/upcoming/lines",
        },
        "livemode": False,
        "metadata": dict(metadata or {}),
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": end,
        "period_start": start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": state.clock_of(customer),
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
        "_payments": [],
        "_retry_started": None,
    }
    _compute_totals(state, invoice)
    if preview:
        return invoice
    if auto_advance and billing_reason not in ("subscription_create", "subscription_update"):
        invoice["automatically_finalizes_at"] = now + int(
            billing_settings(state)["renewal_finalize_delay"]
        )
    state.insert(invoice)
    state.emit("invoice.created", invoice)
    return invoice


def add_line(state: SandboxState, invoice: StripeObject, line: StripeObject) -> None:
    """Add a line to a draft invoice (`invoice.updated`)."""
    if invoice["status"] != "draft":
        raise invalid_request(
            "You can only add invoice items to draft invoices.", code="invoice_not_editable"
        )
    line["invoice"] = invoice["id"]
    lines = [*invoice["lines"]["data"], line]
    before = {"total": invoice["total"], "amount_due": invoice["amount_due"]}
    invoice["lines"] = dict(invoice["lines"], data=lines, total_count=len(lines))
    _compute_totals(state, invoice)
    state.touch()
    state.emit("invoice.updated", invoice, before)


def remove_line(state: SandboxState, invoice: StripeObject, line_id: str) -> None:
    """Take a line off a draft invoice (its invoice item was deleted)."""
    lines = [line for line in invoice["lines"]["data"] if line["id"] != line_id]
    before = {"total": invoice["total"], "amount_due": invoice["amount_due"]}
    invoice["lines"] = dict(invoice["lines"], data=lines, total_count=len(lines))
    _compute_totals(state, invoice)
    state.touch()
    state.emit("invoice.updated", invoice, before)


def _compute_totals(state: SandboxState, invoice: StripeObject) -> None:
    """Subtotal, discounts and total from the lines (and the invoice's discounts)."""
    from billfold_sandbox.billing.discounts import discount_amounts

    lines = invoice["lines"]["data"]
    subtotal = sum(int(line["amount"]) for line in lines)
    total_discounts = discount_amounts(state, invoice, lines)
    discount_total = sum(d["amount"] for d in total_discounts)
    total = subtotal - discount_total
    invoice.update(
        {
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal,
            "total_discount_amounts": total_discounts,
            "total": total,
            "total_excluding_tax": total,
            "amount_due": max(total, 0),
            "amount_remaining": max(total, 0),
        }
    )


def finalize(state: SandboxState, invoice: StripeObject) -> StripeObject:
    """draft -> open (`invoice.finalized`): numbered, customer balance applied.

    An invoice with nothing to pay becomes paid at once, as on Stripe.
    """
    if invoice["status"] != "draft":
        raise invalid_request(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable" if invoice["status"] != "draft" else None,
        )
    now = state.now_for(invoice)
    customer = state.require("customer", invoice["customer"], deleted_ok=True)
    _compute_totals(state, invoice)
    credit_grants.apply_to_invoice(state, invoice)  # billing credits, before the balance
    balance = int(customer.get("balance") or 0)
    total = int(invoice["total"])
    amount_due = max(total + balance, 0) if balance < 0 else total + max(balance, 0)
    ending = balance + total - amount_due
    carried = 0
    if total < 0:
        # A net credit (a downgrade's proration) goes to the customer's balance.
        amount_due, ending = 0, balance + total
    elif 0 < amount_due < payments_port.minimum_charge(str(invoice["currency"])):
        # Too little to charge: Stripe carries it to the customer's next invoice.
        carried = amount_due
        amount_due, ending = 0, ending + amount_due
    sequence = int(customer.get("next_invoice_sequence") or 1)
    number = f"{customer.get('invoice_prefix') or 'SANDBOX'}-{sequence:04d}"
    # The balance moves through its ledger: one customer balance transaction per reason.
    before = {"balance": customer.get("balance") or 0, "currency": customer.get("currency")}
    for amount, kind in (
        (ending - carried - balance, "applied_to_invoice"),
        (carried, "invoice_too_small"),
    ):
        if amount:
            customer_balance.record(
                state,
                customer,
                amount=amount,
                kind=kind,
                currency=str(invoice["currency"]),
                invoice=invoice["id"],
                emit=False,
            )
    state.update(customer, {"next_invoice_sequence": sequence + 1})
    if ending != balance:
        previous = {k: v for k, v in before.items() if customer.get(k) != v}
        state.emit("customer.updated", customer, previous)
    transitions = dict(invoice["status_transitions"], finalized_at=now)
    state.update(
        invoice,
        {
            "status": "open",
            "number": number,
            "hosted_invoice_url": hosted_page(state, invoice),
            "effective_at": now,
            "starting_balance": balance,
            "ending_balance": ending,
            "amount_due": amount_due,
            "amount_remaining": amount_due,
            "status_transitions": transitions,
            "automatically_finalizes_at": None,
        },
    )
    state.emit("invoice.finalized", invoice)
    sending.finalized(state, invoice)
    if amount_due == 0:
        mark_paid(state, invoice, payment_intent=None)
    return invoice


def hosted_page(state: SandboxState, invoice: StripeObject) -> str:
    """The invoice's hosted page (`hosted_invoice_url`), behind a secret like Stripe's."""
    from billfold_sandbox.pages import page_url

    if not invoice.get("_page"):
        invoice["_page"] = f"{invoice['id']}_{secrets.token_hex(12)}"
    return page_url(state, f"/i/{invoice['_page']}")


def payment_method_for(state: SandboxState, invoice: StripeObject) -> str | None:
    """The method Stripe charges: invoice's, then subscription's, then the customer's default."""
    if invoice.get("default_payment_method"):
        return str(invoice["default_payment_method"])
    sub_id = subscription_of(invoice)
    if sub_id:
        sub = state.get("subscription", sub_id)
        if sub and sub.get("default_payment_method"):
            return str(sub["default_payment_method"])
    customer = state.get("customer", invoice["customer"])
    if customer:
        default = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if default:
            return str(default)
    return None


def subscription_of(invoice: StripeObject) -> str | None:
    """The subscription an invoice bills (`parent.subscription_details.subscription`)."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    sub = details.get("subscription")
    return str(sub) if sub else None


@dataclass
class Collection:
    """The outcome of one attempt to collect an invoice."""

    status: str  # "paid" | "failed" | "requires_action" | "processing" | "no_payment_method"
    # | "sent" (send_invoice: left to the customer)
    payment_intent: str | None = None
    error: dict[str, Any] | None = None


def collect(
    state: SandboxState,
    invoice: StripeObject,
    *,
    payment_method: str | None = None,
    off_session: bool = True,
    schedule_retry: bool = True,
) -> Collection:
    """Attempt payment of an open invoice with its PaymentIntent (one per invoice, reused).

    Success: `invoice_payment.paid`, `invoice.paid`, `invoice.payment_succeeded`. Failure:
    `invoice.payment_failed`, and for automatic collection (`schedule_retry`) the next retry
    is scheduled. 3-D Secure: `invoice.payment_action_required`. A bank debit stays
    `processing` until it settles (then `on_payment_outcome` finishes the job).
    """
    if invoice["status"] != "open":
        raise invalid_request(f"Invoice is already {invoice['status']}.", code="invoice_not_open")
    if sending.awaits_customer(invoice, payment_method, automatic=schedule_retry):
        return Collection("sent")
    pm = payment_method or payment_method_for(state, invoice)
    inpay = _default_payment(state, invoice)
    outcome = payments_port.charge(
        state,
        customer=str(invoice["customer"]),
        amount=int(invoice["amount_remaining"]),
        currency=str(invoice["currency"]),
        payment_method=pm,
        off_session=off_session,
        description=_payment_description(invoice),
        metadata={},
        payment_intent=_payment_intent_of(inpay),
    )
    if outcome.payment_intent is not None and (
        inpay is None or _payment_intent_of(inpay) != outcome.payment_intent
    ):
        if inpay is not None:
            inpay["is_default"] = False
        inpay = _new_invoice_payment(state, invoice, outcome.payment_intent)
    invoice["_automatic"] = schedule_retry
    state.update(invoice, {"attempt_count": int(invoice["attempt_count"]) + 1, "attempted": True})
    if outcome.status == "succeeded":
        mark_paid(state, invoice, payment_intent=outcome.payment_intent)
        return Collection("paid", outcome.payment_intent)
    if outcome.status == "processing":
        previous = state.update(invoice, {"next_payment_attempt": None})
        state.emit("invoice.updated", invoice, previous or None)
        return Collection("processing", outcome.payment_intent)
    if outcome.status == "requires_action":
        state.update(invoice, {"next_payment_attempt": None})
        state.emit("invoice.payment_action_required", invoice)
        for callback in list(_action_callbacks):
            callback(state, invoice)
        return Collection("requires_action", outcome.payment_intent, outcome.error)
    record_failure(state, invoice, schedule_retry=schedule_retry)
    status = "failed" if pm is not None else "no_payment_method"
    return Collection(status, outcome.payment_intent, outcome.error)


def _payment_description(invoice: StripeObject) -> str:
    reasons = {
        "subscription_create": "Subscription creation",
        "subscription_cycle": "Subscription cycle",
        "subscription_update": "Subscription update",
    }
    return reasons.get(str(invoice.get("billing_reason")), f"Invoice {invoice['number']}")


def record_failure(state: SandboxState, invoice: StripeObject, *, schedule_retry: bool) -> None:
    """A failed attempt: the next automatic retry (Smart Retries, simplified: the billing
    settings' `retry_days` after the first failure), `invoice.payment_failed`, callbacks."""
    now = state.now_for(invoice)
    next_attempt: int | None = None
    if schedule_retry and invoice.get("auto_advance", True):
        started = invoice.get("_retry_started") or now
        invoice["_retry_started"] = started
        days = [int(d) for d in billing_settings(state)["retry_days"]]
        done = int(invoice.get("_automatic_attempts", 0))
        invoice["_automatic_attempts"] = done + 1
        if done < len(days):
            next_attempt = int(started) + days[done] * 86_400
            state.cancel_timers(invoice["id"], RETRY_TIMER)
            state.schedule(
                next_attempt, RETRY_TIMER, invoice["id"], clock_id=state.clock_of(invoice)
            )
        else:
            invoice["_retries_exhausted"] = True
    state.update(invoice, {"next_payment_attempt": next_attempt})
    state.emit("invoice.payment_failed", invoice)
    for failed in list(_failed_callbacks):
        failed(state, invoice)


@payments_port.on_payment_outcome
def _payment_settled_later(state: SandboxState, intent: StripeObject) -> None:
    """A PaymentIntent of an open invoice finished after the attempt (bank debit settled,
    3-D Secure done, the customer confirmed it): the invoice follows."""
    if intent.get("object") != "payment_intent":
        return
    inpay = next(
        (
            ip
            for ip in state.all("invoice_payment")
            if ip["payment"].get("payment_intent") == intent["id"] and ip["status"] == "open"
        ),
        None,
    )
    if inpay is None:
        return
    invoice = state.get("invoice", str(inpay["invoice"]))
    if invoice is None or invoice["status"] not in ("open", "uncollectible"):
        return
    if intent["status"] in payments_port.SUCCEEDED:
        if invoice["status"] == "uncollectible":
            invoice["status"] = "open"
        mark_paid(state, invoice, payment_intent=str(intent["id"]))
    elif intent["status"] == "requires_payment_method" and intent.get("last_payment_error"):
        record_failure(state, invoice, schedule_retry=bool(invoice.get("_automatic", True)))


def _default_payment(state: SandboxState, invoice: StripeObject) -> StripeObject | None:
    for inpay_id in invoice.get("_payments", []):
        inpay = state.get("invoice_payment", inpay_id)
        if inpay is not None and inpay["is_default"] and inpay["status"] == "open":
            return inpay
    return None


def paid_with(state: SandboxState, invoice: StripeObject) -> str | None:
    """The PaymentIntent that paid the invoice, if one did."""
    for inpay_id in reversed(invoice.get("_payments", [])):
        inpay = state.get("invoice_payment", inpay_id)
        if inpay is not None and inpay["status"] == "paid":
            return _payment_intent_of(inpay)
    return None


def open_payment_intent(state: SandboxState, invoice: StripeObject) -> str | None:
    """The PaymentIntent currently collecting the invoice, if any."""
    return _payment_intent_of(_default_payment(state, invoice))


def attach_intent(state: SandboxState, invoice: StripeObject, payment_intent: StripeObject) -> None:
    """Make `payment_intent` the invoice's payment (`default_incomplete`: confirmed later by the
    customer); the invoice's `confirmation_secret` then carries its client secret."""
    _new_invoice_payment(state, invoice, str(payment_intent["id"]))
    invoice["_confirmation_secret"] = {
        "client_secret": payment_intent.get("client_secret"),
        "type": "payment_intent",
    }
    state.touch()


def _payment_intent_of(inpay: StripeObject | None) -> str | None:
    if inpay is None:
        return None
    return str(inpay["payment"].get("payment_intent") or "") or None


def _new_invoice_payment(
    state: SandboxState, invoice: StripeObject, payment_intent: str
) -> StripeObject:
    inpay: StripeObject = {
        "id": state.new_id("inpay"),
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": invoice["amount_remaining"],
        "created": state.now_for(invoice),
        "currency": invoice["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }
    state.insert(inpay)
    invoice["_payments"] = [*invoice.get("_payments", []), inpay["id"]]
    state.touch()
    return inpay


def mark_paid(state: SandboxState, invoice: StripeObject, *, payment_intent: str | None) -> None:
    """open -> paid: `invoice_payment.paid` (when money moved), `invoice.paid`,
    `invoice.payment_succeeded`, then the subscription callbacks."""
    now = state.now_for(invoice)
    amount = int(invoice["amount_remaining"])
    if payment_intent is not None:
        inpay = _default_payment(state, invoice)
        if inpay is None or _payment_intent_of(inpay) != payment_intent:
            inpay = _new_invoice_payment(state, invoice, payment_intent)
        state.update(
            inpay,
            {
                "status": "paid",
                "amount_paid": amount,
                "status_transitions": {"canceled_at": None, "paid_at": now},
            },
        )
        state.emit("invoice_payment.paid", inpay)
    state.cancel_timers(invoice["id"], RETRY_TIMER)
    state.update(
        invoice,
        {
            "status": "paid",
            "amount_paid": int(invoice["amount_paid"]) + amount,
            "amount_remaining": 0,
            "next_payment_attempt": None,
            "attempted": True,
            "status_transitions": dict(invoice["status_transitions"], paid_at=now),
        },
    )
    state.emit("invoice.paid", invoice)
    state.emit("invoice.payment_succeeded", invoice)
    for callback in list(_paid_callbacks):
        callback(state, invoice)


def void(state: SandboxState, invoice: StripeObject) -> StripeObject:
    """open -> void (`invoice.voided`); draft invoices cannot be voided (delete them)."""
    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid_request(
            "You can only pass in open or uncollectible invoices. "
            f"This invoice is {invoice['status']}.",
        )
    now = state.now_for(invoice)
    state.cancel_timers(invoice["id"])
    for inpay_id in invoice.get("_payments", []):
        inpay = state.get("invoice_payment", inpay_id)
        if inpay is not None and inpay["status"] == "open":
            state.update(
                inpay,
                {"status": "canceled", "status_transitions": {"canceled_at": now, "paid_at": None}},
            )
            payments_port.cancel(state, _payment_intent_of(inpay))
    _unapply_balance(state, invoice)
    credit_grants.give_back(state, invoice)
    state.update(
        invoice,
        {
            "status": "void",
            "next_payment_attempt": None,
            "amount_remaining": 0,
            "status_transitions": dict(invoice["status_transitions"], voided_at=now),
        },
    )
    state.emit("invoice.voided", invoice)
    return invoice


def _unapply_balance(state: SandboxState, invoice: StripeObject) -> None:
    """A voided invoice gives back the customer balance it used (`unapplied_from_invoice`)."""
    used = sum(
        int(t["amount"])
        for t in customer_balance.transactions_of(state, invoice["customer"])
        if t["invoice"] == invoice["id"] and t["type"] == "applied_to_invoice"
    )
    customer = state.get("customer", invoice["customer"])
    if used and customer is not None and not customer.get("deleted"):
        customer_balance.record(
            state,
            customer,
            amount=-used,
            kind="unapplied_from_invoice",
            currency=str(invoice["currency"]),
            invoice=invoice["id"],
        )


def mark_uncollectible(state: SandboxState, invoice: StripeObject) -> StripeObject:
    """open -> uncollectible (`invoice.marked_uncollectible`); it may still be paid later."""
    if invoice["status"] != "open":
        raise invalid_request(
            "You can only mark open invoices as uncollectible. "
            f"This invoice is {invoice['status']}."
        )
    state.cancel_timers(invoice["id"], RETRY_TIMER)
    state.update(
        invoice,
        {
            "status": "uncollectible",
            "next_payment_attempt": None,
            "status_transitions": dict(
                invoice["status_transitions"], marked_uncollectible_at=state.now_for(invoice)
            ),
        },
    )
    state.emit("invoice.marked_uncollectible", invoice)
    return invoice


def payments_list(state: SandboxState, invoice: StripeObject) -> StripeObject:
    """The invoice's `payments` list object (for `expand[]=payments`)."""
    found = [state.get("invoice_payment", i) for i in reversed(invoice.get("_payments", []))]
    data = [p for p in found if p is not None]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "total_count": len(data),
        "url": f"/v1/invoices/{invoice['id']}/payments",
    }


# --- timers -----------------------------------------------------------------------------------


def finalize_and_collect(state: SandboxState, invoice: StripeObject) -> None:
    """What Stripe does an hour after creating a renewal invoice: finalize, then charge."""
    if invoice["status"] != "draft" or not invoice.get("auto_advance", True):
        return
    finalize(state, invoice)
    if invoice["status"] == "open":
        collect(state, invoice)


def replace_lines(state: SandboxState, invoice: StripeObject, lines: list[StripeObject]) -> None:
    """Set a draft invoice's lines (lines edited or removed) and its totals (`invoice.updated`)."""
    before = {"total": invoice["total"], "amount_due": invoice["amount_due"]}
    invoice["lines"] = dict(invoice["lines"], data=lines, total_count=len(lines))
    _compute_totals(state, invoice)
    state.touch()
    state.emit("invoice.updated", invoice, before)
