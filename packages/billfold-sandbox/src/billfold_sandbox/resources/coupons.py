"""Coupons: percent_off or amount_off, duration once/repeating/forever; redemption helpers."""

from __future__ import annotations

import secrets
import string as _string

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import (
    anything,
    apply_metadata,
    enum,
    in_range,
    integer,
    metadata,
    number,
    range_filter,
    string,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

CREATE = {
    "id": string(),
    "amount_off": integer(min=1),
    "currency": string(),
    "currency_options": anything(),
    "duration": enum("once", "repeating", "forever"),
    "duration_in_months": integer(min=1),
    "max_redemptions": integer(min=1),
    "metadata": metadata(),
    "name": string(max_length=40),
    "percent_off": number(min=0.01, max=100),
    "redeem_by": integer(),
    "applies_to": anything(),
}
UPDATE = {
    "metadata": metadata(),
    "name": string(nullable=True, max_length=40),
    "currency_options": anything(),
}
LIST = {"created": range_filter()}


def coupon_valid(state: SandboxState, coupon: StripeObject, at: int | None = None) -> bool:
    """Whether a coupon can still be redeemed (not expired, not used up, not deleted)."""
    if coupon.get("deleted"):
        return False
    now = state.now() if at is None else at
    if coupon.get("redeem_by") is not None and now > coupon["redeem_by"]:
        return False
    limit = coupon.get("max_redemptions")
    return not (limit is not None and coupon["times_redeemed"] >= limit)


def redeem_coupon(state: SandboxState, coupon: StripeObject) -> None:
    """Count one redemption; the coupon turns invalid when it reaches `max_redemptions`."""
    times = coupon["times_redeemed"] + 1
    state.update(coupon, {"times_redeemed": times})
    state.update(coupon, {"valid": coupon_valid(state, coupon)})


@router.post("/v1/coupons", CREATE)
def create_coupon(call: Call) -> StripeObject:
    p = call.params
    state = call.state
    if ("percent_off" in p) == ("amount_off" in p):
        raise invalid_request(
            "You must pass exactly one of percent_off or amount_off.", param="percent_off"
        )
    if "amount_off" in p and not p.get("currency"):
        raise invalid_request("You must pass currency when passing amount_off.", param="currency")
    duration = p.get("duration", "once")
    if duration == "repeating" and "duration_in_months" not in p:
        raise invalid_request(
            "Missing required param: duration_in_months.",
            param="duration_in_months",
            code="parameter_missing",
        )
    if duration != "repeating" and "duration_in_months" in p:
        raise invalid_request(
            "duration_in_months can only be set when duration is repeating.",
            param="duration_in_months",
        )
    coupon_id = p.get("id") or "".join(
        secrets.choice(_string.ascii_letters + _string.digits) for _ in range(8)
    )
    if state.get("coupon", coupon_id) is not None:
        raise invalid_request("Coupon already exists.", param="id", code="resource_already_exists")
    coupon: StripeObject = {
        "id": coupon_id,
        "object": "coupon",
        "amount_off": p.get("amount_off"),
        "created": state.now(),
        "currency": p["currency"].lower() if p.get("currency") else None,
        "duration": duration,
        "duration_in_months": p.get("duration_in_months"),
        "livemode": False,
        "max_redemptions": p.get("max_redemptions"),
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "name": p.get("name"),
        "percent_off": p.get("percent_off"),
        "redeem_by": p.get("redeem_by"),
        "times_redeemed": 0,
        "valid": True,
    }
    if coupon["redeem_by"] is not None and coupon["redeem_by"] <= state.now():
        raise invalid_request("redeem_by must be in the future.", param="redeem_by")
    state.insert(coupon)
    call.emit("coupon.created", coupon)
    return coupon


@router.get("/v1/coupons/{id}")
def retrieve_coupon(call: Call) -> StripeObject:
    coupon = call.require("coupon", call.path["id"])
    call.state.update(coupon, {"valid": coupon_valid(call.state, coupon)})
    return coupon


@router.post("/v1/coupons/{id}", UPDATE)
def update_coupon(call: Call) -> StripeObject:
    coupon = call.require("coupon", call.path["id"])
    changes: dict[str, object] = {}
    if "metadata" in call.params:
        changes["metadata"] = apply_metadata(coupon["metadata"], call.params["metadata"])
    if "name" in call.params:
        changes["name"] = call.params["name"]
    previous = call.state.update(coupon, changes)
    if previous:
        call.emit("coupon.updated", coupon, previous)
    return coupon


@router.delete("/v1/coupons/{id}")
def delete_coupon(call: Call) -> StripeObject:
    coupon = call.require("coupon", call.path["id"])
    snapshot = dict(coupon, valid=False)
    deleted = call.state.mark_deleted(coupon)
    call.emit("coupon.deleted", snapshot)
    return deleted


@router.get("/v1/coupons", LIST, list=True)
def list_coupons(call: Call) -> StripeObject:
    found = [
        c
        for c in call.state.all("coupon", newest_first=True)
        if in_range(c.get("created"), call.params.get("created"))
    ]
    return call.list_response(found)
