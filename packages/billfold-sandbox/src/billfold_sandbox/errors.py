"""Stripe's error shape: `{"error": {"type", "code", "decline_code", "param", "message", ...}}`.

Resource modules raise `StripeError` (or use the helpers below); the app turns it into the JSON
body and status code Stripe would send.
"""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs/error-codes"


class StripeError(Exception):
    """An error the sandbox answers with, in Stripe's shape and status code."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"{DOCS}#{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        if self.decline_code:
            error["decline_code"] = self.decline_code
        error.update(self.extra)
        return {"error": error}


EXCLUSIVE = "You may only specify one of these parameters"


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeError:
    """A 400 `invalid_request_error` (the most common refusal). Two parameters that exclude
    each other ("You may only specify one of these parameters: a, b.") get Stripe's code,
    `parameters_exclusive`, wherever the refusal is raised."""
    if code is None and message.startswith(EXCLUSIVE):
        code = "parameters_exclusive"
    return StripeError(message, status=status, code=code, param=param)


def empty_parameter(name: str) -> StripeError:
    """Stripe's refusal of `name=""` for a parameter that cannot be unset."""
    return invalid_request(
        f"You passed an empty string for '{name}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{name}' cannot be unset. You should remove '{name}' from "
        "your request or supply a non-empty value.",
        param=name,
        code="parameter_invalid_empty",
    )


def unknown_parameter(name: str) -> StripeError:
    return invalid_request(
        f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
    )


def missing_parameter(name: str) -> StripeError:
    return invalid_request(f"Missing required param: {name}.", param=name, code="parameter_missing")


# How Stripe names an object in "No such ...: 'id'" messages when it is not the `object` value.
_MISSING_NAMES = {
    "payment_method": "PaymentMethod",
    "test_helpers.test_clock": "test clock",
    "checkout.session": "checkout.session",
    "billing_portal.session": "billing portal session",
}


def resource_missing(object_type: str, object_id: str, *, param: str = "id") -> StripeError:
    """404 `resource_missing`: "No such customer: 'cus_x'"."""
    name = _MISSING_NAMES.get(object_type, object_type)
    return StripeError(
        f"No such {name}: '{object_id}'", status=404, code="resource_missing", param=param
    )


def card_error(
    message: str,
    *,
    code: str = "card_declined",
    decline_code: str | None = None,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
) -> StripeError:
    """402 `card_error` (declines, failed authentication); `extra` carries payment_intent etc."""
    return StripeError(
        message,
        status=402,
        type="card_error",
        code=code,
        decline_code=decline_code,
        param=param,
        extra=extra,
    )


def idempotency_error(message: str) -> StripeError:
    return StripeError(message, status=400, type="idempotency_error")


def api_error(message: str = "An unknown error occurred", status: int = 500) -> StripeError:
    return StripeError(message, status=status, type="api_error")


def rate_limit_error() -> StripeError:
    return StripeError(
        "Request rate limit exceeded. You can learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        status=429,
        type="invalid_request_error",
        code="rate_limit",
        headers={"Stripe-Should-Retry": "true"},
    )


def authentication_error(message: str) -> StripeError:
    return StripeError(message, status=401, type="invalid_request_error")
