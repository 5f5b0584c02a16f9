"""The payments domain's shapes, as the API shows them (snake_case, amounts in minor units
with their currency, ids as Stripe's). Pydantic only: no web framework here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from billfold.payments.dues import CurrencyDues
from billfold.payments.models import Payment, PaymentAttempt, PaymentMethod, PaymentSettings


class DuesRead(BaseModel):
    """What the account owes in one currency: `settled` is payable now (pay-balance, autopay),
    `pending` is covered by a payment Stripe has not finished (a bank debit processing)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"currency": "usd", "settled": 1250, "pending": 0, "total": 1250}]
        }
    )

    currency: str
    settled: int = Field(description="minor units owed and payable now")
    pending: int = Field(description="minor units owed, a payment of them in flight")
    total: int

    @classmethod
    def of(cls, found: CurrencyDues) -> DuesRead:
        return cls(
            currency=found.currency, settled=found.settled, pending=found.pending, total=found.total
        )


class PaymentMethodRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "pm_1Q2w3E4r5T6y7U8i",
                    "type": "card",
                    "status": "active",
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "bank_name": None,
                    "priority": 1,
                    "is_default": True,
                    "blocked_reason": None,
                    "created_at": "2026-12-04T12:00:00Z",
                }
            ]
        },
    )

    id: str = Field(description="Stripe's PaymentMethod id")
    type: str = Field(description="card or us_bank_account")
    status: str = Field(description="active, pending_verification or verification_failed")
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    bank_name: str | None
    priority: int = Field(description="1 is tried first")
    is_default: bool
    blocked_reason: str | None = Field(
        description="a decline that stops billfold from charging this method again (lost_card...)"
    )
    created_at: datetime

    @classmethod
    def of(cls, method: PaymentMethod, default_id: str | None) -> PaymentMethodRead:
        return cls(
            id=method.id,
            type=method.type,
            status=method.status,
            brand=method.brand,
            last4=method.last4,
            exp_month=method.exp_month,
            exp_year=method.exp_year,
            bank_name=method.bank_name,
            priority=method.priority,
            is_default=method.id == default_id,
            blocked_reason=method.blocked_reason,
            created_at=method.created_at,
        )


class SettingsRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "autopay": True,
                    "default_payment_method_id": "pm_1Q2w3E4r5T6y7U8i",
                    "priority": ["pm_1Q2w3E4r5T6y7U8i", "pm_9O8i7U6y5T4r3E2w"],
                    "autopay_failures": 0,
                    "autopay_retry_at": None,
                    "autopay_stopped_reason": None,
                    "autopay_stopped_at": None,
                }
            ]
        }
    )

    autopay: bool
    default_payment_method_id: str | None
    priority: list[str] = Field(description="payment method ids, tried in this order")
    autopay_failures: int
    autopay_retry_at: datetime | None
    autopay_stopped_reason: str | None
    autopay_stopped_at: datetime | None

    @classmethod
    def of(cls, settings: PaymentSettings | None, methods: list[PaymentMethod]) -> SettingsRead:
        return cls(
            autopay=bool(settings and settings.autopay),
            default_payment_method_id=settings.default_payment_method_id if settings else None,
            priority=[m.id for m in methods],
            autopay_failures=settings.autopay_failures if settings else 0,
            autopay_retry_at=settings.autopay_retry_at if settings else None,
            autopay_stopped_reason=settings.autopay_stopped_reason if settings else None,
            autopay_stopped_at=settings.autopay_stopped_at if settings else None,
        )


class AttemptRead(BaseModel):
    id: str
    payment_method_id: str
    status: str = Field(description="succeeded, declined, processing, requires_action, failed")
    payment_intent_id: str | None
    failure_code: str | None
    decline_code: str | None
    created_at: datetime

    @classmethod
    def of(cls, attempt: PaymentAttempt) -> AttemptRead:
        return cls(
            id=attempt.id,
            payment_method_id=attempt.payment_method_id,
            status=attempt.state,
            payment_intent_id=attempt.stripe_payment_intent_id,
            failure_code=attempt.failure_code,
            decline_code=attempt.decline_code,
            created_at=attempt.created_at,
        )


PAYMENT_EXAMPLE: dict[str, Any] = {
    "id": "pay_5d41402abc4b2a76b9719d911017c592",
    "kind": "balance",
    "amount": 1250,
    "currency": "usd",
    "description": "balance due",
    "status": "succeeded",
    "payment_method_id": "pm_9O8i7U6y5T4r3E2w",
    "payment_intent_id": "pi_3Q2w3E4r5T6y7U8i",
    "failure_code": None,
    "failure_message": None,
    "refunded_amount": 0,
    "dispute_id": None,
    "dispute_status": None,
    "dispute_reason": None,
    "client_secret": None,
    "attempts": [
        {
            "id": "pay_5d41402abc4b2a76b9719d911017c592:1",
            "payment_method_id": "pm_1Q2w3E4r5T6y7U8i",
            "status": "declined",
            "payment_intent_id": "pi_1Q2w3E4r5T6y7U8i",
            "failure_code": "card_declined",
            "decline_code": "generic_decline",
            "created_at": "2026-12-04T12:00:00Z",
        },
        {
            "id": "pay_5d41402abc4b2a76b9719d911017c592:2",
            "payment_method_id": "pm_9O8i7U6y5T4r3E2w",
            "status": "succeeded",
            "payment_intent_id": "pi_3Q2w3E4r5T6y7U8i",
            "failure_code": None,
            "decline_code": None,
            "created_at": "2026-12-04T12:00:01Z",
        },
    ],
    "created_at": "2026-12-04T12:00:00Z",
    "updated_at": "2026-12-04T12:00:01Z",
}


class PaymentRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PAYMENT_EXAMPLE]})

    id: str
    kind: str = Field(description="balance, autopay or one_off")
    amount: int = Field(description="minor units")
    currency: str
    description: str | None
    status: str = Field(
        description="reserved, processing, requires_action, succeeded, failed "
        "(a Checkout's payment: open, succeeded, expired)"
    )
    payment_method_id: str | None
    payment_intent_id: str | None
    failure_code: str | None
    failure_message: str | None
    refunded_amount: int
    dispute_id: str | None
    dispute_status: str | None
    dispute_reason: str | None
    client_secret: str | None = Field(
        default=None, description="for Stripe.js to finish 3-D Secure (requires_action only)"
    )
    attempts: list[AttemptRead]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(
        cls, payment: Payment, attempts: list[PaymentAttempt], client_secret: str | None = None
    ) -> PaymentRead:
        return cls(
            id=payment.id,
            kind=payment.kind,
            amount=payment.amount,
            currency=payment.currency,
            description=payment.description,
            status=payment.status,
            payment_method_id=payment.payment_method_id,
            payment_intent_id=payment.stripe_payment_intent_id,
            failure_code=payment.failure_code,
            failure_message=payment.failure_message,
            refunded_amount=payment.refunded_amount,
            dispute_id=payment.dispute_id,
            dispute_status=payment.dispute_status,
            dispute_reason=payment.dispute_reason,
            client_secret=client_secret,
            attempts=[AttemptRead.of(a) for a in attempts],
            created_at=payment.created_at,
            updated_at=payment.updated_at,
        )
