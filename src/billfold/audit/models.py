"""The audit log's tables: append-only entries and the head of their hash chain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.db.base import Base, BigIntPK, UTCDateTime

# The `prev_hash` of the first entry: 64 zeros, the hash of nothing.
GENESIS_HASH = "0" * 64
CHAIN_HEAD_ID = 1


class AuditEntry(Base):
    """One billing action: who (`actor`), what (`action`), on which account, when, from where.

    `seq` numbers the entries without gaps; `entry_hash` is SHA-256 over the canonical JSON of
    the entry's fields and the previous entry's hash, so altering, removing or inserting a row
    breaks the chain at that row. `details` is stored as the exact canonical JSON text that was
    hashed (a JSON column could renormalize numbers and break the hash without any tampering).
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_account_id_seq", "account_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[str | None] = mapped_column(String(40), default=None)
    target: Mapped[str | None] = mapped_column(String(255), default=None)
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)

    @property
    def details(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.details_json)
        return parsed


class AuditChainHead(Base):
    """The single row that names the newest entry; appends lock it to stay linear."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditDeferred(Base):
    """An entry recorded by a hot path (a usage debit) in its own transaction, without the
    chain head's lock: the `audit.chain_deferred` job chains it into `audit_log` (same fields,
    same `id`, `occurred_at` as recorded) and deletes it here, in one transaction."""

    __tablename__ = "audit_deferred"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(40), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[str | None] = mapped_column(String(40), default=None)
    target: Mapped[str | None] = mapped_column(String(255), default=None)
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)
