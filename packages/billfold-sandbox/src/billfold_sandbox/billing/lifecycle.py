"""Subscriptions: start, change, cancel, renew, retry and expire, the way Stripe Billing does.

Statuses and transitions (Stripe's):

    incomplete --first invoice paid--> active          (or trialing when it starts with a trial)
    incomplete --23 h unpaid--> incomplete_expired      (terminal)
    trialing --trial ends, invoice paid--> active       (payment fails -> past_due)
    active --renewal payment fails--> past_due --paid--> active
    past_due --last retry fails--> canceled (default) | unpaid | past_due  (billing settings)
    any live status --cancel now, or period end with cancel_at_period_end--> canceled

Time moves through timers on the customer's clock: `subscription.period_end` (renewal or
scheduled cancellation), `subscription.trial_will_end`, `subscription.incomplete_expiry`,
`subscription.cancel_at`; invoices use `invoice.finalize_and_pay` and `invoice.retry_payment`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billfold_sandbox.billing import discounts as discounting
from billfold_sandbox.billing import invoicing, metering, payments_port
from billfold_sandbox.billing.events import HeldEvents, held_events
from billfold_sandbox.billing.periods import add_intervals, period_containing, prorate
from billfold_sandbox.billing.settings import billing_settings
from billfold_sandbox.errors import card_error, invalid_request
from billfold_sandbox.state import SandboxState, StripeObject, Timer

PERIOD_END = "subscription.period_end"
TRIAL_WILL_END = "subscription.trial_will_end"
INCOMPLETE_EXPIRY = "subscription.incomplete_expiry"
CANCEL_AT = "subscription.cancel_at"
UPCOMING = "subscription.upcoming_invoice"

ENDED = ("canceled", "incomplete_expired")


# --- items --------------------------------------------------------------------------------------


def plan_of(price: StripeObject) -> StripeObject:
    """The legacy `plan` view of a recurring price (still on subscription items)."""
    recurring = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price.get("active", True),
        "amount": price.get("unit_amount"),
        "amount_decimal": price.get("unit_amount_decimal"),
        "billing_scheme": price.get("billing_scheme", "per_unit"),
        "created": price.get("created"),
        "currency": price["currency"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count", 1),
        "livemode": False,
        "metadata": dict(price.get("metadata") or {}),
        "meter": recurring.get("meter"),
        "nickname": price.get("nickname"),
        "product": price.get("product"),
        "tiers_mode": price.get("tiers_mode"),
        "transform_usage": None,
        "trial_period_days": recurring.get("trial_period_days"),
        "usage_type": recurring.get("usage_type", "licensed"),
    }


def new_item(
    state: SandboxState,
    subscription_id: str,
    price: StripeObject,
    quantity: int,
    period: tuple[int, int],
    *,
    created: int,
    metadata: dict[str, str] | None = None,
) -> StripeObject:
    """A subscription item (`si_...`) carrying its own current period (2025+ API shape)."""
    return {
        "id": state.new_id("si", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": created,
        "current_period_end": period[1],
        "current_period_start": period[0],
        "discounts": [],
        "metadata": dict(metadata or {}),
        "plan": plan_of(price),
        "price": dict(price),
        "quantity": 0 if metering.is_metered(price) else quantity,  # usage is billed instead
        "subscription": subscription_id,
        "tax_rates": [],
    }


def items_of(sub: StripeObject) -> list[StripeObject]:
    """The subscription's items."""
    data: list[StripeObject] = sub["items"]["data"]
    return data


def recurring_of(sub: StripeObject) -> tuple[str, int]:
    """The subscription's billing interval and interval count."""
    recurring = items_of(sub)[0]["price"]["recurring"]
    return str(recurring["interval"]), int(recurring.get("interval_count") or 1)


def current_period(sub: StripeObject) -> tuple[int, int]:
    """The subscription's current period (all items share it here)."""
    first = items_of(sub)[0]
    return int(first["current_period_start"]), int(first["current_period_end"])


def check_prices(
    state: SandboxState, prices: list[tuple[StripeObject, str]]
) -> tuple[str, str, int]:
    """Recurring, active, one currency and one billing interval: (currency, interval, count)."""
    currency: str | None = None
    interval: tuple[str, int] | None = None
    for price, param in prices:
        if not price.get("recurring"):
            raise invalid_request(
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.",
                param=param,
            )
        if not price.get("active", True) and not price.get("_inline"):
            raise invalid_request(
                "The price specified is inactive. This field only accepts active prices.",
                param=param,
            )
        this = (
            str(price["recurring"]["interval"]),
            int(price["recurring"].get("interval_count") or 1),
        )
        if currency is not None and price["currency"] != currency:
            raise invalid_request(
                "All prices on a subscription must have the same `currency`.", param=param
            )
        if interval is not None and this != interval:
            raise invalid_request(
                "All prices on a subscription must have the same `recurring.interval` and "
                "`recurring.interval_count`.",
                param=param,
            )
        currency, interval = str(price["currency"]), this
    if currency is None or interval is None:
        raise invalid_request(
            "Missing required param: items.", param="items", code="parameter_missing"
        )
    return currency, interval[0], interval[1]


def check_anchor(price: StripeObject, anchor: int, now: int, *, trialing: bool) -> None:
    """A future `billing_cycle_anchor` falls within the first billing period."""
    if trialing:
        raise invalid_request(
            "The sandbox does not combine billing_cycle_anchor with a trial; the trial's end "
            "is the anchor.",
            param="billing_cycle_anchor",
        )
    recurring = price["recurring"]
    limit = add_intervals(
        now, str(recurring["interval"]), int(recurring.get("interval_count") or 1), 1
    )
    if not now < anchor <= limit:
        raise invalid_request(
            "billing_cycle_anchor must be in the future and within one billing period.",
            param="billing_cycle_anchor",
        )


def check_payment_method(
    state: SandboxState, pm_id: str | None, customer: StripeObject, *, param: str
) -> None:
    """A payment method used for a customer's subscription must be attached to them."""
    if pm_id is None:
        return
    pm = state.require("payment_method", pm_id, param=param)
    if pm.get("customer") != customer["id"]:
        raise invalid_request(
            f"The payment method `{pm_id}` must be attached to the customer "
            f"`{customer['id']}` before it can be used on a subscription.",
            param=param,
        )


# --- creating -------------------------------------------------------------------------------------


def start_subscription(
    state: SandboxState,
    *,
    customer: StripeObject,
    items: list[tuple[StripeObject, int, dict[str, str]]],
    default_payment_method: str | None = None,
    trial_end: int | None = None,
    payment_behavior: str = "allow_incomplete",
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    cancel_at_period_end: bool = False,
    cancel_at: int | None = None,
    discounts: list[tuple[StripeObject, StripeObject | None]] | None = None,
    off_session: bool = False,
    trial_settings: dict[str, Any] | None = None,
    announce_first: bool = True,
    checkout_session: str | None = None,
    extra_items: list[tuple[StripeObject, int]] | None = None,
    billing_cycle_anchor: int | None = None,
    proration_behavior: str = "create_prorations",
    save_default_payment_method: str = "off",
    schedule: str | None = None,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
) -> StripeObject:
    """Create a subscription and its first invoice, and collect it (`payment_behavior`).

    Events go out in Stripe's order. Through the API (`announce_first`),
    `customer.subscription.created` comes first and already carries the outcome (`active`,
    `trialing` or `incomplete`); through Checkout a paid subscription is announced as
    `incomplete` and then `customer.subscription.updated` to `active` after `invoice.paid`.
    With `error_if_incomplete`, a failed first payment leaves no subscription or invoice behind
    and raises Stripe's 402 card error.
    """
    with held_events(state) as held:
        sub = _start(
            state,
            customer=customer,
            items=items,
            default_payment_method=default_payment_method,
            trial_end=trial_end,
            payment_behavior=payment_behavior,
            metadata=metadata,
            description=description,
            cancel_at_period_end=cancel_at_period_end,
            cancel_at=cancel_at,
            discounts=discounts,
            off_session=off_session,
            trial_settings=trial_settings,
            checkout_session=checkout_session,
            held=held,
            extra_items=extra_items or [],
            billing_cycle_anchor=billing_cycle_anchor,
            proration_behavior=proration_behavior,
            save_default_payment_method=save_default_payment_method,
            schedule=schedule,
            collection_method=collection_method,
            days_until_due=days_until_due,
        )
        early = sub.pop("_announced_incomplete", None)
        settled_by_payment = early is not None and sub["status"] in ("active", "trialing")
        if not announce_first and settled_by_payment:
            held.lead_with("customer.subscription.created", early)
        else:
            held.lead_with("customer.subscription.created", sub)
    if sub.get("_refused"):
        refused = sub["_refused"]
        raise card_error(
            refused["message"],
            code=refused["code"],
            decline_code=refused["decline_code"],
            extra=refused["extra"],
        )
    if not announce_first and settled_by_payment:
        state.emit("customer.subscription.updated", sub, {"status": "incomplete"})
    return sub


def _start(
    state: SandboxState,
    *,
    customer: StripeObject,
    items: list[tuple[StripeObject, int, dict[str, str]]],
    default_payment_method: str | None,
    trial_end: int | None,
    payment_behavior: str,
    metadata: dict[str, str] | None,
    description: str | None,
    cancel_at_period_end: bool,
    cancel_at: int | None,
    discounts: list[tuple[StripeObject, StripeObject | None]] | None,
    off_session: bool,
    trial_settings: dict[str, Any] | None,
    checkout_session: str | None,
    held: HeldEvents,
    extra_items: list[tuple[StripeObject, int]],
    billing_cycle_anchor: int | None,
    proration_behavior: str,
    save_default_payment_method: str,
    schedule: str | None,
    collection_method: str,
    days_until_due: int | None,
) -> StripeObject:
    now = state.now_for(customer)
    currency, interval, count = check_prices(
        state, [(p, f"items[{i}][price]") for i, (p, _, _) in enumerate(items)]
    )
    trialing = trial_end is not None and trial_end > now
    anchor = trial_end if trialing and trial_end is not None else now
    period = (now, anchor) if trialing else (now, add_intervals(now, interval, count, 1))
    # A future billing_cycle_anchor: a short first period up to the anchor, billed prorated
    # (or free with proration_behavior=none); full cycles run from the anchor.
    first_share: tuple[int, int] | None = None
    if billing_cycle_anchor is not None and not trialing:
        anchor, period = billing_cycle_anchor, (now, billing_cycle_anchor)
        first_share = (add_intervals(anchor, interval, count, -1), anchor)
    sub_id = state.new_id("sub")
    sub: StripeObject = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": anchor,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection_method,
        "created": now,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "days_until_due": days_until_due,
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": dict(metadata or {}),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": save_default_payment_method,
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": schedule,
        "start_date": now,
        "status": "incomplete",
        "test_clock": customer.get("test_clock"),
        "transfer_data": None,
        "trial_end": trial_end if trialing else None,
        "trial_settings": {
            "end_behavior": {
                "missing_payment_method": ((trial_settings or {}).get("end_behavior") or {}).get(
                    "missing_payment_method", "create_invoice"
                )
            }
        },
        "trial_start": now if trialing else None,
        "_creating": True,
        "_checkout_session": checkout_session,
    }
    sub["items"]["data"] = [
        new_item(state, sub_id, price, quantity, period, created=now, metadata=item_metadata)
        for price, quantity, item_metadata in items
    ]
    sub["items"]["total_count"] = len(items)
    state.insert(sub)
    for coupon, promo in discounts or []:
        discount = discounting.create_discount(
            state,
            coupon,
            promo,
            customer=customer["id"],
            subscription=sub_id,
            checkout_session=checkout_session,
        )
        sub["discounts"].append(discount["id"])
    if cancel_at_period_end:
        sub.update(cancel_at_period_end=True, cancel_at=period[1], canceled_at=now)
        sub["cancellation_details"]["reason"] = "cancellation_requested"
    elif cancel_at is not None:
        sub["cancel_at"] = cancel_at

    lines = [
        invoicing.price_line(
            state,
            item["price"],
            int(item["quantity"]),
            period=period,
            amount=0
            if trialing
            else (
                None
                if first_share is None
                else (
                    0
                    if proration_behavior == "none"
                    else prorate(
                        int(item["price"].get("unit_amount") or 0) * int(item["quantity"]),
                        first_share[0],
                        first_share[1],
                        now,
                    )
                )
            ),
            description=(
                f"Trial period for {invoicing.product_name(state, item['price'])}"
                if trialing
                else None
            ),
            subscription=sub_id,
            subscription_item=item["id"],
        )
        for item in items_of(sub)
    ] + [
        invoicing.price_line(state, price, quantity, period=(now, now), subscription=sub_id)
        for price, quantity in extra_items
    ]
    invoice = invoicing.create_invoice(
        state,
        customer=customer,
        currency=currency,
        lines=lines,
        billing_reason="subscription_create",
        subscription=sub,
        period=(now, now),
        discounts=discounting_ids(state, sub, now),
    )
    sub["latest_invoice"] = invoice["id"]
    state.touch()
    invoicing.finalize(state, invoice)
    if invoice["status"] == "paid" or collection_method == "send_invoice":
        # An emailed invoice (`send_invoice`) is paid later: the subscription starts now.
        sub["status"] = "trialing" if trialing else "active"
    elif payment_behavior == "default_incomplete":
        _prepare_first_payment(state, invoice)
    else:
        sub["_announced_incomplete"] = state.render(sub)
        outcome = invoicing.collect(state, invoice, off_session=off_session, schedule_retry=False)
        if outcome.status == "processing":
            # A bank debit on its way: the subscription is active while it settles.
            sub["status"] = "trialing" if trialing else "active"
        # Checkout keeps a subscription whose first payment waits for 3-D Secure.
        waits = (checkout_session is not None and outcome.status == "requires_action") or (
            outcome.status == "processing"
        )
        if outcome.status != "paid" and payment_behavior == "error_if_incomplete" and not waits:
            _forget_first_attempt(state, sub, invoice, held)
            error = outcome.error or {}
            sub["_refused"] = {
                "message": error.get("message", "Your card was declined."),
                "code": error.get("code", "card_declined"),
                "decline_code": error.get("decline_code"),
                "extra": {
                    k: v
                    for k, v in error.items()
                    if k in ("payment_intent", "charge", "payment_method")
                },
            }
            return sub
    sub.pop("_creating", None)
    discounting.record_use(state, invoice.get("discounts") or [])
    _schedule(state, sub)
    state.touch()
    return sub


def _forget_first_attempt(
    state: SandboxState, sub: StripeObject, invoice: StripeObject, held: HeldEvents
) -> None:
    """A refused first payment (`error_if_incomplete`, Checkout): the subscription, its
    invoice and discounts never existed; the PaymentIntent and its events stay, as on Stripe."""
    payments_port.cancel(state, invoicing.open_payment_intent(state, invoice))
    for inpay_id in invoice.get("_payments", []):
        state.remove("invoice_payment", inpay_id)
        held.drop_about(inpay_id)
    for discount_id in sub.get("discounts", []):
        state.remove("discount", discount_id)
    for item in invoicing.pending_items(state, str(sub["customer"]), str(sub["id"])):
        state.remove("invoiceitem", item["id"])
    state.cancel_timers(invoice["id"])
    state.remove("invoice", invoice["id"])
    state.remove("subscription", sub["id"])
    held.drop_about(invoice["id"])
    held.drop_about(sub["id"])


def _prepare_first_payment(state: SandboxState, invoice: StripeObject) -> None:
    """`default_incomplete`: the invoice waits for the customer to confirm its PaymentIntent."""
    intent = payments_port.prepare(
        state,
        customer=str(invoice["customer"]),
        amount=int(invoice["amount_remaining"]),
        currency=str(invoice["currency"]),
        description="Subscription creation",
    )
    invoicing.attach_intent(state, invoice, intent)


def discounting_ids(state: SandboxState, sub: StripeObject, at: int) -> list[str]:
    """The ids of the subscription's discounts that still apply at `at`."""
    return [d["id"] for d in discounting.active_discounts(state, list(sub["discounts"]), at)]


def _schedule(state: SandboxState, sub: StripeObject) -> None:
    """(Re)arm the subscription's timers from its current state."""
    clock = state.clock_of(sub)
    settings = billing_settings(state)
    state.cancel_timers(sub["id"])  # every timer on a subscription is one of these
    status = sub["status"]
    if status in ENDED:
        return
    if status == "incomplete":
        state.schedule(
            int(sub["created"]) + int(settings["incomplete_expiry"]),
            INCOMPLETE_EXPIRY,
            sub["id"],
            clock_id=clock,
        )
        return
    _, end = current_period(sub)
    state.schedule(end, PERIOD_END, sub["id"], clock_id=clock)
    if status == "trialing" and sub.get("trial_end"):
        warn_at = int(sub["trial_end"]) - int(settings["trial_will_end_notice"])
        if warn_at > state.now(clock):
            state.schedule(warn_at, TRIAL_WILL_END, sub["id"], clock_id=clock)
    notice = int(settings["upcoming_notice"])
    if notice > 0 and end - notice > state.now(clock) and not sub.get("cancel_at_period_end"):
        state.schedule(end - notice, UPCOMING, sub["id"], clock_id=clock)
    cancel_at = sub.get("cancel_at")
    if cancel_at is not None and int(cancel_at) < end:
        state.schedule(int(cancel_at), CANCEL_AT, sub["id"], clock_id=clock)


# --- invoice outcomes -----------------------------------------------------------------------------


def _set_status(state: SandboxState, sub: StripeObject, status: str, **extra: Any) -> None:
    changes = {"status": status, **extra}
    if sub.get("_creating"):
        sub.update(changes)
        state.touch()
        return
    previous = state.update(sub, changes)
    if previous:
        state.emit("customer.subscription.updated", sub, previous)


@invoicing.on_paid
def _invoice_paid(state: SandboxState, invoice: StripeObject) -> None:
    sub_id = invoicing.subscription_of(invoice)
    sub = state.get("subscription", sub_id) if sub_id else None
    if sub is None or sub["status"] in ENDED:
        return
    if sub.get("latest_invoice") != invoice["id"]:
        return
    extra: dict[str, Any] = {}
    settings = sub.get("payment_settings") or {}
    if settings.get("save_default_payment_method") == "on_subscription":
        # The method that paid becomes the subscription's default (Stripe.js confirmations).
        intent_id = invoicing.paid_with(state, invoice)
        intent = state.get("payment_intent", intent_id) if intent_id else None
        if intent is not None and intent.get("payment_method"):
            extra["default_payment_method"] = intent["payment_method"]
    if sub["status"] == "incomplete":
        trialing = sub.get("trial_end") is not None and int(sub["trial_end"]) > state.now_for(sub)
        _set_status(state, sub, "trialing" if trialing else "active", **extra)
        if not sub.get("_creating"):
            _schedule(state, sub)
    elif sub["status"] in ("past_due", "unpaid"):
        _set_status(state, sub, "active", **extra)
    elif extra:
        previous = state.update(sub, extra)
        if previous and not sub.get("_creating"):
            state.emit("customer.subscription.updated", sub, previous)


@invoicing.on_payment_action_required
def _invoice_needs_action(state: SandboxState, invoice: StripeObject) -> None:
    """A renewal that needs 3-D Secure leaves the subscription past due until it is done."""
    sub_id = invoicing.subscription_of(invoice)
    sub = state.get("subscription", sub_id) if sub_id else None
    if sub is None or sub.get("_creating") or sub.get("latest_invoice") != invoice["id"]:
        return
    if sub["status"] in ("active", "trialing"):
        _set_status(state, sub, "past_due")


@invoicing.on_payment_failed
def _invoice_failed(state: SandboxState, invoice: StripeObject) -> None:
    sub_id = invoicing.subscription_of(invoice)
    sub = state.get("subscription", sub_id) if sub_id else None
    if sub is None or sub["status"] in ENDED or sub.get("_creating"):
        return
    if sub["status"] == "incomplete" or sub.get("latest_invoice") != invoice["id"]:
        return
    if sub["status"] in ("active", "trialing"):
        _set_status(state, sub, "past_due")
    if invoice.get("_retries_exhausted"):
        after = billing_settings(state)["after_final_failure"]
        if after == "canceled":
            end_subscription(state, sub, reason="payment_failed")
        elif after == "unpaid" and sub["status"] != "unpaid":
            _set_status(state, sub, "unpaid")


# --- time ------------------------------------------------------------------------------


def period_end(state: SandboxState, timer: Timer) -> None:
    """At the end of a period: cancel if asked to, else start the next period and bill it."""
    sub = state.get("subscription", timer.object_id)
    if sub is None or sub["status"] in ENDED or sub["status"] == "incomplete":
        return
    now = state.now_for(sub)
    _, end = current_period(sub)
    if now < end:
        return  # the period changed since this timer was set
    if sub.get("cancel_at_period_end") or (
        sub.get("cancel_at") is not None and int(sub["cancel_at"]) <= end
    ):
        metering.bill_final_usage(state, sub, end)
        end_subscription(state, sub, reason="cancellation_requested")
        return
    ending_trial = sub["status"] == "trialing"
    if ending_trial and _trial_ends_without_payment_method(state, sub):
        return
    interval, count = recurring_of(sub)
    start = end
    new_end = period_containing(int(sub["billing_cycle_anchor"]), interval, count, start)[1]
    _renew(state, sub, (start, new_end), ending_trial=ending_trial)


def _trial_ends_without_payment_method(state: SandboxState, sub: StripeObject) -> bool:
    """`trial_settings.end_behavior.missing_payment_method`: pause or cancel instead of billing."""
    behavior = sub["trial_settings"]["end_behavior"]["missing_payment_method"]
    if behavior == "create_invoice":
        return False
    probe = {
        "customer": sub["customer"],
        "parent": {"subscription_details": {"subscription": sub["id"]}},
    }
    if invoicing.payment_method_for(state, probe) is not None:
        return False
    if behavior == "cancel":
        end_subscription(state, sub, reason="cancellation_requested")
    else:
        _set_status(state, sub, "paused", pause_collection=None)
        state.emit("customer.subscription.paused", sub)
        state.cancel_timers(sub["id"])
    return True


def _renew(
    state: SandboxState, sub: StripeObject, period: tuple[int, int], *, ending_trial: bool
) -> StripeObject:
    """Move the items to `period`, create the cycle invoice, finalize it after the delay."""
    customer = state.require("customer", sub["customer"], deleted_ok=True)
    items = [
        dict(i, current_period_start=period[0], current_period_end=period[1]) for i in items_of(sub)
    ]
    new_items = dict(sub["items"], data=items)
    lines = cycle_lines(state, sub, items, period)
    unpaid = sub["status"] == "unpaid"
    paused = _collection_pause(state, sub, period[0])
    # Stripe announces the new period before the invoice that bills it.
    with held_events(state) as held:
        invoice = invoicing.create_invoice(
            state,
            customer=customer,
            currency=str(sub["currency"]),
            lines=lines,
            billing_reason="subscription_cycle",
            subscription=sub,
            period=current_period(sub),
            discounts=discounting_ids(state, sub, period[0]),
            auto_advance=not unpaid and paused != "keep_as_draft",
        )
        discounting.record_use(state, invoice.get("discounts") or [])
        changes: dict[str, Any] = {"items": new_items, "latest_invoice": invoice["id"]}
        if ending_trial:
            changes["status"] = "active"
        previous = state.update(sub, changes)
        held.lead_with("customer.subscription.updated", sub, previous)
    _schedule(state, sub)
    if paused in ("void", "mark_uncollectible"):
        # Collection is paused: the invoice is finalized and set aside, nothing is charged.
        invoicing.finalize(state, invoice)
        if invoice["status"] == "open":
            if paused == "void":
                invoicing.void(state, invoice)
            else:
                invoicing.mark_uncollectible(state, invoice)
    elif not unpaid and paused is None:
        delay = int(billing_settings(state)["renewal_finalize_delay"])
        if delay <= 0:
            invoicing.finalize_and_collect(state, invoice)
        else:
            state.schedule(
                state.now_for(sub) + delay,
                invoicing.FINALIZE_TIMER,
                invoice["id"],
                clock_id=state.clock_of(sub),
            )
    return invoice


def _collection_pause(state: SandboxState, sub: StripeObject, at: int) -> str | None:
    """The `pause_collection.behavior` in force at `at` (cleared once `resumes_at` passed)."""
    pause = sub.get("pause_collection")
    if not pause:
        return None
    resumes_at = pause.get("resumes_at")
    if resumes_at is not None and at >= int(resumes_at):
        previous = state.update(sub, {"pause_collection": None})
        state.emit("customer.subscription.updated", sub, previous)
        return None
    return str(pause["behavior"])


def upcoming_invoice(state: SandboxState, timer: Timer) -> None:
    """`invoice.upcoming` a few days before a renewal: a preview of the next invoice."""
    sub = state.get("subscription", timer.object_id)
    if sub is None or sub["status"] in ENDED or sub["status"] in ("incomplete", "paused"):
        return
    if sub.get("cancel_at_period_end") or sub.get("pause_collection"):
        return
    preview = preview_invoice(state, sub)
    del preview["id"]  # an upcoming invoice does not exist yet: Stripe sends it without an id
    state.emit("invoice.upcoming", preview)


def preview_invoice(
    state: SandboxState,
    sub: StripeObject,
    new_items: list[tuple[StripeObject | None, StripeObject, int, dict[str, str]]] | None = None,
    *,
    proration_behavior: str = "create_prorations",
    proration_date: int | None = None,
    reset_anchor: bool = False,
) -> StripeObject:
    """The invoice a change would produce, without making it (`create_preview`): with no change,
    the next renewal; a change invoiced now (`always_invoice`, a new billing cycle) shows that
    invoice; otherwise the next renewal with the change's prorations. Nothing is stored."""
    now = state.now_for(sub)
    at = proration_date if proration_date is not None else now
    start, end = current_period(sub)
    customer = state.require("customer", sub["customer"], deleted_ok=True)
    items = items_of(sub)
    proration_lines: list[StripeObject] = []
    reset = reset_anchor
    if new_items is not None:
        currency, interval, count = check_prices(
            state, [(price, f"items[{i}][price]") for i, (_, price, _, _) in enumerate(new_items)]
        )
        if currency != sub["currency"]:
            raise invalid_request(
                f"The subscription is billed in {sub['currency']}, not {currency}.",
                param="subscription_details[items]",
            )
        reset = reset or (interval, count) != recurring_of(sub)
        period = (now, add_intervals(now, interval, count, 1)) if reset else (start, end)
        items = [
            dict(existing, price=dict(price), quantity=quantity)
            if existing is not None
            else new_item(state, sub["id"], price, quantity, period, created=now)
            for existing, price, quantity, _ in new_items
        ]
        if proration_behavior != "none" and sub["status"] in ("active", "past_due"):
            proration_lines = _proration_lines(state, sub, items, (start, end), at, reset)
    if reset:
        interval, count = recurring_of({"items": {"data": items}})
        period = (now, add_intervals(now, interval, count, 1))
        reason, billed_period = "subscription_update", (now, now)
    elif proration_lines and proration_behavior == "always_invoice":
        period, reason, billed_period = (start, end), "subscription_update", (now, now)
    else:
        anchor = int(sub["billing_cycle_anchor"])
        interval, count = recurring_of({"items": {"data": items}})
        period = (end, period_containing(anchor, interval, count, end)[1])
        reason, billed_period = "upcoming", (start, end)
    lines = list(proration_lines)
    if reason != "subscription_update" or reset:
        lines += cycle_lines(state, sub, items, period)
    preview = invoicing.create_invoice(
        state,
        customer=customer,
        currency=str(sub["currency"]),
        lines=lines,
        billing_reason=reason,
        subscription=sub,
        period=billed_period,
        discounts=discounting_ids(state, sub, period[0]),
        preview=True,
    )
    preview["id"] = "upcoming_" + state.new_id("in")
    if reason == "upcoming":
        delay = int(billing_settings(state)["renewal_finalize_delay"])
        preview["next_payment_attempt"] = end + delay
    return preview


def trial_will_end(state: SandboxState, timer: Timer) -> None:
    """`customer.subscription.trial_will_end`, a few days before a trial ends."""
    sub = state.get("subscription", timer.object_id)
    if sub is not None and sub["status"] == "trialing":
        state.emit("customer.subscription.trial_will_end", sub)


def incomplete_expiry(state: SandboxState, timer: Timer) -> None:
    """An unpaid first invoice after 23 hours: `incomplete_expired`, the invoice voided."""
    sub = state.get("subscription", timer.object_id)
    if sub is None or sub["status"] != "incomplete":
        return
    now = state.now_for(sub)
    latest = state.get("invoice", str(sub.get("latest_invoice")))
    if latest is not None and latest["status"] == "open":
        invoicing.void(state, latest)
    _set_status(state, sub, "incomplete_expired", ended_at=now, canceled_at=now)
    state.cancel_timers(sub["id"])


def cancel_at_reached(state: SandboxState, timer: Timer) -> None:
    """`cancel_at` came: the subscription ends."""
    sub = state.get("subscription", timer.object_id)
    if sub is None or sub["status"] in ENDED or sub.get("cancel_at") is None:
        return
    if state.now_for(sub) >= int(sub["cancel_at"]):
        metering.bill_final_usage(state, sub, int(sub["cancel_at"]))
        end_subscription(state, sub, reason="cancellation_requested")


def finalize_timer(state: SandboxState, timer: Timer) -> None:
    """An hour after a renewal invoice was created: finalize and charge it."""
    invoice = state.get("invoice", timer.object_id)
    if invoice is not None:
        invoicing.finalize_and_collect(state, invoice)


def retry_timer(state: SandboxState, timer: Timer) -> None:
    """A scheduled retry of a failed invoice payment (unless its subscription ended)."""
    invoice = state.get("invoice", timer.object_id)
    if invoice is None or invoice["status"] != "open":
        return
    sub_id = invoicing.subscription_of(invoice)
    sub = state.get("subscription", sub_id) if sub_id else None
    if sub is not None and sub["status"] in ENDED:
        return
    invoicing.collect(state, invoice)


# --- ending ---------------------------------------------------------------------------------------


def end_subscription(
    state: SandboxState,
    sub: StripeObject,
    *,
    reason: str,
    comment: str | None = None,
    feedback: str | None = None,
) -> StripeObject:
    """Cancel now: `canceled`, `ended_at`, timers dropped, `customer.subscription.deleted`."""
    now = state.now_for(sub)
    state.cancel_timers(sub["id"])
    details = dict(sub.get("cancellation_details") or {})
    details["reason"] = reason
    if comment is not None:
        details["comment"] = comment
    if feedback is not None:
        details["feedback"] = feedback
    state.update(
        sub,
        {
            "status": "canceled",
            "canceled_at": sub.get("canceled_at") or now,
            "ended_at": now,
            "cancellation_details": details,
        },
    )
    if reason != "payment_failed":
        # An incomplete subscription's unpaid first invoice goes with it.
        latest = state.get("invoice", str(sub.get("latest_invoice")))
        if (
            latest is not None
            and latest["status"] == "open"
            and latest["billing_reason"] == "subscription_create"
        ):
            invoicing.void(state, latest)
    state.emit("customer.subscription.deleted", sub)
    return sub


def cancel_now(
    state: SandboxState,
    sub: StripeObject,
    *,
    prorate_unused: bool = False,
    invoice_now: bool = False,
    comment: str | None = None,
    feedback: str | None = None,
) -> StripeObject:
    """DELETE /v1/subscriptions/{id}: optionally credit unused time and invoice at once."""
    if sub["status"] in ENDED:
        raise invalid_request(
            f"The subscription {sub['id']} has already been canceled.", param="id"
        )
    now = state.now_for(sub)
    if prorate_unused and sub["status"] in ("active", "past_due"):
        period = current_period(sub)
        for item in items_of(sub):
            line = proration_line(state, sub, item, period, now, unused=True)
            if line is not None:
                invoicing.add_invoice_item(
                    state, customer=sub["customer"], line=line, subscription=sub["id"]
                )
    if invoice_now:
        pending = invoicing.pending_items(state, str(sub["customer"]), str(sub["id"]))
        usage = metering.final_usage_lines(state, sub, now)  # un-invoiced metered usage
        if pending or usage:
            customer = state.require("customer", sub["customer"], deleted_ok=True)
            invoice = invoicing.create_invoice(
                state,
                customer=customer,
                currency=str(sub["currency"]),
                lines=usage,
                billing_reason="subscription_update",
                subscription=sub,
                period=(now, now),
            )
            invoicing.finalize(state, invoice)
            if invoice["status"] == "open":
                invoicing.collect(state, invoice, schedule_retry=False)
    return end_subscription(
        state, sub, reason="cancellation_requested", comment=comment, feedback=feedback
    )


def format_date(ts: int) -> str:
    """`05 Mar 2026`, for descriptions and hosted pages."""
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y")


# --- changing ------------------------------------------------------------------------------------


def change_items(
    state: SandboxState,
    sub: StripeObject,
    new_items: list[tuple[StripeObject | None, StripeObject, int, dict[str, str]]],
    *,
    proration_behavior: str,
    proration_date: int | None,
    reset_anchor: bool = False,
) -> tuple[dict[str, Any], StripeObject | None]:
    """Replace the items: [(existing item or None, price, quantity, metadata)].

    Same interval: the period stays; unused time on the old items is credited and the rest of
    the period on the new ones charged (`create_prorations`: pending invoice items for the next
    invoice; `always_invoice`: an invoice now; `none`: nothing). A different interval (or
    `billing_cycle_anchor=now`, `reset_anchor`) restarts the billing cycle today and invoices the
    new period at once. Returns (changes, invoice).
    """
    now = state.now_for(sub)
    at = proration_date if proration_date is not None else now
    start, end = current_period(sub)
    old_interval = recurring_of(sub)
    currency, interval, count = check_prices(
        state, [(price, f"items[{i}][price]") for i, (_, price, _, _) in enumerate(new_items)]
    )
    if currency != sub["currency"]:
        raise invalid_request(
            "Cannot combine currencies on a single customer. This customer has an active "
            f"subscription with currency {sub['currency']}.",
            param="items",
        )
    reset_cycle = (interval, count) != old_interval or reset_anchor
    trialing = sub["status"] == "trialing"
    period = (
        (now, add_intervals(now, interval, count, 1))
        if reset_cycle and not trialing
        else (start, end)
    )
    items: list[StripeObject] = []
    proration_lines: list[StripeObject] = []
    for existing, price, quantity, metadata in new_items:
        if existing is not None:
            item = dict(
                existing,
                price=dict(price),
                plan=plan_of(price),
                quantity=quantity,
                metadata=metadata,
                current_period_start=period[0],
                current_period_end=period[1],
            )
        else:
            item = new_item(
                state, sub["id"], price, quantity, period, created=now, metadata=metadata
            )
        items.append(item)
    if not trialing and proration_behavior != "none" and sub["status"] in ("active", "past_due"):
        proration_lines = _proration_lines(state, sub, items, (start, end), at, reset_cycle)
    changes: dict[str, Any] = {"items": dict(sub["items"], data=items, total_count=len(items))}
    if reset_cycle and not trialing:
        changes["billing_cycle_anchor"] = now
        if sub.get("cancel_at_period_end"):
            changes["cancel_at"] = period[1]  # still "at the end of the (new) period"
    invoice: StripeObject | None = None
    if reset_cycle and not trialing and sub["status"] in ("active", "past_due"):
        lines = proration_lines + cycle_lines(state, sub, items, period)
        invoice = _invoice_change(state, sub, lines, pending=True)
    elif proration_lines and proration_behavior == "always_invoice":
        invoice = _invoice_change(state, sub, proration_lines, pending=True)
    elif proration_lines:
        for line in proration_lines:
            invoicing.add_invoice_item(
                state, customer=sub["customer"], line=line, subscription=sub["id"]
            )
    if invoice is not None:
        changes["latest_invoice"] = invoice["id"]
    return changes, invoice


def _proration_lines(
    state: SandboxState,
    sub: StripeObject,
    new_items: list[StripeObject],
    period: tuple[int, int],
    at: int,
    reset_cycle: bool,
) -> list[StripeObject]:
    start, end = period
    old_by_id = {i["id"]: i for i in items_of(sub)}
    new_by_id = {i["id"]: i for i in new_items}
    lines: list[StripeObject] = []
    for item_id, old in old_by_id.items():
        new = new_by_id.get(item_id)
        unchanged = (
            new is not None
            and not reset_cycle
            and new["price"]["id"] == old["price"]["id"]
            and int(new["quantity"]) == int(old["quantity"])
        )
        if unchanged:
            continue
        credit = proration_line(state, sub, old, (start, end), at, unused=True)
        if credit is not None:
            lines.append(credit)
    if reset_cycle:
        return lines  # the new items are billed in full for their new period
    for item_id, new in new_by_id.items():
        before = old_by_id.get(item_id)
        if (
            before is not None
            and new["price"]["id"] == before["price"]["id"]
            and int(new["quantity"]) == int(before["quantity"])
        ):
            continue
        charge = proration_line(state, sub, new, (start, end), at, unused=False)
        if charge is not None:
            lines.append(charge)
    return lines


def cycle_lines(
    state: SandboxState, sub: StripeObject, items: list[StripeObject], period: tuple[int, int]
) -> list[StripeObject]:
    """One invoice line per item, billing `period` in full (a metered item: the usage of the
    period ending where `period` starts)."""
    return [
        metering.usage_line(state, sub, item, period)
        if metering.is_metered(item["price"])
        else invoicing.price_line(
            state,
            item["price"],
            int(item["quantity"]),
            period=period,
            subscription=sub["id"],
            subscription_item=item["id"],
        )
        for item in items
    ]


def proration_line(
    state: SandboxState,
    sub: StripeObject,
    item: StripeObject,
    period: tuple[int, int],
    at: int,
    *,
    unused: bool,
) -> StripeObject | None:
    """A proration line for `item` from `at` to the period's end: a credit for unused time
    on what the customer had, or a charge for the remaining time on what they now have."""
    full = int(item["price"].get("unit_amount") or 0) * int(item["quantity"])
    amount = prorate(full, period[0], period[1], at)
    if not amount:
        return None
    what = f"{item['quantity']} \u00d7 {invoicing.product_name(state, item['price'])}"
    return invoicing.price_line(
        state,
        item["price"],
        int(item["quantity"]),
        period=(at, period[1]),
        amount=-amount if unused else amount,
        description=f"{'Unused' if unused else 'Remaining'} time on {what} after {format_date(at)}",
        subscription=sub["id"],
        subscription_item=item["id"],
        proration=True,
    )


def _invoice_change(
    state: SandboxState, sub: StripeObject, lines: list[StripeObject], *, pending: bool
) -> StripeObject:
    """An invoice for a subscription change (`billing_reason=subscription_update`), charged now."""
    now = state.now_for(sub)
    customer = state.require("customer", sub["customer"], deleted_ok=True)
    invoice = invoicing.create_invoice(
        state,
        customer=customer,
        currency=str(sub["currency"]),
        lines=lines,
        billing_reason="subscription_update",
        subscription=sub,
        period=(now, now),
        include_pending=pending,
        discounts=discounting_ids(state, sub, now),
    )
    return invoice


def settle_change_invoice(state: SandboxState, sub: StripeObject, invoice: StripeObject) -> None:
    """Finalize and charge a change invoice after the subscription shows the change."""
    invoicing.finalize(state, invoice)
    if invoice["status"] == "open":
        invoicing.collect(state, invoice)


def end_trial_now(state: SandboxState, sub: StripeObject) -> tuple[dict[str, Any], StripeObject]:
    """`trial_end=now`: the trial stops, a new cycle starts today and is invoiced at once."""
    now = state.now_for(sub)
    interval, count = recurring_of(sub)
    period = (now, add_intervals(now, interval, count, 1))
    items = [
        dict(i, current_period_start=period[0], current_period_end=period[1]) for i in items_of(sub)
    ]
    lines = cycle_lines(state, sub, items, period)
    invoice = _invoice_change(state, sub, lines, pending=True)
    changes = {
        "items": dict(sub["items"], data=items),
        "trial_end": now,
        "billing_cycle_anchor": now,
        "status": "active",
        "latest_invoice": invoice["id"],
    }
    if sub.get("cancel_at_period_end"):
        changes["cancel_at"] = period[1]
    return changes, invoice


def reschedule(state: SandboxState, sub: StripeObject) -> None:
    """Re-arm timers after a change to the period, trial or cancellation."""
    _schedule(state, sub)


def resume(state: SandboxState, sub: StripeObject) -> StripeObject:
    """A paused subscription starts a new cycle today and bills it."""
    if sub["status"] != "paused":
        raise invalid_request("Only a subscription with status=paused can be resumed.", param="id")
    now = state.now_for(sub)
    interval, count = recurring_of(sub)
    period = (now, add_intervals(now, interval, count, 1))
    previous = state.update(sub, {"billing_cycle_anchor": now, "status": "active"})
    state.emit("customer.subscription.resumed", sub, previous)
    invoice = _renew(state, sub, period, ending_trial=False)
    if invoice["status"] == "draft":
        state.cancel_timers(invoice["id"], invoicing.FINALIZE_TIMER)
        invoicing.finalize_and_collect(state, invoice)
    return sub
