"""Promotion codes: a customer-facing `code` for a coupon (`promotion[coupon]`)."""

from __future__ import annotations

import re
import secrets
import string as _string

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import (
    anything,
    apply_metadata,
    boolean,
    enum,
    in_range,
    integer,
    metadata,
    obj,
    range_filter,
    string,
)
from billfold_sandbox.resources.coupons import coupon_valid
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

_RESTRICTIONS = obj(
    {
        "currency_options": anything(),
        "first_time_transaction": boolean(),
        "minimum_amount": integer(min=0),
        "minimum_amount_currency": string(),
    }
)
CREATE = {
    "active": boolean(),
    "code": string(max_length=500),
    "customer": string(),
    "customer_account": string(),
    "expires_at": integer(),
    "max_redemptions": integer(min=1),
    "metadata": metadata(),
    "promotion": obj({"type": enum("coupon", required=True), "coupon": string()}, required=True),
    "restrictions": _RESTRICTIONS,
}
UPDATE = {
    "active": boolean(),
    "metadata": metadata(),
    "restrictions": obj({"currency_options": anything()}),
}
LIST = {
    "active": boolean(),
    "code": string(),
    "coupon": string(),
    "created": range_filter(),
    "customer": string(),
    "customer_account": string(),
}
_CODE = re.compile(r"^[A-Za-z0-9-]+$")


def find_active_code(state: SandboxState, code: str) -> StripeObject | None:
    """The active promotion code with this code (case-insensitive), if any."""
    for promo in state.all("promotion_code"):
        if promo["active"] and promo["code"].lower() == code.lower():
            return promo
    return None


def promotion_code_usable(
    state: SandboxState, promo: StripeObject, customer_id: str | None = None
) -> bool:
    """Active, not expired, not used up, for this customer, and its coupon still valid."""
    now = state.now_for(customer_id) if customer_id else state.now()
    if not promo["active"]:
        return False
    if promo.get("expires_at") is not None and now > promo["expires_at"]:
        return False
    limit = promo.get("max_redemptions")
    if limit is not None and promo["times_redeemed"] >= limit:
        return False
    if promo.get("customer") and promo["customer"] != customer_id:
        return False
    coupon = state.get("coupon", promo["promotion"]["coupon"])
    return coupon is not None and coupon_valid(state, coupon, now)


@router.post("/v1/promotion_codes", CREATE)
def create_promotion_code(call: Call) -> StripeObject:
    p = call.params
    state = call.state
    coupon_id = p["promotion"].get("coupon")
    if not coupon_id:
        raise invalid_request(
            "Missing required param: promotion[coupon].",
            param="promotion[coupon]",
            code="parameter_missing",
        )
    coupon = call.require("coupon", coupon_id, param="promotion[coupon]")
    if p.get("customer"):
        call.require("customer", p["customer"], param="customer")
    code = p.get("code") or "".join(
        secrets.choice(_string.ascii_uppercase + _string.digits) for _ in range(8)
    )
    if not _CODE.match(code):
        raise invalid_request(
            "Promotion codes may contain only letters, digits and dashes.", param="code"
        )
    if find_active_code(state, code) is not None:
        raise invalid_request(
            "An active promotion code with `code: " + code + "` already exists.",
            param="code",
            code="resource_already_exists",
        )
    restrictions = p.get("restrictions", {})
    promo: StripeObject = {
        "id": state.new_id("promo"),
        "object": "promotion_code",
        "active": p.get("active", True),
        "code": code,
        "created": state.now(),
        "customer": p.get("customer"),
        "customer_account": p.get("customer_account"),
        "expires_at": p.get("expires_at"),
        "livemode": False,
        "max_redemptions": p.get("max_redemptions"),
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "promotion": {"coupon": coupon["id"], "type": "coupon"},
        "restrictions": {
            "first_time_transaction": restrictions.get("first_time_transaction", False),
            "minimum_amount": restrictions.get("minimum_amount"),
            "minimum_amount_currency": restrictions.get("minimum_amount_currency"),
        },
        "times_redeemed": 0,
    }
    state.insert(promo)
    call.emit("promotion_code.created", promo)
    return promo


@router.get("/v1/promotion_codes/{id}")
def retrieve_promotion_code(call: Call) -> StripeObject:
    return call.require("promotion_code", call.path["id"])


@router.post("/v1/promotion_codes/{id}", UPDATE)
def update_promotion_code(call: Call) -> StripeObject:
    promo = call.require("promotion_code", call.path["id"])
    changes: dict[str, object] = {}
    if "active" in call.params:
        if call.params["active"] and not promo["active"]:
            if find_active_code(call.state, promo["code"]) is not None:
                raise invalid_request(
                    "Another active promotion code already uses this code.", param="active"
                )
        changes["active"] = call.params["active"]
    if "metadata" in call.params:
        changes["metadata"] = apply_metadata(promo["metadata"], call.params["metadata"])
    previous = call.state.update(promo, changes)
    if previous:
        call.emit("promotion_code.updated", promo, previous)
    return promo


@router.get("/v1/promotion_codes", LIST, list=True)
def list_promotion_codes(call: Call) -> StripeObject:
    p = call.params
    found = [
        pc
        for pc in call.state.all("promotion_code", newest_first=True)
        if ("active" not in p or pc["active"] == p["active"])
        and ("code" not in p or pc["code"].lower() == p["code"].lower())
        and ("coupon" not in p or pc["promotion"]["coupon"] == p["coupon"])
        and ("customer" not in p or pc.get("customer") == p["customer"])
        and in_range(pc.get("created"), p.get("created"))
    ]
    return call.list_response(found)
