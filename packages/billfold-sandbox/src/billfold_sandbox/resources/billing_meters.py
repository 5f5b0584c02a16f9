"""Billing meters (`/v1/billing/meters`: create, retrieve, list, update, deactivate,
reactivate, event summaries), meter events (`/v1/billing/meter_events`, idempotent by
`identifier`) and meter event adjustments (`/v1/billing/meter_event_adjustments`, cancel).

The aggregation and the usage a metered subscription item bills: `billing/metering.py`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from billfold_sandbox.billing.metering import (
    EVENT_ID_PREFIX,
    METER,
    METER_EVENT,
    aggregate,
    customer_key,
    meter_for_event,
    new_meter,
    value_key,
)
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import enum, hash_of_strings, integer, obj, string
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

CREATE = {
    "customer_mapping": obj(
        {
            "event_payload_key": string(required=True, max_length=100),
            "type": enum("by_id", required=True),
        }
    ),
    "default_aggregation": obj(
        {"formula": enum("count", "last", "sum", required=True)}, required=True
    ),
    "display_name": string(required=True, max_length=250),
    "event_name": string(required=True, max_length=100),
    "event_time_window": enum("day", "hour"),
    "value_settings": obj({"event_payload_key": string(required=True, max_length=100)}),
}
UPDATE = {"display_name": string(max_length=250)}
LIST = {"status": enum("active", "inactive")}
SUMMARIES = {
    "customer": string(required=True),
    "start_time": integer(required=True, min=0),
    "end_time": integer(required=True, min=0),
    "value_grouping_window": enum("day", "hour"),
}
EVENT_CREATE = {
    "event_name": string(required=True, max_length=100),
    "identifier": string(max_length=100),
    "payload": hash_of_strings(required=True),
    "timestamp": integer(min=0),
}
ADJUSTMENT_CREATE = {
    "event_name": string(required=True, max_length=100),
    "type": enum("cancel", required=True),
    "cancel": obj({"identifier": string(max_length=100)}),
}

MAX_PAST = 35 * 86_400  # Stripe takes events up to 35 days old
MAX_FUTURE = 5 * 60  # and up to 5 minutes ahead
_WINDOWS = {"hour": 3_600, "day": 86_400}


# --- meters ------------------------------------------------------------------------------------


@router.post("/v1/billing/meters", CREATE)
def create_meter(call: Call) -> StripeObject:
    p = call.params
    for other in call.state.all(METER):
        if other["event_name"] == p["event_name"] and other["status"] == "active":
            raise invalid_request(
                f"An active meter with event_name `{p['event_name']}` already exists.",
                param="event_name",
            )
    meter = new_meter(call.state, p)
    call.state.insert(meter)
    call.emit("billing.meter.created", meter)
    return meter


@router.get("/v1/billing/meters/{id}")
def retrieve_meter(call: Call) -> StripeObject:
    return call.require(METER, call.path["id"])


@router.post("/v1/billing/meters/{id}", UPDATE)
def update_meter(call: Call) -> StripeObject:
    meter = call.require(METER, call.path["id"])
    if "display_name" in call.params:
        previous = call.state.update(
            meter, {"display_name": call.params["display_name"], "updated": call.now()}
        )
        if previous:
            call.emit("billing.meter.updated", meter, previous)
    return meter


@router.get("/v1/billing/meters", LIST, list=True)
def list_meters(call: Call) -> StripeObject:
    status = call.params.get("status")
    found = [m for m in call.state.all(METER, newest_first=True) if status in (None, m["status"])]
    return call.list_response(found)


def _set_status(call: Call, status: str) -> StripeObject:
    meter = call.require(METER, call.path["id"])
    if meter["status"] == status:
        word = "deactivated" if status == "inactive" else "active"
        raise invalid_request(f"The meter `{meter['id']}` is already {word}.")
    if status == "active":
        for other in call.state.all(METER):
            if other["event_name"] == meter["event_name"] and other["status"] == "active":
                raise invalid_request(
                    f"An active meter with event_name `{meter['event_name']}` already exists.",
                    param="event_name",
                )
    now = call.now()
    previous = call.state.update(
        meter,
        {
            "status": status,
            "status_transitions": {"deactivated_at": now if status == "inactive" else None},
            "updated": now,
        },
    )
    call.emit(
        "billing.meter.deactivated" if status == "inactive" else "billing.meter.reactivated",
        meter,
        previous,
    )
    return meter


@router.post("/v1/billing/meters/{id}/deactivate")
def deactivate_meter(call: Call) -> StripeObject:
    return _set_status(call, "inactive")


@router.post("/v1/billing/meters/{id}/reactivate")
def reactivate_meter(call: Call) -> StripeObject:
    return _set_status(call, "active")


def _aligned(call: Call, name: str, step: int) -> int:
    value = int(call.params[name])
    if value % step:
        unit = {60: "minute", 3_600: "hour", 86_400: "day"}[step]
        raise invalid_request(f"{name} must be aligned with {unit} boundaries.", param=name)
    return value


def _summary_id(meter: str, customer: str, start: int, end: int) -> str:
    digest = hashlib.sha256(f"{meter}|{customer}|{start}|{end}".encode()).hexdigest()
    return "mtrusg_" + digest[:24]


@router.get("/v1/billing/meters/{id}/event_summaries", SUMMARIES, list=True)
def event_summaries(call: Call) -> StripeObject:
    """The meter's aggregate for a customer over [start_time, end_time), in one summary or one
    per `value_grouping_window` (newest first)."""
    meter = call.require(METER, call.path["id"])
    customer = call.params["customer"]
    call.require("customer", customer, param="customer")
    window = call.params.get("value_grouping_window")
    step = _WINDOWS[window] if window else 60
    start = _aligned(call, "start_time", step)
    end = _aligned(call, "end_time", step)
    if end <= start:
        raise invalid_request("end_time must be after start_time.", param="end_time")
    bounds = (
        [(s, min(s + step, end)) for s in range(start, end, step)] if window else [(start, end)]
    )
    summaries = [
        {
            "id": _summary_id(meter["id"], customer, s, e),
            "object": "billing.meter_event_summary",
            "aggregated_value": aggregate(call.state, meter, customer, s, e),
            "end_time": e,
            "livemode": False,
            "meter": meter["id"],
            "start_time": s,
        }
        for s, e in reversed(bounds)
    ]
    return call.list_response(summaries)


# --- meter events ------------------------------------------------------------------------------


def _event_view(stored: StripeObject) -> StripeObject:
    """A meter event as Stripe answers it (it has no id of its own)."""
    return {k: v for k, v in stored.items() if k != "id"}


@router.post("/v1/billing/meter_events", EVENT_CREATE)
def create_meter_event(call: Call) -> StripeObject:
    p = call.params
    state = call.state
    identifier = p.get("identifier") or state.new_id("mevt")[5:]
    existing = state.get(METER_EVENT, EVENT_ID_PREFIX + identifier)
    if existing is not None:
        return _event_view(existing)  # a resent event counts once
    meter = meter_for_event(state, p["event_name"])
    if meter is None:
        raise invalid_request(
            f"No active meter was found for event_name `{p['event_name']}`.",
            param="event_name",
            code="no_meter",
        )
    if meter["status"] != "active":
        raise invalid_request(
            f"The meter `{meter['id']}` for event_name `{p['event_name']}` is inactive.",
            param="event_name",
            code="archived_meter",
        )
    payload: dict[str, Any] = p["payload"]
    ckey, vkey = customer_key(meter), value_key(meter)
    customer_id = payload.get(ckey)
    if not customer_id:
        raise invalid_request(
            f"The payload has no customer: `payload[{ckey}]` is required by the meter.",
            param=f"payload[{ckey}]",
            code="meter_event_no_customer_defined",
        )
    customer = state.get("customer", customer_id)
    if customer is None:
        raise invalid_request(
            f"No such customer: '{customer_id}'",
            param=f"payload[{ckey}]",
            code="meter_event_customer_not_found",
        )
    if meter["default_aggregation"]["formula"] != "count":
        value = payload.get(vkey)
        if value is None or not (value.isascii() and value.isdigit()):
            raise invalid_request(
                f"The value in `payload[{vkey}]` must be a whole number.",
                param=f"payload[{vkey}]",
                code="meter_event_invalid_value",
            )
    now = state.now_for(customer_id)
    at = p.get("timestamp", now)
    if at < now - MAX_PAST:
        raise invalid_request(
            "The timestamp must be within the past 35 calendar days.",
            param="timestamp",
            code="timestamp_too_far_in_past",
        )
    if at > now + MAX_FUTURE:
        raise invalid_request(
            "The timestamp must not be more than 5 minutes in the future.",
            param="timestamp",
            code="timestamp_in_future",
        )
    stored: StripeObject = {
        "id": EVENT_ID_PREFIX + identifier,
        "object": METER_EVENT,
        "created": now,
        "event_name": p["event_name"],
        "identifier": identifier,
        "livemode": False,
        "payload": dict(payload),
        "timestamp": at,
    }
    state.insert(stored)
    return _event_view(stored)


@router.post("/v1/billing/meter_event_adjustments", ADJUSTMENT_CREATE)
def create_meter_event_adjustment(call: Call) -> StripeObject:
    """Cancel a meter event by its identifier: it no longer counts."""
    p = call.params
    identifier = (p.get("cancel") or {}).get("identifier")
    if not identifier:
        raise invalid_request(
            "Missing required param: cancel[identifier].",
            param="cancel[identifier]",
            code="parameter_missing",
        )
    stored = call.state.get(METER_EVENT, EVENT_ID_PREFIX + identifier)
    if stored is None or stored["event_name"] != p["event_name"]:
        raise invalid_request(
            f"No meter event with identifier `{identifier}` for event_name `{p['event_name']}`.",
            param="cancel[identifier]",
            code="resource_missing",
            status=404,
        )
    call.state.update(stored, {"_canceled": True})
    return {
        "object": "billing.meter_event_adjustment",
        "cancel": {"identifier": identifier},
        "event_name": p["event_name"],
        "livemode": False,
        "status": "complete",
        "type": "cancel",
    }
