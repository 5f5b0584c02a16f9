"""Reads that summarise an account's credits for display: what moved day by day (granted,
spent, expired, clawed back) and the lots with credits left. Each is one statement.

A day's movements come from the ledger: the entries of the account's `main` and `held` credit
accounts, summed per UTC day and transaction kind. Summed over both accounts a hold and its
release come to nothing (credits only moved from `main` to `held` and back), and a capture
comes to exactly what it spent, so a reservation is never counted as spending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.credits.models import HELD, CreditLot
from billfold.credits.service import _spend_order
from billfold.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from billfold.ledger.schemas import CREDITS
from billfold.ledger.service import MAIN

lots = cast(Table, CreditLot.__table__)
ledger_accounts = cast(Table, LedgerAccount.__table__)
entries = cast(Table, LedgerEntry.__table__)
transactions = cast(Table, LedgerTransaction.__table__)

EXPIRY_KIND = "credit_expiry"
CLAWBACK_KIND = "credit_clawback"


@dataclass(frozen=True, slots=True)
class DayMovements:
    """One UTC day's credits: granted, spent, expired and clawed back (each >= 0)."""

    day: date
    granted: int = 0
    spent: int = 0
    expired: int = 0
    clawed_back: int = 0


def _day_of(session: AsyncSession, column: Any) -> Any:
    """`column`'s UTC day as 'YYYY-MM-DD' text, on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)  # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS...'


async def daily_movements(
    session: AsyncSession, account_id: str, *, days: int, now: datetime
) -> list[DayMovements]:
    """The account's credit movements of the last `days` UTC days up to `now` (oldest first,
    every day present, quiet days as zeros): one grouped query."""
    first = (now - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day, tzinfo=now.tzinfo)
    day = _day_of(session, transactions.c.created_at)
    rows = await session.execute(
        select(day.label("day"), transactions.c.kind, func.sum(entries.c.amount))
        .select_from(
            entries.join(ledger_accounts, ledger_accounts.c.id == entries.c.account_id).join(
                transactions, transactions.c.id == entries.c.transaction_id
            )
        )
        .where(
            ledger_accounts.c.billing_account_id == account_id,
            ledger_accounts.c.unit == CREDITS,
            ledger_accounts.c.name.in_([MAIN, HELD]),
            transactions.c.created_at >= since,
            transactions.c.created_at <= now,
        )
        .group_by(day, transactions.c.kind)
    )
    totals: dict[str, dict[str, int]] = {}
    for found_day, kind, amount in rows:
        net = int(amount or 0)
        if net == 0:
            continue
        bucket = totals.setdefault(str(found_day), {})
        if kind == EXPIRY_KIND:
            name = "expired"
        elif kind == CLAWBACK_KIND:
            name = "clawed_back"
        else:
            name = "granted" if net > 0 else "spent"
        bucket[name] = bucket.get(name, 0) + abs(net)
    out = []
    for n in range(days):
        current = first + timedelta(days=n)
        out.append(DayMovements(current, **totals.get(current.isoformat(), {})))
    return out


@dataclass(frozen=True, slots=True)
class OpenLot:
    """A grant with credits left: where it came from, what is left, and until when."""

    id: int
    source: str
    granted: int
    remaining: int
    expires_at: datetime | None
    created_at: datetime


async def open_lots(
    session: AsyncSession, account_id: str, *, now: datetime, limit: int = 50
) -> list[OpenLot]:
    """The account's live lots with credits left (not expired by `now`, even where the sweep
    has not written them off yet), in the order they are spent (at most `limit`)."""
    rows = await session.execute(
        select(
            lots.c.id,
            lots.c.source,
            lots.c.granted,
            lots.c.remaining,
            lots.c.expires_at,
            lots.c.created_at,
        )
        .where(
            lots.c.account_id == account_id,
            lots.c.remaining > 0,
            or_(lots.c.expires_at.is_(None), lots.c.expires_at > now),
        )
        .order_by(*_spend_order())
        .limit(limit)
    )
    return [
        OpenLot(
            id=int(r.id),
            source=r.source,
            granted=int(r.granted),
            remaining=int(r.remaining),
            expires_at=r.expires_at,
            created_at=r.created_at,
        )
        for r in rows
    ]
