"""Helpers for the ledger tests: billing accounts to post to, and reading what was written."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from billfold.clock import Clock
from billfold.customers.models import AccountKind
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.ledger.models import LedgerEntry, LedgerTransaction


async def new_customer(db: Database, external_id: str) -> str:
    """A billing account id for user `external_id` (committed)."""
    async with db.transaction() as session:
        account = await get_or_create_account(
            session, AccountKind.USER, external_id, currency="usd"
        )
        return account.id


@dataclass
class Counts:
    transactions: int
    entries: int


async def ledger_counts(db: Database) -> Counts:
    async with db.transaction() as session:
        transactions = (
            await session.execute(select(func.count()).select_from(LedgerTransaction))
        ).scalar_one()
        entries = (
            await session.execute(select(func.count()).select_from(LedgerEntry))
        ).scalar_one()
    return Counts(transactions, entries)


async def entries_sum(db: Database, account_id: int) -> int:
    async with db.transaction() as session:
        total = (
            await session.execute(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.account_id == account_id
                )
            )
        ).scalar_one()
    return int(total)


__all__ = ["Clock", "Counts", "entries_sum", "ledger_counts", "new_customer"]
