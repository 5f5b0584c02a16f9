"""Walking the audit chain: the first entry that was altered, removed or inserted.

A hash chain alone shows tampering by anyone who does not rewrite the rest of the chain after
it; someone with write access to the database could recompute every later hash. Anchors close
that gap: `billfold audit head` prints the newest `SEQ:HASH`, kept somewhere the database's
writers cannot reach (a ticket, a log shipped elsewhere), and `billfold audit verify --anchor
SEQ:HASH` then refuses a chain rewritten at or before that entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import CHAIN_HEAD_ID, GENESIS_HASH, AuditChainHead, AuditEntry
from billfold.audit.service import hash_of
from billfold.errors import ValidationFailed

_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ChainReport:
    """`ok`, how many entries were checked, and the first broken link (`broken_seq`,
    `reason`) when not ok."""

    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Anchor:
    """An entry's hash recorded outside the database: `SEQ:HASH`."""

    seq: int
    entry_hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, sep, entry_hash = text.strip().partition(":")
        entry_hash = entry_hash.lower()
        if (
            not sep
            or not (seq.isascii() and seq.isdigit())
            or int(seq) < 1
            or len(entry_hash) != 64
            or any(c not in "0123456789abcdef" for c in entry_hash)
        ):
            raise ValidationFailed("an anchor looks like SEQ:HASH (64 hex digits)", field="anchor")
        return cls(int(seq), entry_hash)

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry_hash}"


async def _chain_head_row(session: AsyncSession) -> Row[int, str] | None:
    """The chain head's `seq` and `entry_hash`, None when the row is missing."""
    return (
        await session.execute(
            select(AuditChainHead.seq, AuditChainHead.entry_hash).where(
                AuditChainHead.id == CHAIN_HEAD_ID
            )
        )
    ).one_or_none()


async def chain_head(session: AsyncSession) -> Anchor | None:
    """The newest entry as an anchor, None while the log is empty."""
    row = await _chain_head_row(session)
    if row is None or not row.seq:
        return None
    return Anchor(int(row.seq), str(row.entry_hash))


async def verify_chain(session: AsyncSession, anchors: Sequence[Anchor] = ()) -> ChainReport:
    """Recompute every entry's hash in order and check each links to the one before it, that
    the sequence has no gaps, that the chain head names the last entry (a deleted tail), and
    that every anchored entry still has the hash recorded for it."""
    anchored = {anchor.seq: anchor.entry_hash for anchor in anchors}
    head = await _chain_head_row(session)
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
            if anchored.get(entry.seq, entry.entry_hash) != entry.entry_hash:
                return ChainReport(
                    False,
                    checked,
                    entry.seq,
                    f"entry {entry.seq} differs from its anchor (the chain was rewritten)",
                )
            checked += 1
            expected_seq += 1
            prev_hash = entry.entry_hash
        session.expunge_all()
        if len(batch) < _BATCH:
            break
    beyond = sorted(seq for seq in anchored if seq > checked)
    if beyond:
        return ChainReport(False, checked, beyond[0], f"anchored entry {beyond[0]} is missing")
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
