"""Subscriptions as Stripe reports them, kept per billing account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from billfold.db.base import Base, JSONType, UTCDateTime

# Stripe statuses that hold (or are about to hold) the account's one subscription: a second
# checkout is refused while one of these exists.
LIVE_STATUSES = frozenset({"active", "trialing", "past_due", "incomplete", "unpaid"})
# Statuses where Stripe still bills the subscription and it can be canceled or changed.
CHANGEABLE_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid"})
# The metadata key of a Stripe subscription (and its Checkout session) that names its plan.
PLAN_METADATA_KEY = "billfold_plan"
# The most seats one subscription may have.
MAX_QUANTITY = 10_000


class Subscription(Base):
    """One Stripe subscription of one billing account.

    Columns are what billfold queries; `raw` keeps the whole Stripe object last seen.
    `stripe_seen_at` is the `created` of the newest event applied, so an older event's own copy
    can never overwrite newer state.
    """

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("billing_accounts.id"), index=True
    )
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), index=True)
    plan_code: Mapped[str | None] = mapped_column(String(100), default=None)
    price_id: Mapped[str | None] = mapped_column(String(255), default=None)
    interval: Mapped[str | None] = mapped_column(String(16), default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    unit_amount: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(32), index=True)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    past_due_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    stripe_created: Mapped[int] = mapped_column(BigInteger, default=0)
    stripe_seen_at: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped on every local change; part of the idempotency keys of billfold's Stripe calls.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def raw_item_id(self) -> str | None:
        """The id of the subscription's (one) item, needed to change its price."""
        items = ((self.raw or {}).get("items") or {}).get("data") or []
        found = items[0].get("id") if items else None
        return str(found) if found else None


class CheckoutState:
    """Where a `CheckoutAttempt` is: reserved (its Stripe call may be in flight), open (its
    session is recorded and may be paid), closed (expired, replaced, paid and recorded)."""

    RESERVED = "reserved"
    OPEN = "open"
    CLOSED = "closed"


class CheckoutAttempt(Base):
    """One subscription Checkout session billfold asked Stripe for, reserved before the call.

    An account has at most one attempt that is not closed (a partial unique index), so at most
    one open Checkout session. The id is derived from billfold's own ids and is the Stripe
    idempotency key; `request` is the whole Checkout request, so any later request can finish
    an attempt whose caller died between the call and the record (see `start_checkout`).
    """

    __tablename__ = "checkout_attempts"
    __table_args__ = (
        UniqueConstraint("account_id", "seq"),
        Index(
            "ix_checkout_attempts_one_current",
            "account_id",
            unique=True,
            sqlite_where=text("state != 'closed'"),
            postgresql_where=text("state != 'closed'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), ForeignKey("billing_accounts.id"))
    # The account's attempts in order (1, 2, ...): part of the next attempt's id.
    seq: Mapped[int] = mapped_column(Integer)
    # sha256 of what the session sells (price, quantity, redirects, promotion codes).
    offer: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), default=None)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChangeState:
    """Where a `SubscriptionChange` is: reserved (its Stripe call may be in flight), recorded
    (Stripe's answer is written on the subscription), refused (Stripe refused the request)."""

    RESERVED = "reserved"
    RECORDED = "recorded"
    REFUSED = "refused"


class SubscriptionChange(Base):
    """One change billfold asked Stripe to make to a subscription (cancel, reactivate, a plan
    change), reserved before the call.

    A subscription has at most one reserved change (a partial unique index), so concurrent
    changes never race each other in Stripe: a request that finds one reserved finishes it with
    its stored `request` and key instead of waiting on a lock. The id is derived from billfold's
    own ids (the subscription and its change count); the Stripe idempotency key is
    `{kind}:{id}`. `revision` is the subscription's revision when the change was reserved.
    """

    __tablename__ = "subscription_changes"
    __table_args__ = (
        UniqueConstraint("subscription_id", "seq"),
        Index(
            "ix_subscription_changes_one_reserved",
            "subscription_id",
            unique=True,
            sqlite_where=text("state = 'reserved'"),
            postgresql_where=text("state = 'reserved'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(40), ForeignKey("subscriptions.id"))
    account_id: Mapped[str] = mapped_column(String(40))
    stripe_subscription_id: Mapped[str] = mapped_column(String(255))
    # The subscription's changes in order (1, 2, ...): part of the next change's id.
    seq: Mapped[int] = mapped_column(Integer)
    # cancel-now | cancel-at-period-end | reactivate | change-plan
    kind: Mapped[str] = mapped_column(String(32))
    revision: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
