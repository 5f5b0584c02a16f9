"""The one translation of Stripe's SDK errors into billfold's error hierarchy.

Every adapter method runs its SDK calls inside `stripe_errors()`, so no `stripe.StripeError`
ever reaches domain code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from billfold.errors import (
    BillfoldError,
    ConfigurationError,
    IdempotencyConflict,
    NotFound,
    PaymentFailed,
    UpstreamUnavailable,
    ValidationFailed,
)

if TYPE_CHECKING:
    import stripe  # imported where an error is translated: the SDK loads on first use


def is_missing(exc: stripe.StripeError) -> bool:
    """Stripe answered that the object does not exist."""
    import stripe

    return isinstance(exc, stripe.InvalidRequestError) and (
        exc.http_status == 404 or exc.code == "resource_missing"
    )


def translate_stripe_error(exc: stripe.StripeError) -> BillfoldError:
    """An SDK error as billfold's own: card declines are PaymentFailed, Stripe being down or
    unreachable is UpstreamUnavailable, a refused request is ValidationFailed or NotFound."""
    import stripe

    message = exc.user_message or str(exc) or "Stripe error"
    if isinstance(exc, stripe.CardError):
        error = exc.error
        return PaymentFailed(
            message,
            details={
                "code": getattr(exc, "code", None),
                "decline_code": getattr(error, "decline_code", None) if error else None,
            },
        )
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return UpstreamUnavailable(f"Stripe is unreachable: {message}")
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ConfigurationError(f"Stripe refused billfold's API key: {message}")
    if isinstance(exc, stripe.IdempotencyError):
        return IdempotencyConflict(message)
    if isinstance(exc, stripe.InvalidRequestError):
        if is_missing(exc):
            return NotFound(message, field=getattr(exc, "param", None))
        return ValidationFailed(message, field=getattr(exc, "param", None))
    if exc.http_status is not None and exc.http_status < 500:
        return ValidationFailed(message)
    return UpstreamUnavailable(f"Stripe failed: {message}")


@contextmanager
def stripe_errors() -> Iterator[None]:
    """Run SDK calls; any Stripe error leaves as its billfold translation."""
    import stripe

    try:
        yield
    except stripe.StripeError as exc:
        raise translate_stripe_error(exc) from exc
