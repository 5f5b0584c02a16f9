"""PaymentMethods: create (cards, test tokens, US bank accounts), retrieve, update, attach,
detach, list (by customer and type). Stripe's test ids (`pm_card_visa`, ...) work anywhere a
PaymentMethod is taken and give a fresh PaymentMethod each time."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.pages import remember_base
from billfold_sandbox.params import (
    apply_metadata,
    enum,
    integer,
    metadata,
    obj,
    string,
)
from billfold_sandbox.payments.methods import (
    BILLING_DETAILS,
    PAYMENT_METHOD,
    PAYMENT_METHOD_DATA,
    attach,
    billing_details,
    create_from_params,
    detach,
    load_test_payment_method,
    resolve,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

CREATE = {
    **PAYMENT_METHOD_DATA,
    "type": string(),
    "customer": string(),
    "payment_method": string(),
}
UPDATE = {
    "billing_details": BILLING_DETAILS,
    "metadata": metadata(),
    "allow_redisplay": enum("always", "limited", "unspecified"),
    "card": obj({"exp_month": integer(min=1, max=12), "exp_year": integer(), "networks": obj({})}),
    "us_bank_account": obj(
        {
            "account_holder_type": enum("individual", "company"),
            "account_type": enum("checking", "savings"),
        }
    ),
}
LIST = {"customer": string(), "type": string()}
CUSTOMER_LIST = {"type": string(), "allow_redisplay": enum("always", "limited", "unspecified")}


@router.loader(PAYMENT_METHOD)
def _load(state: SandboxState, pm_id: str) -> StripeObject | None:
    return load_test_payment_method(state, pm_id)


@router.post("/v1/payment_methods", CREATE)
def create_payment_method(call: Call) -> StripeObject:
    remember_base(call.state, call.request)
    p = call.params
    if "payment_method" in p:
        # Cloning a customer's PaymentMethod (Connect): the same method, detached.
        if "customer" not in p:
            return resolve(call.state, p["payment_method"])
        source = resolve(call.state, p["payment_method"])
        if source.get("customer") != p["customer"]:
            raise invalid_request(
                f"The PaymentMethod {source['id']} is not attached to {p['customer']}.",
                param="payment_method",
            )
        return source
    if "type" not in p:
        raise invalid_request(
            "Missing required param: type.", param="type", code="parameter_missing"
        )
    if "customer" in p:
        raise invalid_request(
            "customer can only be passed together with payment_method (to clone a "
            "PaymentMethod); attach it with POST /v1/payment_methods/{id}/attach.",
            param="customer",
        )
    return create_from_params(call.state, p)


@router.get("/v1/payment_methods/{id}")
def retrieve_payment_method(call: Call) -> StripeObject:
    return resolve(call.state, call.path["id"], param="payment_method")


@router.post("/v1/payment_methods/{id}", UPDATE)
def update_payment_method(call: Call) -> StripeObject:
    pm = resolve(call.state, call.path["id"], param="payment_method")
    p = call.params
    if pm.get("customer") is None:
        raise invalid_request(
            "You must save this PaymentMethod to a customer before you can update it.",
            code="payment_method_unexpected_state",
        )
    changes: dict[str, Any] = {}
    if "billing_details" in p:
        changes["billing_details"] = billing_details(p["billing_details"], pm["billing_details"])
    if "metadata" in p:
        changes["metadata"] = apply_metadata(pm["metadata"], p["metadata"])
    if "allow_redisplay" in p:
        changes["allow_redisplay"] = p["allow_redisplay"]
    for kind in ("card", "us_bank_account"):
        if kind in p:
            if pm["type"] != kind:
                raise invalid_request(
                    f"You cannot update {kind} details of a {pm['type']} PaymentMethod.",
                    param=kind,
                )
            details = {k: v for k, v in p[kind].items() if k != "networks"}
            if kind == "card" and "exp_year" in details and details["exp_year"] < 100:
                details["exp_year"] += 2000
            changes[kind] = {**pm[kind], **details}
    previous = call.state.update(pm, changes)
    if previous:
        call.emit("payment_method.updated", pm, previous)
    return pm


@router.post("/v1/payment_methods/{id}/attach", {"customer": string(required=True)})
def attach_payment_method(call: Call) -> StripeObject:
    pm = resolve(call.state, call.path["id"], param="payment_method")
    return attach(call.state, pm, call.params["customer"])


@router.post("/v1/payment_methods/{id}/detach")
def detach_payment_method(call: Call) -> StripeObject:
    pm = resolve(call.state, call.path["id"], param="payment_method")
    return detach(call.state, pm)


def _matches(pm: StripeObject, p: dict[str, Any]) -> bool:
    return ("type" not in p or pm["type"] == p["type"]) and (
        "allow_redisplay" not in p or pm["allow_redisplay"] == p["allow_redisplay"]
    )


@router.get("/v1/payment_methods", LIST, list=True)
def list_payment_methods(call: Call) -> StripeObject:
    p = call.params
    if "customer" in p:
        call.require("customer", p["customer"], param="customer")
    found = [
        pm
        for pm in call.state.all(PAYMENT_METHOD, newest_first=True)
        if ("customer" not in p or pm.get("customer") == p["customer"]) and _matches(pm, p)
    ]
    return call.list_response(found)


@router.get("/v1/customers/{id}/payment_methods", CUSTOMER_LIST, list=True)
def list_customer_payment_methods(call: Call) -> StripeObject:
    customer = call.require("customer", call.path["id"], param="customer")
    found = [
        pm
        for pm in call.state.all(PAYMENT_METHOD, newest_first=True)
        if pm.get("customer") == customer["id"] and _matches(pm, call.params)
    ]
    return call.list_response(found)


@router.get("/v1/customers/{customer}/payment_methods/{payment_method}")
def retrieve_customer_payment_method(call: Call) -> StripeObject:
    customer = call.require("customer", call.path["customer"], param="customer")
    pm = call.state.get(PAYMENT_METHOD, call.path["payment_method"])
    if pm is None or pm.get("customer") != customer["id"]:
        raise invalid_request(
            f"No such PaymentMethod: '{call.path['payment_method']}'",
            param="payment_method",
            code="resource_missing",
            status=404,
        )
    return pm
