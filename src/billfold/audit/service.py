"""Appending to the audit log and reading it back.

Appends are linearized on the single chain-head row: PostgreSQL takes it with
`SELECT ... FOR UPDATE`, SQLite writers already hold the database lock (`BEGIN IMMEDIATE`), so
two concurrent requests can never both extend the same entry and fork the chain. Entries are
chained at commit time (a `before_commit` hook on the session), so the lock is held only from
the insert to the commit: entries are numbered in commit order, the one serial point of an
audited request is its commit, and an entry recorded in a rolled-back transaction or
savepoint is never written.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, event, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from billfold.audit.models import (
    CHAIN_HEAD_ID,
    GENESIS_HASH,
    AuditChainHead,
    AuditDeferred,
    AuditEntry,
)
from billfold.clock import utcnow
from billfold.db.base import new_id
from billfold.errors import ValidationFailed

log = logging.getLogger("billfold.audit")

_MAX_DETAILS_BYTES = 64 * 1024
# session.info keys: entries waiting for the commit, and whether the session's hooks are set.
_PENDING = "billfold.audit.pending"
_WATCHED = "billfold.audit.watched"
_COLUMNS = [column.key for column in AuditEntry.__table__.columns]


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
    """Sorted keys, no spaces, ASCII only, no NaN: the same text for the same content.

    The ledger keeps its own (`billfold.ledger.service.canonical_json`: non-ASCII unescaped,
    plain JSON only); each form is what its stored hashes were computed from, so neither can
    take the other's place without breaking the existing chain or fingerprints.
    """
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
    """Text fit for both databases: no NUL (PostgreSQL refuses it), no lone surrogates (not
    UTF-8), no longer than the column."""
    if value is None:
        return None
    text = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text[:limit]


def _lock_chain_head(session: Session) -> tuple[int, str]:
    stmt = (
        select(AuditChainHead.seq, AuditChainHead.entry_hash)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .with_for_update()
    )
    row = session.execute(stmt).one_or_none()
    if row is None:
        # First entry ever (or the tables were emptied): create the head, then lock it. A
        # concurrent first writer waits on the conflicting insert and then on the lock.
        module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(
            module.insert(AuditChainHead.__table__)
            .values(id=CHAIN_HEAD_ID, seq=0, entry_hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        row = session.execute(stmt).one()
    return int(row.seq), str(row.entry_hash)


def _pending(session: Session) -> list[tuple[AuditEntry, SessionTransaction | None]]:
    pending: list[tuple[AuditEntry, SessionTransaction | None]] = session.info.setdefault(
        _PENDING, []
    )
    return pending


def _chain_pending(session: Session) -> None:
    """Chain and insert the transaction's pending entries, holding the head lock only from
    here to the commit that follows."""
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    seq, prev_hash = _lock_chain_head(session)
    rows: list[dict[str, Any]] = []
    for entry, _ in pending:
        seq += 1
        entry.seq = seq
        entry.prev_hash = prev_hash
        entry.entry_hash = hash_of(entry)
        prev_hash = entry.entry_hash
        rows.append({column: getattr(entry, column) for column in _COLUMNS})
    # A Core insert: the entries stay plain objects for the caller, outside the identity map.
    session.execute(insert(AuditEntry), rows)
    session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(seq=seq, entry_hash=prev_hash)
        .execution_options(synchronize_session=False)
    )


def _before_commit(session: Session) -> None:
    # Fires for savepoint releases too; entries wait for the outermost commit.
    if session.in_nested_transaction():
        return
    _chain_pending(session)


def _after_soft_rollback(session: Session, rolled_back: SessionTransaction) -> None:
    """Entries recorded inside a rolled-back transaction or savepoint never happened."""
    pending = session.info.get(_PENDING)
    if not pending:
        return
    if not rolled_back.nested:
        session.info.pop(_PENDING, None)
        return

    def inside(txn: SessionTransaction | None) -> bool:
        while txn is not None:
            if txn is rolled_back:
                return True
            txn = txn.parent
        return False

    pending[:] = [(entry, txn) for entry, txn in pending if not inside(txn)]


def _after_commit(session: Session) -> None:
    if session.info.get(_PENDING) and not session.in_transaction():
        # Only when the outermost transaction was committed with a savepoint still open.
        log.error("audit entries were not written: committed with a savepoint still open")
        session.info.pop(_PENDING, None)


def _watch(session: Session) -> None:
    if session.info.get(_WATCHED):
        return
    event.listen(session, "before_commit", _before_commit)
    event.listen(session, "after_soft_rollback", _after_soft_rollback)
    event.listen(session, "after_commit", _after_commit)
    session.info[_WATCHED] = True


def _new_entry(
    *,
    action: str,
    actor: str,
    account_id: str | None,
    target: str | None,
    details: dict[str, Any] | None,
    ip: str | None,
    request_id: str | None,
    at: datetime | None,
) -> AuditEntry:
    """An entry's fields, checked and cleaned (not yet chained)."""
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
    # Microseconds are what both databases keep, and what the hash covers.
    occurred_at = (at or utcnow()).astimezone(UTC)
    return AuditEntry(
        id=new_id("aud"),
        occurred_at=occurred_at,
        action=action,
        actor=_clean(actor, 255) or "unknown",
        account_id=_clean(account_id, 40),
        target=_clean(target, 255),
        details_json=details_json,
        ip=_clean(ip, 64),
        request_id=_clean(request_id, 128),
    )


def _append(session: AsyncSession, entry: AuditEntry) -> None:
    """Queue `entry` for chaining at the session's commit."""
    sync_session = session.sync_session
    _watch(sync_session)
    _pending(sync_session).append((entry, sync_session.get_nested_transaction()))


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
    deferred: bool = False,
) -> AuditEntry:
    """Append one entry to the audit log in the caller's transaction: it exists exactly when
    the action it records was committed.

    `action` is a dotted name such as `checkout.created`; `actor` says who (`user:alice`,
    `api_key:ak_...`, `stripe`, `cli:root`); `details` is any JSON-serializable dict.

    The entry is chained and inserted when the transaction commits (or at
    `write_pending_entries`): the chain head's lock is then held only for the commit itself,
    not for the rest of the request, so audited requests do not queue behind each other. The
    returned entry has its `id` and fields at once, and `seq`/`entry_hash` after the commit.

    `deferred=True` (a hot path: a usage debit) takes no lock at all: the entry is inserted at
    once into `audit_deferred`, in the caller's transaction, and the `audit.chain_deferred` job
    chains it later with others, under one hold of the lock (`chain_deferred`); its `seq` is
    then given in that job's commit order, its fields are the ones recorded here.
    """
    entry = _new_entry(
        action=action,
        actor=actor,
        account_id=account_id,
        target=target,
        details=details,
        ip=ip,
        request_id=request_id,
        at=at,
    )
    if deferred:
        # A Core insert on the table: no ORM bulk-insert machinery for one row.
        values = {column: getattr(entry, column) for column in _DEFERRED_COLUMNS}
        await session.execute(_INSERT_DEFERRED, {"entry_id": entry.id, **values})
    else:
        _append(session, entry)
    return entry


# The fields an entry has before it is chained (AuditDeferred's columns but its own ids).
_DEFERRED_COLUMNS = (
    "occurred_at",
    "action",
    "actor",
    "account_id",
    "target",
    "details_json",
    "ip",
    "request_id",
)


_INSERT_DEFERRED = insert(cast(Table, AuditDeferred.__table__))


async def chain_deferred(session: AsyncSession, *, limit: int = 1000) -> int:
    """Move up to `limit` deferred entries (oldest first) into the chain, at this session's
    commit, and delete them from `audit_deferred` in the same transaction; returns how many.
    Concurrent callers take different rows (PostgreSQL: SKIP LOCKED; SQLite: one writer)."""
    rows = (
        await session.execute(
            select(AuditDeferred.id, AuditDeferred.entry_id, *_deferred_fields())
            .order_by(AuditDeferred.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return 0
    for row in rows:
        fields = {column: getattr(row, column) for column in _DEFERRED_COLUMNS}
        _append(session, AuditEntry(id=row.entry_id, **fields))
    await session.execute(
        delete(AuditDeferred).where(AuditDeferred.id.in_([row.id for row in rows]))
    )
    return len(rows)


def _deferred_fields() -> list[Any]:
    return [getattr(AuditDeferred, column) for column in _DEFERRED_COLUMNS]


async def deferred_count(session: AsyncSession) -> int:
    """How many entries wait for `chain_deferred`."""
    return int(
        (await session.execute(select(func.count()).select_from(AuditDeferred))).scalar_one()
    )


async def write_pending_entries(session: AsyncSession) -> None:
    """Chain and insert this transaction's recorded entries now rather than at commit (for a
    caller that reads the log back in the same transaction); takes the chain head's lock."""
    await session.run_sync(_chain_pending)


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
