"""Subscription schedules: create (phases, or `from_subscription`), retrieve, update, list,
cancel, release. The rules are in `billfold_sandbox.billing.schedules`."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing import lifecycle, schedules
from billfold_sandbox.billing.events import held_events
from billfold_sandbox.errors import StripeError, invalid_request, missing_parameter
from billfold_sandbox.pages import remember_base
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
    timestamp,
)
from billfold_sandbox.resources.subscriptions import (
    ADD_INVOICE_ITEMS,
    PRICE_DATA,
    _items,
    _one_time_items,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

PRORATION = enum("always_invoice", "create_prorations", "none")
_UNMODELLED = (
    "application_fee_percent", "automatic_tax", "billing_cycle_anchor", "billing_thresholds",
    "default_tax_rates", "discounts", "on_behalf_of", "transfer_data",
)  # fmt: skip
INVOICE_SETTINGS = obj(
    {
        "days_until_due": integer(min=0, max=3650),
        **{name: anything() for name in ("account_tax_ids", "custom_fields", "description",
                                         "footer", "issuer")},
    }
)  # fmt: skip
PHASE_ITEM = obj(
    {
        "price": string(),
        "plan": string(),
        "price_data": PRICE_DATA,
        "quantity": integer(min=0),
        "metadata": metadata(),
        "billing_thresholds": anything(),
        "discounts": anything(),
        "tax_rates": anything(),
    }
)
PHASE = obj(
    {
        "items": array(PHASE_ITEM, required=True, max_items=20),
        "start_date": timestamp(now_ok=True),
        "end_date": timestamp(now_ok=True),
        "duration": obj(
            {
                "interval": enum("day", "week", "month", "year", required=True),
                "interval_count": integer(min=1),
            }
        ),
        "proration_behavior": PRORATION,
        "metadata": metadata(),
        "description": string(nullable=True, max_length=500),
        "default_payment_method": string(),
        "trial_end": timestamp(now_ok=True),
        "trial": boolean(),
        "currency": string(),
        "add_invoice_items": ADD_INVOICE_ITEMS,
        "collection_method": enum("charge_automatically", "send_invoice"),
        "invoice_settings": INVOICE_SETTINGS,
        **{name: anything() for name in _UNMODELLED},
    }
)
DEFAULT_SETTINGS = obj(
    {
        "default_payment_method": string(),
        "collection_method": enum("charge_automatically", "send_invoice"),
        "invoice_settings": INVOICE_SETTINGS,
        "description": string(nullable=True),
        **{name: anything() for name in _UNMODELLED},
    }
)
END_BEHAVIOR = enum("release", "cancel")
CREATE: dict[str, Field] = {
    "customer": string(),
    "from_subscription": string(),
    "phases": array(PHASE, max_items=10),
    "start_date": timestamp(now_ok=True),
    "end_behavior": END_BEHAVIOR,
    "metadata": metadata(),
    "default_settings": DEFAULT_SETTINGS,
    "billing_mode": anything(),
    "customer_account": string(),
    "pause_schedules": anything(),
}
UPDATE: dict[str, Field] = {
    "phases": array(PHASE, max_items=10),
    "end_behavior": END_BEHAVIOR,
    "metadata": metadata(),
    "default_settings": DEFAULT_SETTINGS,
    "proration_behavior": PRORATION,
    "pause_schedules": anything(),
}
LIST: dict[str, Field] = {
    "customer": string(),
    "customer_account": string(),
    "scheduled": boolean(),
    "created": range_filter(),
    "canceled_at": range_filter(),
    "completed_at": range_filter(),
    "released_at": range_filter(),
}


def _where(param: str, prefix: str) -> str:
    """`items[0][price]` inside phase 1 is `phases[1][items][0][price]`."""
    head, bracket, rest = param.partition("[")
    return f"{prefix}[{head}]{bracket}{rest}"


def _resolve_phases(
    call: Call,
    raw: list[dict[str, Any]],
    *,
    start: int,
    customer: StripeObject,
    trial_ok: bool,
    defaults: tuple[str, int | None],
) -> list[StripeObject]:
    """The phases as the schedule stores them, from `start` on; every refusal names its
    parameter (`phases[1][end_date]`) and nothing is stored before all are valid."""
    state = call.state
    phases: list[StripeObject] = []
    at = start
    currency: str | None = None
    for index, entry in enumerate(raw):
        where = f"phases[{index}]"
        if not entry.get("items"):
            raise missing_parameter(f"{where}[items]")
        try:
            items = _items(call, entry["items"])
            one_time = _one_time_items(call, entry.get("add_invoice_items") or [])
            this_currency, _, _ = lifecycle.check_prices(
                state, [(p, f"items[{i}][price]") for i, (p, _, _) in enumerate(items)]
            )
        except StripeError as exc:
            if exc.param:
                exc.param = _where(exc.param, where)
            raise
        if currency is not None and this_currency != currency:
            raise invalid_request(
                "All phases of a subscription schedule must use the same currency.",
                param=f"{where}[items]",
            )
        currency = this_currency
        method, days = _collection(entry, defaults, where)
        if "end_date" in entry and "duration" in entry:
            raise invalid_request(
                "You may only specify one of these parameters: duration, end_date.",
                param=f"{where}[end_date]",
            )
        if entry.get("end_date") == "now":
            raise invalid_request(
                "The sandbox takes a timestamp for end_date; to end a schedule now, release or "
                "cancel it.",
                param=f"{where}[end_date]",
            )
        end = schedules.phase_end_date(
            at, entry.get("end_date"), entry.get("duration"), items[0][0]
        )
        if end <= at:
            raise invalid_request(
                "The end_date of a phase must be after its start_date.",
                param=f"{where}[end_date]",
            )
        trial_end = _trial_end(entry, where, at, end, allowed=trial_ok and index == 0)
        pm = entry.get("default_payment_method")
        lifecycle.check_payment_method(
            state, pm, customer, param=f"{where}[default_payment_method]"
        )
        phases.append(
            schedules.new_phase(
                items=[schedules.phase_item(p, q, m) for p, q, m in items],
                currency=this_currency,
                start=at,
                end=end,
                proration_behavior=entry.get("proration_behavior", "create_prorations"),
                metadata=apply_metadata({}, entry.get("metadata") or {}),
                description=entry.get("description"),
                default_payment_method=pm,
                trial_end=trial_end,
                collection_method=entry.get("collection_method"),
                days_until_due=days if method == "send_invoice" else None,
                add_invoice_items=[
                    {
                        "discounts": [],
                        "metadata": {},
                        "period": None,
                        "price": price["id"],
                        "quantity": quantity,
                        "tax_rates": [],
                    }
                    for price, quantity in one_time
                ],
            )
        )
        at = end
    return phases


def _collection(
    given: dict[str, Any], fallback: tuple[str, int | None], where: str
) -> tuple[str, int | None]:
    """`collection_method` and `invoice_settings[days_until_due]` of a phase (or of the
    default settings), over `fallback`: `send_invoice` needs a number of days, as on Stripe."""
    days = (given.get("invoice_settings") or {}).get("days_until_due")
    method = str(given.get("collection_method") or fallback[0])
    param = f"{where}[invoice_settings][days_until_due]"
    if method != "send_invoice":
        if days is not None:
            raise invalid_request(
                "days_until_due can only be set when collection_method is send_invoice.",
                param=param,
            )
        return method, None
    days = days if days is not None else fallback[1]
    if days is None:
        raise invalid_request(
            f"Missing required param: {param}. It is required when collection_method is "
            "send_invoice.",
            param=param,
            code="parameter_missing",
        )
    return method, int(days)


def _trial_end(
    entry: dict[str, Any], where: str, start: int, end: int, *, allowed: bool
) -> int | None:
    if not entry.get("trial") and "trial_end" not in entry:
        return None
    if not allowed:
        raise invalid_request(
            "The sandbox's schedules take a trial only in the first phase of a schedule that "
            "has not started.",
            param=f"{where}[trial_end]",
        )
    if entry.get("trial"):
        return end
    trial_end = entry["trial_end"]
    if trial_end == "now" or not start < int(trial_end) <= end:
        raise invalid_request(
            "A phase's trial_end must fall after its start_date and no later than its end_date.",
            param=f"{where}[trial_end]",
        )
    return int(trial_end)


def _start_date(call: Call, value: Any, now: int, *, param: str) -> int:
    if value is None or value == "now":
        return now
    if int(value) < now:
        raise invalid_request(
            "The sandbox does not backdate schedules: start_date must be now or in the future.",
            param=param,
        )
    return int(value)


@router.post("/v1/subscription_schedules", CREATE)
def create_schedule(call: Call) -> StripeObject:
    state = call.state
    remember_base(state, call.request)
    p = call.params
    if "from_subscription" in p:
        return _from_subscription(call)
    if not p.get("customer"):
        raise missing_parameter("customer")
    customer = call.require("customer", p["customer"], param="customer")
    if not p.get("phases"):
        raise missing_parameter("phases")
    settings = p.get("default_settings") or {}
    defaults = _collection(settings, ("charge_automatically", None), "default_settings")
    default_pm = settings.get("default_payment_method")
    lifecycle.check_payment_method(
        state, default_pm, customer, param="default_settings[default_payment_method]"
    )
    now = state.now_for(customer)
    start = _start_date(call, p.get("start_date"), now, param="start_date")
    phases = _resolve_phases(
        call, p["phases"], start=start, customer=customer, trial_ok=True, defaults=defaults
    )
    with held_events(state) as held:
        schedule = schedules.new_schedule(
            state,
            customer=customer,
            phases=phases,
            end_behavior=p.get("end_behavior", "release"),
            metadata=apply_metadata({}, p.get("metadata") or {}),
            default_payment_method=default_pm,
            collection=defaults,
        )
        if start <= now:
            schedules.start(state, schedule)
        else:
            schedules.arm(state, schedule)
        held.lead_with("subscription_schedule.created", schedule)
    return schedule


def _from_subscription(call: Call) -> StripeObject:
    """A schedule managing an existing subscription: one phase, its current period and items."""
    state = call.state
    p = call.params
    for name in ("customer", "phases", "start_date", "end_behavior", "default_settings"):
        if name in p:
            raise invalid_request(
                f"You cannot set `{name}` when creating a schedule from_subscription; update "
                "the schedule afterwards.",
                param=name,
            )
    sub = call.require("subscription", p["from_subscription"], param="from_subscription")
    if sub["status"] in lifecycle.ENDED:
        raise invalid_request(
            f"The subscription {sub['id']} has been canceled.", param="from_subscription"
        )
    if sub.get("schedule"):
        raise invalid_request(
            f"The subscription {sub['id']} is already managed by the subscription schedule "
            f"{sub['schedule']}.",
            param="from_subscription",
        )
    customer = state.require("customer", sub["customer"])
    start, end = lifecycle.current_period(sub)
    trialing = sub["status"] == "trialing" and sub.get("trial_end")
    phase = schedules.new_phase(
        items=[
            schedules.phase_item(i["price"], int(i["quantity"]), i["metadata"])
            for i in lifecycle.items_of(sub)
        ],
        currency=str(sub["currency"]),
        start=start,
        end=end,
        metadata=dict(sub["metadata"]),
        description=sub.get("description"),
        default_payment_method=sub.get("default_payment_method"),
        trial_end=int(sub["trial_end"]) if trialing else None,
        collection_method=sub["collection_method"],
        days_until_due=sub.get("days_until_due"),
    )
    with held_events(state) as held:
        schedule = schedules.new_schedule(
            state,
            customer=customer,
            phases=[phase],
            end_behavior="release",
            metadata=apply_metadata({}, p.get("metadata") or {}),
            default_payment_method=None,
        )
        schedules.take_over(state, schedule, sub)
        held.lead_with("subscription_schedule.created", schedule)
    return schedule


def _schedule(call: Call) -> StripeObject:
    schedule = call.require("subscription_schedule", call.path["id"])
    schedules.follow_subscription(call.state, schedule)
    return schedule


def _live(schedule: StripeObject) -> None:
    if schedule["status"] not in schedules.LIVE:
        raise invalid_request(
            f"You cannot change a subscription schedule whose status is {schedule['status']}; "
            "only not_started and active schedules can be changed.",
            param="id",
        )


@router.get("/v1/subscription_schedules/{id}")
def retrieve_schedule(call: Call) -> StripeObject:
    return _schedule(call)


@router.post("/v1/subscription_schedules/{id}", UPDATE)
def update_schedule(call: Call) -> StripeObject:
    """Metadata, end behavior, default payment method, and the phases from the current one on
    (the current phase's start stays; a change to its items applies now, prorated)."""
    state = call.state
    remember_base(state, call.request)
    schedule = _schedule(call)
    p = call.params
    _live(schedule)
    customer = state.require("customer", schedule["customer"])
    settings = p.get("default_settings") or {}
    current = schedule["default_settings"]
    defaults = _collection(
        settings,
        (current["collection_method"], current["invoice_settings"]["days_until_due"]),
        "default_settings",
    )
    lifecycle.check_payment_method(
        state,
        settings.get("default_payment_method"),
        customer,
        param="default_settings[default_payment_method]",
    )
    now = state.now_for(schedule)
    phases: list[StripeObject] | None = None
    index = schedule["_phase"]
    if p.get("phases"):
        first = p["phases"][0]
        if schedule["status"] == "not_started":
            start = _start_date(
                call,
                first.get("start_date", schedule["phases"][0]["start_date"]),
                now,
                param="phases[0][start_date]",
            )
        else:
            current = schedule["phases"][int(index)]
            start = int(current["start_date"])
            if first.get("start_date") not in (None, start):
                raise invalid_request(
                    "The first phase must be the current phase: its start_date cannot change "
                    f"(it is {start}).",
                    param="phases[0][start_date]",
                )
        phases = _resolve_phases(
            call,
            p["phases"],
            start=start,
            customer=customer,
            trial_ok=schedule["status"] == "not_started",
            defaults=defaults,
        )
        if schedule["status"] == "active" and int(phases[0]["end_date"]) <= now:
            raise invalid_request(
                "The current phase's end_date must be in the future.",
                param="phases[0][end_date]",
            )
    changes: dict[str, Any] = {}
    if "metadata" in p:
        changes["metadata"] = apply_metadata(schedule["metadata"], p["metadata"])
    if "end_behavior" in p:
        changes["end_behavior"] = p["end_behavior"]
    if settings:
        changes["default_settings"] = schedules.default_settings(
            settings.get("default_payment_method", current["default_payment_method"]), *defaults
        )
    if phases is not None:
        kept = schedule["phases"][: int(index)] if schedule["status"] == "active" else []
        changes["phases"] = kept + phases
    previous = state.update(schedule, changes)
    if phases is None and "end_behavior" in previous and schedule["status"] == "active":
        sub = schedules.subscription_of(state, schedule)
        if sub is not None:  # the subscription's cancel_at follows the end behavior
            schedules.apply_phase(state, schedule, sub, int(index), proration_behavior="none")
    if phases is not None:
        sub = schedules.subscription_of(state, schedule)
        if schedule["status"] == "active" and sub is not None:
            schedules.apply_phase(
                state,
                schedule,
                sub,
                int(index),
                proration_behavior=p.get("proration_behavior", "create_prorations"),
            )
            schedules.enter(state, schedule, int(index), sub)
        elif int(phases[0]["start_date"]) <= now:
            schedules.start(state, schedule)
        else:
            schedules.arm(state, schedule)
    if previous:
        state.emit("subscription_schedule.updated", schedule, previous)
    return schedule


@router.post(
    "/v1/subscription_schedules/{id}/cancel", {"invoice_now": boolean(), "prorate": boolean()}
)
def cancel_schedule(call: Call) -> StripeObject:
    """The schedule and its subscription end now (Stripe's defaults: prorate, invoice now)."""
    schedule = _schedule(call)
    _live(schedule)
    schedules.cancel(
        call.state,
        schedule,
        invoice_now=bool(call.params.get("invoice_now", True)),
        prorate=bool(call.params.get("prorate", True)),
    )
    return schedule


@router.post("/v1/subscription_schedules/{id}/release", {"preserve_cancel_date": boolean()})
def release_schedule(call: Call) -> StripeObject:
    """The schedule stops; its subscription goes on as it is."""
    schedule = _schedule(call)
    _live(schedule)
    schedules.release(
        call.state,
        schedule,
        preserve_cancel_date=bool(call.params.get("preserve_cancel_date", False)),
    )
    return schedule


@router.get("/v1/subscription_schedules", LIST, list=True)
def list_schedules(call: Call) -> StripeObject:
    p = call.params
    found = []
    for schedule in call.state.all("subscription_schedule", newest_first=True):
        schedules.follow_subscription(call.state, schedule)
        if (
            ("customer" not in p or schedule["customer"] == p["customer"])
            and ("scheduled" not in p or (schedule["status"] == "not_started") == p["scheduled"])
            and in_range(schedule["created"], p.get("created"))
            and all(
                name not in p or (schedule[name] is not None and in_range(schedule[name], p[name]))
                for name in ("canceled_at", "completed_at", "released_at")
            )
        ):
            found.append(schedule)
    return call.list_response(found)


router.timer(schedules.START)(schedules.start_timer)
router.timer(schedules.PHASE_END)(schedules.phase_end_timer)
router.timer(schedules.EXPIRING)(schedules.expiring_timer)
