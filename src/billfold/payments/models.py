"""Payment methods, the account's payment settings (autopay), payments and their attempts.

A payment method row mirrors Stripe's PaymentMethod (its id is Stripe's `pm_...`); a payment
is one settlement of dues (or a one-off charge), tried on one method after another by
priority: each try is a `PaymentAttempt`, reserved before Stripe is called and recorded after.
Amounts are minor units with their currency.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.db.base import Base, JSONType, UTCDateTime

# A method's status: usable ones are tried by pay-balance and autopay.
ACTIVE = "active"
PENDING_VERIFICATION = "pending_verification"
VERIFICATION_FAILED = "verification_failed"
USABLE_STATUSES = frozenset({ACTIVE})

# A payment's status.
RESERVED = "reserved"  # being tried (its attempts say how far)
PROCESSING = "processing"  # a bank debit Stripe has not settled yet
REQUIRES_ACTION = "requires_action"  # 3-D Secure: the customer must finish it
SUCCEEDED = "succeeded"
FAILED = "failed"
OPEN_STATUSES = frozenset({RESERVED, PROCESSING, REQUIRES_ACTION})


class PaymentMethod(Base):
    """A saved card or US bank account of a billing account, as Stripe last described it."""

    __tablename__ = "payment_methods"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Stripe's pm_...
    account_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("billing_accounts.id"), index=True
    )
    type: Mapped[str] = mapped_column(String(32))  # card | us_bank_account
    status: Mapped[str] = mapped_column(String(32))
    brand: Mapped[str | None] = mapped_column(String(32), default=None)
    last4: Mapped[str | None] = mapped_column(String(4), default=None)
    exp_month: Mapped[int | None] = mapped_column(Integer, default=None)
    exp_year: Mapped[int | None] = mapped_column(Integer, default=None)
    bank_name: Mapped[str | None] = mapped_column(String(255), default=None)
    # 1 is tried first; a full order over the account's methods.
    priority: Mapped[int] = mapped_column(Integer)
    setup_intent_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # Wrong microdeposit answers so far (Stripe allows 3 amounts or 10 descriptor codes).
    verification_failures: Mapped[int] = mapped_column(Integer, default=0)
    # Set by a decline that must never be retried on this method (lost, stolen, fraudulent).
    blocked_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaymentSettings(Base):
    """An account's autopay switch, default method and autopay's retry state."""

    __tablename__ = "payment_settings"

    account_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("billing_accounts.id"), primary_key=True
    )
    autopay: Mapped[bool] = mapped_column(Boolean, default=False)
    default_payment_method_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # Failed autopay runs in a row; the next is not before `autopay_retry_at`.
    autopay_failures: Mapped[int] = mapped_column(Integer, default=0)
    autopay_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    autopay_stopped_reason: Mapped[str | None] = mapped_column(Text, default=None)
    autopay_stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Payment(Base):
    """One payment: dues settled (by hand or autopay) or a one-off charge."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_account_created", "account_id", "created_at"),)

    # For dues: derived from the dues being paid (their ledger account and its newest entry),
    # so two runs over the same dues make one payment.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), ForeignKey("billing_accounts.id"))
    kind: Mapped[str] = mapped_column(String(16))  # balance | autopay | one_off
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    status: Mapped[str] = mapped_column(String(32), index=True)
    # The method the payment is on (the one that succeeded, or the last one tried).
    payment_method_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # A one-off charge may name its method; otherwise the priority order is tried.
    requested_payment_method_id: Mapped[str | None] = mapped_column(String(255), default=None)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(
        String(255), unique=True, default=None
    )
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), default=None)
    failure_code: Mapped[str | None] = mapped_column(String(64), default=None)
    failure_message: Mapped[str | None] = mapped_column(Text, default=None)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    dispute_id: Mapped[str | None] = mapped_column(String(255), default=None)
    dispute_status: Mapped[str | None] = mapped_column(String(32), default=None)
    dispute_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaymentAttempt(Base):
    """One try of a payment on one method: reserved (with its whole Stripe request) before
    Stripe is called with the key `payment_attempt:{id}`, then recorded exactly once."""

    __tablename__ = "payment_attempts"
    __table_args__ = (
        Index("ix_payment_attempts_reserved", "state", postgresql_where=text("state = 'reserved'")),
    )

    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # "<payment id>:<seq>"
    payment_id: Mapped[str] = mapped_column(String(64), ForeignKey("payments.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    payment_method_id: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))  # reserved | succeeded | declined | ...
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), default=None)
    failure_code: Mapped[str | None] = mapped_column(String(64), default=None)
    decline_code: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
