"""The one place Billing calls the sandbox's payment engine (`billfold_sandbox.payments`).

Invoices and Checkout pay through PaymentIntents, as on Stripe; the payment engine owns card
and bank behaviour (declines, 3-D Secure, settlement). This port keeps Billing's view small:
`charge(...)` says what one attempt did, and outcomes reached later (a bank debit settling, a
3-D Secure challenge completed, an intent confirmed again by the customer) reach the listeners
registered with `on_payment_outcome`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billfold_sandbox import payments
from billfold_sandbox.errors import StripeError, invalid_request
from billfold_sandbox.payments import intents as payment_intents
from billfold_sandbox.state import SandboxState, StripeObject

SUCCEEDED = ("succeeded", "requires_capture")


@dataclass
class ChargeOutcome:
    """What one payment attempt did."""

    status: str  # "succeeded" | "failed" | "requires_action" | "processing"
    payment_intent: str | None
    error: dict[str, Any] | None = None


def outcome_of(state: SandboxState, intent: StripeObject) -> ChargeOutcome:
    """Billing's reading of a PaymentIntent's status, with Stripe's card error details."""
    status = str(intent["status"])
    if status in SUCCEEDED:
        return ChargeOutcome("succeeded", intent["id"])
    if status == "processing":
        return ChargeOutcome("processing", intent["id"])
    rendered = state.render(intent)
    if status == "requires_action":
        return ChargeOutcome(
            "requires_action",
            intent["id"],
            {
                "message": "This payment requires additional user action before it can be "
                "completed successfully (3-D Secure).",
                "code": "authentication_required",
                "decline_code": "authentication_required",
                "payment_intent": rendered,
            },
        )
    error = dict(intent.get("last_payment_error") or {})
    if not error:
        error = {
            "message": "This customer has no attached payment source or default payment method.",
            "code": "resource_missing",
        }
    error["payment_intent"] = rendered
    return ChargeOutcome("failed", intent["id"], error)


def minimum_charge(currency: str) -> int:
    """The smallest amount Stripe charges in `currency` (minor units)."""
    return int(payment_intents.MINIMUM_AMOUNTS.get(currency.lower(), 50))


def charge(
    state: SandboxState,
    *,
    customer: str | None,
    amount: int,
    currency: str,
    payment_method: str | None,
    off_session: bool,
    description: str,
    metadata: dict[str, str],
    payment_intent: str | None = None,
    setup_future_usage: str | None = None,
    capture_method: str | None = None,
) -> ChargeOutcome:
    """Charge `amount` to `payment_method` (or the customer's default), confirming
    `payment_intent` again when given (a retry)."""
    if payment_intent is not None:
        existing = state.get("payment_intent", payment_intent)
        if existing is None or existing["status"] not in (
            "requires_payment_method",
            "requires_confirmation",
        ):
            payment_intent = None  # start over with a fresh intent
    try:
        intent = payments.pay(
            state,
            customer=customer,
            amount=amount,
            currency=currency,
            payment_method=payment_method,
            off_session=off_session,
            metadata=metadata,
            description=description,
            payment_intent=payment_intent,
            setup_future_usage=setup_future_usage,
            capture_method=capture_method or "automatic",
        )
    except StripeError as exc:
        # A method that can no longer be charged (detached, unusable) fails the attempt, as a
        # decline would: renewals must not stop the clock.
        return ChargeOutcome(
            "failed", None, {"message": exc.message, "code": exc.code or "payment_method_unusable"}
        )
    return outcome_of(state, intent)


def prepare(
    state: SandboxState,
    *,
    customer: str,
    amount: int,
    currency: str,
    description: str,
) -> StripeObject:
    """An unconfirmed PaymentIntent the customer confirms later (`default_incomplete`)."""
    return payment_intents.create(
        state,
        amount=amount,
        currency=currency,
        customer=customer,
        description=description,
        setup_future_usage="off_session",
    )


def cancel(state: SandboxState, payment_intent: str | None) -> None:
    """Cancel an unpaid PaymentIntent (its invoice was voided); finished ones are left."""
    if payment_intent is None:
        return
    intent = state.get("payment_intent", payment_intent)
    if intent is None or intent["status"] in ("succeeded", "canceled", "processing"):
        return
    payments.cancel_payment_intent(state, payment_intent, reason="abandoned")


def authenticate(state: SandboxState, intent_id: str, *, succeeded: bool) -> StripeObject:
    """Complete or fail a 3-D Secure challenge (the listeners hear the outcome)."""
    return payments.authenticate(state, intent_id, succeed=succeeded)


def payment_method_for_token(state: SandboxState, token: str, *, param: str) -> StripeObject:
    """A fresh PaymentMethod from a test id (`pm_card_visa`) or a test card number."""
    token = token.strip().replace(" ", "")
    if not token:
        raise invalid_request("Choose a payment method.", param=param)
    if token.isascii() and token.isdigit():
        year = int(state.now()) // 31_556_952 + 1970 + 3
        return payments.payment_method_from_card(state, number=token, exp_month=12, exp_year=year)
    return payments.resolve_payment_method(state, token)


def payment_method_from_typed_card(
    state: SandboxState, *, number: str, expiry: str, cvc: str, name: str | None
) -> StripeObject:
    """A card PaymentMethod from what a person typed on a hosted page: the number with or
    without spaces, the expiry as `MM / YY` (or `MMYY`, `MM/YYYY`), the CVC."""
    digits = "".join(ch for ch in expiry if ch.isdigit())
    if len(digits) not in (4, 6):
        raise invalid_request("Your card's expiration date is incomplete.", param="cardExpiry")
    month, year = int(digits[:2]), int(digits[2:])
    if year < 100:
        year += 2000
    return payments.payment_method_from_card(
        state,
        number="".join(ch for ch in number if ch.isdigit()),
        exp_month=month,
        exp_year=year,
        cvc=cvc.strip() or None,
        billing_details={"name": name} if name else None,
    )


def attach(state: SandboxState, pm: StripeObject, customer: StripeObject) -> StripeObject:
    """Attach to the customer (declined cards are refused with a 402, as on Stripe)."""
    return payments.attach_payment_method(state, str(pm["id"]), str(customer["id"]))


def detach(state: SandboxState, pm_id: str) -> StripeObject:
    """Detach a payment method from its customer (`payment_method.detached`)."""
    return payments.detach_payment_method(state, pm_id)


def set_up(
    state: SandboxState,
    *,
    customer: str | None,
    payment_method: str,
    metadata: dict[str, str],
) -> StripeObject:
    """A confirmed SetupIntent for the method (Checkout's setup mode, the portal)."""
    return payments.set_up(
        state, customer=customer, payment_method=payment_method, metadata=metadata
    )


# --- outcomes reached later ------------------------------------------------------------------

OutcomeListener = Callable[[SandboxState, StripeObject], None]
_listeners: list[OutcomeListener] = []


def on_payment_outcome(fn: OutcomeListener) -> OutcomeListener:
    """Call `fn(state, intent)` when a Payment/SetupIntent reaches an outcome after the call
    that started it (settlement, 3-D Secure, confirmation by the customer)."""
    if fn not in _listeners:
        _listeners.append(fn)
    return fn


@payments.on_intent_outcome
def _dispatch(state: SandboxState, intent: StripeObject) -> None:
    for listener in list(_listeners):
        listener(state, intent)


# --- the hosted page's choices ---------------------------------------------------------------

_CARD_CHOICES = (
    ("pm_card_visa", "4242 4242 4242 4242", "Visa · succeeds"),
    (
        "pm_card_chargeCustomerFail",
        "4000 0000 0000 0341",
        "Saved fine, but every charge is declined",
    ),
    (
        "pm_card_authenticationRequired",
        "4000 0027 6000 3184",
        "Asks for 3-D Secure on every payment",
    ),
    (
        "pm_card_authenticationRequiredOnSetup",
        "4000 0025 0000 3155",
        "Asks for 3-D Secure once; later off-session payments go through",
    ),
    ("pm_card_chargeDeclined", "4000 0000 0000 0002", "Declined (generic_decline)"),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        "4000 0000 0000 9995",
        "Declined (insufficient_funds)",
    ),
    ("pm_card_mastercard", "5555 5555 5555 4444", "Mastercard · succeeds"),
)
_BANK_CHOICES = (
    (
        "pm_usBankAccount_success",
        "Test bank · 000123456789 (routing 110000000)",
        "ACH debit · settles successfully after 4 days",
    ),
    (
        "pm_usBankAccount_insufficientFunds",
        "Test bank · 000222222227 (routing 110000000)",
        "ACH debit · fails with insufficient funds when it settles",
    ),
)


def hosted_page_methods(types: list[str]) -> list[dict[str, str]]:
    """The test payment methods a hosted page offers for the allowed method types."""
    choices: list[dict[str, str]] = []
    if "card" in types or "link" in types:
        choices += [
            {"value": v, "label": label, "note": note, "number": label.replace(" ", "")}
            for v, label, note in _CARD_CHOICES
        ]
    if "us_bank_account" in types:
        choices += [
            {"value": v, "label": label, "note": note, "number": v}
            for v, label, note in _BANK_CHOICES
        ]
    return choices


def refundable(state: SandboxState, payment_intent: str | None) -> int:
    """What is left to refund of the charge that paid through `payment_intent` (0 if none)."""
    intent = state.get("payment_intent", payment_intent) if payment_intent else None
    charge = state.get("charge", str((intent or {}).get("latest_charge")))
    if charge is None or charge["status"] != "succeeded":
        return 0
    return int(charge["amount"]) - int(charge.get("amount_refunded") or 0)


def refund(state: SandboxState, payment_intent: str, amount: int, *, reason: str | None) -> str:
    """Refund `amount` of the charge that paid through `payment_intent` (a credit note's
    refund): the refund's id; `refund.created` and `charge.refunded` as the API sends them."""
    from billfold_sandbox.payments import refunds

    intent = state.require("payment_intent", payment_intent)
    charge = state.require("charge", str(intent.get("latest_charge")))
    return str(refunds.refund(state, charge, amount=amount, reason=reason)["id"])


def set_amount(state: SandboxState, payment_intent: str | None, amount: int) -> None:
    """An open invoice's amount changed (a credit note): its unpaid PaymentIntent asks for the
    new amount, as Stripe updates it; a finished or processing one is left alone."""
    intent = state.get("payment_intent", payment_intent) if payment_intent else None
    if (
        intent is not None
        and amount > 0
        and intent["status"]
        in (
            "requires_payment_method",
            "requires_confirmation",
            "requires_action",
        )
    ):
        state.update(intent, {"amount": amount})
