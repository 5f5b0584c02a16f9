"""The credit engine, on the ledger: lots, usage debits, holds, grants, clawbacks and expiry.

Every movement of an account's credits runs, inside the caller's transaction, as:

1. `_lock_wallet`: `UPDATE credit_wallets SET version = version + 1 ... RETURNING version`. The
   row lock (held to the commit; on SQLite BEGIN IMMEDIATE already admits one writer) makes the
   account's movements take turns, so its lots are allocated by one writer at a time, and the
   version grows with every movement.
2. Lots whose expiry has passed are written off first (a ledger posting each), so what the
   ledger says is spendable is exactly what the live lots hold.
3. The ledger posting: the balance check is the ledger's guarded UPDATE (`balance + amount >= 0`
   on the locked row), never a read-check-write in Python; a refusal is InsufficientCredits (402)
   with the shortfall, and nothing is spent.
4. The lots the posting took, in spend order (highest priority, soonest expiry, oldest), each
   take a conditional UPDATE (`remaining >= n`, and a CHECK) and a `credit_lot_draws` row.

Invariant (checked by the tests): while the `main` balance is not negative, it equals the sum
of the live lots' `remaining`; a negative balance (a clawback of credits already spent) is
settled by the next grant before any of it becomes spendable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock
from billfold.credits.models import (
    HELD,
    CreditHold,
    CreditLot,
    CreditLotDraw,
    CreditWallet,
    HoldState,
)
from billfold.credits.threshold import TRIGGER_COLUMNS, note_balance
from billfold.credits.threshold import settings_table as trigger_table
from billfold.customers.service import AuditRecorder
from billfold.db.base import UTCDateTime
from billfold.db.dialect import insert_ignoring_conflict
from billfold.db.engine import dialect_name
from billfold.errors import (
    Conflict,
    IdempotencyConflict,
    InsufficientBalance,
    InsufficientCredits,
    NotFound,
    ValidationFailed,
)
from billfold.ledger.models import LedgerAccount
from billfold.ledger.schemas import CREDITS, EntryLine, PostedTransaction
from billfold.ledger.service import (
    MAIN,
    SystemAccount,
    account_key,
    balance_of,
    customer_account,
    debit_credits,
    post_transaction,
    shard_for,
    system_account,
)

wallets = cast(Table, CreditWallet.__table__)
lots = cast(Table, CreditLot.__table__)
draws = cast(Table, CreditLotDraw.__table__)
holds = cast(Table, CreditHold.__table__)
ledger_accounts = cast(Table, LedgerAccount.__table__)

MAX_CREDITS = 10**12  # far above any sane amount; the routes apply tighter limits
MAX_HOLD_SECONDS = 30 * 24 * 3600
DEFAULT_HOLD_SECONDS = 3600
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's credits: spendable (`credits`, negative after a clawback of spent credits),
    reserved by holds (`held`), and the version that only grows."""

    credits: int
    held: int
    version: int


@dataclass(frozen=True, slots=True)
class Movement:
    """What a movement did: the balance after it, the version, the ledger transaction and the
    lots it took (lot id, credits)."""

    balance: int
    version: int
    transaction_id: int | None
    replayed: bool
    lots: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class HoldView:
    id: str
    amount: int
    captured: int
    state: str
    description: str | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


def check_credits(value: Any, *, field: str = "credits", maximum: int = MAX_CREDITS) -> int:
    """A positive whole number of credits no larger than `maximum`, else ValidationFailed."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{field} must be a whole number of credits", field=field)
    if value <= 0:
        raise ValidationFailed(f"{field} must be a positive number of credits", field=field)
    if value > maximum:
        raise ValidationFailed(f"{field} must be at most {maximum} credits", field=field)
    return value


def check_expiry(value: Any, now: datetime, *, field: str = "expires_at") -> datetime | None:
    """A grant's optional expiry (`expires_at` in the API, the CLI's `--expires-at`): None, an
    aware datetime, or ISO 8601 text with its offset, in the future (in UTC); else
    ValidationFailed naming `field`."""
    if value is None:
        return None
    found = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            found = datetime.fromisoformat(value)
        except ValueError:
            found = None
    if found is None or found.tzinfo is None:
        raise ValidationFailed(
            f"{field} must be an ISO 8601 time with its offset (2026-12-31T23:59:59Z)",
            field=field,
        )
    if found <= now:
        raise ValidationFailed(f"{field} must be in the future", field=field)
    return found.astimezone(UTC)


def _check_key(key: Any, field: str = "idempotencyKey") -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or "\x00" in key:
        raise ValidationFailed("an idempotency key of 1 to 200 characters is required", field=field)
    return key


# --- the wallet: the account's lock and version --------------------------------------------


# Statements of the usage path, built once (no construction nor cache key per debit): their
# values are bound at execution.
_BUMP_WALLET = (
    update(wallets)
    .where(wallets.c.account_id == bindparam("wallet"))
    .values(version=wallets.c.version + 1, updated_at=bindparam("now", type_=UTCDateTime))
    .returning(wallets.c.version)
)


async def _lock_wallet(session: AsyncSession, account_id: str, clock: Clock) -> int:
    """Take the account's credits lock (to the commit) and bump its version; returns it."""
    now = clock.now()
    bump = {"wallet": account_id, "now": now}
    version = (await session.execute(_BUMP_WALLET, bump)).scalar_one_or_none()
    if version is None:
        await insert_ignoring_conflict(
            session,
            wallets,
            {"account_id": account_id, "version": 0, "created_at": now, "updated_at": now},
            ["account_id"],
        )
        version = (await session.execute(_BUMP_WALLET, bump)).scalar_one()
    return int(version)


async def touch_wallet(session: AsyncSession, account_id: str, clock: Clock) -> int:
    """Bump the account's version for a change of its history that moves no credits (a
    purchase going pending or failing, a mirrored invoice): cached reads see it at once."""
    return await _lock_wallet(session, account_id, clock)


async def wallet_version(session: AsyncSession, account_id: str) -> int:
    found = (
        await session.execute(select(wallets.c.version).where(wallets.c.account_id == account_id))
    ).scalar_one_or_none()
    return int(found or 0)


async def get_balance(session: AsyncSession, account_id: str) -> Balance:
    """The account's credits, held credits and version: one statement, one snapshot."""
    ledger = cast(Table, LedgerAccount.__table__)

    def balance(name: str) -> Any:
        key = account_key(account_id, name, CREDITS)
        return select(ledger.c.balance).where(ledger.c.key == key).scalar_subquery()

    version = select(wallets.c.version).where(wallets.c.account_id == account_id)
    row = (
        await session.execute(select(balance(MAIN), balance(HELD), version.scalar_subquery()))
    ).one()
    return Balance(credits=int(row[0] or 0), held=int(row[1] or 0), version=int(row[2] or 0))


# --- lots ----------------------------------------------------------------------------------


def _spend_order() -> tuple[Any, ...]:
    return (
        lots.c.priority.desc(),
        lots.c.expires_at.asc().nulls_last(),
        lots.c.created_at.asc(),
        lots.c.id.asc(),
    )


async def _live_lots(
    session: AsyncSession, account_id: str, now: datetime, *, first: int | None = None
) -> list[tuple[int, int]]:
    """(lot id, remaining) of the account's live lots in spend order (`first` leads)."""
    rows = (
        await session.execute(
            select(lots.c.id, lots.c.remaining)
            .where(
                lots.c.account_id == account_id,
                lots.c.remaining > 0,
                or_(lots.c.expires_at.is_(None), lots.c.expires_at > now),
            )
            .order_by(*_spend_order())
        )
    ).all()
    found = [(int(r.id), int(r.remaining)) for r in rows]
    if first is not None:
        found.sort(key=lambda lot: lot[0] != first)  # stable: the rest keep their order
    return found


@dataclass(frozen=True, slots=True)
class _SpendReads:
    live: list[tuple[int, int]] | None  # None: a lot has expired and is not written off
    ledger_ids: tuple[int, int] | None  # (main, its usage shard); None: not both created yet
    trigger: Any  # the auto top-up trigger's columns (NULL when the account has no settings)


def _ledger_id(key: str) -> Any:
    return (
        select(ledger_accounts.c.id)
        .where(ledger_accounts.c.key == bindparam(key))
        .scalar_subquery()
    )


_SPEND_READS = (
    select(
        lots.c.id,
        lots.c.remaining,
        lots.c.expires_at,
        _ledger_id("customer_key").label("customer_ledger_id"),
        _ledger_id("usage_key").label("usage_ledger_id"),
        *TRIGGER_COLUMNS,
    )
    .select_from(
        select(literal(1).label("one"))
        .subquery("one")
        .outerjoin(
            lots,
            and_(lots.c.account_id == bindparam("account_id"), lots.c.remaining > 0),
        )
        .outerjoin(trigger_table, trigger_table.c.account_id == bindparam("account_id"))
    )
    .order_by(*_spend_order())
)


async def _spend_reads(session: AsyncSession, account_id: str, now: datetime) -> _SpendReads:
    """What a usage debit reads under the wallet lock, in one statement: the account's lots
    with credits left, in spend order, each row also carrying the ids of the posting's two
    ledger accounts and the auto top-up's trigger (one row of NULL lot columns when there is
    no lot)."""
    parameters = {
        "account_id": account_id,
        "customer_key": account_key(account_id, MAIN, CREDITS),
        "usage_key": account_key(None, str(SystemAccount.USAGE), CREDITS, shard_for(account_id)),
    }
    rows = (await session.execute(_SPEND_READS, parameters)).all()
    first = rows[0]
    found = [r for r in rows if r.id is not None]
    expired = any(r.expires_at is not None and r.expires_at <= now for r in found)
    both = first.customer_ledger_id is not None and first.usage_ledger_id is not None
    return _SpendReads(
        live=None if expired else [(int(r.id), int(r.remaining)) for r in found],
        ledger_ids=(int(first.customer_ledger_id), int(first.usage_ledger_id)) if both else None,
        trigger=first,
    )


async def _take(
    session: AsyncSession,
    account_id: str,
    amount: int,
    *,
    reason: str,
    reference: str,
    now: datetime,
    first: int | None = None,
    live: list[tuple[int, int]] | None = None,
) -> tuple[tuple[int, int], ...]:
    """Take up to `amount` from the live lots in spend order (`live`: as just read under the
    wallet lock); each take is a conditional UPDATE and a draw row. Returns what was taken
    (less than `amount` only for a clawback)."""
    taken: list[tuple[int, int]] = []
    left = amount
    if live is None:
        live = await _live_lots(session, account_id, now, first=first)
    if live and live[0][1] >= amount and dialect_name(session) == "postgresql":
        # The usual debit: one lot covers it. Its UPDATE and its draw in one statement.
        lot_id = live[0][0]
        drawn = (
            await session.execute(
                _DRAW_FROM_ONE_LOT,
                {
                    "lot": lot_id,
                    "take": amount,
                    "draw_account_id": account_id,
                    "draw_amount": amount,
                    "draw_reason": reason,
                    "draw_reference": reference,
                    "draw_created_at": now,
                },
            )
        ).first()
        if drawn is None:  # pragma: no cover - the wallet lock prevents it
            raise Conflict("a credit lot changed under its account's lock; retry")
        return ((lot_id, amount),)
    for lot_id, remaining in live:
        if left <= 0:
            break
        take = min(left, remaining)
        moved = await session.execute(
            update(lots)
            .where(lots.c.id == lot_id, lots.c.remaining >= take)
            .values(remaining=lots.c.remaining - take)
        )
        if getattr(moved, "rowcount", 0) != 1:  # pragma: no cover - the wallet lock prevents it
            raise Conflict("a credit lot changed under its account's lock; retry")
        taken.append((lot_id, take))
        left -= take
    if taken:
        await session.execute(
            draws.insert(),
            [
                {
                    "lot_id": lot_id,
                    "account_id": account_id,
                    "amount": take,
                    "reason": reason,
                    "reference": reference,
                    "created_at": now,
                }
                for lot_id, take in taken
            ],
        )
    return tuple(taken)


def _draw_from_one_lot() -> Any:
    """PostgreSQL: take `amount` from one lot (a conditional UPDATE) and record the draw, in
    one statement; no row when the lot had less."""
    taken = (
        update(lots)
        .where(lots.c.id == bindparam("lot"), lots.c.remaining >= bindparam("take"))
        .values(remaining=lots.c.remaining - bindparam("take"))
        .returning(lots.c.id)
        .cte("taken")
    )
    columns = ("account_id", "amount", "reason", "reference", "created_at")
    return (
        insert(draws)
        .from_select(
            ["lot_id", *columns],
            select(
                taken.c.id,
                *(
                    bindparam(f"draw_{name}", type_=draws.c[name].type).label(name)
                    for name in columns
                ),
            ),
        )
        .returning(draws.c.lot_id)
    )


_DRAW_FROM_ONE_LOT = _draw_from_one_lot()


async def _give_back(
    session: AsyncSession,
    account_id: str,
    taken: Sequence[tuple[int, int]],
    *,
    reference: str,
    now: datetime,
) -> None:
    """Return credits to the lots they were taken from (a hold's uncaptured part)."""
    for lot_id, amount in taken:
        await session.execute(
            update(lots).where(lots.c.id == lot_id).values(remaining=lots.c.remaining + amount)
        )
    if taken:
        await session.execute(
            draws.insert(),
            [
                {
                    "lot_id": lot_id,
                    "account_id": account_id,
                    "amount": amount,
                    "reason": "restore",
                    "reference": reference,
                    "created_at": now,
                }
                for lot_id, amount in taken
            ],
        )


async def _empty_lot(
    session: AsyncSession,
    account_id: str,
    lot_id: int,
    remaining: int,
    *,
    reason: str,
    system: SystemAccount,
    description: str,
    metadata: Mapping[str, Any],
    clock: Clock,
    now: datetime,
    expired: bool = False,
) -> PostedTransaction:
    """Take what is left of a lot (expired, or a grant revoked) back to `system`: a ledger
    posting keyed by the lot and how often this happened to it (credits given back to the lot
    by a released hold may be taken again), the lot emptied, a draw recorded."""
    earlier = (
        await session.execute(
            select(func.count())
            .select_from(draws)
            .where(draws.c.lot_id == lot_id, draws.c.reason == reason)
        )
    ).scalar_one()
    key = f"credits-{reason}:{lot_id}:{earlier}"
    customer = await customer_account(session, account_id, clock=clock)
    other = await system_account(
        session, system, CREDITS, clock=clock, spread_by=shard_for(account_id)
    )
    posted = await post_transaction(
        session,
        idempotency_key=key,
        entries=[customer.line(-remaining), other.line(remaining)],
        kind=f"credit_{reason}",
        description=description,
        metadata=dict(metadata),
        clock=clock,
    )
    emptied: dict[str, Any] = {"remaining": 0}
    if expired:
        emptied["expired_at"] = now
    await session.execute(update(lots).where(lots.c.id == lot_id).values(**emptied))
    await session.execute(
        draws.insert().values(
            lot_id=lot_id,
            account_id=account_id,
            amount=remaining,
            reason=reason,
            reference=key,
            created_at=now,
        )
    )
    return posted


async def _expire_due_lots(
    session: AsyncSession,
    account_id: str,
    clock: Clock,
    audit: AuditRecorder | None,
    *,
    at: datetime | None = None,
) -> int:
    """Write off what is left of the account's lots whose expiry has passed (by `at`, default
    now): one ledger posting each (main -> expirations), the lot emptied, a draw recorded. Runs
    under the wallet lock. Returns the credits written off."""
    now = max(clock.now(), at) if at is not None else clock.now()
    due = (
        await session.execute(
            select(lots.c.id, lots.c.remaining, lots.c.expires_at)
            .where(
                lots.c.account_id == account_id,
                lots.c.remaining > 0,
                lots.c.expires_at.is_not(None),
                lots.c.expires_at <= now,
            )
            .order_by(lots.c.id)
        )
    ).all()
    total = 0
    for row in due:
        await _empty_lot(
            session,
            account_id,
            row.id,
            int(row.remaining),
            reason="expiry",
            system=SystemAccount.EXPIRATIONS,
            description="expired credits written off",
            metadata={"lot_id": row.id},
            clock=clock,
            now=now,
            expired=True,
        )
        total += row.remaining
        if audit is not None:
            await audit.record(
                session,
                "credits.expired",
                account_id=account_id,
                target=str(row.id),
                details={"credits": row.remaining, "expired_at": row.expires_at.isoformat()},
            )
    return total


# --- grants --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Granted:
    lot_id: int
    credits: int
    spendable: int  # what the lot holds after settling a negative balance
    balance: int
    version: int
    replayed: bool


async def grant(
    session: AsyncSession,
    *,
    account_id: str,
    credits: int,
    key: str,
    source: str,
    clock: Clock,
    audit: AuditRecorder,
    priority: int = 0,
    expires_at: datetime | None = None,
    system: SystemAccount = SystemAccount.PROMOTIONS,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Granted:
    """Grant `credits` as a lot (`key` names the grant: the same key grants once). A negative
    balance (credits clawed back after they were spent) is settled first: the lot holds only
    what is left."""
    check_credits(credits)
    check_expiry(expires_at, clock.now())
    version = await _lock_wallet(session, account_id, clock)
    existing = (
        await session.execute(select(lots.c.id, lots.c.granted).where(lots.c.key == key))
    ).first()
    if existing is not None:
        if existing.granted != credits:
            raise IdempotencyConflict("this grant key was used for another amount", field="key")
        return Granted(
            lot_id=int(existing.id),
            credits=credits,
            spendable=0,
            balance=await balance_of(session, account_id),
            version=version,
            replayed=True,
        )
    await _expire_due_lots(session, account_id, clock, audit)
    customer = await customer_account(session, account_id, clock=clock)
    other = await system_account(
        session, system, CREDITS, clock=clock, spread_by=shard_for(account_id)
    )
    posted = await post_transaction(
        session,
        idempotency_key=f"credits-grant:{key}",
        entries=[other.line(-credits), customer.line(credits)],
        kind=f"credit_grant:{source}",
        description=description,
        metadata={**(metadata or {}), "lot_key": key},
        clock=clock,
    )
    balance_after = _balance_after(posted, customer.id)
    spendable = min(credits, max(0, balance_after))
    now = clock.now()
    lot_id = (
        await session.execute(
            lots.insert()
            .values(
                account_id=account_id,
                key=key,
                source=source,
                granted=credits,
                remaining=spendable,
                priority=priority,
                expires_at=expires_at,
                ledger_transaction_id=posted.id,
                created_at=now,
            )
            .returning(lots.c.id)
        )
    ).scalar_one()
    if spendable < credits:
        await session.execute(
            draws.insert().values(
                lot_id=lot_id,
                account_id=account_id,
                amount=credits - spendable,
                reason="settle",
                reference=posted.idempotency_key,
                created_at=now,
            )
        )
    await audit.record(
        session,
        "credits.granted",
        account_id=account_id,
        target=key,
        details={
            "credits": credits,
            "source": source,
            "priority": priority,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "settled_negative_balance": credits - spendable,
            "ledger_transaction_id": posted.id,
        },
    )
    await note_balance(session, account_id, balance_after, clock)
    return Granted(
        lot_id=int(lot_id),
        credits=credits,
        spendable=spendable,
        balance=balance_after,
        version=version,
        replayed=False,
    )


def _balance_after(posted: PostedTransaction, account_id: int) -> int:
    return next(e.balance_after for e in posted.entries if e.account_id == account_id)


# --- usage ---------------------------------------------------------------------------------


def _usage_key(account_id: str, key: str) -> str:
    return f"usage:{account_id}:{key}"


def _shortfall(exc: InsufficientBalance, credits: int) -> InsufficientCredits:
    available = int(exc.details.get("balance", 0))
    return InsufficientCredits(
        f"not enough credits: {credits} needed, {max(available, 0)} available",
        field="credits",
        details={
            "required": credits,
            "available": max(available, 0),
            "shortfall": credits - max(available, 0),
        },
    )


async def spend(
    session: AsyncSession,
    *,
    account_id: str,
    credits: int,
    idempotency_key: str,
    clock: Clock,
    audit: AuditRecorder | None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Movement:
    """Spend `credits` now (usage). The same key spends once (a replay answers the current
    balance, `replayed`); the same key for another amount is IdempotencyConflict (409). Not
    enough credits: InsufficientCredits (402) with the shortfall, nothing spent."""
    check_credits(credits)
    key = _usage_key(account_id, _check_key(idempotency_key))
    version = await _lock_wallet(session, account_id, clock)
    now = clock.now()
    # One read, under the wallet lock: the lots to spend from (and whether any has expired
    # unwritten), the two ledger accounts of the posting, the auto top-up's trigger.
    reads = await _spend_reads(session, account_id, now)
    live = reads.live
    if live is None:
        await _expire_due_lots(session, account_id, clock, audit)
        live = await _live_lots(session, account_id, now)
    try:
        if reads.ledger_ids is None:  # the first movement: debit_credits creates them
            posted = await debit_credits(
                session,
                billing_account_id=account_id,
                credits=credits,
                idempotency_key=key,
                clock=clock,
                description=description,
                metadata=dict(metadata or {}),
            )
        else:  # what debit_credits posts, without reading the accounts again
            customer, usage = reads.ledger_ids
            posted = await post_transaction(
                session,
                idempotency_key=key,
                entries=[
                    EntryLine(customer, CREDITS, -credits),
                    EntryLine(usage, CREDITS, credits),
                ],
                kind="usage",
                description=description,
                metadata=dict(metadata or {}),
                clock=clock,
            )
    except InsufficientBalance as exc:
        raise _shortfall(exc, credits) from exc
    except IdempotencyConflict as exc:
        raise IdempotencyConflict(
            "this idempotency key was used for another usage event", field="idempotencyKey"
        ) from exc
    if posted.replayed:
        return Movement(
            balance=await balance_of(session, account_id),
            version=version,
            transaction_id=posted.id,
            replayed=True,
        )
    taken = await _take(
        session, account_id, credits, reason="usage", reference=key, now=now, live=live
    )
    balance = next(e.balance_after for e in posted.entries if e.amount < 0)
    await note_balance(session, account_id, balance, clock, trigger=reads.trigger)
    if audit is not None:
        # Deferred: chained by the audit.chain_deferred job, so usage debits never queue on
        # the audit chain head's lock (one INSERT here instead).
        await audit.record(
            session,
            "credits.spent",
            account_id=account_id,
            target=idempotency_key,
            details={"credits": credits, "balance": balance, "ledger_transaction_id": posted.id},
            deferred=True,
        )
    return Movement(
        balance=balance, version=version, transaction_id=posted.id, replayed=False, lots=taken
    )


@dataclass(frozen=True, slots=True)
class Check:
    allowed: bool
    credits: int
    available: int
    shortfall: int
    version: int


async def check_spend(session: AsyncSession, account_id: str, credits: int, now: datetime) -> Check:
    """Could `credits` be spent now? Reads only (the live lots, less what has expired)."""
    check_credits(credits)
    available = int(
        (
            await session.execute(
                select(func.coalesce(func.sum(lots.c.remaining), 0)).where(
                    lots.c.account_id == account_id,
                    lots.c.remaining > 0,
                    or_(lots.c.expires_at.is_(None), lots.c.expires_at > now),
                )
            )
        ).scalar_one()
    )
    balance = await balance_of(session, account_id)
    available = max(0, min(available, balance))
    return Check(
        allowed=available >= credits,
        credits=credits,
        available=available,
        shortfall=max(0, credits - available),
        version=await wallet_version(session, account_id),
    )


# --- holds ---------------------------------------------------------------------------------


def _hold_id(account_id: str, key: str) -> str:
    return "hold_" + hashlib.sha256(f"{account_id}|{key}".encode()).hexdigest()[:32]


def _hold_view(row: Any) -> HoldView:
    return HoldView(
        id=row.id,
        amount=int(row.amount),
        captured=int(row.captured),
        state=row.state,
        description=row.description,
        expires_at=row.expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _held_accounts(session: AsyncSession, account_id: str, clock: Clock) -> tuple[Any, Any]:
    main = await customer_account(session, account_id, clock=clock)
    held = await customer_account(session, account_id, name=HELD, clock=clock)
    return main, held


async def create_hold(
    session: AsyncSession,
    *,
    account_id: str,
    credits: int,
    idempotency_key: str,
    clock: Clock,
    audit: AuditRecorder,
    expires_in: int = DEFAULT_HOLD_SECONDS,
    description: str | None = None,
) -> tuple[HoldView, Movement]:
    """Reserve `credits` until captured, released or expired (`expires_in` seconds). The same
    key answers the same hold. Not enough credits: InsufficientCredits (402), nothing held."""
    check_credits(credits)
    key = _check_key(idempotency_key)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise ValidationFailed("expiresIn must be whole seconds", field="expiresIn")
    if not 1 <= expires_in <= MAX_HOLD_SECONDS:
        raise ValidationFailed(
            f"expiresIn must be 1 to {MAX_HOLD_SECONDS} seconds", field="expiresIn"
        )
    hold_id = _hold_id(account_id, key)
    version = await _lock_wallet(session, account_id, clock)
    existing = (await session.execute(select(holds).where(holds.c.id == hold_id))).first()
    if existing is not None:
        if existing.amount != credits:
            raise IdempotencyConflict(
                "this idempotency key was used for another hold", field="idempotencyKey"
            )
        return _hold_view(existing), Movement(
            balance=await balance_of(session, account_id),
            version=version,
            transaction_id=None,
            replayed=True,
        )
    await _expire_due_lots(session, account_id, clock, audit)
    main, held = await _held_accounts(session, account_id, clock)
    try:
        posted = await post_transaction(
            session,
            idempotency_key=f"hold:{hold_id}",
            entries=[main.line(-credits), held.line(credits)],
            kind="credit_hold",
            description=description,
            metadata={"hold_id": hold_id},
            clock=clock,
        )
    except InsufficientBalance as exc:
        raise _shortfall(exc, credits) from exc
    now = clock.now()
    taken = await _take(session, account_id, credits, reason="hold", reference=hold_id, now=now)
    await session.execute(
        holds.insert().values(
            id=hold_id,
            account_id=account_id,
            amount=credits,
            captured=0,
            state=HoldState.ACTIVE,
            description=description,
            expires_at=now + timedelta(seconds=expires_in),
            created_at=now,
            updated_at=now,
        )
    )
    await audit.record(
        session,
        "credits.hold_created",
        account_id=account_id,
        target=hold_id,
        details={"credits": credits, "expires_in": expires_in},
    )
    row = (await session.execute(select(holds).where(holds.c.id == hold_id))).one()
    balance = _balance_after(posted, main.id)
    await note_balance(session, account_id, balance, clock)
    return _hold_view(row), Movement(
        balance=balance, version=version, transaction_id=posted.id, replayed=False, lots=taken
    )


async def _settle_hold(
    session: AsyncSession,
    *,
    account_id: str,
    hold_id: str,
    capture: int,
    final_state: HoldState,
    clock: Clock,
    audit: AuditRecorder | None,
) -> tuple[HoldView, Movement]:
    """Capture `capture` of an active hold (0: release it) and give the rest back to its lots."""
    version = await _lock_wallet(session, account_id, clock)
    row = (
        await session.execute(
            select(holds).where(holds.c.id == hold_id, holds.c.account_id == account_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no hold {hold_id}", field="holdId")
    if row.state != HoldState.ACTIVE:
        raise Conflict(f"the hold is {row.state}: it can no longer be captured or released")
    now = clock.now()
    if final_state != HoldState.EXPIRED and row.expires_at <= now:
        raise Conflict("the hold has expired: its credits are being released")
    if capture > row.amount:
        raise ValidationFailed(
            f"a capture cannot take more than the hold's {row.amount} credits", field="credits"
        )
    changed = await session.execute(
        update(holds)
        .where(holds.c.id == hold_id, holds.c.state == HoldState.ACTIVE)
        .values(state=final_state, captured=capture, updated_at=now)
    )
    if getattr(changed, "rowcount", 0) != 1:  # pragma: no cover - the wallet lock prevents it
        raise Conflict("the hold changed meanwhile")
    rest = int(row.amount) - capture
    main, held = await _held_accounts(session, account_id, clock)
    entries: list[EntryLine] = [held.line(-int(row.amount))]
    if capture:
        usage = await system_account(
            session, SystemAccount.USAGE, CREDITS, clock=clock, spread_by=shard_for(account_id)
        )
        entries.append(usage.line(capture))
    if rest:
        entries.append(main.line(rest))
    posted = await post_transaction(
        session,
        idempotency_key=f"hold-settle:{hold_id}",
        entries=entries,
        kind="credit_hold_capture" if capture else "credit_hold_release",
        metadata={"hold_id": hold_id, "captured": capture, "state": str(final_state)},
        clock=clock,
    )
    if rest:
        # The captured part is what the first lots drawn gave; the rest goes back to the last.
        taken = (
            await session.execute(
                select(draws.c.lot_id, draws.c.amount)
                .where(draws.c.reference == hold_id, draws.c.reason == "hold")
                .order_by(draws.c.id)
            )
        ).all()
        skip = capture
        back: list[tuple[int, int]] = []
        for lot_id, amount in taken:
            keep = min(skip, int(amount))
            skip -= keep
            if int(amount) - keep:
                back.append((int(lot_id), int(amount) - keep))
        await _give_back(session, account_id, back, reference=hold_id, now=now)
        # Credits given back to a lot that expired meanwhile expire now.
        await _expire_due_lots(session, account_id, clock, audit)
    if audit is not None:
        await audit.record(
            session,
            f"credits.hold_{final_state}",
            account_id=account_id,
            target=hold_id,
            details={"held": int(row.amount), "captured": capture, "released": rest},
        )
    found = (await session.execute(select(holds).where(holds.c.id == hold_id))).one()
    balance = await balance_of(session, account_id)
    await note_balance(session, account_id, balance, clock)
    return _hold_view(found), Movement(
        balance=balance,
        version=version,
        transaction_id=posted.id,
        replayed=False,
    )


async def capture_hold(
    session: AsyncSession,
    *,
    account_id: str,
    hold_id: str,
    clock: Clock,
    audit: AuditRecorder,
    credits: int | None = None,
) -> tuple[HoldView, Movement]:
    """Spend `credits` of a hold (all of it by default) and release the rest. 409 when the
    hold was captured, released or has expired; 400 for more than it holds."""
    amount = None if credits is None else check_credits(credits)
    if amount is None:
        row = (
            await session.execute(
                select(holds.c.amount).where(
                    holds.c.id == hold_id, holds.c.account_id == account_id
                )
            )
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no hold {hold_id}", field="holdId")
        amount = int(row)
    return await _settle_hold(
        session,
        account_id=account_id,
        hold_id=hold_id,
        capture=amount,
        final_state=HoldState.CAPTURED,
        clock=clock,
        audit=audit,
    )


async def release_hold(
    session: AsyncSession, *, account_id: str, hold_id: str, clock: Clock, audit: AuditRecorder
) -> tuple[HoldView, Movement]:
    """Give a hold's credits back (409 when it was captured, released or has expired)."""
    return await _settle_hold(
        session,
        account_id=account_id,
        hold_id=hold_id,
        capture=0,
        final_state=HoldState.RELEASED,
        clock=clock,
        audit=audit,
    )


async def list_holds(
    session: AsyncSession, account_id: str, *, state: str | None = None, limit: int = 100
) -> list[HoldView]:
    stmt = select(holds).where(holds.c.account_id == account_id)
    if state is not None:
        stmt = stmt.where(holds.c.state == state)
    rows = await session.execute(stmt.order_by(holds.c.created_at.desc(), holds.c.id).limit(limit))
    return [_hold_view(r) for r in rows]


# --- clawback ------------------------------------------------------------------------------


async def claw_back(
    session: AsyncSession,
    *,
    account_id: str,
    credits: int,
    key: str,
    clock: Clock,
    audit: AuditRecorder,
    first_lot_key: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Movement:
    """Take back `credits` (a refund, a lost dispute): from the purchase's own lot first, then
    the others in spend order; what was already spent becomes a negative balance (recorded on
    the ledger as an overdraft) that the next grant settles. Like every movement, a balance
    brought under the auto top-up's threshold fires it (`note_balance`)."""
    check_credits(credits)
    version = await _lock_wallet(session, account_id, clock)
    await _expire_due_lots(session, account_id, clock, audit)
    customer = await customer_account(session, account_id, clock=clock)
    other = await system_account(
        session, SystemAccount.REFUNDS, CREDITS, clock=clock, spread_by=shard_for(account_id)
    )
    posted = await post_transaction(
        session,
        idempotency_key=f"credits-clawback:{key}",
        entries=[customer.line(-credits), other.line(credits)],
        kind="credit_clawback",
        metadata=dict(details or {}),
        allow_overdraft=True,
        clock=clock,
    )
    if posted.replayed:
        return Movement(
            balance=await balance_of(session, account_id),
            version=version,
            transaction_id=posted.id,
            replayed=True,
        )
    first = None
    if first_lot_key is not None:
        first = (
            await session.execute(select(lots.c.id).where(lots.c.key == first_lot_key))
        ).scalar_one_or_none()
    taken = await _take(
        session,
        account_id,
        credits,
        reason="clawback",
        reference=posted.idempotency_key,
        now=clock.now(),
        first=first,
    )
    balance = _balance_after(posted, customer.id)
    await audit.record(
        session,
        "credits.clawed_back",
        account_id=account_id,
        target=key,
        details={
            **(details or {}),
            "credits": credits,
            "from_lots": sum(t for _, t in taken),
            "balance": balance,
        },
    )
    await note_balance(session, account_id, balance, clock)
    return Movement(
        balance=balance, version=version, transaction_id=posted.id, replayed=False, lots=taken
    )


# --- sweeps (the job runner's) -------------------------------------------------------------


async def expire_due(
    session: AsyncSession, clock: Clock, audit: AuditRecorder, *, limit: int = 200
) -> tuple[int, int]:
    """Write off expired lots and release expired holds, of up to `limit` accounts (in account
    order, one wallet lock each). Returns (lots' accounts, holds) handled."""
    now = clock.now()
    accounts = (
        (
            await session.execute(
                select(lots.c.account_id)
                .where(
                    lots.c.remaining > 0,
                    lots.c.expires_at.is_not(None),
                    lots.c.expires_at <= now,
                )
                .group_by(lots.c.account_id)
                .order_by(lots.c.account_id)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    for account_id in accounts:
        await _lock_wallet(session, account_id, clock)
        await _expire_due_lots(session, account_id, clock, audit)
        await note_balance(session, account_id, await balance_of(session, account_id), clock)
    due_holds = (
        await session.execute(
            select(holds.c.id, holds.c.account_id)
            .where(holds.c.state == HoldState.ACTIVE, holds.c.expires_at <= now)
            .order_by(holds.c.account_id, holds.c.id)
            .limit(limit)
        )
    ).all()
    for hold_id, account_id in due_holds:
        await _settle_hold(
            session,
            account_id=account_id,
            hold_id=hold_id,
            capture=0,
            final_state=HoldState.EXPIRED,
            clock=clock,
            audit=audit,
        )
    return len(accounts), len(due_holds)


async def lot_summary(session: AsyncSession, account_id: str) -> list[dict[str, Any]]:
    """The account's lots, in spend order (for the CLI and tests)."""
    rows = await session.execute(
        select(lots).where(lots.c.account_id == account_id).order_by(*_spend_order())
    )
    return [dict(r._mapping) for r in rows]


# --- promotional grants (an API key, the operator console, the CLI) ------------------------

PROMOTION = "promotion"
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Revoked:
    lot_id: int
    credits: int  # taken back now (0: nothing was left, or it was revoked already)
    balance: int
    version: int


def check_reason(value: Any, field: str = "reason") -> str:
    """A reason of 1 to 500 characters (promotional grants and their revocations say why)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REASON:
        raise ValidationFailed(f"{field} must be text of 1 to {MAX_REASON} characters", field=field)
    if "\x00" in value:
        raise ValidationFailed(f"{field} must not contain NUL", field=field)
    return value.strip()


async def grant_promotion(
    session: AsyncSession,
    *,
    account_id: str,
    credits: int,
    reason: str,
    idempotency_key: str,
    clock: Clock,
    audit: AuditRecorder,
    expires_at: datetime | None = None,
) -> Granted:
    """Promotional credits (by an API key, an operator or the CLI), with a reason: a lot keyed
    by the account and `idempotency_key` (the same key grants once), posted from the
    `promotions` system account, audited."""
    check_credits(credits)
    why = check_reason(reason)
    key = _check_key(idempotency_key, "idempotency_key")
    granted = await grant(
        session,
        account_id=account_id,
        credits=credits,
        key=f"grant:{account_id}:{key}",
        source=PROMOTION,
        clock=clock,
        audit=audit,
        expires_at=expires_at,
        system=SystemAccount.PROMOTIONS,
        description=why,
        metadata={"reason": why},
    )
    if not granted.replayed:
        await audit.record(
            session,
            "credits.promotion_granted",
            account_id=account_id,
            target=str(granted.lot_id),
            details={"credits": credits, "reason": why, "idempotency_key": key},
        )
    return granted


async def revoke_grant(
    session: AsyncSession,
    *,
    lot_id: int,
    reason: str,
    clock: Clock,
    audit: AuditRecorder,
    account_id: str | None = None,
) -> Revoked:
    """Take back what is left unspent of a promotional grant (a ledger posting back to
    `promotions`, the lot emptied, a draw recorded, audited with the reason). What was spent
    stays spent; a second revocation takes nothing. `account_id`, when given, must own it."""
    why = check_reason(reason)
    owner = (
        await session.execute(select(lots.c.account_id, lots.c.source).where(lots.c.id == lot_id))
    ).first()
    if owner is None or (account_id is not None and owner.account_id != account_id):
        raise NotFound(f"no grant {lot_id}", field="grant_id")
    if owner.source != PROMOTION:
        raise Conflict("only promotional grants can be revoked", field="grant_id")
    account = str(owner.account_id)
    version = await _lock_wallet(session, account, clock)
    await _expire_due_lots(session, account, clock, audit)
    remaining = int(
        (await session.execute(select(lots.c.remaining).where(lots.c.id == lot_id))).scalar_one()
    )
    if remaining <= 0:
        return Revoked(lot_id, 0, await balance_of(session, account), version)
    posted = await _empty_lot(
        session,
        account,
        lot_id,
        remaining,
        reason="revoke",
        system=SystemAccount.PROMOTIONS,
        description=why,
        metadata={"lot_id": lot_id, "reason": why},
        clock=clock,
        now=clock.now(),
    )
    customer = await customer_account(session, account, clock=clock)
    balance = _balance_after(posted, customer.id)
    await audit.record(
        session,
        "credits.grant_revoked",
        account_id=account,
        target=str(lot_id),
        details={"credits": remaining, "reason": why, "balance": balance},
    )
    await note_balance(session, account, balance, clock)
    return Revoked(lot_id, remaining, balance, version)


async def promotional_grants(
    session: AsyncSession, account_id: str, *, limit: int = 100
) -> list[dict[str, Any]]:
    """The account's promotional grants, newest first (id, granted, remaining, expiry)."""
    rows = await session.execute(
        select(
            lots.c.id,
            lots.c.granted,
            lots.c.remaining,
            lots.c.expires_at,
            lots.c.expired_at,
            lots.c.created_at,
        )
        .where(lots.c.account_id == account_id, lots.c.source == PROMOTION)
        .order_by(lots.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


# --- plan allowances -----------------------------------------------------------------------

ALLOWANCE_PRIORITY = 10  # spent before purchased credits: they expire at the period's end


async def grant_allowance(
    session: AsyncSession,
    *,
    account_id: str,
    invoice_id: str,
    credits: int,
    period_start: datetime,
    period_end: datetime,
    rollover_cap: int,
    clock: Clock,
    audit: AuditRecorder,
) -> Granted | None:
    """A plan's credits for one paid invoice (once per invoice), expiring at the period's end.
    With a rollover cap, what was left of the previous period's allowance when it expired at
    `period_start` (up to the cap) is granted again with the new period's expiry: the
    previous lots are written off first (by `period_start`), so the answer is the same
    whichever of the expiry sweep and the invoice came first."""
    if period_end <= clock.now():
        return None  # an old invoice replayed: its credits would be born expired
    key = f"allowance:{invoice_id}"
    await _lock_wallet(session, account_id, clock)
    await _expire_due_lots(session, account_id, clock, audit, at=period_start)
    granted = await grant(
        session,
        account_id=account_id,
        credits=credits,
        key=key,
        source="allowance",
        clock=clock,
        audit=audit,
        priority=ALLOWANCE_PRIORITY,
        expires_at=period_end,
        description=f"plan allowance ({credits} credits)",
        metadata={"invoice": invoice_id},
    )
    if rollover_cap > 0 and not granted.replayed:
        left = (
            await session.execute(
                select(func.coalesce(func.sum(draws.c.amount), 0))
                .select_from(draws.join(lots, lots.c.id == draws.c.lot_id))
                .where(
                    lots.c.account_id == account_id,
                    lots.c.source == "allowance",
                    lots.c.expires_at == period_start,
                    draws.c.reason == "expiry",
                )
            )
        ).scalar_one()
        rolled = min(int(left), rollover_cap)
        if rolled > 0:
            await grant(
                session,
                account_id=account_id,
                credits=rolled,
                key=f"allowance-rollover:{invoice_id}",
                source="allowance",
                clock=clock,
                audit=audit,
                priority=ALLOWANCE_PRIORITY,
                expires_at=period_end,
                description=f"allowance rolled over ({rolled} credits)",
                metadata={"invoice": invoice_id},
            )
    return granted
