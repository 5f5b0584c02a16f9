"""Appending to the audit log and reading it back.

Appends are linearized on the single chain-head row: PostgreSQL takes it with
`SELECT ... FOR UPDATE`, SQLite writers already hold the database lock (`BEGIN IMMEDIATE`), so
two concurrent requests can never both extend the same entry and fork the chain. The lock is
held until the request's transaction commits: audit writes are the one serial point of a
billing request, which is the price of a single verifiable chain.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import CHAIN_HEAD_ID, GENESIS_HASH, AuditChainHead, AuditEntry
from billfold.clock import utcnow
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import ValidationFailed

_MAX_DETAILS_BYTES = 64 * 1024


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"audit details cannot hold a {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII only, no NaN: the same text for the same content."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
        default=_json_default,
    )


def format_timestamp(value: datetime) -> str:
    """UTC with microseconds, as it is hashed (both databases keep microseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    *,
    seq: int,
    entry_id: str,
    occurred_at: datetime,
    action: str,
    actor: str,
    account_id: str | None,
    target: str | None,
    details_json: str,
    ip: str | None,
    request_id: str | None,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's fields, including the previous hash."""
    payload = canonical_json(
        {
            "seq": seq,
            "id": entry_id,
            "occurred_at": format_timestamp(occurred_at),
            "action": action,
            "actor": actor,
            "account_id": account_id,
            "target": target,
            "details": details_json,
            "ip": ip,
            "request_id": request_id,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def hash_of(entry: AuditEntry) -> str:
    """The hash an entry should carry, recomputed from its stored fields."""
    return entry_hash(
        seq=entry.seq,
        entry_id=entry.id,
        occurred_at=entry.occurred_at,
        action=entry.action,
        actor=entry.actor,
        account_id=entry.account_id,
        target=entry.target,
        details_json=entry.details_json,
        ip=entry.ip,
        request_id=entry.request_id,
        prev_hash=entry.prev_hash,
    )


def _clean(value: str | None, limit: int) -> str | None:
    """Text fit for both databases: PostgreSQL refuses NUL; columns have a length."""
    if value is None:
        return None
    return value.replace("\x00", "")[:limit]


async def _lock_chain_head(session: AsyncSession) -> tuple[int, str]:
    stmt = (
        select(AuditChainHead.seq, AuditChainHead.entry_hash)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .with_for_update()
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        # First entry ever (or the tables were emptied): create the head, then lock it. A
        # concurrent first writer waits on the conflicting insert and then on the lock.
        await insert_ignoring_conflict(
            session,
            AuditChainHead.__table__,  # type: ignore[arg-type]
            {"id": CHAIN_HEAD_ID, "seq": 0, "entry_hash": GENESIS_HASH},
            ["id"],
        )
        row = (await session.execute(stmt)).one()
    return int(row.seq), str(row.entry_hash)


async def record_event(
    session: AsyncSession,
    *,
    action: str,
    actor: str,
    account_id: str | None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the audit log, chained to the newest entry, in the caller's
    transaction (so the entry exists exactly when the action it records was committed).

    `action` is a dotted name such as `checkout.created`; `actor` says who (`user:alice`,
    `api_key:ak_...`, `stripe`, `cli:root`); `details` is any JSON-serializable dict.
    """
    action = (action or "").strip()
    if not action or len(action) > 100:
        raise ValidationFailed("audit action must be 1 to 100 characters", field="action")
    actor = (actor or "").strip()
    if not actor:
        raise ValidationFailed("audit actor must not be empty", field="actor")
    try:
        details_json = canonical_json(details or {})
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"audit details are not JSON: {exc}", field="details") from exc
    if len(details_json) > _MAX_DETAILS_BYTES:
        raise ValidationFailed("audit details are larger than 64 KiB", field="details")
    occurred_at = (at or utcnow()).astimezone(UTC)

    prev_seq, prev_hash = await _lock_chain_head(session)
    entry = AuditEntry(
        seq=prev_seq + 1,
        id=new_id("aud"),
        occurred_at=occurred_at,
        action=action,
        actor=_clean(actor, 255) or "unknown",
        account_id=_clean(account_id, 40),
        target=_clean(target, 255),
        details_json=details_json,
        ip=_clean(ip, 64),
        request_id=_clean(request_id, 128),
        prev_hash=prev_hash,
    )
    entry.entry_hash = hash_of(entry)
    session.add(entry)
    await session.flush()
    await session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(seq=entry.seq, entry_hash=entry.entry_hash)
    )
    return entry


async def list_entries(
    session: AsyncSession,
    *,
    account_id: str | None,
    limit: int = 50,
    before_seq: int | None = None,
) -> tuple[Sequence[AuditEntry], bool]:
    """Entries newest first (of one account, or all when `account_id` is None), `limit` at a
    time before the `before_seq` cursor; and whether older entries remain."""
    stmt = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit + 1)
    if account_id is not None:
        stmt = stmt.where(AuditEntry.account_id == account_id)
    if before_seq is not None:
        stmt = stmt.where(AuditEntry.seq < before_seq)
    rows = (await session.execute(stmt)).scalars().all()
    return rows[:limit], len(rows) > limit
