"""SetupIntents: create, confirm, retrieve, update, cancel, list, verify_microdeposits, and the
sandbox's test helper completing 3-D Secure (`/v1/test_helpers/setup_intents/{id}/authenticate`).
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.pages import remember_base
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
from billfold_sandbox.payments import setups
from billfold_sandbox.payments.last_errors import raise_failure
from billfold_sandbox.payments.methods import PAYMENT_METHOD_DATA, from_intent_params
from billfold_sandbox.resources.intent_steps import (
    check_method_choice,
    confirming,
    intent_of,
    verify_microdeposits,
    with_client_secret,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject, Timer

router = SandboxRouter()

SETUP_INTENT = setups.SETUP_INTENT
_USAGE = enum("off_session", "on_session")
_CONFIRM_COMMON = {
    "payment_method": string(),
    "payment_method_data": obj(PAYMENT_METHOD_DATA),
    "payment_method_options": anything(),
    "return_url": string(),
    "mandate_data": anything(),
    "use_stripe_sdk": boolean(),
    "confirmation_token": string(),
}
CREATE = {
    **_CONFIRM_COMMON,
    "confirm": boolean(),
    "customer": string(),
    "description": string(max_length=1000),
    "metadata": metadata(),
    "payment_method_types": array(string()),
    "automatic_payment_methods": obj(
        {"enabled": boolean(required=True), "allow_redirects": enum("always", "never")}
    ),
    "usage": _USAGE,
    "flow_directions": array(enum("inbound", "outbound")),
    "attach_to_self": boolean(),
    "on_behalf_of": string(),
    "single_use": anything(),
    "payment_method_configuration": string(),
    "excluded_payment_method_types": array(string()),
}
UPDATE = {
    "customer": string(),
    "description": string(nullable=True, max_length=1000),
    "metadata": metadata(),
    "payment_method": string(),
    "payment_method_data": obj(PAYMENT_METHOD_DATA),
    "payment_method_types": array(string()),
    "payment_method_options": anything(),
    "flow_directions": array(enum("inbound", "outbound")),
}
LIST = {
    "customer": string(),
    "payment_method": string(),
    "created": range_filter(),
    "attach_to_self": boolean(),
}
VERIFY = {"amounts": array(integer()), "descriptor_code": string()}
CANCEL = {"cancellation_reason": enum("abandoned", "duplicate", "requested_by_customer")}
AUTHENTICATE = {"outcome": enum("succeed", "fail")}


@router.post("/v1/setup_intents", CREATE)
def create_setup_intent(call: Call) -> StripeObject:
    remember_base(call.state, call.request)
    p = call.params
    check_method_choice(p)
    pm = from_intent_params(call.state, call.params)
    intent = setups.create(
        call.state,
        customer=p.get("customer"),
        payment_method=pm,
        payment_method_types=p.get("payment_method_types"),
        automatic_payment_methods=p.get("automatic_payment_methods"),
        usage=p.get("usage", "off_session"),
        description=p.get("description"),
        metadata=p.get("metadata"),
        flow_directions=p.get("flow_directions"),
        payment_method_options=p.get("payment_method_options"),
    )
    if p.get("confirm"):
        raise_failure(
            setups.confirm(call.state, intent, payment_method=pm, return_url=p.get("return_url"))
        )
    return intent


@router.get("/v1/setup_intents/{id}", with_client_secret())
def retrieve_setup_intent(call: Call) -> StripeObject:
    return intent_of(call, SETUP_INTENT)


@router.post("/v1/setup_intents/{id}", UPDATE)
def update_setup_intent(call: Call) -> StripeObject:
    intent = intent_of(call, SETUP_INTENT)
    p = call.params
    if intent["status"] in ("succeeded", "canceled") and set(p) - {"metadata", "expand"}:
        raise setups.unexpected_state(intent, "update", setups.CONFIRMABLE)
    changes: dict[str, Any] = {}
    if "customer" in p:
        call.require("customer", p["customer"], param="customer")
        changes["customer"] = p["customer"]
    if "description" in p:
        changes["description"] = p["description"]
    if "metadata" in p:
        changes["metadata"] = apply_metadata(intent["metadata"], p["metadata"])
    if "payment_method_types" in p:
        changes["payment_method_types"] = p["payment_method_types"]
    if "flow_directions" in p:
        changes["flow_directions"] = p["flow_directions"]
    pm = from_intent_params(call.state, call.params)
    if pm is not None:
        changes["payment_method"] = pm["id"]
        changes["status"] = "requires_confirmation"
        changes["next_action"] = None
    call.state.update(intent, changes)
    return intent


@router.post("/v1/setup_intents/{id}/confirm", with_client_secret(_CONFIRM_COMMON))
def confirm_setup_intent(call: Call) -> StripeObject:
    intent, pm = confirming(call, SETUP_INTENT)
    raise_failure(
        setups.confirm(
            call.state, intent, payment_method=pm, return_url=call.params.get("return_url")
        )
    )
    return intent


@router.post("/v1/setup_intents/{id}/cancel", CANCEL)
def cancel_setup_intent(call: Call) -> StripeObject:
    intent = intent_of(call, SETUP_INTENT)
    setups.cancel(call.state, intent, call.params.get("cancellation_reason"))
    return intent


@router.post("/v1/setup_intents/{id}/verify_microdeposits", with_client_secret(VERIFY))
def verify_setup_intent_microdeposits(call: Call) -> StripeObject:
    return verify_microdeposits(call, SETUP_INTENT, setups.verify_microdeposits)


@router.get("/v1/setup_intents", LIST, list=True)
def list_setup_intents(call: Call) -> StripeObject:
    p = call.params
    found = [
        si
        for si in call.state.all(SETUP_INTENT, newest_first=True)
        if ("customer" not in p or si.get("customer") == p["customer"])
        and ("payment_method" not in p or si.get("payment_method") == p["payment_method"])
        and in_range(si.get("created"), p.get("created"))
    ]
    return call.list_response(found)


@router.post("/v1/test_helpers/setup_intents/{id}/authenticate", AUTHENTICATE)
def authenticate_setup_intent(call: Call) -> StripeObject:
    """Sandbox helper: what the customer does on the 3-D Secure page (`outcome=succeed|fail`)."""
    intent = intent_of(call, SETUP_INTENT)
    setups.authenticate(
        call.state, intent, succeed_=call.params.get("outcome", "succeed") == "succeed"
    )
    return intent


@router.timer(setups.MICRODEPOSITS_FAILED_TIMER)
def _microdeposits_failed(state: SandboxState, timer: Timer) -> None:
    intent = state.get(SETUP_INTENT, timer.object_id)
    if intent is not None:
        setups.microdeposits_failed(state, intent)
