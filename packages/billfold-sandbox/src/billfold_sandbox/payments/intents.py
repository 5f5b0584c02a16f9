"""PaymentIntents: create, confirm (cards, 3-D Secure, bank debits), capture, cancel.

The rules follow Stripe test mode:

- a card payment succeeds, is declined (402 `card_error`, a failed Charge, the intent back in
  `requires_payment_method` with `last_payment_error`), or waits in `requires_action` for
  3-D Secure (off-session it fails with `authentication_required` instead);
- `capture_method=manual` stops at `requires_capture`;
- a bank debit (`us_bank_account`) goes `processing` with a pending Charge and settles
  `SETTLEMENT_SECONDS` later on the customer's clock (test clock or sandbox clock), or at once
  through the test helper; Stripe's failing test accounts fail then;
- a bank account entered by hand is verified with microdeposits first.

Handlers call `confirm()` and raise the returned error; `pay()` (the internal API for billing)
calls the same code and returns the intent.
"""

from __future__ import annotations

import secrets
from typing import Any

from billfold_sandbox.errors import StripeError, card_error, invalid_request
from billfold_sandbox.params import apply_metadata
from billfold_sandbox.payments import authentication, microdeposits
from billfold_sandbox.payments.charges import CHARGE, new_charge
from billfold_sandbox.payments.instruments import (
    AUTHENTICATION_FAILED,
    AUTHENTICATION_REQUIRED,
    BankFailure,
    Decline,
)
from billfold_sandbox.payments.last_errors import last_error
from billfold_sandbox.payments.methods import (
    attach,
    bank_account_of,
    card_of,
    mark_used,
    require_usable,
)
from billfold_sandbox.payments.outcomes import announce, require_action
from billfold_sandbox.state import SandboxState, StripeObject

PAYMENT_INTENT = "payment_intent"
# ACH debits take about four business days; the sandbox settles them four days later.
SETTLEMENT_SECONDS = 4 * 86400
SETTLE_TIMER = "payment_intent.settle"

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)
MINIMUM_AMOUNTS = {
    "usd": 50,
    "eur": 50,
    "gbp": 30,
    "cad": 50,
    "aud": 50,
    "nzd": 50,
    "chf": 50,
    "sgd": 50,
    "jpy": 50,
    "brl": 50,
    "inr": 50,
    "dkk": 250,
    "nok": 300,
    "sek": 300,
    "pln": 200,
    "czk": 1500,
    "hkd": 400,
    "mxn": 1000,
}
MAXIMUM_AMOUNT = 99_999_999
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "$", "aud": "$", "jpy": "¥"}


def check_amount(amount: int, currency: str, *, param: str = "amount") -> None:
    """Stripe's minimum and maximum charge amounts."""
    minimum = MINIMUM_AMOUNTS.get(currency, 50)
    symbol = _SYMBOLS.get(currency, "")
    if amount < minimum:
        shown = f"{minimum}" if currency == "jpy" else f"{minimum / 100:.2f}"
        raise invalid_request(
            f"Amount must be at least {symbol}{shown} {currency}",
            param=param,
            code="amount_too_small",
        )
    if amount > MAXIMUM_AMOUNT:
        raise invalid_request(
            f"Amount must be no more than {symbol}999,999.99 {currency}",
            param=param,
            code="amount_too_large",
        )


def check_currency(currency: str, *, param: str = "currency") -> str:
    """A lower-case three-letter ISO code."""
    code = currency.lower()
    if len(code) != 3 or not code.isalpha():
        raise invalid_request(f"Invalid currency: {currency}.", param=param)
    return code


def _types(
    payment_method_types: list[str] | None, automatic: dict[str, Any] | None, currency: str
) -> tuple[list[str], dict[str, Any] | None]:
    if payment_method_types:
        return payment_method_types, None
    if automatic is not None and not automatic.get("enabled", True):
        return ["card"], None
    # Since 2023-08-16 automatic payment methods are on unless types are given.
    kinds = ["card", "us_bank_account"] if currency == "usd" else ["card"]
    return kinds, {
        "allow_redirects": (automatic or {}).get("allow_redirects", "always"),
        "enabled": True,
    }


def _method_options(types: list[str], given: dict[str, Any] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if "card" in types:
        options["card"] = {
            "installments": None,
            "mandate_options": None,
            "network": None,
            "request_three_d_secure": "automatic",
        }
    if "us_bank_account" in types:
        options["us_bank_account"] = {"verification_method": "automatic"}
    for kind, value in (given or {}).items():
        if isinstance(value, dict) and kind in options:
            options[kind] = {**options[kind], **value}
    return options


def create(
    state: SandboxState,
    *,
    amount: int,
    currency: str,
    customer: str | None = None,
    payment_method: StripeObject | None = None,
    description: str | None = None,
    metadata: dict[str, str | None] | None = None,
    capture_method: str = "automatic",
    confirmation_method: str = "automatic",
    setup_future_usage: str | None = None,
    payment_method_types: list[str] | None = None,
    automatic_payment_methods: dict[str, Any] | None = None,
    payment_method_options: dict[str, Any] | None = None,
    receipt_email: str | None = None,
    statement_descriptor: str | None = None,
    statement_descriptor_suffix: str | None = None,
    shipping: Any = None,
) -> StripeObject:
    """Store a new PaymentIntent (not confirmed) and emit `payment_intent.created`."""
    currency = check_currency(currency)
    check_amount(amount, currency)
    if customer is not None:
        state.require("customer", customer, param="customer")
    types, automatic = _types(payment_method_types, automatic_payment_methods, currency)
    if payment_method is not None:
        _check_method(state, payment_method, types, customer)
    pi_id = state.new_id("pi")
    intent: StripeObject = {
        "id": pi_id,
        "object": PAYMENT_INTENT,
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": automatic,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": capture_method,
        "client_secret": f"{pi_id}_secret_{secrets.token_urlsafe(18)}",
        "confirmation_method": confirmation_method,
        "created": state.now_for(customer),
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": {"enabled": False},
        "metadata": apply_metadata({}, metadata or {}),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method["id"] if payment_method else None,
        "payment_method_configuration_details": None,
        "payment_method_options": _method_options(types, payment_method_options),
        "payment_method_types": types,
        "processing": None,
        "receipt_email": receipt_email,
        "review": None,
        "setup_future_usage": setup_future_usage,
        "shipping": shipping,
        "source": None,
        "statement_descriptor": statement_descriptor,
        "statement_descriptor_suffix": statement_descriptor_suffix,
        "status": "requires_confirmation" if payment_method else "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }
    state.insert(intent)
    state.emit("payment_intent.created", intent)
    return intent


def _check_method(
    state: SandboxState,
    pm: StripeObject,
    types: list[str],
    customer: str | None,
    *,
    param: str = "payment_method",
) -> None:
    require_usable(pm, param=param)
    if pm["type"] not in types:
        raise invalid_request(
            f"The PaymentMethod provided ({pm['type']}) is not allowed for this PaymentIntent. "
            f"Please attach a PaymentMethod of one of the following types: {', '.join(types)}. "
            f"Alternatively, update the allowed payment_method_types for this PaymentIntent to "
            f'include "{pm["type"]}".',
            param=param,
            code="payment_intent_incompatible_payment_method",
        )
    owner = pm.get("customer")
    if owner is not None and customer is None:
        raise invalid_request(
            f"The provided PaymentMethod {pm['id']} is attached to a Customer ({owner}). To "
            "use it, also pass that Customer's ID as `customer`.",
            param=param,
        )
    if owner is not None and owner != customer:
        raise invalid_request(
            f"The provided PaymentMethod {pm['id']} belongs to a different Customer ({owner}) "
            f"than this PaymentIntent's ({customer}).",
            param=param,
        )


def _rendered(state: SandboxState, obj: StripeObject) -> Any:
    return state.render(obj)


def unexpected_state(intent: StripeObject, action: str, allowed: tuple[str, ...]) -> StripeError:
    """Stripe's refusal of an action in the wrong status."""
    done = {"capture": "captured", "cancel": "canceled", "confirm": "confirmed"}[action]
    # Stripe words the capture refusal differently from the others.
    opening = (
        "This PaymentIntent could not be captured"
        if action == "capture"
        else f"You cannot {action} this PaymentIntent"
    )
    return invalid_request(
        f"{opening} because it has a status of {intent['status']}. "
        f"Only a PaymentIntent with one of the following statuses may be {done}: "
        f"{', '.join(allowed)}.",
        code="payment_intent_unexpected_state",
    )


def confirm(
    state: SandboxState,
    intent: StripeObject,
    *,
    payment_method: StripeObject | None = None,
    off_session: bool | None = None,
    return_url: str | None = None,
    setup_future_usage: str | bool | None = False,
    error_on_requires_action: bool = False,
    capture_method: str | None = None,
) -> StripeError | None:
    """Run one payment attempt. Returns the error the API call answers with (a decline, a
    failed off-session authentication), or None; the intent carries the outcome either way.

    `setup_future_usage=False` means "not given" (None clears it).
    """
    if intent["status"] not in CONFIRMABLE:
        raise unexpected_state(intent, "confirm", CONFIRMABLE)
    pm = payment_method
    if pm is None and intent.get("payment_method"):
        pm = state.require("payment_method", intent["payment_method"], param="payment_method")
    if pm is None:
        raise invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method. To "
            "confirm the PaymentIntent, pass a `payment_method` (or `payment_method_data`).",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    _check_method(state, pm, list(intent["payment_method_types"]), intent.get("customer"))
    changes: dict[str, Any] = {
        "payment_method": pm["id"],
        "last_payment_error": None,
        "next_action": None,
    }
    if setup_future_usage is not False:
        changes["setup_future_usage"] = setup_future_usage
    if capture_method is not None:
        changes["capture_method"] = capture_method
    # `off_session` describes this attempt only: a later confirmation without it is on-session.
    changes["_off_session"] = bool(off_session)
    if return_url is not None:
        changes["_return_url"] = return_url
    state.update(intent, changes)
    if pm["type"] == "us_bank_account":
        return _debit_bank_account(state, intent, pm)
    off = bool(intent.get("_off_session"))
    authenticated = intent.get("_authenticated") == pm["id"]
    if not authenticated and authentication.payment_needs_authentication(pm, off_session=off):
        if off or error_on_requires_action:
            return _fail_card(state, intent, pm, AUTHENTICATION_REQUIRED)
        action = authentication.three_d_secure_action(state, intent, intent.get("_return_url"))
        require_action(state, intent, action)
        return None
    card = card_of(pm)
    if card is not None and card.decline is not None:
        return _fail_card(state, intent, pm, card.decline)
    _succeed_card(state, intent, pm, three_d_secure=authenticated)
    return None


def _fail_card(
    state: SandboxState, intent: StripeObject, pm: StripeObject, decline: Decline
) -> StripeError:
    charge = new_charge(state, intent, pm, status="failed", captured=False, failure=decline)
    mark_used(state, pm)
    error = last_error(state, decline, pm, type="card_error", charge=charge["id"])
    previous = state.update(
        intent,
        {
            "status": "requires_payment_method",
            "last_payment_error": error,
            "latest_charge": charge["id"],
            "payment_method": None,
            "next_action": None,
            "_authenticated": None,
        },
    )
    state.emit("charge.failed", charge)
    state.emit("payment_intent.payment_failed", intent, previous)
    announce(state, intent)
    return card_error(
        decline.message,
        code=decline.code,
        decline_code=decline.decline_code,
        extra={
            "charge": charge["id"],
            "payment_intent": _rendered(state, intent),
            "payment_method": _rendered(state, pm),
        },
    )


def _remember_for_future_use(state: SandboxState, intent: StripeObject, pm: StripeObject) -> None:
    usage = intent.get("setup_future_usage")
    customer = intent.get("customer")
    if usage and customer:
        attach(state, pm, customer, check_card=False)
        state.update(pm, {"_set_up": usage == "off_session" or bool(pm.get("_set_up"))})


def _succeed_card(
    state: SandboxState, intent: StripeObject, pm: StripeObject, *, three_d_secure: bool
) -> None:
    manual = intent.get("capture_method") == "manual"
    charge = new_charge(
        state, intent, pm, status="succeeded", captured=not manual, three_d_secure=three_d_secure
    )
    _remember_for_future_use(state, intent, pm)
    mark_used(state, pm)
    amount = int(intent["amount"])
    changes: dict[str, Any] = {"latest_charge": charge["id"], "next_action": None}
    if manual:
        changes.update({"status": "requires_capture", "amount_capturable": amount})
    else:
        changes.update({"status": "succeeded", "amount_received": amount})
    previous = state.update(intent, changes)
    state.emit("charge.succeeded", charge)
    if manual:
        state.emit("payment_intent.amount_capturable_updated", intent, previous)
    else:
        state.emit("payment_intent.succeeded", intent, previous)
    announce(state, intent)


def _debit_bank_account(
    state: SandboxState, intent: StripeObject, pm: StripeObject
) -> StripeError | None:
    if not pm.get("_verified"):
        action = microdeposits.next_action(state, intent, "descriptor_code")
        require_action(state, intent, action)
        return None
    start_processing(state, intent, pm)
    return None


def start_processing(state: SandboxState, intent: StripeObject, pm: StripeObject) -> None:
    """Submit the bank debit: a pending Charge, `processing`, settlement scheduled."""
    charge = new_charge(state, intent, pm, status="pending", captured=True)
    _remember_for_future_use(state, intent, pm)
    mark_used(state, pm)
    previous = state.update(
        intent, {"status": "processing", "latest_charge": charge["id"], "next_action": None}
    )
    state.emit("payment_intent.processing", intent, previous)
    state.emit("charge.pending", charge)
    account = bank_account_of(pm)
    if account is None or not account.never_settles:
        state.schedule(
            state.now_for(intent) + SETTLEMENT_SECONDS,
            SETTLE_TIMER,
            intent["id"],
            clock_id=state.clock_of(intent),
        )
    announce(state, intent)


def settle(state: SandboxState, intent: StripeObject) -> None:
    """The bank's answer to a processing debit: succeeded, or failed for Stripe's failing
    test accounts (`000111111113` account closed, `000222222227` insufficient funds, ...)."""
    if intent["status"] != "processing":
        return
    state.cancel_timers(intent["id"], SETTLE_TIMER)
    charge = state.require(CHARGE, intent["latest_charge"])
    pm = state.require("payment_method", charge["payment_method"])
    account = bank_account_of(pm)
    failure: BankFailure | None = account.failure if account is not None else None
    if failure is None:
        before = state.update(
            charge, {"status": "succeeded", "paid": True, "amount_captured": charge["amount"]}
        )
        previous = state.update(
            intent, {"status": "succeeded", "amount_received": intent["amount"]}
        )
        state.emit("charge.succeeded", charge, before)
        state.emit("payment_intent.succeeded", intent, previous)
    else:
        before = state.update(
            charge,
            {
                "status": "failed",
                "captured": False,
                "failure_code": failure.code,
                "failure_message": failure.message,
                "outcome": {
                    **charge["outcome"],
                    "network_status": "declined_by_network",
                    "seller_message": failure.message,
                    "type": "issuer_declined",
                },
            },
        )
        previous = state.update(
            intent,
            {
                "status": "requires_payment_method",
                "payment_method": None,
                "last_payment_error": last_error(state, failure, pm, charge=charge["id"]),
            },
        )
        state.emit("charge.failed", charge, before)
        state.emit("payment_intent.payment_failed", intent, previous)
    announce(state, intent)


def verify_microdeposits(
    state: SandboxState,
    intent: StripeObject,
    *,
    amounts: list[int] | None,
    descriptor_code: str | None,
) -> StripeError | None:
    """Verify the bank account of an intent waiting for microdeposits, then debit it."""
    failure = microdeposits.check(state, intent, amounts=amounts, descriptor_code=descriptor_code)
    pm = state.require("payment_method", intent["payment_method"])
    if failure is not None:
        code, message = failure
        previous = state.update(
            intent,
            {
                "status": "requires_payment_method",
                "payment_method": None,
                "next_action": None,
                "last_payment_error": last_error(state, (code, message), pm),
            },
        )
        state.emit("payment_intent.payment_failed", intent, previous)
        announce(state, intent)
        return invalid_request(message, code=code)
    state.update(pm, {"_verified": True})
    start_processing(state, intent, pm)
    return None


def authenticate(state: SandboxState, intent: StripeObject, *, succeed: bool) -> None:
    """Complete (or fail) the 3-D Secure challenge an intent waits on."""
    if not authentication.awaiting_challenge(intent):
        raise invalid_request(
            f"This PaymentIntent is not awaiting 3-D Secure authentication (its status is "
            f"{intent['status']}).",
            code="payment_intent_unexpected_state",
        )
    pm = state.require("payment_method", intent["payment_method"])
    if not succeed:
        failure = AUTHENTICATION_FAILED
        previous = state.update(
            intent,
            {
                "status": "requires_payment_method",
                "payment_method": None,
                "next_action": None,
                "last_payment_error": last_error(state, failure, pm),
            },
        )
        state.emit("payment_intent.payment_failed", intent, previous)
        announce(state, intent)
        return
    state.update(intent, {"_authenticated": pm["id"]})
    if intent.get("setup_future_usage") == "off_session":
        state.update(pm, {"_set_up": True})
    if intent.get("confirmation_method") == "manual":
        state.update(intent, {"status": "requires_confirmation", "next_action": None})
        announce(state, intent)
        return
    card = card_of(pm)
    if card is not None and card.decline is not None:
        _fail_card(state, intent, pm, card.decline)
        return
    _succeed_card(state, intent, pm, three_d_secure=True)


def capture(state: SandboxState, intent: StripeObject, amount_to_capture: int | None) -> None:
    """Capture an authorized card payment, in full or in part (the rest is released)."""
    if intent["status"] != "requires_capture":
        raise unexpected_state(intent, "capture", ("requires_capture",))
    capturable = int(intent["amount_capturable"])
    amount = capturable if amount_to_capture is None else amount_to_capture
    if amount > capturable:
        raise invalid_request(
            f"The amount to capture ({amount}) is greater than the amount capturable "
            f"({capturable}).",
            param="amount_to_capture",
            code="amount_too_large",
        )
    charge = state.require(CHARGE, intent["latest_charge"])
    before = state.update(
        charge,
        {
            "captured": True,
            "amount_captured": amount,
            # Stripe reports the released remainder of a partial capture as refunded.
            "amount_refunded": int(charge["amount"]) - amount,
        },
    )
    previous = state.update(
        intent, {"status": "succeeded", "amount_capturable": 0, "amount_received": amount}
    )
    state.emit("charge.captured", charge, before)
    state.emit("payment_intent.succeeded", intent, previous)


def cancel(state: SandboxState, intent: StripeObject, reason: str | None = None) -> None:
    """Cancel an intent that has not succeeded; an authorization is released."""
    if intent["status"] not in CANCELABLE:
        raise unexpected_state(intent, "cancel", CANCELABLE)
    if intent["status"] == "processing":
        pm = state.get("payment_method", intent.get("payment_method") or "")
        account = bank_account_of(pm) if pm else None
        if account is None or not account.never_settles:
            raise unexpected_state(intent, "cancel", CANCELABLE[:-1])
    charge = state.get(CHARGE, intent.get("latest_charge") or "")
    state.cancel_timers(intent["id"], SETTLE_TIMER)
    previous = state.update(
        intent,
        {
            "status": "canceled",
            "canceled_at": state.now_for(intent),
            "cancellation_reason": reason or "requested_by_customer",
            "amount_capturable": 0,
            "next_action": None,
        },
    )
    if charge is not None and previous.get("status") == "requires_capture":
        before = state.update(charge, {"amount_refunded": charge["amount"], "refunded": True})
        state.emit("charge.refunded", charge, before)
    elif charge is not None and previous.get("status") == "processing":
        before = state.update(charge, {"status": "failed", "captured": False})
        state.emit("charge.failed", charge, before)
    state.emit("payment_intent.canceled", intent, previous)
    announce(state, intent)
