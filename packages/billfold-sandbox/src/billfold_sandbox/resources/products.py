"""Products: create, retrieve, update, delete, list."""

from __future__ import annotations

from typing import Any

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
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

_FIELDS = {
    "active": boolean(),
    "description": string(nullable=True, max_length=40000),
    "images": array(string(), nullable=True, max_items=8),
    "marketing_features": array(obj({"name": string(required=True)}), nullable=True),
    "metadata": metadata(),
    "name": string(max_length=250),
    "package_dimensions": anything(),
    "shippable": boolean(nullable=True),
    "statement_descriptor": string(nullable=True, max_length=22),
    "tax_code": string(nullable=True),
    "unit_label": string(nullable=True, max_length=12),
    "url": string(nullable=True),
    "tax_details": anything(),
}
CREATE = {
    **_FIELDS,
    "name": string(required=True, max_length=250),
    "id": string(),
    "type": enum("good", "service"),
    "default_price_data": obj(
        {
            "currency": string(required=True),
            "unit_amount": integer(min=0),
            "unit_amount_decimal": string(),
            "recurring": obj(
                {
                    "interval": enum("day", "week", "month", "year", required=True),
                    "interval_count": integer(min=1),
                }
            ),
            "tax_behavior": enum("inclusive", "exclusive", "unspecified"),
            "metadata": metadata(),
            "currency_options": anything(),
            "custom_unit_amount": anything(),
        }
    ),
}
UPDATE = {**_FIELDS, "default_price": string(nullable=True)}
LIST = {
    "active": boolean(),
    "created": range_filter(),
    "ids": array(string()),
    "shippable": boolean(),
    "type": enum("good", "service"),
    "url": string(),
}


@router.post("/v1/products", CREATE)
def create_product(call: Call) -> StripeObject:
    return create_product_from(call, call.params)


def create_product_from(call: Call, p: dict[str, Any]) -> StripeObject:
    """Create and store a product from validated parameters (also for prices' product_data)."""
    state = call.state
    product_id = p.get("id") or state.new_id("prod", 14)
    if state.find(product_id) is not None:
        raise invalid_request(
            f"Product already exists: {product_id}", param="id", code="resource_already_exists"
        )
    now = state.now()
    product: StripeObject = {
        "id": product_id,
        "object": "product",
        "active": p.get("active", True),
        "created": now,
        "default_price": None,
        "description": p.get("description"),
        "images": p.get("images") or [],
        "livemode": False,
        "marketing_features": p.get("marketing_features") or [],
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "name": p["name"],
        "package_dimensions": p.get("package_dimensions"),
        "shippable": p.get("shippable"),
        "statement_descriptor": p.get("statement_descriptor"),
        "tax_code": p.get("tax_code"),
        "type": p.get("type", "service"),
        "unit_label": p.get("unit_label"),
        "updated": now,
        "url": p.get("url"),
    }
    state.insert(product)
    call.emit("product.created", product)
    price_data = p.get("default_price_data")
    if price_data:
        from billfold_sandbox.resources.prices import new_price

        price = new_price(call, {**price_data, "product": product["id"]})
        state.update(product, {"default_price": price["id"]})
    return product


@router.get("/v1/products/{id}")
def retrieve_product(call: Call) -> StripeObject:
    return call.state.require("product", call.path["id"], deleted_ok=True)


@router.post("/v1/products/{id}", UPDATE)
def update_product(call: Call) -> StripeObject:
    product = call.require("product", call.path["id"])
    p = dict(call.params)
    p.pop("expand", None)
    if "metadata" in p:
        p["metadata"] = apply_metadata(product["metadata"], p["metadata"])
    if p.get("default_price"):
        price = call.require("price", p["default_price"], param="default_price")
        if price["product"] != product["id"]:
            raise invalid_request(
                "The default price must belong to this product.", param="default_price"
            )
    p.pop("tax_details", None)  # accepted, not kept on the product
    if "images" in p and p["images"] is None:
        p["images"] = []
    previous = call.state.update(product, p)
    if previous:
        call.state.update(product, {"updated": call.now()})
        call.emit("product.updated", product, previous)
    return product


@router.delete("/v1/products/{id}")
def delete_product(call: Call) -> StripeObject:
    product = call.require("product", call.path["id"])
    if any(pr["product"] == product["id"] for pr in call.state.all("price")):
        raise invalid_request(
            "This product cannot be deleted because it has one or more user-created prices."
        )
    snapshot = dict(product)
    deleted = call.state.mark_deleted(product)
    call.emit("product.deleted", snapshot)
    return deleted


@router.get("/v1/products", LIST, list=True)
def list_products(call: Call) -> StripeObject:
    p = call.params
    found = [
        pr
        for pr in call.state.all("product", newest_first=True)
        if ("active" not in p or pr["active"] == p["active"])
        and ("ids" not in p or pr["id"] in p["ids"])
        and ("shippable" not in p or pr.get("shippable") == p["shippable"])
        and ("url" not in p or pr.get("url") == p["url"])
        and ("type" not in p or pr.get("type") == p["type"])
        and in_range(pr.get("created"), p.get("created"))
    ]
    return call.list_response(found)
