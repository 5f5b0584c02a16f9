"""`last_payment_error` / `last_setup_error`: why an intent's latest attempt failed."""

from __future__ import annotations

from typing import Any

from billfold_sandbox.errors import StripeError
from billfold_sandbox.payments.instruments import BankFailure, Decline
from billfold_sandbox.state import SandboxState, StripeObject


def last_error(
    state: SandboxState,
    failure: Decline | BankFailure | tuple[str, str],
    pm: StripeObject | None,
    *,
    type: str = "invalid_request_error",
    charge: str | None = None,
) -> dict[str, Any]:
    """The error object Stripe keeps on an intent after a failed attempt.

    `failure` is a card `Decline` (with its `decline_code`), a bank `BankFailure`, or a
    `(code, message)` pair.
    """
    if isinstance(failure, tuple):
        code, message = failure
        decline_code = None
    else:
        code, message = failure.code, failure.message
        decline_code = failure.decline_code if isinstance(failure, Decline) else None
    error: dict[str, Any] = {
        "code": code,
        "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
        "message": message,
        "type": type,
    }
    if charge is not None:
        error["charge"] = charge
    if decline_code:
        error["decline_code"] = decline_code
    if pm is not None:
        error["payment_method"] = state.render(pm)
    return error


def raise_failure(error: StripeError | None) -> None:
    """Answer an API call with the error of a failed attempt (a decline is a 402)."""
    if error is not None:
        raise error
