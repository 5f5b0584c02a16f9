"""Microdeposit verification of a bank account entered by hand (SetupIntent or PaymentIntent).

Stripe sends one 0.01 USD deposit whose statement descriptor carries a code (`SM11AA` in test
mode) or, on request, two small amounts (32 and 45 cents). The intent waits in
`requires_action` with `next_action.verify_with_microdeposits`; `verify_microdeposits` with the
right `descriptor_code` or `amounts` completes it. Stripe's other test values simulate running
out of attempts (`SM33CC`, 10 and 11) and a timeout (`SM44DD`, 40 and 41); wrong values count
against the limit (three tries for amounts, ten for a descriptor code).
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import StripeError, invalid_request
from billfold_sandbox.pages import page_url
from billfold_sandbox.payments.instruments import (
    MICRODEPOSIT_ATTEMPTS_EXCEEDED,
    MICRODEPOSIT_MAX_AMOUNT_ATTEMPTS,
    MICRODEPOSIT_MAX_DESCRIPTOR_ATTEMPTS,
    MICRODEPOSIT_TIMEOUT,
    MICRODEPOSIT_VERIFIED,
)
from billfold_sandbox.state import SandboxState, StripeObject

# Deposits "arrive" a day after the intent is confirmed.
ARRIVAL_SECONDS = 86400
VERIFY_ACTION = "verify_with_microdeposits"


def next_action(state: SandboxState, intent: StripeObject, microdeposit_type: str) -> Any:
    """`next_action` of an intent waiting for microdeposits."""
    return {
        "type": VERIFY_ACTION,
        VERIFY_ACTION: {
            "arrival_date": state.now_for(intent) + ARRIVAL_SECONDS,
            "hosted_verification_url": page_url(state, f"/pages/microdeposits/{intent['id']}"),
            "microdeposit_type": microdeposit_type,
        },
    }


def awaiting(intent: StripeObject) -> bool:
    """Whether the intent waits for microdeposit verification."""
    action = intent.get("next_action") or {}
    return intent.get("status") == "requires_action" and action.get("type") == VERIFY_ACTION


EXCEEDED = (
    "payment_method_microdeposit_verification_attempts_exceeded",
    "You have exceeded the number of allowed verification attempts.",
)
TIMED_OUT = (
    "payment_method_microdeposit_verification_timeout",
    "Microdeposit verification has timed out: the microdeposits were not verified within the "
    "required time. Collect the bank account details again.",
)


def check(
    state: SandboxState,
    intent: StripeObject,
    *,
    amounts: list[int] | None,
    descriptor_code: str | None,
) -> tuple[str, str] | None:
    """Check the values a customer read on their statement.

    Returns None when they verify the account, or `(code, message)` when the intent must fail
    (attempts exceeded, timeout). Wrong values raise Stripe's 400 and use up an attempt.
    """
    if not awaiting(intent):
        kind = "SetupIntent" if intent["object"] == "setup_intent" else "PaymentIntent"
        raise invalid_request(
            f"This {kind} is not awaiting microdeposit verification (its status is "
            f"{intent['status']}).",
            code=f"{intent['object']}_unexpected_state",
        )
    if (amounts is None) == (descriptor_code is None):
        raise invalid_request(
            "Provide either amounts or descriptor_code to verify microdeposits.",
            param="amounts",
            code="parameter_missing" if amounts is None else None,
        )
    if amounts is not None:
        if len(amounts) != 2:
            raise invalid_request(
                "Exactly two microdeposit amounts, in cents, must be provided.",
                param="amounts",
                code="payment_method_microdeposit_verification_amounts_invalid",
            )
        given: tuple[int, ...] = tuple(amounts)
        if given == MICRODEPOSIT_ATTEMPTS_EXCEEDED[0]:
            return EXCEEDED
        if given == MICRODEPOSIT_TIMEOUT[0]:
            return TIMED_OUT
        if given == MICRODEPOSIT_VERIFIED[0]:
            return None
        return _wrong(
            state,
            intent,
            "_amount_attempts",
            MICRODEPOSIT_MAX_AMOUNT_ATTEMPTS,
            "payment_method_microdeposit_verification_amounts_mismatch",
            "The amounts provided do not match the amounts that were sent to the bank account.",
        )
    code = (descriptor_code or "").strip().upper()
    if code == MICRODEPOSIT_ATTEMPTS_EXCEEDED[1]:
        return EXCEEDED
    if code == MICRODEPOSIT_TIMEOUT[1]:
        return TIMED_OUT
    if code == MICRODEPOSIT_VERIFIED[1]:
        return None
    return _wrong(
        state,
        intent,
        "_descriptor_attempts",
        MICRODEPOSIT_MAX_DESCRIPTOR_ATTEMPTS,
        "payment_method_microdeposit_verification_descriptor_code_mismatch",
        "The verification code provided does not match the code sent to the bank account.",
    )


def _wrong(
    state: SandboxState, intent: StripeObject, counter: str, limit: int, code: str, message: str
) -> tuple[str, str]:
    used = int(intent.get(counter, 0)) + 1
    intent[counter] = used
    state.touch()
    if used >= limit:
        return EXCEEDED
    left = limit - used
    raise StripeError(
        f"{message} You have {left} verification attempt{'s' if left != 1 else ''} remaining.",
        code=code,
        param="descriptor_code" if counter == "_descriptor_attempts" else "amounts",
    )
