"""Refunds: create (by payment_intent or charge, full or partial), retrieve, update, cancel,
list; and a charge's refunds (`/v1/charges/{id}/refunds`)."""

from __future__ import annotations

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import (
    apply_metadata,
    boolean,
    enum,
    in_range,
    integer,
    metadata,
    range_filter,
    string,
)
from billfold_sandbox.payments.charges import CHARGE
from billfold_sandbox.payments.refunds import REFUND, charge_to_refund, refund, refunds_list
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

_REASON = enum("duplicate", "fraudulent", "requested_by_customer")
CREATE = {
    "charge": string(),
    "payment_intent": string(),
    "amount": integer(min=1),
    "reason": _REASON,
    "metadata": metadata(),
    "currency": string(),
    "customer": string(),
    "instructions_email": string(),
    "origin": enum("customer_balance"),
    "refund_application_fee": boolean(),
    "reverse_transfer": boolean(),
}
LIST = {"charge": string(), "payment_intent": string(), "created": range_filter()}


@router.post("/v1/refunds", CREATE)
def create_refund(call: Call) -> StripeObject:
    p = call.params
    if "origin" in p:
        raise invalid_request(
            "The sandbox has no customer cash balance to refund from.", param="origin"
        )
    charge = charge_to_refund(
        call.state, charge=p.get("charge"), payment_intent=p.get("payment_intent")
    )
    if "currency" in p and p["currency"].lower() != charge["currency"]:
        raise invalid_request(
            f"The refund currency must be the charge's ({charge['currency']}).", param="currency"
        )
    return refund(
        call.state,
        charge,
        amount=p.get("amount"),
        reason=p.get("reason"),
        metadata=p.get("metadata"),
    )


@router.get("/v1/refunds/{id}")
def retrieve_refund(call: Call) -> StripeObject:
    return call.require(REFUND, call.path["id"], param="id")


@router.post("/v1/refunds/{id}", {"metadata": metadata()})
def update_refund(call: Call) -> StripeObject:
    found = call.require(REFUND, call.path["id"], param="id")
    if "metadata" in call.params:
        previous = call.state.update(
            found, {"metadata": apply_metadata(found["metadata"], call.params["metadata"])}
        )
        charge = call.state.get(CHARGE, found["charge"])
        if charge is not None:
            call.state.update(charge, {"refunds": refunds_list(call.state, charge["id"])})
        if previous:
            call.emit("refund.updated", found, previous)
    return found


@router.post("/v1/refunds/{id}/cancel")
def cancel_refund(call: Call) -> StripeObject:
    found = call.require(REFUND, call.path["id"], param="id")
    raise invalid_request(
        f"Refund {found['id']} cannot be canceled because it has a status of {found['status']}. "
        "Only refunds with a status of requires_action can be canceled.",
        code="refund_unexpected_state" if found["status"] != "requires_action" else None,
    )


def _listed(call: Call, charge_id: str | None, payment_intent: str | None) -> StripeObject:
    found = [
        r
        for r in call.state.all(REFUND, newest_first=True)
        if (charge_id is None or r["charge"] == charge_id)
        and (payment_intent is None or r.get("payment_intent") == payment_intent)
        and in_range(r.get("created"), call.params.get("created"))
    ]
    return call.list_response(found)


@router.get("/v1/refunds", LIST, list=True)
def list_refunds(call: Call) -> StripeObject:
    return _listed(call, call.params.get("charge"), call.params.get("payment_intent"))


@router.get("/v1/charges/{id}/refunds", list=True)
def list_charge_refunds(call: Call) -> StripeObject:
    charge = call.require(CHARGE, call.path["id"], param="charge")
    return _listed(call, charge["id"], None)


@router.get("/v1/charges/{charge}/refunds/{refund}")
def retrieve_charge_refund(call: Call) -> StripeObject:
    found = call.require(REFUND, call.path["refund"], param="refund")
    if found["charge"] != call.path["charge"]:
        raise invalid_request(
            f"No such refund: '{found['id']}'", param="refund", code="resource_missing", status=404
        )
    return found
