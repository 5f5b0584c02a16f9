"""Prices: recurring and one-time, `lookup_key` (+ `transfer_lookup_key`), list filters."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.billing.metering import check_meter
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import (
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
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.search import search_response
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

_RECURRING = obj(
    {
        "interval": enum("day", "week", "month", "year", required=True),
        "interval_count": integer(min=1),
        "usage_type": enum("licensed", "metered"),
        "meter": string(),
        "trial_period_days": integer(min=0),
    }
)
CREATE = {
    "currency": string(required=True),
    "currency_options": anything(),
    "active": boolean(),
    "billing_scheme": enum("per_unit", "tiered"),
    "custom_unit_amount": anything(),
    "lookup_key": string(max_length=200),
    "metadata": metadata(),
    "nickname": string(),
    "product": string(),
    "product_data": obj(
        {
            "name": string(required=True),
            "active": boolean(),
            "id": string(),
            "metadata": metadata(),
            "statement_descriptor": string(),
            "tax_code": string(),
            "tax_details": anything(),
            "unit_label": string(),
        }
    ),
    "recurring": _RECURRING,
    "tax_behavior": enum("inclusive", "exclusive", "unspecified"),
    "tiers": anything(),
    "tiers_mode": enum("graduated", "volume"),
    "transfer_lookup_key": boolean(),
    "transform_quantity": anything(),
    "unit_amount": integer(min=0),
    "unit_amount_decimal": string(),
}
UPDATE = {
    "active": boolean(),
    "lookup_key": string(nullable=True, max_length=200),
    "metadata": metadata(),
    "nickname": string(nullable=True),
    "tax_behavior": enum("inclusive", "exclusive", "unspecified"),
    "transfer_lookup_key": boolean(),
    "currency_options": anything(),
}
LIST = {
    "active": boolean(),
    "currency": string(),
    "created": range_filter(),
    "lookup_keys": array(string(), max_items=10),
    "product": string(),
    "recurring": obj(
        {
            "interval": enum("day", "week", "month", "year"),
            "meter": string(),
            "usage_type": enum("licensed", "metered"),
        }
    ),
    "type": enum("one_time", "recurring"),
}


def _take_lookup_key(call: Call, lookup_key: str, transfer: bool, except_id: str | None) -> None:
    """A lookup key is unique among prices; `transfer_lookup_key` moves it to this price."""
    for other in call.state.all("price"):
        if other["id"] != except_id and other.get("lookup_key") == lookup_key:
            if not transfer:
                raise invalid_request(
                    f"A price (`{other['id']}`) already uses that lookup key.",
                    param="lookup_key",
                )
            previous = call.state.update(other, {"lookup_key": None})
            call.emit("price.updated", other, previous)


def new_price(call: Call, p: dict[str, Any]) -> StripeObject:
    """Create and store a price from validated parameters (used by products' default_price_data)."""
    state = call.state
    if p.get("product") and p.get("product_data"):
        raise invalid_request(
            "You may only specify one of these parameters: product, product_data.", param="product"
        )
    if p.get("product"):
        product = call.require("product", p["product"], param="product")
    elif p.get("product_data"):
        from billfold_sandbox.resources.products import create_product_from

        product = create_product_from(call, p["product_data"])
    else:
        raise invalid_request(
            "Missing required param: product.", param="product", code="parameter_missing"
        )
    unit_amount = p.get("unit_amount")
    decimal = p.get("unit_amount_decimal")
    if unit_amount is not None and decimal is not None:
        raise invalid_request(
            "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
            param="unit_amount",
        )
    if decimal is not None:
        try:
            unit_amount = int(float(decimal)) if float(decimal).is_integer() else None
        except ValueError:
            raise invalid_request(
                f"Invalid decimal: {decimal}", param="unit_amount_decimal"
            ) from None
    billing_scheme = p.get("billing_scheme", "per_unit")
    if (
        unit_amount is None
        and decimal is None
        and billing_scheme == "per_unit"
        and not p.get("custom_unit_amount")
    ):
        raise invalid_request(
            "Missing required param: unit_amount.", param="unit_amount", code="parameter_missing"
        )
    currency = str(p["currency"]).lower()
    if len(currency) != 3 or not currency.isalpha():
        raise invalid_request(f"Invalid currency: {p['currency']}", param="currency")
    recurring = None
    if p.get("recurring"):
        r = p["recurring"]
        recurring = {
            "interval": r["interval"],
            "interval_count": r.get("interval_count", 1),
            "meter": r.get("meter"),
            "trial_period_days": r.get("trial_period_days"),
            "usage_type": r.get("usage_type", "licensed"),
        }
        check_meter(state, recurring)
    if p.get("lookup_key"):
        _take_lookup_key(call, p["lookup_key"], bool(p.get("transfer_lookup_key")), None)
    price: StripeObject = {
        "id": state.new_id("price"),
        "object": "price",
        "active": p.get("active", True),
        "billing_scheme": billing_scheme,
        "created": state.now(),
        "currency": currency,
        "custom_unit_amount": p.get("custom_unit_amount"),
        "livemode": False,
        "lookup_key": p.get("lookup_key"),
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "nickname": p.get("nickname"),
        "product": product["id"],
        "recurring": recurring,
        "tax_behavior": p.get("tax_behavior", "unspecified"),
        "tiers_mode": p.get("tiers_mode"),
        "transform_quantity": p.get("transform_quantity"),
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(decimal if decimal is not None else unit_amount)
        if (decimal is not None or unit_amount is not None)
        else None,
    }
    state.insert(price)
    call.emit("price.created", price)
    return price


@router.post("/v1/prices", CREATE)
def create_price(call: Call) -> StripeObject:
    return new_price(call, call.params)


@router.get("/v1/prices/{id}")
def retrieve_price(call: Call) -> StripeObject:
    return call.require("price", call.path["id"])


@router.post("/v1/prices/{id}", UPDATE)
def update_price(call: Call) -> StripeObject:
    price = call.require("price", call.path["id"])
    p = dict(call.params)
    p.pop("expand", None)
    p.pop("currency_options", None)
    transfer = bool(p.pop("transfer_lookup_key", False))
    if p.get("lookup_key"):
        _take_lookup_key(call, p["lookup_key"], transfer, price["id"])
    if "metadata" in p:
        p["metadata"] = apply_metadata(price["metadata"], p["metadata"])
    previous = call.state.update(price, p)
    if previous:
        call.emit("price.updated", price, previous)
    return price


@router.get("/v1/prices", LIST, list=True)
def list_prices(call: Call) -> StripeObject:
    p = call.params
    recurring = p.get("recurring") or {}
    found = [
        pr
        for pr in call.state.all("price", newest_first=True)
        if ("active" not in p or pr["active"] == p["active"])
        and ("currency" not in p or pr["currency"] == p["currency"].lower())
        and ("lookup_keys" not in p or pr.get("lookup_key") in p["lookup_keys"])
        and ("product" not in p or pr["product"] == p["product"])
        and ("type" not in p or pr["type"] == p["type"])
        and (
            not recurring
            or (
                pr.get("recurring") is not None
                and all(pr["recurring"].get(k) == v for k, v in recurring.items())
            )
        )
        and in_range(pr.get("created"), p.get("created"))
    ]
    return call.list_response(found)


@router.get("/v1/prices/search", search=True)
def search_prices(call: Call) -> StripeObject:
    """Stripe's search fields for prices: active, created, currency, lookup_key, metadata,
    product, type."""
    return search_response(
        call,
        call.state.all("price", newest_first=True),
        {
            "active": lambda p: str(p.get("active")).lower(),
            "created": lambda p: p.get("created"),
            "currency": lambda p: p.get("currency"),
            "lookup_key": lambda p: p.get("lookup_key"),
            "product": lambda p: p.get("product"),
            "type": lambda p: p.get("type"),
        },
    )
