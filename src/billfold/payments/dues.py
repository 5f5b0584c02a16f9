"""Dues: what an account owes, per currency, kept in the ledger.

Each account has two ledger accounts per currency:

- `dues`: owed and payable now (the settled dues `pay-balance` and autopay charge);
- `dues_pending`: owed but covered by a payment in flight (a bank debit Stripe has not settled,
  a charge waiting for 3-D Secure, or a payment being tried right now).

A charge moves money from the system's `revenue` into `dues`; a payment first moves the dues it
pays into `dues_pending` (the reservation: the ledger's guarded update refuses to move the same
dues twice), then out to `stripe_clearing` when Stripe says it succeeded, or back into `dues`
when it failed. A refund moves money from `stripe_clearing` to the account's `refunded`; a
dispute withdraws it to `disputes` and, lost, re-opens the dues (won, it goes back).
Every posting's idempotency key is derived from billfold's or Stripe's ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock
from billfold.errors import ValidationFailed
from billfold.ledger import (
    AccountRef,
    PostedTransaction,
    SystemAccount,
    customer_account,
    find_ledger_account,
    shard_for,
    system_account,
    transfer,
)
from billfold.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from billfold.money import normalize_currency

DUES = "dues"
DUES_PENDING = "dues_pending"
REFUNDED = "refunded"
DISPUTES = "disputes"
CUSTOMER_ACCOUNTS = (DUES, DUES_PENDING, REFUNDED)
# The largest single charge accepted (minor units): 1,000,000.00 in a two-decimal currency.
MAX_CHARGE = 100_000_000


@dataclass(frozen=True, slots=True)
class CurrencyDues:
    """What an account owes in one currency: `settled` is payable now, `pending` is covered
    by a payment Stripe has not finished (a bank debit processing, 3-D Secure waiting)."""

    currency: str
    settled: int
    pending: int

    @property
    def total(self) -> int:
        return self.settled + self.pending


def check_amount(amount: object, currency: object) -> tuple[int, str]:
    """A positive whole number of minor units, at most MAX_CHARGE, in a known currency."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValidationFailed(
            "amount must be a positive whole number of minor units", field="amount"
        )
    if amount > MAX_CHARGE:
        raise ValidationFailed(f"amount must be at most {MAX_CHARGE} minor units", field="amount")
    if not isinstance(currency, str):
        raise ValidationFailed("currency must be an ISO 4217 code such as usd", field="currency")
    try:
        return amount, normalize_currency(currency)
    except ValueError as exc:
        raise ValidationFailed(f"unknown currency {currency!r}", field="currency") from exc


async def dues_of(session: AsyncSession, account_id: str) -> list[CurrencyDues]:
    """Every currency the account owes or has owed in: settled and pending dues. One read."""
    rows = await session.execute(
        select(LedgerAccount.name, LedgerAccount.unit, LedgerAccount.balance).where(
            LedgerAccount.billing_account_id == account_id,
            LedgerAccount.name.in_((DUES, DUES_PENDING)),
        )
    )
    return dues_from_balances(rows)


def dues_from_balances(rows: Iterable[tuple[str, str, int]]) -> list[CurrencyDues]:
    """The dues per currency from the (name, unit, balance) of an account's `dues` and
    `dues_pending` ledger accounts (read by `dues_of`, or by the credit balance's hot read)."""
    by_currency: dict[str, dict[str, int]] = {}
    for name, unit, balance in rows:
        by_currency.setdefault(unit, {DUES: 0, DUES_PENDING: 0})[name] = int(balance)
    return [
        CurrencyDues(currency=unit, settled=found[DUES], pending=found[DUES_PENDING])
        for unit, found in sorted(by_currency.items())
    ]


async def currency_dues(session: AsyncSession, account_id: str, currency: str) -> CurrencyDues:
    for found in await dues_of(session, account_id):
        if found.currency == currency:
            return found
    return CurrencyDues(currency=currency, settled=0, pending=0)


async def dues_marker(session: AsyncSession, account_id: str, currency: str) -> str | None:
    """What identifies the account's settled dues now: their ledger account and its newest
    entry. A payment of them gets its id from this, so two runs over the same dues make one
    payment, and dues that changed (a new charge, a failed payment re-opening them) a new one."""
    dues = await find_ledger_account(
        session, billing_account_id=account_id, name=DUES, unit=currency
    )
    if dues is None:
        return None
    newest = (
        await session.execute(
            select(func.max(LedgerEntry.id)).where(LedgerEntry.account_id == dues.id)
        )
    ).scalar_one()
    return f"{dues.id}:{newest}"


def payment_id_for_dues(account_id: str, currency: str, marker: str) -> str:
    digest = hashlib.sha256(f"{account_id}:{currency}:{marker}".encode()).hexdigest()
    return f"pay_{digest[:32]}"


async def _move(
    session: AsyncSession,
    account_id: str,
    currency: str,
    *,
    source: str,
    destination: str,
    amount: int,
    key: str,
    kind: str,
    clock: Clock,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> PostedTransaction:
    """Move `amount` between two of the account's ledger accounts or a system account
    (`system:<name>`)."""

    async def ref(name: str) -> AccountRef:
        if name.startswith("system:"):
            return await system_account(
                session,
                name.removeprefix("system:"),
                currency,
                clock=clock,
                spread_by=shard_for(account_id),
            )
        return await customer_account(session, account_id, unit=currency, name=name, clock=clock)

    return await transfer(
        session,
        source=await ref(source),
        destination=await ref(destination),
        amount=amount,
        idempotency_key=key,
        kind=kind,
        description=description,
        metadata={"billing_account_id": account_id, **(metadata or {})},
        clock=clock,
    )


REVENUE = f"system:{SystemAccount.REVENUE}"
CLEARING = f"system:{SystemAccount.STRIPE_CLEARING}"
SYSTEM_DISPUTES = f"system:{DISPUTES}"


async def add_charge(
    session: AsyncSession,
    account_id: str,
    *,
    amount: int,
    currency: str,
    charge_id: str,
    description: str | None,
    clock: Clock,
) -> PostedTransaction:
    """Add a charge to the account's settled dues (idempotent per `charge_id`)."""
    return await _move(
        session,
        account_id,
        currency,
        source=REVENUE,
        destination=DUES,
        amount=amount,
        key=f"dues_charge:{charge_id}",
        kind="dues_charge",
        clock=clock,
        description=description,
        metadata={"charge_id": charge_id},
    )


async def reserve_dues(
    session: AsyncSession,
    account_id: str,
    currency: str,
    amount: int,
    payment_id: str,
    clock: Clock,
) -> None:
    """The dues a payment pays move to pending (InsufficientBalance if they moved already)."""
    await _move(
        session,
        account_id,
        currency,
        source=DUES,
        destination=DUES_PENDING,
        amount=amount,
        key=f"payment_reserve:{payment_id}",
        kind="payment_reserved",
        clock=clock,
        metadata={"payment_id": payment_id},
    )


async def reserve_one_off(
    session: AsyncSession,
    account_id: str,
    currency: str,
    amount: int,
    payment_id: str,
    description: str | None,
    clock: Clock,
) -> None:
    """A one-off charge is owed (pending) while it is paid."""
    await _move(
        session,
        account_id,
        currency,
        source=REVENUE,
        destination=DUES_PENDING,
        amount=amount,
        key=f"one_off_charge:{payment_id}",
        kind="one_off_charge",
        clock=clock,
        description=description,
        metadata={"payment_id": payment_id},
    )


async def settle(
    session: AsyncSession,
    account_id: str,
    currency: str,
    amount: int,
    payment_id: str,
    clock: Clock,
) -> None:
    """Stripe says the payment succeeded: its pending dues are paid."""
    await _move(
        session,
        account_id,
        currency,
        source=DUES_PENDING,
        destination=CLEARING,
        amount=amount,
        key=f"payment_settle:{payment_id}",
        kind="payment_succeeded",
        clock=clock,
        metadata={"payment_id": payment_id},
    )


async def release(
    session: AsyncSession,
    account_id: str,
    currency: str,
    amount: int,
    payment_id: str,
    *,
    one_off: bool,
    clock: Clock,
) -> None:
    """The payment failed: dues re-open (a one-off charge is voided)."""
    await _move(
        session,
        account_id,
        currency,
        source=DUES_PENDING,
        destination=REVENUE if one_off else DUES,
        amount=amount,
        key=f"payment_release:{payment_id}",
        kind="payment_failed",
        clock=clock,
        metadata={"payment_id": payment_id},
    )


async def refund(
    session: AsyncSession,
    account_id: str,
    currency: str,
    amount: int,
    payment_id: str,
    refunded_total: int,
    clock: Clock,
) -> None:
    """Money returned to the customer (one posting per cumulative refunded total)."""
    await _move(
        session,
        account_id,
        currency,
        source=CLEARING,
        destination=REFUNDED,
        amount=amount,
        key=f"payment_refund:{payment_id}:{refunded_total}",
        kind="payment_refunded",
        clock=clock,
        metadata={"payment_id": payment_id},
    )


async def dispute_withdrawn(
    session: AsyncSession,
    account_id: str,
    currency: str,
    amount: int,
    dispute_id: str,
    payment_id: str,
    clock: Clock,
) -> None:
    await _move(
        session,
        account_id,
        currency,
        source=CLEARING,
        destination=SYSTEM_DISPUTES,
        amount=amount,
        key=f"dispute_withdrawn:{dispute_id}",
        kind="dispute_opened",
        clock=clock,
        metadata={"payment_id": payment_id, "dispute_id": dispute_id},
    )


async def dispute_closed(
    session: AsyncSession,
    account_id: str,
    currency: str,
    amount: int,
    dispute_id: str,
    payment_id: str,
    *,
    won: bool,
    clock: Clock,
) -> None:
    """Won: the money comes back (reinstated). Lost: the dues it paid are owed again."""
    await _move(
        session,
        account_id,
        currency,
        source=SYSTEM_DISPUTES,
        destination=CLEARING if won else DUES,
        amount=amount,
        key=f"dispute_{'won' if won else 'lost'}:{dispute_id}",
        kind="dispute_won" if won else "dispute_lost",
        clock=clock,
        metadata={"payment_id": payment_id, "dispute_id": dispute_id},
    )


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """One movement on one of the account's money accounts, with that account's balance
    right after it (the running balance)."""

    entry_id: int
    account: str  # dues | dues_pending | refunded
    kind: str
    description: str | None
    amount: int
    currency: str
    balance_after: int
    payment_id: str | None
    created_at: Any


async def ledger_page(
    session: AsyncSession, account_id: str, *, limit: int, before: int | None = None
) -> list[LedgerLine]:
    """The account's money movements, newest first, `limit` at a time before entry `before`."""

    stmt = (
        select(
            LedgerEntry.id,
            LedgerAccount.name,
            LedgerTransaction.kind,
            LedgerTransaction.description,
            LedgerEntry.amount,
            LedgerEntry.unit,
            LedgerEntry.balance_after,
            LedgerTransaction.meta,
            LedgerTransaction.created_at,
        )
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerAccount.billing_account_id == account_id,
            LedgerAccount.name.in_(CUSTOMER_ACCOUNTS),
        )
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
    )
    if before is not None:
        stmt = stmt.where(LedgerEntry.id < before)
    return [
        LedgerLine(
            entry_id=entry_id,
            account=name,
            kind=kind,
            description=description,
            amount=amount,
            currency=unit,
            balance_after=balance_after,
            payment_id=(metadata or {}).get("payment_id"),
            created_at=created_at,
        )
        for (
            entry_id,
            name,
            kind,
            description,
            amount,
            unit,
            balance_after,
            metadata,
            created_at,
        ) in await session.execute(stmt)
    ]
