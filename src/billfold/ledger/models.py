"""The ledger's tables: accounts with a maintained balance, transactions, and their entries.

Sign convention: an entry's amount is what it adds to its account's balance. A customer's credits
account holds what the customer may spend; the system accounts (revenue, promotions, usage, ...)
are the other side of every movement and may go negative. Within one transaction the amounts of
each unit sum to zero.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from billfold.db.base import Base, BigIntPK, JSONType, UTCDateTime


class LedgerAccount(Base):
    """One balance: a customer's (per billing account, name and unit) or a system account's.

    `balance` is maintained by every posting in the same statement that checks it, so reading it is
    O(1); `billfold ledger verify` recomputes it from the entries. A customer account may be below
    zero only when an explicit overdraft posting (a clawback) put it there: `overdrawn` records
    that, and the CHECK constraint refuses any other negative balance.
    """

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("balance >= 0 OR allow_negative OR overdrawn", name="non_negative"),
        Index(
            "ix_ledger_accounts_system_name_unit",
            "name",
            "unit",
            postgresql_where=text("billing_account_id IS NULL"),
            sqlite_where=text("billing_account_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # "<billing account id>:<name>:<unit>" or "system:<name>:<unit>:<shard>": one row per account,
    # found and created race-free through this unique key.
    key: Mapped[str] = mapped_column(String(160), unique=True)
    billing_account_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("billing_accounts.id"), index=True, default=None
    )
    name: Mapped[str] = mapped_column(String(40))
    unit: Mapped[str] = mapped_column(String(16))
    # A busy system account is split over several rows (shards) so postings for different
    # customers do not queue on one row lock; its balance is the sum of its shards. Customer
    # accounts have shard 0 only.
    shard: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    overdrawn: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def is_system(self) -> bool:
        return self.billing_account_id is None


class LedgerTransaction(Base):
    """One posting: its idempotency key, what it was, and a fingerprint of its content."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    # "metadata" is taken on declarative classes; the column keeps the natural name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    # sha256 of the canonical content (kind, description, metadata, entries): a replay with the
    # same key must match it, and `ledger verify` recomputes it to find altered entries.
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LedgerEntry(Base):
    """One line of a transaction: a signed amount on one account, in the account's unit."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="non_zero"),
        Index("ix_ledger_entries_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id"), index=True
    )
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    unit: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    # The account's balance right after this entry: history shows a running balance, and
    # `ledger verify` can name the first entry where the chain breaks.
    balance_after: Mapped[int] = mapped_column(BigInteger)
