"""Usage-based billing: meters, their events, and the usage a metered price bills.

A meter (`billing.meter`, `mtr_`) aggregates the meter events (`billing.meter_event`) sent with
its `event_name` for one customer (`payload[<customer_mapping.event_payload_key>]`, default
`stripe_customer_id`) with its formula: `sum` of `payload[<value_settings.event_payload_key>]`
(default `value`), `count` of events, or the `last` value. A subscription item whose price is
`recurring.usage_type=metered` with `recurring.meter` bills, on the invoice that ends its period,
the meter's aggregate over that period (in arrears, as on Stripe); the first invoice bills no
usage.

Simplified: values are whole numbers; per-unit prices only (no tiers); events for a meter that
does not exist or is inactive are refused at once (Stripe accepts them and reports the error
later through `v1.billing.meter.error_report_triggered`, a v2 thin event the sandbox does not
send); an `identifier` stays unique for good (Stripe: within a rolling 24 hours).
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing import invoicing
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.state import SandboxState, StripeObject

METER = "billing.meter"
METER_EVENT = "billing.meter_event"
# Stored meter events are keyed by identifier (Stripe's uniqueness rule), so a resent event
# is found without a scan.
EVENT_ID_PREFIX = "mtrevt_"


def is_metered(price: StripeObject) -> bool:
    """A price billed on usage (`recurring.usage_type=metered`)."""
    recurring = price.get("recurring") or {}
    return recurring.get("usage_type") == "metered"


def refuse_quantity(price: StripeObject, entry: dict[str, Any], where: str) -> None:
    """Stripe refuses a quantity for a metered price (the usage is its quantity)."""
    if is_metered(price) and "quantity" in entry:
        raise invalid_request(
            "Quantity should not be specified where usage_type is `metered`. "
            f"Remove quantity from `{where}`.",
            param=f"{where}[quantity]",
        )


def check_meter(state: SandboxState, recurring: dict[str, Any]) -> None:
    """A metered price is backed by an existing meter; a licensed one has none."""
    meter = recurring.get("meter")
    if recurring.get("usage_type") != "metered":
        if meter:
            raise invalid_request(
                "A meter can only be set on a price with `recurring[usage_type]=metered`.",
                param="recurring[meter]",
            )
        return
    if not meter:
        raise invalid_request(
            "Metered prices must be backed by a meter: set `recurring[meter]`.",
            param="recurring[meter]",
            code="parameter_missing",
        )
    state.require(METER, str(meter), param="recurring[meter]")


def meter_for_event(state: SandboxState, event_name: str) -> StripeObject | None:
    """The meter that aggregates events named `event_name` (an active one first)."""
    found = [m for m in state.all(METER) if m["event_name"] == event_name]
    found.sort(key=lambda m: m["status"] != "active")
    return found[0] if found else None


def customer_key(meter: StripeObject) -> str:
    return str((meter.get("customer_mapping") or {}).get("event_payload_key", "stripe_customer_id"))


def value_key(meter: StripeObject) -> str:
    return str((meter.get("value_settings") or {}).get("event_payload_key", "value"))


def events_of(
    state: SandboxState, meter: StripeObject, customer: str, start: int, end: int
) -> list[StripeObject]:
    """The meter's events for `customer` with `start <= timestamp < end`, oldest first."""
    key = customer_key(meter)
    found = [
        e
        for e in state.all(METER_EVENT)
        if e["event_name"] == meter["event_name"]
        and e["payload"].get(key) == customer
        and start <= int(e["timestamp"]) < end
        and not e.get("_canceled")
    ]
    found.sort(key=lambda e: (int(e["timestamp"]), int(e["created"])))
    return found


def aggregate(state: SandboxState, meter: StripeObject, customer: str, start: int, end: int) -> int:
    """The meter's formula over the customer's events in [start, end)."""
    found = events_of(state, meter, customer, start, end)
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return len(found)
    values = [int(e["payload"][value_key(meter)]) for e in found]
    if formula == "last":
        return values[-1] if values else 0
    return sum(values)


def usage_line(
    state: SandboxState, sub: StripeObject, item: StripeObject, period: tuple[int, int]
) -> StripeObject:
    """The invoice line for a metered item on the invoice that starts `period`: the usage of
    the period that ends there (the item's stored period), priced per unit."""
    stored = next((i for i in sub["items"]["data"] if i["id"] == item["id"]), item)
    # Usage already billed (a pause that billed it) is not billed again.
    start = max(int(stored["current_period_start"]), int(stored.get("_usage_billed_through") or 0))
    end = int(period[0])
    price = item["price"]
    meter_id = (price.get("recurring") or {}).get("meter")
    meter = state.get(METER, str(meter_id)) if meter_id else None
    quantity = 0
    if meter is not None and end > start:
        quantity = aggregate(state, meter, str(sub["customer"]), start, end)
    return invoicing.price_line(
        state,
        price,
        quantity,
        period=(start, max(start, end)),
        subscription=sub["id"],
        subscription_item=item["id"],
    )


def new_meter(state: SandboxState, params: dict[str, Any]) -> StripeObject:
    """A meter from validated create parameters (stored by the caller)."""
    now = state.now()
    mapping = params.get("customer_mapping") or {}
    return {
        "id": state.new_id("mtr"),
        "object": METER,
        "created": now,
        "customer_mapping": {
            "event_payload_key": mapping.get("event_payload_key", "stripe_customer_id"),
            "type": mapping.get("type", "by_id"),
        },
        "default_aggregation": {"formula": params["default_aggregation"]["formula"]},
        "display_name": params["display_name"],
        "event_name": params["event_name"],
        "event_time_window": params.get("event_time_window"),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {
            "event_payload_key": (params.get("value_settings") or {}).get(
                "event_payload_key", "value"
            )
        },
    }


def final_usage_lines(state: SandboxState, sub: StripeObject, at: int) -> list[StripeObject]:
    """The usage of the subscription's metered items not billed yet, up to `at` (a
    cancellation bills it on a final invoice)."""
    lines = [
        usage_line(state, sub, item, (at, at))
        for item in sub["items"]["data"]
        if is_metered(item["price"])
    ]
    return [line for line in lines if line["quantity"]]


def bill_final_usage(state: SandboxState, sub: StripeObject, at: int) -> None:
    """A subscription ending at its period's end (or `cancel_at`): its last usage (with any
    pending items and its discounts) is invoiced and charged, as Stripe does."""
    from billfold_sandbox.billing import lifecycle  # lifecycle imports this module

    lines = final_usage_lines(state, sub, at)
    if lines:
        invoice = lifecycle._invoice_change(state, sub, lines, pending=True)
        lifecycle.settle_change_invoice(state, sub, invoice)
