"""PaymentIntents: create, confirm, capture, cancel, retrieve, update, list, search,
verify_microdeposits, and the sandbox's test helpers: complete 3-D Secure
(`/v1/test_helpers/payment_intents/{id}/authenticate`) and settle a bank debit now
(`/v1/test_helpers/payment_intents/{id}/settle`)."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.pages import remember_base
from billfold_sandbox.params import (
    Field,
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
from billfold_sandbox.payments import intents, timing
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
from billfold_sandbox.search import search_response
from billfold_sandbox.state import SandboxState, StripeObject, Timer

router = SandboxRouter()

PAYMENT_INTENT = intents.PAYMENT_INTENT
_CAPTURE_METHOD = enum("automatic", "automatic_async", "manual")
_FUTURE_USAGE = enum("off_session", "on_session", nullable=True)


def _off_session() -> Field:
    """`off_session`: a boolean, or `one_off`/`recurring`."""
    inner = boolean()

    def parse(value: Any, path: tuple[str | int, ...]) -> Any:
        if value in ("one_off", "recurring"):
            return True
        return inner.parse(value, path)

    return Field(parse)


_CONFIRM_COMMON = {
    "payment_method": string(),
    "payment_method_data": obj(PAYMENT_METHOD_DATA),
    "payment_method_options": anything(),
    "payment_method_types": array(string()),
    "off_session": _off_session(),
    "return_url": string(),
    "setup_future_usage": _FUTURE_USAGE,
    "error_on_requires_action": boolean(),
    "mandate": string(),
    "mandate_data": anything(),
    "receipt_email": string(nullable=True),
    "shipping": anything(),
    "capture_method": _CAPTURE_METHOD,
    "use_stripe_sdk": boolean(),
    "radar_options": anything(),
    "confirmation_token": string(),
}
CREATE = {
    **_CONFIRM_COMMON,
    "amount": integer(required=True),
    "currency": string(required=True),
    "confirm": boolean(),
    "confirmation_method": enum("automatic", "manual"),
    "customer": string(),
    "description": string(max_length=1000),
    "metadata": metadata(),
    "automatic_payment_methods": obj(
        {"enabled": boolean(required=True), "allow_redirects": enum("always", "never")}
    ),
    "statement_descriptor": string(max_length=22),
    "statement_descriptor_suffix": string(max_length=22),
    "transfer_group": string(),
    "application_fee_amount": integer(),
    "on_behalf_of": string(),
    "transfer_data": anything(),
    "payment_method_configuration": string(),
    "excluded_payment_method_types": array(string()),
    "amount_details": anything(),
    "payment_details": anything(),
    "hooks": anything(),
}
UPDATE = {
    "amount": integer(),
    "currency": string(),
    "customer": string(),
    "description": string(nullable=True, max_length=1000),
    "metadata": metadata(),
    "payment_method": string(),
    "payment_method_data": obj(PAYMENT_METHOD_DATA),
    "payment_method_types": array(string()),
    "payment_method_options": anything(),
    "receipt_email": string(nullable=True),
    "setup_future_usage": _FUTURE_USAGE,
    "shipping": anything(),
    "statement_descriptor": string(max_length=22),
    "statement_descriptor_suffix": string(max_length=22),
    "capture_method": _CAPTURE_METHOD,
    "transfer_group": string(),
    "amount_details": anything(),
    "payment_details": anything(),
}
LIST = {"customer": string(), "created": range_filter()}
CAPTURE = {
    "amount_to_capture": integer(min=1),
    "metadata": metadata(),
    "statement_descriptor": string(max_length=22),
    "statement_descriptor_suffix": string(max_length=22),
    "final_capture": boolean(),
    "application_fee_amount": integer(),
    "transfer_data": anything(),
}
CANCEL = {
    "cancellation_reason": enum("abandoned", "duplicate", "fraudulent", "requested_by_customer")
}
VERIFY = {"amounts": array(integer()), "descriptor_code": string()}
AUTHENTICATE = {"outcome": enum("succeed", "fail")}
_UPDATABLE = ("requires_payment_method", "requires_confirmation", "requires_action")


def _confirm(call: Call, intent: StripeObject, pm: StripeObject | None) -> None:
    p = call.params
    if "payment_method_types" in p and intent["status"] in _UPDATABLE:
        call.state.update(intent, {"payment_method_types": p["payment_method_types"]})
    for key in ("receipt_email", "shipping"):
        if key in p:
            call.state.update(intent, {key: p[key]})
    raise_failure(
        intents.confirm(
            call.state,
            intent,
            payment_method=pm,
            off_session=p.get("off_session"),
            return_url=p.get("return_url"),
            setup_future_usage=p["setup_future_usage"] if "setup_future_usage" in p else False,
            error_on_requires_action=p.get("error_on_requires_action", False),
            capture_method=p.get("capture_method"),
        )
    )


@router.post("/v1/payment_intents", CREATE)
def create_payment_intent(call: Call) -> StripeObject:
    remember_base(call.state, call.request)
    p = call.params
    check_method_choice(p)
    if not p.get("confirm"):
        for key in ("off_session", "return_url", "error_on_requires_action"):
            if key in p:
                raise invalid_request(f"You can only pass `{key}` when `confirm=true`.", param=key)
    pm = from_intent_params(call.state, call.params)
    intent = intents.create(
        call.state,
        amount=p["amount"],
        currency=p["currency"],
        customer=p.get("customer"),
        payment_method=pm,
        description=p.get("description"),
        metadata=p.get("metadata"),
        capture_method=p.get("capture_method", "automatic"),
        confirmation_method=p.get("confirmation_method", "automatic"),
        setup_future_usage=p.get("setup_future_usage"),
        payment_method_types=p.get("payment_method_types"),
        automatic_payment_methods=p.get("automatic_payment_methods"),
        payment_method_options=p.get("payment_method_options"),
        receipt_email=p.get("receipt_email"),
        statement_descriptor=p.get("statement_descriptor"),
        statement_descriptor_suffix=p.get("statement_descriptor_suffix"),
        shipping=p.get("shipping"),
    )
    if "transfer_group" in p:
        call.state.update(intent, {"transfer_group": p["transfer_group"]})
    if p.get("confirm"):
        raise_failure(
            intents.confirm(
                call.state,
                intent,
                payment_method=pm,
                off_session=p.get("off_session"),
                return_url=p.get("return_url"),
                error_on_requires_action=p.get("error_on_requires_action", False),
            )
        )
    return intent


@router.get("/v1/payment_intents/{id}", with_client_secret())
def retrieve_payment_intent(call: Call) -> StripeObject:
    return intent_of(call, PAYMENT_INTENT)


@router.post("/v1/payment_intents/{id}", UPDATE)
def update_payment_intent(call: Call) -> StripeObject:
    intent = intent_of(call, PAYMENT_INTENT)
    p = call.params
    free = {"metadata", "description", "receipt_email", "shipping", "expand", "transfer_group"}
    if intent["status"] not in _UPDATABLE and set(p) - free:
        field = sorted(set(p) - free)[0]
        raise invalid_request(
            f"You cannot update `{field}` on this PaymentIntent because it has a status of "
            f"{intent['status']}.",
            param=field,
            code="payment_intent_unexpected_state",
        )
    changes: dict[str, Any] = {}
    currency = intents.check_currency(p["currency"]) if "currency" in p else intent["currency"]
    if "amount" in p or "currency" in p:
        amount = int(p["amount"] if "amount" in p else intent["amount"])
        intents.check_amount(amount, currency)
        changes.update({"amount": amount, "currency": currency})
    if "customer" in p:
        call.require("customer", p["customer"], param="customer")
        changes["customer"] = p["customer"]
    if "metadata" in p:
        changes["metadata"] = apply_metadata(intent["metadata"], p["metadata"])
    for key in (
        "description",
        "receipt_email",
        "setup_future_usage",
        "shipping",
        "statement_descriptor",
        "statement_descriptor_suffix",
        "capture_method",
        "transfer_group",
        "payment_method_types",
    ):
        if key in p:
            changes[key] = p[key]
    pm = from_intent_params(call.state, call.params)
    if pm is not None:
        changes.update(
            {"payment_method": pm["id"], "status": "requires_confirmation", "next_action": None}
        )
    call.state.update(intent, changes)
    return intent


@router.post("/v1/payment_intents/{id}/confirm", with_client_secret(_CONFIRM_COMMON))
def confirm_payment_intent(call: Call) -> StripeObject:
    intent, pm = confirming(call, PAYMENT_INTENT)
    _confirm(call, intent, pm)
    return intent


@router.post("/v1/payment_intents/{id}/capture", CAPTURE)
def capture_payment_intent(call: Call) -> StripeObject:
    intent = intent_of(call, PAYMENT_INTENT)
    p = call.params
    intents.capture(call.state, intent, p.get("amount_to_capture"))
    changes: dict[str, Any] = {}
    if "metadata" in p:
        changes["metadata"] = apply_metadata(intent["metadata"], p["metadata"])
    for key in ("statement_descriptor", "statement_descriptor_suffix"):
        if key in p:
            changes[key] = p[key]
    call.state.update(intent, changes)
    return intent


@router.post("/v1/payment_intents/{id}/cancel", CANCEL)
def cancel_payment_intent(call: Call) -> StripeObject:
    intent = intent_of(call, PAYMENT_INTENT)
    intents.cancel(call.state, intent, call.params.get("cancellation_reason"))
    return intent


@router.post("/v1/payment_intents/{id}/verify_microdeposits", with_client_secret(VERIFY))
def verify_payment_intent_microdeposits(call: Call) -> StripeObject:
    return verify_microdeposits(call, PAYMENT_INTENT, intents.verify_microdeposits)


@router.get("/v1/payment_intents", LIST, list=True)
def list_payment_intents(call: Call) -> StripeObject:
    p = call.params
    found = [
        pi
        for pi in call.state.all(PAYMENT_INTENT, newest_first=True)
        if ("customer" not in p or pi.get("customer") == p["customer"])
        and in_range(pi.get("created"), p.get("created"))
    ]
    return call.list_response(found)


@router.get("/v1/payment_intents/search", search=True)
def search_payment_intents(call: Call) -> StripeObject:
    return search_response(
        call,
        call.state.all(PAYMENT_INTENT, newest_first=True),
        {
            "amount": lambda pi: pi.get("amount"),
            "created": lambda pi: pi.get("created"),
            "currency": lambda pi: pi.get("currency"),
            "customer": lambda pi: pi.get("customer"),
            "status": lambda pi: pi.get("status"),
        },
    )


@router.post("/v1/test_helpers/payment_intents/{id}/authenticate", AUTHENTICATE)
def authenticate_payment_intent(call: Call) -> StripeObject:
    """Sandbox helper: what the customer does on the 3-D Secure page (`outcome=succeed|fail`)."""
    intent = intent_of(call, PAYMENT_INTENT)
    intents.authenticate(
        call.state, intent, succeed=call.params.get("outcome", "succeed") == "succeed"
    )
    return intent


@router.post("/v1/test_helpers/payment_intents/{id}/settle")
def settle_payment_intent(call: Call) -> StripeObject:
    """Sandbox helper: the bank answers a processing debit now instead of after settlement."""
    intent = intent_of(call, PAYMENT_INTENT)
    if intent["status"] != "processing":
        raise invalid_request(
            f"This PaymentIntent is not processing (its status is {intent['status']}).",
            code="payment_intent_unexpected_state",
        )
    intents.settle(call.state, intent)
    return intent


@router.timer(intents.SETTLE_TIMER)
def _settle(state: SandboxState, timer: Timer) -> None:
    intent = state.get(PAYMENT_INTENT, timer.object_id)
    if intent is not None:
        intents.settle(state, intent)


@router.post(
    "/v1/test_helpers/sandbox/payments/settings",
    {"ach_settle_seconds": integer(min=0, max=30 * 86_400), "reset": boolean()},
)
def update_payment_settings(call: Call) -> StripeObject:
    """How long a bank debit on no test clock waits in wall time before it answers
    (`payments/timing.py`); `reset=true` returns to the default."""
    changes = {k: v for k, v in call.params.items() if k == "ach_settle_seconds"}
    if call.params.get("reset") and "ach_settle_seconds" not in changes:
        changes["ach_settle_seconds"] = timing.default_ach_settle_seconds()
    return {
        "object": "sandbox.payment_settings",
        **timing.set_payment_settings(call.state, changes),
    }


@router.get("/v1/test_helpers/sandbox/payments/settings")
def get_payment_settings(call: Call) -> StripeObject:
    return {"object": "sandbox.payment_settings", **timing.payment_settings(call.state)}
