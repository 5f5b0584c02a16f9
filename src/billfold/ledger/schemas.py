"""The ledger's value types: what callers pass in and get back (no ORM objects cross the line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CREDITS = "credits"
"""The unit of prepaid credits; money accounts use a lower-case ISO currency (`usd`, `eur`)."""


@dataclass(frozen=True, slots=True)
class EntryLine:
    """One line of a posting: `amount` (signed, minor units or credits) added to an account.

    `unit` must be the account's own unit; it is checked in the same statement that moves the
    balance.
    """

    account_id: int
    unit: str
    amount: int


@dataclass(frozen=True, slots=True)
class PostedEntry:
    id: int
    account_id: int
    unit: str
    amount: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class PostedTransaction:
    """A transaction as recorded. `replayed` is True when the idempotency key had been used
    before with the same content, so this call changed nothing."""

    id: int
    idempotency_key: str
    kind: str
    description: str | None
    metadata: dict[str, Any]
    fingerprint: str
    created_at: datetime
    entries: tuple[PostedEntry, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One movement on an account, with its transaction's kind, description and time."""

    entry_id: int
    transaction_id: int
    idempotency_key: str
    kind: str
    description: str | None
    metadata: dict[str, Any]
    amount: int
    unit: str
    balance_after: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of an account's movements, newest first."""

    items: list[HistoryItem]
    page: int
    page_size: int
    total: int
    has_more: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "has_more", self.page * self.page_size < self.total)

    @property
    def total_pages(self) -> int:
        return (self.total + self.page_size - 1) // self.page_size
