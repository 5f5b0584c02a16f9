"""`POST /v1/subscriptions/{id}/pause` (pause a subscription now, optionally billing the
outstanding metered usage and crediting unused time) and `POST /v1/subscriptions/{id}/migrate`
(classic -> flexible billing mode).

Pause, as on Stripe: the subscription becomes `paused` (`customer.subscription.updated`, then
`customer.subscription.paused`), no further invoices are made until `/resume` starts a new cycle.
`bill_for[outstanding_usage_through][type]=now` bills the metered usage of the current period up to
now; `bill_for[unused_time_from][type]=now` (or `item_current_period_start`) credits the licensed
items' unused time from then to the period's end. `invoicing_behavior=invoice` (the default)
invoices those lines at once; `pending_invoice_item` leaves them for the next invoice.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing import invoicing, lifecycle, metering
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import enum, obj
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

PAUSE = {
    "type": enum("subscription"),
    "bill_for": obj(
        {
            "outstanding_usage_through": obj({"type": enum("none", "now", required=True)}),
            "unused_time_from": obj(
                {"type": enum("item_current_period_start", "none", "now", required=True)}
            ),
        }
    ),
    "invoicing_behavior": enum("invoice", "pending_invoice_item"),
}
MIGRATE = {
    "billing_mode": obj(
        {
            "type": enum("flexible", required=True),
            "flexible": obj({"proration_discounts": enum("included", "itemized")}),
        },
        required=True,
    )
}
PAUSABLE = ("active", "trialing", "past_due")


def _pause_lines(call: Call, sub: StripeObject, now: int) -> list[StripeObject]:
    bill_for = call.params.get("bill_for") or {}
    usage = (bill_for.get("outstanding_usage_through") or {}).get("type", "none")
    unused = (bill_for.get("unused_time_from") or {}).get("type", "none")
    start, end = lifecycle.current_period(sub)
    lines: list[StripeObject] = []
    for item in lifecycle.items_of(sub):
        if metering.is_metered(item["price"]):
            if usage == "now":
                lines.append(metering.usage_line(call.state, sub, item, (now, now)))
        elif unused != "none" and sub["status"] != "trialing":
            at = start if unused == "item_current_period_start" else now
            credit = lifecycle.proration_line(call.state, sub, item, (start, end), at, unused=True)
            if credit is not None:
                lines.append(credit)
    return [line for line in lines if line["amount"] or line["quantity"]]


@router.post("/v1/subscriptions/{id}/pause", PAUSE)
def pause_subscription(call: Call) -> StripeObject:
    state = call.state
    sub = call.require("subscription", call.path["id"])
    if sub["status"] not in PAUSABLE:
        raise invalid_request(
            f"A subscription with status={sub['status']} cannot be paused; only active, "
            "trialing and past_due subscriptions can.",
            param="id",
        )
    now = state.now_for(sub)
    lines = _pause_lines(call, sub, now)
    customer = state.require("customer", sub["customer"])
    if lines and call.params.get("invoicing_behavior", "invoice") == "invoice":
        invoice = lifecycle._invoice_change(state, sub, lines, pending=False)
        lifecycle.settle_change_invoice(state, sub, invoice)
    else:
        for line in lines:
            invoicing.add_invoice_item(
                state,
                customer=customer["id"],
                line=line,
                subscription=sub["id"],
                proration=not metering.is_metered(
                    state.require("price", line["pricing"]["price_details"]["price"])
                ),
            )
    # What was billed (or is pending) now is not billed again when the subscription resumes.
    bill_for = call.params.get("bill_for") or {}
    billed = (bill_for.get("outstanding_usage_through") or {}).get("type") == "now"
    items = [
        dict(i, _usage_billed_through=now) if billed and metering.is_metered(i["price"]) else i
        for i in lifecycle.items_of(sub)
    ]
    state.cancel_timers(sub["id"])
    changes: dict[str, Any] = {"status": "paused", "items": dict(sub["items"], data=items)}
    previous = state.update(sub, changes)
    previous.pop("items", None)
    call.emit("customer.subscription.updated", sub, previous)
    call.emit("customer.subscription.paused", sub)
    return sub


@router.post("/v1/subscriptions/{id}/migrate", MIGRATE)
def migrate_subscription(call: Call) -> StripeObject:
    sub = call.require("subscription", call.path["id"])
    mode = sub.get("billing_mode") or {"type": "classic"}
    if mode.get("type") == "flexible":
        raise invalid_request(
            "This subscription already uses billing_mode[type]=flexible.",
            param="billing_mode[type]",
        )
    flexible = call.params["billing_mode"].get("flexible") or {}
    now = call.state.now_for(sub)
    previous = call.state.update(
        sub,
        {
            "billing_mode": {
                "flexible": {
                    "proration_discounts": flexible.get("proration_discounts", "itemized")
                },
                "type": "flexible",
                "updated_at": now,
            }
        },
    )
    call.emit("customer.subscription.updated", sub, previous)
    return sub
