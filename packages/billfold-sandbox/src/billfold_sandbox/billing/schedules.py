"""Subscription schedules: phases that move a subscription along on its customer's clock.

A schedule (`sub_sched_...`) is `not_started` until its start date, then `active`: it starts
a subscription with the first phase's items (or takes over one, `from_subscription`) and at
each phase's end moves the subscription to the next phase's items, prorated as the phase says
(`proration_behavior`), the way a subscription update does. After the last phase it is
`released` (the subscription goes on by itself, `end_behavior=release`) or `completed` with the
subscription canceled (`end_behavior=cancel`). `release` and `cancel` end it early.

Time moves through timers on the customer's clock: `subscription_schedule.start`,
`subscription_schedule.phase_end` and `subscription_schedule.expiring` (7 days before the end).
A phase's timer is armed before the subscription's own timers for the same instant, so a phase
ending on a renewal date changes the items first and the renewal bills the new ones.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing import invoicing, lifecycle
from billfold_sandbox.billing.periods import add_intervals
from billfold_sandbox.state import SandboxState, StripeObject, Timer

START = "subscription_schedule.start"
PHASE_END = "subscription_schedule.phase_end"
EXPIRING = "subscription_schedule.expiring"
EXPIRING_NOTICE = 7 * 86_400
LIVE = ("not_started", "active")


def default_settings(
    default_payment_method: str | None = None,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
) -> StripeObject:
    """The schedule's `default_settings` (what the sandbox models: the payment method and how
    invoices are collected)."""
    return {
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": "automatic",
        "billing_thresholds": None,
        "collection_method": collection_method,
        "default_payment_method": default_payment_method,
        "description": None,
        "invoice_settings": {
            "account_tax_ids": None,
            "custom_fields": None,
            "days_until_due": days_until_due,
            "description": None,
            "footer": None,
            "issuer": {"type": "self"},
        },
        "on_behalf_of": None,
        "transfer_data": None,
    }


def phase_item(price: StripeObject, quantity: int, metadata: dict[str, str]) -> StripeObject:
    """One of a phase's `items` (prices are ids, as on Stripe)."""
    return {
        "billing_thresholds": None,
        "discounts": [],
        "metadata": dict(metadata),
        "plan": price["id"],
        "price": price["id"],
        "quantity": quantity,
        "tax_rates": [],
    }


def new_phase(
    *,
    items: list[StripeObject],
    currency: str,
    start: int,
    end: int,
    proration_behavior: str = "create_prorations",
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    default_payment_method: str | None = None,
    trial_end: int | None = None,
    add_invoice_items: list[StripeObject] | None = None,
    collection_method: str | None = None,
    days_until_due: int | None = None,
) -> StripeObject:
    """A phase as the schedule shows it."""
    return {
        "add_invoice_items": list(add_invoice_items or []),
        "application_fee_percent": None,
        "billing_cycle_anchor": None,
        "billing_thresholds": None,
        "collection_method": collection_method,
        "currency": currency,
        "default_payment_method": default_payment_method,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "end_date": end,
        "invoice_settings": None
        if days_until_due is None
        else {"account_tax_ids": None, "days_until_due": days_until_due, "issuer": None},
        "items": items,
        "metadata": dict(metadata or {}),
        "on_behalf_of": None,
        "proration_behavior": proration_behavior,
        "start_date": start,
        "transfer_data": None,
        "trial_end": trial_end,
    }


def phase_end_date(
    start: int, end_date: int | None, duration: dict[str, Any] | None, price: StripeObject
) -> int:
    """A phase's end: `end_date`, or `duration` after its start, or one billing interval of
    its first price."""
    if end_date is not None:
        return end_date
    if duration is not None:
        return add_intervals(
            start, str(duration["interval"]), int(duration.get("interval_count") or 1), 1
        )
    recurring = price["recurring"]
    return add_intervals(
        start, str(recurring["interval"]), int(recurring.get("interval_count") or 1), 1
    )


def new_schedule(
    state: SandboxState,
    *,
    customer: StripeObject,
    phases: list[StripeObject],
    end_behavior: str,
    metadata: dict[str, str],
    default_payment_method: str | None,
    collection: tuple[str, int | None] = ("charge_automatically", None),
) -> StripeObject:
    """A `not_started` schedule (stored; `subscription_schedule.created` is the caller's)."""
    schedule: StripeObject = {
        "id": state.new_id("sub_sched"),
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "canceled_at": None,
        "completed_at": None,
        "created": state.now_for(customer),
        "current_phase": None,
        "customer": customer["id"],
        "customer_account": None,
        "default_settings": default_settings(default_payment_method, *collection),
        "end_behavior": end_behavior,
        "livemode": False,
        "metadata": dict(metadata),
        "phases": phases,
        "released_at": None,
        "released_subscription": None,
        "status": "not_started",
        "subscription": None,
        "test_clock": state.clock_of(customer),
        "_phase": None,
    }
    state.insert(schedule)
    return schedule


# --- the subscription ----------------------------------------------------------------------


def _prices(
    state: SandboxState, phase: StripeObject
) -> list[tuple[StripeObject, int, dict[str, str]]]:
    return [
        (state.require("price", str(i["price"])), int(i["quantity"]), dict(i["metadata"]))
        for i in phase["items"]
    ]


def _one_time(state: SandboxState, phase: StripeObject) -> list[tuple[StripeObject, int]]:
    return [
        (state.require("price", str(i["price"])), int(i["quantity"]))
        for i in phase["add_invoice_items"]
    ]


def _payment_method(schedule: StripeObject, phase: StripeObject) -> str | None:
    found = phase.get("default_payment_method") or schedule["default_settings"].get(
        "default_payment_method"
    )
    return str(found) if found else None


def collection_of(schedule: StripeObject, phase: StripeObject) -> tuple[str, int | None]:
    """How the phase's invoices are collected: its own settings, else the schedule's."""
    defaults = schedule["default_settings"]
    method = str(phase.get("collection_method") or defaults["collection_method"])
    days = (phase.get("invoice_settings") or {}).get("days_until_due")
    if days is None:
        days = (defaults.get("invoice_settings") or {}).get("days_until_due")
    return method, (days if method == "send_invoice" else None)


def start(state: SandboxState, schedule: StripeObject) -> StripeObject:
    """The start date came: the first phase's subscription is created and charged."""
    phase = schedule["phases"][0]
    customer = state.require("customer", schedule["customer"])
    last = len(schedule["phases"]) == 1
    method, days = collection_of(schedule, phase)
    sub = lifecycle.start_subscription(
        state,
        customer=customer,
        items=_prices(state, phase),
        default_payment_method=_payment_method(schedule, phase),
        trial_end=phase.get("trial_end"),
        metadata=phase["metadata"],
        description=phase.get("description"),
        cancel_at=int(phase["end_date"]) if last and schedule["end_behavior"] == "cancel" else None,
        off_session=True,
        extra_items=_one_time(state, phase),
        schedule=schedule["id"],
        collection_method=method,
        days_until_due=days,
    )
    enter(state, schedule, 0, sub)
    return sub


def take_over(state: SandboxState, schedule: StripeObject, sub: StripeObject) -> None:
    """`from_subscription`: the schedule manages `sub` from its current phase on."""
    previous = state.update(sub, {"schedule": schedule["id"]})
    state.emit("customer.subscription.updated", sub, previous)
    enter(state, schedule, 0, sub)


def enter(state: SandboxState, schedule: StripeObject, index: int, sub: StripeObject) -> None:
    """Phase `index` is now the current one: status, `current_phase`, timers."""
    phase = schedule["phases"][index]
    schedule["_phase"] = index
    state.update(
        schedule,
        {
            "status": "active",
            "subscription": sub["id"],
            "current_phase": {"start_date": phase["start_date"], "end_date": phase["end_date"]},
        },
    )
    arm(state, schedule)
    lifecycle.reschedule(state, sub)  # the subscription's timers for the same instant run after


def arm(state: SandboxState, schedule: StripeObject) -> None:
    """(Re)arm the schedule's timers from its status and phases."""
    clock = state.clock_of(schedule)
    state.cancel_timers(schedule["id"])
    if schedule["status"] == "not_started":
        state.schedule(
            int(schedule["phases"][0]["start_date"]), START, schedule["id"], clock_id=clock
        )
        return
    if schedule["status"] != "active":
        return
    index = int(schedule["_phase"])
    state.schedule(
        int(schedule["phases"][index]["end_date"]), PHASE_END, schedule["id"], clock_id=clock
    )
    final_end = int(schedule["phases"][-1]["end_date"])
    if final_end - EXPIRING_NOTICE > state.now(clock):
        state.schedule(final_end - EXPIRING_NOTICE, EXPIRING, schedule["id"], clock_id=clock)


def apply_phase(
    state: SandboxState,
    schedule: StripeObject,
    sub: StripeObject,
    index: int,
    *,
    proration_behavior: str,
) -> None:
    """Move `sub` to phase `index`'s items (prorated like a subscription update), payment method,
    metadata and description; `customer.subscription.updated`; a change invoice is charged."""
    phase = schedule["phases"][index]
    unused = list(lifecycle.items_of(sub))
    new_items: list[tuple[StripeObject | None, StripeObject, int, dict[str, str]]] = []
    for price, quantity, metadata in _prices(state, phase):
        existing = next((i for i in unused if i["price"]["id"] == price["id"]), None)
        if existing is not None:
            unused.remove(existing)
        new_items.append((existing, price, quantity, metadata))
    changes, invoice = lifecycle.change_items(
        state, sub, new_items, proration_behavior=proration_behavior, proration_date=None
    )
    payment_method = _payment_method(schedule, phase)
    if payment_method is not None:
        changes["default_payment_method"] = payment_method
    collection, days = collection_of(schedule, phase)
    changes.update(collection_method=collection, days_until_due=days)
    if phase["metadata"]:
        changes["metadata"] = {**sub["metadata"], **phase["metadata"]}
    if phase.get("description") is not None:
        changes["description"] = phase["description"]
    final_end = int(schedule["phases"][-1]["end_date"])
    if schedule["end_behavior"] == "cancel":
        last = index == len(schedule["phases"]) - 1
        changes["cancel_at"] = int(phase["end_date"]) if last else None
    elif sub.get("cancel_at") is not None and int(sub["cancel_at"]) == final_end:
        changes["cancel_at"] = None  # the schedule had set it; it now releases instead
    now = state.now_for(sub)
    for price, quantity in _one_time(state, phase):
        line = invoicing.price_line(
            state, price, quantity, period=(now, now), subscription=sub["id"]
        )
        invoicing.add_invoice_item(
            state, customer=sub["customer"], line=line, subscription=sub["id"], proration=False
        )
    previous = state.update(sub, changes)
    if previous:
        state.emit("customer.subscription.updated", sub, previous)
    lifecycle.reschedule(state, sub)
    if invoice is not None:
        lifecycle.settle_change_invoice(state, sub, invoice)


def subscription_of(state: SandboxState, schedule: StripeObject) -> StripeObject | None:
    sub_id = schedule.get("subscription")
    return state.get("subscription", str(sub_id)) if sub_id else None


def follow_subscription(state: SandboxState, schedule: StripeObject) -> bool:
    """An active schedule whose subscription ended without it (canceled, unpaid to the end)
    is canceled too (`subscription_schedule.aborted` after a payment failure). True if so."""
    if schedule["status"] != "active":
        return False
    sub = subscription_of(state, schedule)
    if sub is None or sub["status"] not in lifecycle.ENDED:
        return False
    state.cancel_timers(schedule["id"])
    state.update(
        schedule,
        {
            "status": "canceled",
            "canceled_at": sub.get("ended_at") or state.now_for(schedule),
            "current_phase": None,
        },
    )
    reason = (sub.get("cancellation_details") or {}).get("reason")
    kind = "aborted" if reason == "payment_failed" else "canceled"
    state.emit(f"subscription_schedule.{kind}", schedule)
    return True


# --- ending ------------------------------------------------------------------------------------


def release(state: SandboxState, schedule: StripeObject, *, preserve_cancel_date: bool) -> None:
    """The schedule lets go of its subscription, which goes on by itself."""
    now = state.now_for(schedule)
    sub = subscription_of(state, schedule)
    state.cancel_timers(schedule["id"])
    state.update(
        schedule,
        {
            "status": "released",
            "released_at": now,
            "released_subscription": sub["id"] if sub is not None else None,
            "subscription": None,
            "current_phase": None,
        },
    )
    if sub is not None:
        changes: dict[str, Any] = {"schedule": None}
        if not preserve_cancel_date and schedule["end_behavior"] == "cancel":
            changes.update(cancel_at=None, cancel_at_period_end=False, canceled_at=None)
        previous = state.update(sub, changes)
        state.emit("customer.subscription.updated", sub, previous)
        lifecycle.reschedule(state, sub)
    state.emit("subscription_schedule.released", schedule)


def cancel(
    state: SandboxState, schedule: StripeObject, *, invoice_now: bool, prorate: bool
) -> None:
    """The schedule ends now and its subscription with it."""
    now = state.now_for(schedule)
    sub = subscription_of(state, schedule)
    state.cancel_timers(schedule["id"])
    state.update(schedule, {"status": "canceled", "canceled_at": now, "current_phase": None})
    if sub is not None and sub["status"] not in lifecycle.ENDED:
        lifecycle.cancel_now(state, sub, prorate_unused=prorate, invoice_now=invoice_now)
    state.emit("subscription_schedule.canceled", schedule)


# --- timers ------------------------------------------------------------------------------------


def start_timer(state: SandboxState, timer: Timer) -> None:
    schedule = state.get("subscription_schedule", timer.object_id)
    if schedule is None or schedule["status"] != "not_started":
        return
    start(state, schedule)
    state.emit("subscription_schedule.updated", schedule, {"status": "not_started"})


def phase_end_timer(state: SandboxState, timer: Timer) -> None:
    """A phase ended: the next one begins, or the schedule is released or completed."""
    schedule = state.get("subscription_schedule", timer.object_id)
    if schedule is None or schedule["status"] != "active" or follow_subscription(state, schedule):
        return
    sub = subscription_of(state, schedule)
    if sub is None:
        return
    index = int(schedule["_phase"]) + 1
    if index < len(schedule["phases"]):
        behavior = str(schedule["phases"][index]["proration_behavior"])
        before = dict(schedule["current_phase"])
        apply_phase(state, schedule, sub, index, proration_behavior=behavior)
        enter(state, schedule, index, sub)
        state.emit("subscription_schedule.updated", schedule, {"current_phase": before})
        return
    if schedule["end_behavior"] == "release":
        release(state, schedule, preserve_cancel_date=True)
        return
    if sub["status"] not in lifecycle.ENDED:
        lifecycle.end_subscription(state, sub, reason="cancellation_requested")
    state.cancel_timers(schedule["id"])
    state.update(
        schedule,
        {"status": "completed", "completed_at": state.now_for(schedule), "current_phase": None},
    )
    state.emit("subscription_schedule.completed", schedule)


def expiring_timer(state: SandboxState, timer: Timer) -> None:
    schedule = state.get("subscription_schedule", timer.object_id)
    if schedule is not None and schedule["status"] == "active":
        state.emit("subscription_schedule.expiring", schedule)


@invoicing.on_payment_failed
def _payment_failed(state: SandboxState, invoice: StripeObject) -> None:
    """A last failed retry that canceled the subscription aborts its schedule at once
    (`subscription_schedule.aborted`); other endings are seen on the schedule's next read."""
    sub_id = invoicing.subscription_of(invoice)
    sub = state.get("subscription", sub_id) if sub_id else None
    schedule = state.get("subscription_schedule", str(sub.get("schedule"))) if sub else None
    if schedule is not None:
        follow_subscription(state, schedule)
