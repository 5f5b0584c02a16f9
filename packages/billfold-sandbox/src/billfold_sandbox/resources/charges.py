"""Charges (created by PaymentIntents): retrieve, update, list, search, and their refunds."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import (
    anything,
    apply_metadata,
    in_range,
    metadata,
    range_filter,
    string,
)
from billfold_sandbox.payments.charges import CHARGE
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.search import search_response
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

UPDATE = {
    "description": string(nullable=True),
    "metadata": metadata(),
    "receipt_email": string(nullable=True),
    "shipping": anything(),
    "fraud_details": anything(),
    "transfer_group": string(),
    "customer": string(),
}
LIST = {
    "customer": string(),
    "payment_intent": string(),
    "transfer_group": string(),
    "created": range_filter(),
}


@router.get("/v1/charges/{id}")
def retrieve_charge(call: Call) -> StripeObject:
    return call.require(CHARGE, call.path["id"], param="id")


@router.post("/v1/charges/{id}", UPDATE)
def update_charge(call: Call) -> StripeObject:
    charge = call.require(CHARGE, call.path["id"], param="id")
    p = call.params
    changes: dict[str, Any] = {}
    if "metadata" in p:
        changes["metadata"] = apply_metadata(charge["metadata"], p["metadata"])
    if "customer" in p:
        if charge.get("customer") not in (None, p["customer"]):
            raise invalid_request(
                "This charge already has a customer; it cannot be changed.", param="customer"
            )
        call.require("customer", p["customer"], param="customer")
        changes["customer"] = p["customer"]
    for key in ("description", "receipt_email", "shipping", "fraud_details", "transfer_group"):
        if key in p:
            changes[key] = p[key]
    previous = call.state.update(charge, changes)
    if previous:
        call.emit("charge.updated", charge, previous)
    return charge


@router.get("/v1/charges", LIST, list=True)
def list_charges(call: Call) -> StripeObject:
    p = call.params
    found = [
        ch
        for ch in call.state.all(CHARGE, newest_first=True)
        if ("customer" not in p or ch.get("customer") == p["customer"])
        and ("payment_intent" not in p or ch.get("payment_intent") == p["payment_intent"])
        and ("transfer_group" not in p or ch.get("transfer_group") == p["transfer_group"])
        and in_range(ch.get("created"), p.get("created"))
    ]
    return call.list_response(found)


@router.get("/v1/charges/search", search=True)
def search_charges(call: Call) -> StripeObject:
    return search_response(
        call,
        call.state.all(CHARGE, newest_first=True),
        {
            "amount": lambda ch: ch.get("amount"),
            "created": lambda ch: ch.get("created"),
            "currency": lambda ch: ch.get("currency"),
            "customer": lambda ch: ch.get("customer"),
            "payment_intent": lambda ch: ch.get("payment_intent"),
            "status": lambda ch: ch.get("status"),
            "refunded": lambda ch: str(ch.get("refunded")).lower(),
            "disputed": lambda ch: str(ch.get("disputed")).lower(),
        },
    )
