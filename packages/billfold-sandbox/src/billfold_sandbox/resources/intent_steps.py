"""What the PaymentIntent and SetupIntent routes share (`payment_intents.py`,
`setup_intents.py`): the parameters of the routes a publishable key may call with the
intent's client secret (the secret itself is checked before any handler runs, app.py
`_check_publishable`), the one choice of payment method types, and the steps of confirm and
verify_microdeposits around each intent's own logic (`payments/intents.py`, `payments/setups.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from billfold_sandbox.errors import StripeError, invalid_request
from billfold_sandbox.pages import remember_base
from billfold_sandbox.params import Field, string
from billfold_sandbox.payments.last_errors import raise_failure
from billfold_sandbox.payments.methods import from_intent_params
from billfold_sandbox.routing import Call
from billfold_sandbox.state import SandboxState, StripeObject

# `verify_microdeposits` of either intent kind: the error to answer, or None.
Verify = Callable[..., StripeError | None]


def with_client_secret(params: dict[str, Field] | None = None) -> dict[str, Field]:
    """The parameters of a route Stripe.js calls with a publishable key: `params` and the
    intent's `client_secret`."""
    return {**(params or {}), "client_secret": string()}


def check_method_choice(params: dict[str, Any]) -> None:
    """`payment_method_types` and `automatic_payment_methods` exclude each other."""
    if "payment_method_types" in params and "automatic_payment_methods" in params:
        raise invalid_request(
            "You may only specify one of these parameters: automatic_payment_methods, "
            "payment_method_types.",
            param="automatic_payment_methods",
        )


def intent_of(call: Call, kind: str) -> StripeObject:
    """The intent (`payment_intent` or `setup_intent`) the route's path names."""
    return call.require(kind, call.path["id"], param="intent")


def confirming(call: Call, kind: str) -> tuple[StripeObject, StripeObject | None]:
    """The first steps of a confirm: where this sandbox is reached (its pages redirect back
    there), the intent, and the payment method the parameters give (None: the intent's)."""
    remember_base(call.state, call.request)
    return intent_of(call, kind), from_intent_params(call.state, call.params)


def verify_microdeposits(call: Call, kind: str, verify: Verify) -> StripeObject:
    """Check the microdeposit amounts or descriptor code the customer read on the statement
    (`verify`: the intent kind's own step); a wrong answer is the call's error."""
    intent = intent_of(call, kind)
    state: SandboxState = call.state
    raise_failure(
        verify(
            state,
            intent,
            amounts=call.params.get("amounts"),
            descriptor_code=call.params.get("descriptor_code"),
        )
    )
    return intent
