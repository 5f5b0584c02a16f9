"""billfold's one error hierarchy.

Domain code raises these; it never knows about HTTP. Each API dialect maps them to its own
error shape in one place (`billfold.api.errors`).
"""

from __future__ import annotations

from typing import Any


class BillfoldError(Exception):
    """Base of every error billfold raises on purpose."""

    code = "billfold_error"
    default_message = "billing error"

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.field = field
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(BillfoldError):
    """The caller sent something that cannot be accepted (names the field)."""

    code = "validation_error"
    default_message = "invalid request"


class NotFound(BillfoldError):
    code = "not_found"
    default_message = "not found"


class Conflict(BillfoldError):
    code = "conflict"
    default_message = "conflict with the current state"


class IdempotencyConflict(Conflict):
    """The same idempotency key was used before with different content."""

    code = "idempotency_conflict"
    default_message = "idempotency key reused with different content"


class InsufficientBalance(BillfoldError):
    code = "insufficient_balance"
    default_message = "insufficient balance"


class PaymentRequired(BillfoldError):
    """The action needs something paid for first (e.g. an active subscription)."""

    code = "payment_required"
    default_message = "an active subscription is required"


class InsufficientCredits(PaymentRequired):
    """Not enough credits for a debit or a hold; `details` (required, available, shortfall) is
    shown to the caller."""

    code = "insufficient_credits"
    default_message = "not enough credits"


class PaymentFailed(BillfoldError):
    code = "payment_failed"
    default_message = "the payment failed"


class Unauthenticated(BillfoldError):
    code = "unauthenticated"
    default_message = "missing or invalid credentials"


class Forbidden(BillfoldError):
    code = "forbidden"
    default_message = "not allowed"


class RateLimited(BillfoldError):
    code = "rate_limited"
    default_message = "too many requests"


class UpstreamUnavailable(BillfoldError):
    """Stripe (or another dependency) failed or could not be reached."""

    code = "upstream_unavailable"
    default_message = "payment provider unavailable"


class ConfigurationError(BillfoldError):
    """A setting is missing or wrong for the chosen mode; the message names the variable."""

    code = "configuration_error"
    default_message = "invalid configuration"
