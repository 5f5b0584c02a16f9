"""SetupIntents: save a card or a bank account for later payments.

A card is checked (cards Stripe declines fail here, `4000000000000341` passes) and may ask for
3-D Secure; a bank account entered by hand waits for microdeposit verification. On success the
PaymentMethod is attached to the intent's customer and marked as set up for off-session use.
"""

from __future__ import annotations

import secrets
from typing import Any

from billfold_sandbox.errors import StripeError, card_error, invalid_request
from billfold_sandbox.params import apply_metadata
from billfold_sandbox.payments import authentication, microdeposits
from billfold_sandbox.payments.instruments import Decline
from billfold_sandbox.payments.last_errors import last_error
from billfold_sandbox.payments.methods import attach, bank_account_of, card_of, require_usable
from billfold_sandbox.payments.outcomes import announce, require_action
from billfold_sandbox.state import SandboxState, StripeObject

SETUP_INTENT = "setup_intent"
MICRODEPOSITS_FAILED_TIMER = "setup_intent.microdeposits_failed"
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = CONFIRMABLE
AUTHENTICATION_FAILED = Decline(
    "setup_intent_authentication_failure",
    "The latest attempt to set up the payment method has failed because authentication failed.",
)
MICRODEPOSITS_FAILED = (
    "payment_method_microdeposit_failed",
    "Microdeposits failed to be deposited into the customer's bank account. Please check the "
    "account, institution and transit numbers.",
)


def create(
    state: SandboxState,
    *,
    customer: str | None = None,
    payment_method: StripeObject | None = None,
    payment_method_types: list[str] | None = None,
    automatic_payment_methods: dict[str, Any] | None = None,
    usage: str = "off_session",
    description: str | None = None,
    metadata: dict[str, str | None] | None = None,
    flow_directions: list[str] | None = None,
    payment_method_options: dict[str, Any] | None = None,
) -> StripeObject:
    """Store a new SetupIntent and emit `setup_intent.created`."""
    if customer is not None:
        state.require("customer", customer, param="customer")
    automatic: dict[str, Any] | None = None
    if payment_method_types:
        types = list(payment_method_types)
    elif automatic_payment_methods is not None and not automatic_payment_methods.get(
        "enabled", True
    ):
        types = ["card"]
    else:
        types = ["card", "us_bank_account"]
        automatic = {
            "allow_redirects": (automatic_payment_methods or {}).get("allow_redirects", "always"),
            "enabled": True,
        }
    if payment_method is not None:
        _check_method(payment_method, types, customer)
    options: dict[str, Any] = {}
    if "card" in types:
        options["card"] = {
            "mandate_options": None,
            "network": None,
            "request_three_d_secure": "automatic",
        }
    if "us_bank_account" in types:
        options["us_bank_account"] = {"verification_method": "automatic"}
    for kind, value in (payment_method_options or {}).items():
        if isinstance(value, dict) and kind in options:
            options[kind] = {**options[kind], **value}
    si_id = state.new_id("seti")
    intent: StripeObject = {
        "id": si_id,
        "object": SETUP_INTENT,
        "application": None,
        "automatic_payment_methods": automatic,
        "cancellation_reason": None,
        "client_secret": f"{si_id}_secret_{secrets.token_urlsafe(24)}",
        "created": state.now_for(customer),
        "customer": customer,
        "description": description,
        "excluded_payment_method_types": None,
        "flow_directions": flow_directions,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": apply_metadata({}, metadata or {}),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method["id"] if payment_method else None,
        "payment_method_configuration_details": None,
        "payment_method_options": options,
        "payment_method_types": types,
        "single_use_mandate": None,
        "status": "requires_confirmation" if payment_method else "requires_payment_method",
        "usage": usage,
    }
    state.insert(intent)
    state.emit("setup_intent.created", intent)
    return intent


def _check_method(pm: StripeObject, types: list[str], customer: str | None) -> None:
    require_usable(pm)
    if pm["type"] not in types:
        raise invalid_request(
            f"The PaymentMethod provided ({pm['type']}) is not allowed for this SetupIntent. "
            f"Please attach a PaymentMethod of one of the following types: {', '.join(types)}.",
            param="payment_method",
            code="setup_intent_incompatible_payment_method",
        )
    owner = pm.get("customer")
    if owner is not None and owner != customer:
        raise invalid_request(
            f"The provided PaymentMethod {pm['id']} belongs to a different Customer ({owner}).",
            param="payment_method",
        )


def unexpected_state(intent: StripeObject, action: str, allowed: tuple[str, ...]) -> StripeError:
    """Stripe's refusal of an action in the wrong status."""
    return invalid_request(
        f"You cannot {action} this SetupIntent because it has a status of {intent['status']}. "
        f"Only a SetupIntent with one of the following statuses may be "
        f"{ {'cancel': 'canceled', 'confirm': 'confirmed'}.get(action, action + 'd') }: "
        f"{', '.join(allowed)}.",
        code="setup_intent_unexpected_state",
    )


def confirm(
    state: SandboxState,
    intent: StripeObject,
    *,
    payment_method: StripeObject | None = None,
    return_url: str | None = None,
) -> StripeError | None:
    """Run the setup attempt; returns the error the API call answers with (a declined card)."""
    if intent["status"] not in CONFIRMABLE:
        raise unexpected_state(intent, "confirm", CONFIRMABLE)
    pm = payment_method
    if pm is None and intent.get("payment_method"):
        pm = state.require("payment_method", intent["payment_method"], param="payment_method")
    if pm is None:
        raise invalid_request(
            "You cannot confirm this SetupIntent because it's missing a payment method. Pass a "
            "`payment_method` (or `payment_method_data`).",
            code="setup_intent_unexpected_state",
            param="payment_method",
        )
    _check_method(pm, list(intent["payment_method_types"]), intent.get("customer"))
    changes: dict[str, Any] = {
        "payment_method": pm["id"],
        "last_setup_error": None,
        "next_action": None,
    }
    if return_url is not None:
        changes["_return_url"] = return_url
    state.update(intent, changes)
    if pm["type"] == "us_bank_account":
        if pm.get("_verified"):
            succeed(state, intent, pm)
            return None
        action = microdeposits.next_action(state, intent, "descriptor_code")
        account = bank_account_of(pm)
        if account is not None and account.microdeposits_fail:
            state.schedule(
                action["verify_with_microdeposits"]["arrival_date"],
                MICRODEPOSITS_FAILED_TIMER,
                intent["id"],
                clock_id=state.clock_of(intent),
            )
        require_action(state, intent, action)
        return None
    card = card_of(pm)
    if card is not None and card.decline is not None and not card.attachable:
        return _decline(state, intent, pm, card.decline)
    if authentication.setup_needs_authentication(pm):
        action = authentication.three_d_secure_action(state, intent, intent.get("_return_url"))
        require_action(state, intent, action)
        return None
    succeed(state, intent, pm)
    return None


def succeed(state: SandboxState, intent: StripeObject, pm: StripeObject) -> None:
    """The payment method is saved: attached to the customer, usable off-session."""
    pm_changes: dict[str, Any] = {
        "_set_up": intent.get("usage") == "off_session" or bool(pm.get("_set_up"))
    }
    if pm["type"] == "us_bank_account":
        pm_changes["_verified"] = True
    state.update(pm, pm_changes)
    if intent.get("customer"):
        attach(state, pm, intent["customer"], check_card=False)
    previous = state.update(intent, {"status": "succeeded", "next_action": None})
    state.emit("setup_intent.succeeded", intent, previous)
    announce(state, intent)


def fail(state: SandboxState, intent: StripeObject, error: dict[str, Any]) -> None:
    """The attempt failed: back to `requires_payment_method` with `last_setup_error`."""
    previous = state.update(
        intent,
        {
            "status": "requires_payment_method",
            "payment_method": None,
            "next_action": None,
            "last_setup_error": error,
        },
    )
    state.emit("setup_intent.setup_failed", intent, previous)
    announce(state, intent)


def _decline(
    state: SandboxState, intent: StripeObject, pm: StripeObject, decline: Decline
) -> StripeError:
    rendered_pm = state.render(pm)
    fail(state, intent, last_error(state, decline, pm, type="card_error"))
    return card_error(
        decline.message,
        code=decline.code,
        decline_code=decline.decline_code,
        extra={"setup_intent": state.render(intent), "payment_method": rendered_pm},
    )


def authenticate(state: SandboxState, intent: StripeObject, *, succeed_: bool) -> None:
    """Complete (or fail) the 3-D Secure challenge of a card being set up."""
    if not authentication.awaiting_challenge(intent):
        raise invalid_request(
            f"This SetupIntent is not awaiting 3-D Secure authentication (its status is "
            f"{intent['status']}).",
            code="setup_intent_unexpected_state",
        )
    pm = state.require("payment_method", intent["payment_method"])
    if succeed_:
        succeed(state, intent, pm)
        return
    fail(state, intent, last_error(state, AUTHENTICATION_FAILED, pm))


def verify_microdeposits(
    state: SandboxState,
    intent: StripeObject,
    *,
    amounts: list[int] | None,
    descriptor_code: str | None,
) -> StripeError | None:
    """Check the microdeposit values; on success the bank account is saved."""
    failure = microdeposits.check(state, intent, amounts=amounts, descriptor_code=descriptor_code)
    pm = state.require("payment_method", intent["payment_method"])
    if failure is not None:
        code, message = failure
        state.cancel_timers(intent["id"], MICRODEPOSITS_FAILED_TIMER)
        fail(state, intent, last_error(state, (code, message), pm))
        return invalid_request(message, code=code)
    state.cancel_timers(intent["id"], MICRODEPOSITS_FAILED_TIMER)
    succeed(state, intent, pm)
    return None


def microdeposits_failed(state: SandboxState, intent: StripeObject) -> None:
    """`000666666661`: the deposits could not be sent; the setup fails when they were due."""
    if not microdeposits.awaiting(intent):
        return
    pm = state.get("payment_method", intent.get("payment_method") or "")
    code, message = MICRODEPOSITS_FAILED
    fail(state, intent, last_error(state, (code, message), pm))


def cancel(state: SandboxState, intent: StripeObject, reason: str | None = None) -> None:
    """Cancel a SetupIntent that has not succeeded."""
    if intent["status"] not in CANCELABLE:
        raise unexpected_state(intent, "cancel", CANCELABLE)
    state.cancel_timers(intent["id"], MICRODEPOSITS_FAILED_TIMER)
    previous = state.update(
        intent,
        {"status": "canceled", "cancellation_reason": reason, "next_action": None},
    )
    state.emit("setup_intent.canceled", intent, previous)
    announce(state, intent)
