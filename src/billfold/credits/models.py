"""The credits domain's tables. The balance itself lives in the ledger (`ledger_accounts`, the
account's `main` credits account, and `held` for credits reserved by holds); these tables say
where the credits came from and where they went:

- `credit_wallets`: one row per billing account with the `version` of its credits, bumped by
  every movement (its row lock also serializes an account's movements: every write takes it
  first, so lots are allocated by one writer at a time);
- `credit_lots`: every grant, with what is left of it, its priority and expiry;
- `credit_lot_draws`: which lots each debit, hold, clawback or expiry took;
- `credit_holds`: reserved credits, captured in part or released;
- `credit_purchases`: a package purchase or a top-up, reserved before Stripe is called;
- `credit_refunds`: a refund or a lost dispute of a purchase, and the credits clawed back;
- `billing_history_items`: Stripe's invoices, charges and refunds of an account, mirrored
  from webhooks;
- `credit_auto_topups`: an account's auto top-up settings and guardrail state (each charge is a
  `credit_purchases` row of kind `auto_topup`, at most one in flight per account).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from billfold.db.base import Base, BigIntPK, JSONType, UTCDateTime

HELD = "held"
"""The ledger account name of an account's credits reserved by holds."""


class PurchaseKind(enum.StrEnum):
    PACKAGE = "credit_purchase"
    TOPUP = "topup"
    AUTO_TOPUP = "auto_topup"  # charged off session (credits.autotopup); `topup` in the history


class PurchaseState(enum.StrEnum):
    RESERVED = "reserved"  # the row exists, Stripe not called yet (or the call failed)
    OPEN = "open"  # a Checkout session waits for the customer
    PENDING = "pending"  # paid by a bank debit that has not settled
    COMPLETED = "completed"  # paid; credits granted
    FAILED = "failed"  # the bank debit failed, or Stripe refused the session
    EXPIRED = "expired"  # the session expired unpaid


class HoldState(enum.StrEnum):
    ACTIVE = "active"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


class CreditWallet(Base):
    __tablename__ = "credit_wallets"

    account_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("billing_accounts.id"), primary_key=True
    )
    # Grows with every movement of the account's credits (and every change of its history).
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CreditLot(Base):
    __tablename__ = "credit_lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="remaining_non_negative"),
        CheckConstraint("remaining <= granted", name="remaining_at_most_granted"),
        Index("ix_credit_lots_account_remaining", "account_id", "remaining"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(40), ForeignKey("billing_accounts.id"))
    # One lot per grant: `purchase:<id>`, `grant:<account>:<key>`, `allowance:<invoice>`...
    key: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(32))
    granted: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ledger_transaction_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CreditLotDraw(Base):
    __tablename__ = "credit_lot_draws"
    __table_args__ = (CheckConstraint("amount > 0", name="positive"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    lot_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("credit_lots.id"), index=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    # usage | hold | expiry | clawback | restore (a hold's uncaptured credits given back: < 0
    # is not allowed, so a restore is its own row whose amount went back into the lot)
    reason: Mapped[str] = mapped_column(String(16))
    # The ledger transaction's idempotency key, or the hold's id.
    reference: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CreditHold(Base):
    __tablename__ = "credit_holds"
    __table_args__ = (
        CheckConstraint("captured >= 0 AND captured <= amount", name="capture_within_hold"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("billing_accounts.id"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    captured: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


AUTO_TOPUP_IN_FLIGHT = "kind = 'auto_topup' AND state IN ('reserved', 'pending')"


class CreditPurchase(Base):
    __tablename__ = "credit_purchases"
    __table_args__ = (
        Index("ix_credit_purchases_account_created", "account_id", "created_at"),
        # One auto top-up in flight per account (0010_credits_autotopup).
        Index(
            "ix_credit_purchases_auto_topup_in_flight",
            "account_id",
            unique=True,
            sqlite_where=text(AUTO_TOPUP_IN_FLIGHT),
            postgresql_where=text(AUTO_TOPUP_IN_FLIGHT),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), ForeignKey("billing_accounts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    package_id: Mapped[str | None] = mapped_column(String(64), default=None)
    credits: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(
        String(255), unique=True, default=None
    )
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(
        String(255), index=True, default=None
    )
    checkout_url: Mapped[str | None] = mapped_column(Text, default=None)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_clawed_back: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class CreditRefund(Base):
    __tablename__ = "credit_refunds"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # re_... or du_...
    purchase_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("credit_purchases.id"), index=True
    )
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # refund | dispute
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    credits: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BillingHistoryItem(Base):
    __tablename__ = "billing_history_items"
    __table_args__ = (Index("ix_billing_history_account_created", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # in_, ch_ or re_ id
    account_id: Mapped[str] = mapped_column(String(40), ForeignKey("billing_accounts.id"))
    type: Mapped[str] = mapped_column(String(16))  # invoice | charge | refund
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    subscription_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # Stripe's `created` of the object (its history order); seen_at: the event last applied.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AutoTopupStatus(enum.StrEnum):
    DISABLED = "disabled"
    ACTIVE = "active"
    STOPPED = "stopped"  # after failed charges in a row; a new method or turning it on resumes


class CreditAutoTopup(Base):
    """An account's auto top-up: what to buy below which balance, the customer's caps, and
    the guardrails' state (`armed`: the balance was at or above the threshold since the last
    top-up fired, so the next fall under it fires once)."""

    __tablename__ = "credit_auto_topups"

    account_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("billing_accounts.id"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    threshold: Mapped[int] = mapped_column(BigInteger)  # credits
    credits: Mapped[int] = mapped_column(BigInteger)  # credits bought per top-up
    currency: Mapped[str] = mapped_column(String(3))
    max_per_day: Mapped[int] = mapped_column(Integer)
    monthly_limit: Mapped[int] = mapped_column(BigInteger)  # minor units of `currency`
    status: Mapped[str] = mapped_column(String(16))
    armed: Mapped[bool] = mapped_column(Boolean, default=True)
    crossings: Mapped[int] = mapped_column(Integer, default=0)  # fired so far (the job keys)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # charges so far (purchase ids)
    failures_in_row: Mapped[int] = mapped_column(Integer, default=0)
    stopped_reason: Mapped[str | None] = mapped_column(Text, default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The method the last failed charge was on: another default resumes a stopped auto top-up.
    stopped_method_id: Mapped[str | None] = mapped_column(String(255), default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
