"""Walking the audit chain: the first entry that was altered, removed or inserted."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import CHAIN_HEAD_ID, GENESIS_HASH, AuditChainHead, AuditEntry
from billfold.audit.service import hash_of

_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ChainReport:
    """`ok`, how many entries were checked, and the first broken link (`broken_seq`,
    `reason`) when not ok."""

    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str | None = None


async def verify_chain(session: AsyncSession) -> ChainReport:
    """Recompute every entry's hash in order and check each links to the one before it, that
    the sequence has no gaps, and that the chain head names the last entry (a deleted tail)."""
    head = (
        await session.execute(
            select(AuditChainHead.seq, AuditChainHead.entry_hash).where(
                AuditChainHead.id == CHAIN_HEAD_ID
            )
        )
    ).one_or_none()
    # Entries appended while we walk are beyond the head we read, and are left for next time.
    head_seq = int(head.seq) if head is not None else None
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    while True:
        stmt = (
            select(AuditEntry)
            .where(AuditEntry.seq >= expected_seq)
            .order_by(AuditEntry.seq)
            .limit(_BATCH)
        )
        if head_seq is not None:
            stmt = stmt.where(AuditEntry.seq <= head_seq)
        batch = (await session.execute(stmt)).scalars().all()
        for entry in batch:
            if entry.seq != expected_seq:
                return ChainReport(
                    False, checked, expected_seq, f"entry {expected_seq} is missing (deleted)"
                )
            if entry.prev_hash != prev_hash:
                return ChainReport(
                    False,
                    checked,
                    entry.seq,
                    f"entry {entry.seq} does not link to entry {entry.seq - 1}",
                )
            if hash_of(entry) != entry.entry_hash:
                return ChainReport(
                    False, checked, entry.seq, f"entry {entry.seq} was altered (hash mismatch)"
                )
            checked += 1
            expected_seq += 1
            prev_hash = entry.entry_hash
        session.expunge_all()
        if len(batch) < _BATCH:
            break
    if head is None:
        if checked:
            return ChainReport(False, checked, 1, "the chain head is missing")
        return ChainReport(True, 0)
    if head_seq != checked:
        return ChainReport(
            False,
            checked,
            checked + 1,
            f"entries {checked + 1} to {head_seq} are missing (deleted)",
        )
    if head.entry_hash != prev_hash:
        return ChainReport(False, checked, checked, f"entry {checked} differs from the chain head")
    # One statement, one snapshot: entries beyond the head were inserted behind its back.
    newest, now_head = (
        await session.execute(
            select(
                func.max(AuditEntry.seq),
                select(AuditChainHead.seq)
                .where(AuditChainHead.id == CHAIN_HEAD_ID)
                .scalar_subquery(),
            )
        )
    ).one()
    if newest is not None and now_head is not None and newest > now_head:
        return ChainReport(
            False, checked, int(now_head) + 1, f"entry {int(now_head) + 1} is not in the chain"
        )
    return ChainReport(True, checked)
