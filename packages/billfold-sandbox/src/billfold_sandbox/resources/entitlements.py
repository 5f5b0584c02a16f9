"""Entitlements: features (`/v1/entitlements/features`: create, retrieve, list, update), the
features of a product (`/v1/products/{product}/features`: attach, retrieve, list, remove) and a
customer's active entitlements (`/v1/entitlements/active_entitlements`: list, retrieve).

As on Stripe, a customer is entitled to the features of the products of their subscriptions that
are `active`, `trialing` or `past_due`; the entitlements are computed when asked for.
Simplified: `entitlements.active_entitlement_summary.updated` is not emitted.
"""

from __future__ import annotations

import hashlib
from typing import Any

from billfold_sandbox.errors import invalid_request, resource_missing
from billfold_sandbox.params import apply_metadata, boolean, metadata, string
from billfold_sandbox.resources.nested import require_nested
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

FEATURE = "entitlements.feature"
PRODUCT_FEATURE = "product_feature"
ENTITLED = ("active", "trialing", "past_due")

CREATE = {
    "lookup_key": string(required=True, max_length=80),
    "name": string(required=True, max_length=80),
    "metadata": metadata(),
}
UPDATE = {"active": boolean(), "metadata": metadata(), "name": string(max_length=80)}
LIST = {"archived": boolean(), "lookup_key": string()}
ATTACH = {"entitlement_feature": string(required=True)}
ACTIVE_LIST = {"customer": string(required=True)}


# --- features ----------------------------------------------------------------------------------


@router.post("/v1/entitlements/features", CREATE)
def create_feature(call: Call) -> StripeObject:
    p = call.params
    if any(f["lookup_key"] == p["lookup_key"] for f in call.state.all(FEATURE)):
        raise invalid_request(
            f"A feature with lookup_key `{p['lookup_key']}` already exists.", param="lookup_key"
        )
    feature: StripeObject = {
        "id": call.state.new_id("feat"),
        "object": FEATURE,
        "active": True,
        "livemode": False,
        "lookup_key": p["lookup_key"],
        "metadata": apply_metadata({}, p.get("metadata", {})),
        "name": p["name"],
    }
    call.state.insert(feature)
    return feature


@router.get("/v1/entitlements/features/{id}")
def retrieve_feature(call: Call) -> StripeObject:
    return call.require(FEATURE, call.path["id"])


@router.post("/v1/entitlements/features/{id}", UPDATE)
def update_feature(call: Call) -> StripeObject:
    feature = call.require(FEATURE, call.path["id"])
    p = call.params
    changes: dict[str, Any] = {k: p[k] for k in ("active", "name") if k in p}
    if "metadata" in p:
        changes["metadata"] = apply_metadata(feature["metadata"], p["metadata"])
    call.state.update(feature, changes)
    return feature


@router.get("/v1/entitlements/features", LIST, list=True)
def list_features(call: Call) -> StripeObject:
    """Active features, or archived ones with `archived=true`."""
    archived = call.params.get("archived", False)
    key = call.params.get("lookup_key")
    found = [
        f
        for f in call.state.all(FEATURE, newest_first=True)
        if f["active"] is not archived and key in (None, f["lookup_key"])
    ]
    return call.list_response(found)


# --- product features --------------------------------------------------------------------------


def _product_feature_view(state: SandboxState, stored: StripeObject) -> StripeObject:
    """A product feature with its feature as it is now."""
    return {
        "id": stored["id"],
        "object": PRODUCT_FEATURE,
        "entitlement_feature": dict(state.require(FEATURE, stored["_feature"])),
        "livemode": False,
    }


def _features_of(state: SandboxState, product: str) -> list[StripeObject]:
    return [pf for pf in state.all(PRODUCT_FEATURE, newest_first=True) if pf["_product"] == product]


@router.post("/v1/products/{product}/features", ATTACH)
def attach_feature(call: Call) -> StripeObject:
    product = call.require("product", call.path["product"], param="product")
    feature = call.require(FEATURE, call.params["entitlement_feature"], param="entitlement_feature")
    if not feature["active"]:
        raise invalid_request(
            f"The feature `{feature['id']}` is archived and cannot be attached to a product.",
            param="entitlement_feature",
        )
    if any(pf["_feature"] == feature["id"] for pf in _features_of(call.state, product["id"])):
        raise invalid_request(
            f"The feature `{feature['id']}` is already attached to product `{product['id']}`.",
            param="entitlement_feature",
        )
    stored: StripeObject = {
        "id": call.state.new_id("prodft", 14),
        "object": PRODUCT_FEATURE,
        "livemode": False,
        "_product": product["id"],
        "_feature": feature["id"],
    }
    call.state.insert(stored)
    return _product_feature_view(call.state, stored)


def _product_feature(call: Call) -> StripeObject:
    return require_nested(call, ("product", "product"), (PRODUCT_FEATURE, "id"), "_product")


@router.get("/v1/products/{product}/features/{id}")
def retrieve_product_feature(call: Call) -> StripeObject:
    return _product_feature_view(call.state, _product_feature(call))


@router.delete("/v1/products/{product}/features/{id}")
def remove_product_feature(call: Call) -> StripeObject:
    stored = _product_feature(call)
    call.state.remove(PRODUCT_FEATURE, stored["id"])
    return {"id": stored["id"], "object": PRODUCT_FEATURE, "deleted": True}


@router.get("/v1/products/{product}/features", list=True)
def list_product_features(call: Call) -> StripeObject:
    call.require("product", call.path["product"], param="product")
    views = [
        _product_feature_view(call.state, pf)
        for pf in _features_of(call.state, call.path["product"])
    ]
    return call.list_response(views)


# --- active entitlements -----------------------------------------------------------------------


def _entitlement_id(customer: str, feature: str) -> str:
    return "ent_" + hashlib.sha256(f"{customer}|{feature}".encode()).hexdigest()[:24]


def active_entitlements(state: SandboxState, customer: str) -> list[StripeObject]:
    """The customer's entitlements: one per feature of a product they are subscribed to."""
    products: list[str] = []
    for sub in state.all("subscription", newest_first=True):
        if sub["customer"] != customer or sub["status"] not in ENTITLED:
            continue
        for item in sub["items"]["data"]:
            if item["price"]["product"] not in products:
                products.append(item["price"]["product"])
    seen: dict[str, StripeObject] = {}
    for product in products:
        for pf in _features_of(state, product):
            feature = state.get(FEATURE, pf["_feature"])
            if feature is None or not feature["active"] or feature["id"] in seen:
                continue
            seen[feature["id"]] = {
                "id": _entitlement_id(customer, feature["id"]),
                "object": "entitlements.active_entitlement",
                "feature": feature["id"],
                "livemode": False,
                "lookup_key": feature["lookup_key"],
            }
    return list(seen.values())


@router.get("/v1/entitlements/active_entitlements", ACTIVE_LIST, list=True)
def list_active_entitlements(call: Call) -> StripeObject:
    customer = call.require("customer", call.params["customer"], param="customer")
    return call.list_response(active_entitlements(call.state, customer["id"]))


@router.get("/v1/entitlements/active_entitlements/{id}")
def retrieve_active_entitlement(call: Call) -> StripeObject:
    wanted = call.path["id"]
    customers = {s["customer"] for s in call.state.all("subscription")}
    for customer in sorted(customers):
        for entitlement in active_entitlements(call.state, customer):
            if entitlement["id"] == wanted:
                return entitlement
    raise resource_missing("entitlements.active_entitlement", wanted)
