"""The sandbox's payment engine: test cards and bank accounts, PaymentMethods, PaymentIntents,
SetupIntents and Charges behaving as in Stripe test mode.

The resource modules (`resources/payment_methods.py`, `setup_intents.py`, `payment_intents.py`,
`charges.py`, `refunds.py`) expose it over the API. Other sandbox modules (billing: invoices,
checkout, the portal) call the functions below, under `state.lock`, and get the same rules and
the same events as an API call:

- `pay(state, customer=, amount=, currency=, payment_method=, off_session=, ...)` -> the
  PaymentIntent (status `succeeded`, `requires_payment_method` with `last_payment_error`,
  `requires_action`, `processing` or `requires_capture`);
- `set_up(state, customer=, payment_method=, usage=)` -> the SetupIntent;
- `cancel_payment_intent(state, id)`, `authenticate(state, intent_id, succeed=)`;
- `payment_method_from_card(state, number=, exp_month=, exp_year=, cvc=)`,
  `payment_method_from_bank_account(state, routing_number=, account_number=, name=)`,
  `resolve_payment_method(state, id)` (Stripe's test ids give a fresh PaymentMethod),
  `attach_payment_method(state, pm_id, customer)`, `detach_payment_method(state, pm_id)`;
- `on_intent_outcome(fn)`: hear about outcomes reached later (bank debits settling, 3-D Secure
  completed, an intent confirmed again by the customer).
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.payments import intents, setups
from billfold_sandbox.payments.methods import (
    attach,
    create_from_params,
    detach,
    resolve,
)
from billfold_sandbox.payments.outcomes import IntentListener, on_intent_outcome, quietly
from billfold_sandbox.state import SandboxState, StripeObject

__all__ = [
    "IntentListener",
    "attach_payment_method",
    "authenticate",
    "cancel_payment_intent",
    "default_payment_method",
    "detach_payment_method",
    "on_intent_outcome",
    "pay",
    "payment_method_from_bank_account",
    "payment_method_from_card",
    "resolve_payment_method",
    "set_up",
]


def default_payment_method(state: SandboxState, customer: str) -> str | None:
    """The customer's `invoice_settings.default_payment_method`, if any."""
    found = state.get("customer", customer)
    if found is None:
        return None
    value = (found.get("invoice_settings") or {}).get("default_payment_method")
    return value if isinstance(value, str) else None


def pay(
    state: SandboxState,
    *,
    customer: str | None,
    amount: int,
    currency: str,
    payment_method: str | None = None,
    off_session: bool = True,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    payment_intent: str | None = None,
    setup_future_usage: str | None = None,
    capture_method: str = "automatic",
    statement_descriptor: str | None = None,
    payment_method_types: list[str] | None = None,
    return_url: str | None = None,
) -> StripeObject:
    """Charge `amount` (minor units) to a payment method, as a confirmed PaymentIntent.

    `payment_method` may be a stored id or a Stripe test id (`pm_card_visa`); without one the
    customer's default payment method is used, and without that the PaymentIntent is returned
    in `requires_payment_method`. With `payment_intent`, that existing intent is confirmed again
    (a retry) instead of a new one being created. Declines do not raise: the returned intent is
    in `requires_payment_method` with `last_payment_error` (and a failed `latest_charge`).
    Emits the events Stripe sends (`payment_intent.created`, `charge.succeeded`,
    `payment_intent.succeeded`, `charge.failed`, `payment_intent.payment_failed`,
    `payment_intent.requires_action`, `payment_intent.processing`, ...).
    """
    with state.lock, quietly():
        pm_id = payment_method or (default_payment_method(state, customer) if customer else None)
        pm = resolve(state, pm_id) if pm_id else None
        if payment_intent is not None:
            intent = state.require("payment_intent", payment_intent, param="payment_intent")
        else:
            intent = intents.create(
                state,
                amount=amount,
                currency=currency,
                customer=customer,
                description=description,
                metadata=dict(metadata or {}),
                capture_method=capture_method,
                setup_future_usage=setup_future_usage,
                statement_descriptor=statement_descriptor,
                payment_method_types=payment_method_types,
            )
        if pm is None:
            return intent
        intents.confirm(
            state,
            intent,
            payment_method=pm,
            off_session=off_session,
            return_url=return_url,
        )
        return intent


def set_up(
    state: SandboxState,
    *,
    customer: str | None,
    payment_method: str,
    usage: str = "off_session",
    metadata: dict[str, str] | None = None,
    payment_method_types: list[str] | None = None,
    return_url: str | None = None,
) -> StripeObject:
    """Save a payment method for later through a confirmed SetupIntent; returns the intent
    (`succeeded` with the method attached to the customer, `requires_action` for 3-D Secure or
    microdeposits, `requires_payment_method` with `last_setup_error` for a declined card)."""
    with state.lock, quietly():
        pm = resolve(state, payment_method)
        intent = setups.create(
            state,
            customer=customer,
            payment_method=pm,
            usage=usage,
            metadata=dict(metadata or {}),
            payment_method_types=payment_method_types,
        )
        setups.confirm(state, intent, payment_method=pm, return_url=return_url)
        return intent


def cancel_payment_intent(
    state: SandboxState, payment_intent: str, *, reason: str | None = None
) -> StripeObject:
    """Cancel a PaymentIntent that has not succeeded (e.g. its invoice was voided)."""
    with state.lock, quietly():
        intent = state.require("payment_intent", payment_intent, param="payment_intent")
        intents.cancel(state, intent, reason)
        return intent


def authenticate(state: SandboxState, intent_id: str, *, succeed: bool) -> StripeObject:
    """Complete or fail the 3-D Secure challenge of a PaymentIntent or SetupIntent (what the
    customer does on the bank's page). Listeners hear the outcome."""
    with state.lock:
        if intent_id.startswith("seti_"):
            setup = state.require("setup_intent", intent_id)
            setups.authenticate(state, setup, succeed_=succeed)
            return setup
        intent = state.require("payment_intent", intent_id)
        intents.authenticate(state, intent, succeed=succeed)
        return intent


def payment_method_from_card(
    state: SandboxState,
    *,
    number: str,
    exp_month: int,
    exp_year: int,
    cvc: str | None = None,
    billing_details: dict[str, Any] | None = None,
) -> StripeObject:
    """A card PaymentMethod from a test card number (Stripe's errors for bad numbers)."""
    card: dict[str, Any] = {"number": number, "exp_month": exp_month, "exp_year": exp_year}
    if cvc is not None:
        card["cvc"] = cvc
    with state.lock:
        return create_from_params(
            state, {"type": "card", "card": card, "billing_details": billing_details or {}}
        )


def payment_method_from_bank_account(
    state: SandboxState,
    *,
    routing_number: str,
    account_number: str,
    name: str,
    account_holder_type: str = "individual",
    account_type: str = "checking",
) -> StripeObject:
    """A `us_bank_account` PaymentMethod entered by hand (verified later by microdeposits)."""
    with state.lock:
        return create_from_params(
            state,
            {
                "type": "us_bank_account",
                "us_bank_account": {
                    "routing_number": routing_number,
                    "account_number": account_number,
                    "account_holder_type": account_holder_type,
                    "account_type": account_type,
                },
                "billing_details": {"name": name},
            },
        )


def resolve_payment_method(state: SandboxState, payment_method: str) -> StripeObject:
    """A stored PaymentMethod, or a fresh one for Stripe's test ids (`pm_card_visa`)."""
    with state.lock:
        return resolve(state, payment_method)


def attach_payment_method(state: SandboxState, payment_method: str, customer: str) -> StripeObject:
    """Attach to a customer as `POST /v1/payment_methods/{id}/attach` does (declined cards are
    refused with a 402 `card_error`); emits `payment_method.attached`."""
    with state.lock:
        return attach(state, resolve(state, payment_method), customer)


def detach_payment_method(state: SandboxState, payment_method: str) -> StripeObject:
    """Detach from its customer; emits `payment_method.detached`."""
    with state.lock:
        pm = state.get("payment_method", payment_method)
        if pm is None:
            raise invalid_request(
                f"No such PaymentMethod: '{payment_method}'", code="resource_missing"
            )
        return detach(state, pm)
