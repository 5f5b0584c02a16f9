"""The Stripe webhook inbox: every event billfold received, stored once under its id."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.db.base import Base, JSONType, UTCDateTime


class InboxStatus(enum.StrEnum):
    PENDING = "pending"  # stored, not applied yet
    PROCESSED = "processed"  # applied (in the same transaction that marked it)
    FAILED = "failed"  # the last attempt raised; retried at `next_attempt_at`
    DEAD = "dead"  # gave up after the maximum number of attempts; `billfold stripe retry --all`


class WebhookEvent(Base):
    __tablename__ = "stripe_webhook_events"

    # Stripe's event id (evt_...): the unique key that makes delivery idempotent.
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    stripe_created: Mapped[int] = mapped_column(BigInteger)
    livemode: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(String(16), default="webhook")  # webhook | sync
    status: Mapped[str] = mapped_column(String(16), index=True, default=InboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_traceback: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
