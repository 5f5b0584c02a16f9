"""`billfold ledger verify`: recompute what the ledger maintains and report every difference.

Checks, each a full pass over the tables:
- every account's maintained balance equals the sum of its entries;
- every account's last entry's running balance equals its balance;
- every transaction's entries sum to zero per unit, and it has entries at all;
- every entry's unit is its account's unit;
- every transaction's fingerprint matches its stored content (finds an entry or a description
  altered behind the ledger's back even when the balances were adjusted to hide it).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.ledger.schemas import EntryLine
from billfold.ledger.service import (
    accounts,
    entries_table,
    transaction_fingerprint,
    transactions,
)

_BATCH = 1000


@dataclass(frozen=True, slots=True)
class LedgerProblem:
    """One difference found: what kind, where, and a sentence for a person."""

    kind: str
    message: str
    account_id: int | None = None
    transaction_id: int | None = None
    expected: int | None = None
    actual: int | None = None


async def verify_ledger(session: AsyncSession, *, fingerprints: bool = True) -> list[LedgerProblem]:
    """Every inconsistency in the ledger (an empty list when it is sound).

    `fingerprints=False` leaves out the per-transaction content check (the one pass done in
    Python), keeping the balance and sum checks the database computes.
    """
    problems: list[LedgerProblem] = []
    problems += await _balances_against_entries(session)
    problems += await _running_balances(session)
    problems += await _unbalanced_transactions(session)
    problems += await _entry_units(session)
    if fingerprints:
        problems += await _fingerprints(session)
    return problems


async def _balances_against_entries(session: AsyncSession) -> list[LedgerProblem]:
    sums = (
        select(entries_table.c.account_id, func.sum(entries_table.c.amount).label("total"))
        .group_by(entries_table.c.account_id)
        .subquery()
    )
    computed = func.coalesce(sums.c.total, 0)
    rows = await session.execute(
        select(accounts.c.id, accounts.c.key, accounts.c.balance, computed.label("computed"))
        .outerjoin(sums, sums.c.account_id == accounts.c.id)
        .where(accounts.c.balance != computed)
        .order_by(accounts.c.id)
    )
    return [
        _balance_problem(
            "balance_mismatch", row, f"its entries sum to {row.computed}", int(row.computed)
        )
        for row in rows
    ]


async def _running_balances(session: AsyncSession) -> list[LedgerProblem]:
    last = (
        select(entries_table.c.account_id, func.max(entries_table.c.id).label("entry_id"))
        .group_by(entries_table.c.account_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            accounts.c.id,
            accounts.c.key,
            accounts.c.balance,
            entries_table.c.id.label("entry_id"),
            entries_table.c.balance_after,
        )
        .join(last, last.c.account_id == accounts.c.id)
        .join(entries_table, entries_table.c.id == last.c.entry_id)
        .where(entries_table.c.balance_after != accounts.c.balance)
        .order_by(accounts.c.id)
    )
    return [
        _balance_problem(
            "running_balance_mismatch",
            row,
            f"its last entry {row.entry_id} says {row.balance_after}",
            int(row.balance_after),
        )
        for row in rows
    ]


def _balance_problem(kind: str, account: Any, says: str, expected: int) -> LedgerProblem:
    """An account whose maintained balance is not what `says` (the recomputed `expected`)."""
    return LedgerProblem(
        kind=kind,
        message=f"account {account.id} ({account.key}) holds {account.balance} but {says}",
        account_id=account.id,
        expected=expected,
        actual=int(account.balance),
    )


async def _unbalanced_transactions(session: AsyncSession) -> list[LedgerProblem]:
    problems: list[LedgerProblem] = []
    total = func.sum(entries_table.c.amount)
    rows = await session.execute(
        select(entries_table.c.transaction_id, entries_table.c.unit, total.label("total"))
        .group_by(entries_table.c.transaction_id, entries_table.c.unit)
        .having(total != 0)
        .order_by(entries_table.c.transaction_id)
    )
    for row in rows:
        problems.append(
            LedgerProblem(
                kind="unbalanced_transaction",
                message=(
                    f"transaction {row.transaction_id}: its {row.unit} entries sum to "
                    f"{row.total}, not 0"
                ),
                transaction_id=row.transaction_id,
                expected=0,
                actual=int(row.total),
            )
        )
    empty = await session.execute(
        select(transactions.c.id)
        .where(
            ~select(entries_table.c.id)
            .where(entries_table.c.transaction_id == transactions.c.id)
            .exists()
        )
        .order_by(transactions.c.id)
    )
    for (transaction_id,) in empty:
        problems.append(
            LedgerProblem(
                kind="empty_transaction",
                message=f"transaction {transaction_id} has no entries",
                transaction_id=transaction_id,
            )
        )
    return problems


async def _entry_units(session: AsyncSession) -> list[LedgerProblem]:
    rows = await session.execute(
        select(
            entries_table.c.id,
            entries_table.c.transaction_id,
            entries_table.c.account_id,
            entries_table.c.unit,
            accounts.c.unit.label("account_unit"),
        )
        .join(accounts, accounts.c.id == entries_table.c.account_id)
        .where(entries_table.c.unit != accounts.c.unit)
        .order_by(entries_table.c.id)
    )
    return [
        LedgerProblem(
            kind="unit_mismatch",
            message=(
                f"entry {row.id} of transaction {row.transaction_id} counts {row.unit} on "
                f"account {row.account_id}, which counts {row.account_unit}"
            ),
            account_id=row.account_id,
            transaction_id=row.transaction_id,
        )
        for row in rows
    ]


async def _fingerprints(session: AsyncSession) -> list[LedgerProblem]:
    """Recompute each transaction's fingerprint from its stored content, in batches by id."""
    problems: list[LedgerProblem] = []
    after = 0
    while True:
        batch = (
            await session.execute(
                select(
                    transactions.c.id,
                    transactions.c.kind,
                    transactions.c.description,
                    transactions.c.metadata,
                    transactions.c.fingerprint,
                )
                .where(transactions.c.id > after)
                .order_by(transactions.c.id)
                .limit(_BATCH)
            )
        ).all()
        if not batch:
            return problems
        first, after = batch[0].id, batch[-1].id
        lines: dict[int, list[EntryLine]] = defaultdict(list)
        entry_rows = await session.execute(
            select(
                entries_table.c.transaction_id,
                entries_table.c.account_id,
                entries_table.c.unit,
                entries_table.c.amount,
            ).where(entries_table.c.transaction_id.between(first, after))
        )
        for entry in entry_rows:
            lines[entry.transaction_id].append(
                EntryLine(account_id=entry.account_id, unit=entry.unit, amount=entry.amount)
            )
        for tx in batch:
            metadata: dict[str, Any] = tx.metadata or {}
            recomputed = transaction_fingerprint(
                tx.kind, tx.description, metadata, lines.get(tx.id, [])
            )
            if recomputed != tx.fingerprint:
                problems.append(
                    LedgerProblem(
                        kind="fingerprint_mismatch",
                        message=(
                            f"transaction {tx.id}: its entries or description changed after "
                            "it was posted (the fingerprint no longer matches)"
                        ),
                        transaction_id=tx.id,
                    )
                )
