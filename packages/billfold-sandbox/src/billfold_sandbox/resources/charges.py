"""Charges (created by PaymentIntents): retrieve, update, list, search, and their refunds."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import (
    anything,
    apply_metadata,
    boolean,
    in_range,
    integer,
    metadata,
    range_filter,
    string,
)
from billfold_sandbox.payments.charges import CHARGE
from billfold_sandbox.payments.direct_charges import capture_charge, create_charge
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
CREATE = {
    "amount": integer(required=True),
    "currency": string(required=True),
    "customer": string(),
    "source": string(),
    "capture": boolean(),
    "description": string(max_length=350),
    "metadata": metadata(),
    "receipt_email": string(),
    "shipping": anything(),
    "statement_descriptor": string(max_length=22),
    "statement_descriptor_suffix": string(max_length=22),
    "transfer_group": string(),
    "on_behalf_of": string(),
    "application_fee_amount": integer(min=0),
    "application_fee": integer(min=0),
    "destination": anything(),
    "radar_options": anything(),
    "transfer_data": anything(),
}
CAPTURE = {
    "amount": integer(min=1),
    "application_fee": integer(min=0),
    "application_fee_amount": integer(min=0),
    "receipt_email": string(),
    "statement_descriptor": string(max_length=22),
    "statement_descriptor_suffix": string(max_length=22),
    "transfer_data": anything(),
    "transfer_group": string(),
}
LIST = {
    "customer": string(),
    "payment_intent": string(),
    "transfer_group": string(),
    "created": range_filter(),
}


@router.post("/v1/charges", CREATE)
def create(call: Call) -> StripeObject:
    for unsupported in (
        "on_behalf_of",
        "transfer_data",
        "application_fee_amount",
        "application_fee",
        "destination",
    ):
        if unsupported in call.params:
            raise invalid_request("The sandbox has no Connect accounts to pay.", param=unsupported)
    return create_charge(call.state, call.params)


@router.post("/v1/charges/{id}/capture", CAPTURE)
def capture(call: Call) -> StripeObject:
    charge = call.require(CHARGE, call.path["id"], param="charge")
    if "receipt_email" in call.params:
        call.state.update(charge, {"receipt_email": call.params["receipt_email"]})
    return capture_charge(call.state, charge, call.params.get("amount"))


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
