from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billfold.db.base import Base, JSONType, UTCDateTime


class AccountKind(enum.StrEnum):
    USER = "user"
    ORGANIZATION = "organization"
    SHOP = "shop"


class BillingAccount(Base):
    """Whoever pays: a user, an organization or a shop (the seeds use all three)."""

    __tablename__ = "billing_accounts"
    __table_args__ = (UniqueConstraint("kind", "external_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # The host app's own id: user id, organization id or shop domain.
    external_id: Mapped[str] = mapped_column(String(255))
    # The account's Stripe customer, created lazily by `customers.service.ensure_stripe_customer`
    # (or linked from a paid Checkout session); None again after Stripe deleted it.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    stripe_customer_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # How many of the account's Stripe customers were deleted: part of the next customer's
    # idempotency key, so a deleted customer is never replayed.
    stripe_customer_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    # The host app's own settings for the account; billfold's state lives in typed columns.
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
