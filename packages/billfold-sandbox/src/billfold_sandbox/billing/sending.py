"""Invoices emailed to the customer (`collection_method=send_invoice`), as Stripe Billing does.

Such an invoice is never charged on its own: finalizing it sends it (`invoice.sent`, when
`auto_advance`) and sets its `due_date` (`days_until_due` after it was made, unless given);
it stays `open` until the customer pays it (the hosted page, `pay` with a payment method, or
`paid_out_of_band`). At its due date an unpaid one is `invoice.overdue`, and the subscription
it bills goes `past_due` (back to `active` when it is paid). A subscription collected this way
is `active` from its start, its first invoice sent rather than charged.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.state import SandboxState, StripeObject, Timer

DAY = 86_400
OVERDUE = "invoice.overdue"
SEND = "send_invoice"


def collection_settings(
    params: dict[str, Any], method: str, days: int | None, *, due_date_ok: bool = False
) -> tuple[str, int | None]:
    """`collection_method` and `days_until_due` after `params`, checked the way Stripe does:
    `send_invoice` needs `days_until_due` (or, on invoices, `due_date`); automatic collection
    takes neither."""
    method = str(params.get("collection_method") or method)
    if "days_until_due" in params:
        days = params["days_until_due"]
    if method != SEND:
        if params.get("days_until_due") is not None or params.get("due_date") is not None:
            param = "days_until_due" if params.get("days_until_due") is not None else "due_date"
            raise invalid_request(
                f"{param} can only be set when collection_method is send_invoice.", param=param
            )
        return method, None
    if days is None and not (due_date_ok and params.get("due_date") is not None):
        raise invalid_request(
            "Missing required param: days_until_due. It is required when collection_method "
            "is send_invoice.",
            param="days_until_due",
            code="parameter_missing",
        )
    return method, days


def check_due_date(due_date: int | None, now: int) -> None:
    if due_date is not None and due_date <= now:
        raise invalid_request("due_date must be in the future.", param="due_date")


def due_date(subscription: StripeObject | None, now: int) -> int | None:
    """The due date of a new invoice for `subscription` (None unless it sends invoices)."""
    if subscription is None or subscription.get("collection_method") != SEND:
        return None
    return now + int(subscription.get("days_until_due") or 0) * DAY


def awaits_customer(invoice: StripeObject, payment_method: str | None, *, automatic: bool) -> bool:
    """True when an automatic collection attempt must leave the invoice to its customer."""
    return invoice.get("collection_method") == SEND and payment_method is None and automatic


def finalized(state: SandboxState, invoice: StripeObject) -> None:
    """A `send_invoice` invoice was finalized: its due date is armed and, with `auto_advance`,
    it is sent."""
    if invoice.get("collection_method") != SEND:
        return
    if invoice.get("due_date") is None:
        days = int(invoice.get("_days_until_due") or 0)
        state.update(invoice, {"due_date": state.now_for(invoice) + days * DAY})
    state.schedule(
        int(invoice["due_date"]), OVERDUE, invoice["id"], clock_id=state.clock_of(invoice)
    )
    if invoice.get("auto_advance", True):
        send(state, invoice)


def send(state: SandboxState, invoice: StripeObject) -> None:
    """The invoice is emailed to its customer (`invoice.sent`); the sandbox sends no email."""
    state.emit("invoice.sent", invoice)


def overdue(state: SandboxState, timer: Timer) -> None:
    """The due date passed unpaid: `invoice.overdue`; its subscription goes `past_due`."""
    invoice = state.get("invoice", timer.object_id)
    if invoice is None or invoice["status"] != "open":
        return
    state.emit("invoice.overdue", invoice)
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    sub = state.get("subscription", str(details.get("subscription")))
    if sub is None or sub.get("latest_invoice") != invoice["id"] or sub["status"] != "active":
        return
    previous = state.update(sub, {"status": "past_due"})
    state.emit("customer.subscription.updated", sub, previous)
