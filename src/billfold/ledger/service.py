"""Posting to the ledger, and the thin conveniences the credits and payments domains call.

How a posting stays correct under concurrency (see ARCHITECTURE.md, "Ledger"):

1. The transaction row goes in first with `INSERT ... ON CONFLICT (idempotency_key) DO NOTHING`.
   If the key exists, the first posting's fingerprint is compared with this one's: equal returns
   the first transaction unchanged, different raises IdempotencyConflict. On PostgreSQL a second
   writer with the same key waits on the first one's unique-index entry, so two concurrent posts
   with one key make one transaction.
2. One guarded UPDATE applies every balance change. The guard (`amount >= 0 OR balance + amount
   >= 0 OR allow_negative`, left out for an explicit overdraft) is evaluated by the database on
   the row it has locked, so two concurrent debits can never both pass a check made on a stale
   balance. On PostgreSQL the rows are locked in id order first, so postings never deadlock.
3. The entries are written, with each account's running balance, for the accounts that moved.
   If the guard refused an account, the changes already made are undone, the rows written are
   deleted and InsufficientBalance is raised, leaving the caller's database transaction as it
   was (and usable).

On PostgreSQL the three steps are one statement, one round trip (statements.POST_TRANSACTION);
on SQLite, where BEGIN IMMEDIATE makes every writer wait its turn, three simple ones.

The CHECK constraint on ledger_accounts backs the guard up: a customer balance below zero that no
explicit overdraft put there cannot be stored at all.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from billfold.clock import Clock
from billfold.db.dialect import insert_ignoring_conflict
from billfold.db.engine import Executor, dialect_name
from billfold.errors import (
    BillfoldError,
    Conflict,
    IdempotencyConflict,
    InsufficientBalance,
    NotFound,
    ValidationFailed,
)
from billfold.ledger import statements
from billfold.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from billfold.ledger.schemas import (
    CREDITS,
    EntryLine,
    HistoryItem,
    HistoryPage,
    PostedEntry,
    PostedTransaction,
)

accounts = cast(Table, LedgerAccount.__table__)
transactions = cast(Table, LedgerTransaction.__table__)
entries_table = cast(Table, LedgerEntry.__table__)

_POST_TRANSACTION_PG = text(statements.POST_TRANSACTION)
# A PostedEntry's fields, in its order (statements.POST_TRANSACTION returns the same).
_POSTED_ENTRY_COLUMNS = (
    entries_table.c.id,
    entries_table.c.account_id,
    entries_table.c.unit,
    entries_table.c.amount,
    entries_table.c.balance_after,
)

MAIN = "main"
"""The name of a customer's spendable account (others: e.g. `held` for reserved credits)."""

SYSTEM_OWNER = "system"
SYSTEM_SHARDS = 16
MAX_AMOUNT = 2**62  # far below BIGINT's limit, so sums of a few amounts cannot overflow

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_UNIT_RE = re.compile(r"^[a-z][a-z0-9_]{1,15}$")


class SystemAccount(enum.StrEnum):
    """The other side of customer movements, one account per name and unit. May go negative."""

    REVENUE = "revenue"
    PROMOTIONS = "promotions"
    CREDIT_SALES = "credit_sales"
    USAGE = "usage"
    EXPIRATIONS = "expirations"
    REFUNDS = "refunds"
    WRITE_OFFS = "write_offs"
    STRIPE_CLEARING = "stripe_clearing"


@dataclass(frozen=True, slots=True)
class AccountRef:
    """A ledger account's identity (never its balance, which only `balance_of` reads fresh)."""

    id: int
    key: str
    billing_account_id: str | None
    name: str
    unit: str
    shard: int
    allow_negative: bool

    def line(self, amount: int) -> EntryLine:
        """An entry adding `amount` to this account."""
        return EntryLine(account_id=self.id, unit=self.unit, amount=amount)


# --- accounts --------------------------------------------------------------------------------


def account_key(billing_account_id: str | None, name: str, unit: str, shard: int = 0) -> str:
    """The unique key of an account: `<billing account id>:<name>:<unit>`, or
    `system:<name>:<unit>:<shard>` for a shard of a system account."""
    if billing_account_id is None:
        return f"{SYSTEM_OWNER}:{name}:{unit}:{shard}"
    return f"{billing_account_id}:{name}:{unit}"


def _check_name_and_unit(name: str, unit: str) -> None:
    if not _NAME_RE.match(name):
        raise ValidationFailed(
            "account name must be lower-case letters, digits or _ (1 to 40)", field="name"
        )
    if not _UNIT_RE.match(unit):
        raise ValidationFailed(
            "unit must be `credits` or a lower-case ISO currency such as `usd`", field="unit"
        )


def _ref(row: Any) -> AccountRef:
    return AccountRef(
        id=row.id,
        key=row.key,
        billing_account_id=row.billing_account_id,
        name=row.name,
        unit=row.unit,
        shard=row.shard,
        allow_negative=row.allow_negative,
    )


_REF_COLUMNS = (
    accounts.c.id,
    accounts.c.key,
    accounts.c.billing_account_id,
    accounts.c.name,
    accounts.c.unit,
    accounts.c.shard,
    accounts.c.allow_negative,
)


async def find_ledger_account(
    session: AsyncSession,
    *,
    billing_account_id: str | None,
    name: str = MAIN,
    unit: str = CREDITS,
    shard: int = 0,
) -> AccountRef | None:
    """The account of this owner, name and unit, or None when it was never created."""
    key = account_key(billing_account_id, name, unit.lower(), shard)
    row = (await session.execute(select(*_REF_COLUMNS).where(accounts.c.key == key))).first()
    return _ref(row) if row is not None else None


async def get_or_create_ledger_account(
    session: AsyncSession,
    *,
    billing_account_id: str | None,
    name: str = MAIN,
    unit: str = CREDITS,
    shard: int = 0,
    clock: Clock,
) -> AccountRef:
    """The account of a billing account (or of the system, with `billing_account_id=None`) for
    `name` and `unit`, created on first use; safe when two transactions create it at once.

    System accounts may go negative; customer accounts may not (unless a posting allows overdraft).
    """
    unit = unit.lower()
    _check_name_and_unit(name, unit)
    if not (0 <= shard < SYSTEM_SHARDS) or (shard and billing_account_id is not None):
        raise ValidationFailed("only system accounts have shards", field="shard")
    found = await find_ledger_account(
        session, billing_account_id=billing_account_id, name=name, unit=unit, shard=shard
    )
    if found is not None:
        return found
    await insert_ignoring_conflict(
        session,
        accounts,
        {
            "key": account_key(billing_account_id, name, unit, shard),
            "billing_account_id": billing_account_id,
            "name": name,
            "unit": unit,
            "shard": shard,
            "balance": 0,
            "allow_negative": billing_account_id is None,
            "overdrawn": False,
            "created_at": clock.now(),
        },
        ["key"],
    )
    created = await find_ledger_account(
        session, billing_account_id=billing_account_id, name=name, unit=unit, shard=shard
    )
    if created is None:  # pragma: no cover - the insert or a concurrent one made it
        raise Conflict("the ledger account could not be created; retry")
    return created


async def customer_account(
    session: AsyncSession,
    billing_account_id: str,
    *,
    unit: str = CREDITS,
    name: str = MAIN,
    clock: Clock,
) -> AccountRef:
    """A billing account's ledger account for `unit` (its spendable `main` one by default)."""
    return await get_or_create_ledger_account(
        session, billing_account_id=billing_account_id, name=name, unit=unit, clock=clock
    )


async def system_account(
    session: AsyncSession,
    name: SystemAccount | str,
    unit: str,
    *,
    clock: Clock,
    spread_by: int = 0,
) -> AccountRef:
    """The system account `name` for `unit` (revenue, promotions, usage, ...).

    Every usage debit of every customer lands on the usage account: one row would make all of
    them wait for each other's commit. So a system account is SYSTEM_SHARDS rows, and a posting
    takes the shard `spread_by % SYSTEM_SHARDS`; pass `shard_for(billing_account_id)` (as
    grant_credits and debit_credits do), so different customers' postings rarely share a row.
    `system_balance` sums the shards.
    """
    return await get_or_create_ledger_account(
        session,
        billing_account_id=None,
        name=str(name),
        unit=unit,
        shard=spread_by % SYSTEM_SHARDS,
        clock=clock,
    )


async def system_balance(session: AsyncSession, name: SystemAccount | str, unit: str) -> int:
    """A system account's balance: the sum of its shards (at most SYSTEM_SHARDS rows)."""
    total = (
        await session.execute(
            select(func.coalesce(func.sum(accounts.c.balance), 0)).where(
                accounts.c.billing_account_id.is_(None),
                accounts.c.name == str(name),
                accounts.c.unit == unit.lower(),
            )
        )
    ).scalar_one()
    return int(total)


async def balance_of(
    session: AsyncSession, billing_account_id: str, unit: str = CREDITS, *, name: str = MAIN
) -> int:
    """A billing account's balance in `unit` (0 when it has no such account). One indexed read."""
    key = account_key(billing_account_id, name, unit.lower())
    balance = (
        await session.execute(select(accounts.c.balance).where(accounts.c.key == key))
    ).scalar_one_or_none()
    return int(balance or 0)


async def account_balance(session: AsyncSession, account_id: int) -> int:
    """The maintained balance of one ledger account (NotFound when there is no such account)."""
    balance = (
        await session.execute(select(accounts.c.balance).where(accounts.c.id == account_id))
    ).scalar_one_or_none()
    if balance is None:
        raise NotFound(f"no ledger account {account_id}")
    return int(balance)


# --- posting ---------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, no NaN, non-ASCII kept as is; anything but plain JSON is refused.

    Not `billfold.audit.service.canonical_json`, on purpose: that one escapes non-ASCII
    (`ensure_ascii=True`) and turns datetimes, enums, decimals and sets into text. Every stored
    fingerprint was computed with this form, so switching would break `ledger verify` for any
    transaction with non-ASCII metadata or description, and metadata must stay plain JSON.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def transaction_fingerprint(
    kind: str, description: str | None, metadata: Mapping[str, Any], lines: Sequence[EntryLine]
) -> str:
    """sha256 of a posting's content (entry order does not matter; the key is not part of it)."""
    content = {
        "kind": kind,
        "description": description,
        "metadata": metadata,
        "entries": sorted([line.account_id, line.unit, line.amount] for line in lines),
    }
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def _validate_posting(
    idempotency_key: str,
    entries: Sequence[EntryLine],
    kind: str,
    description: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255:
        raise ValidationFailed(
            "idempotency key must be 1 to 255 characters", field="idempotency_key"
        )
    if not isinstance(kind, str) or not 1 <= len(kind) <= 64:
        raise ValidationFailed("kind must be 1 to 64 characters", field="kind")
    if description is not None and (not isinstance(description, str) or len(description) > 1000):
        raise ValidationFailed(
            "description must be text of at most 1000 characters", field="description"
        )
    for field, value in (
        ("idempotency_key", idempotency_key),
        ("kind", kind),
        ("description", description or ""),
    ):
        if "\x00" in value:
            raise ValidationFailed(f"{field} contains a NUL character", field=field)
    if not entries:
        raise ValidationFailed("a posting needs entries", field="entries")
    sums: dict[str, int] = defaultdict(int)
    for line in entries:
        amount = line.amount
        if not isinstance(line.account_id, int) or not 0 < line.account_id < 2**63:
            raise ValidationFailed("entry account ids must be ledger account ids", field="entries")
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise ValidationFailed("entry amounts must be integers", field="entries")
        if amount == 0:
            raise ValidationFailed("an entry cannot move zero", field="entries")
        if not -MAX_AMOUNT < amount < MAX_AMOUNT:
            raise ValidationFailed("entry amount out of range", field="entries")
        if not isinstance(line.unit, str) or not _UNIT_RE.match(line.unit):
            raise ValidationFailed(f"unknown unit {line.unit!r}", field="entries")
        sums[line.unit] += amount
    unbalanced = {unit: total for unit, total in sums.items() if total != 0}
    if unbalanced:
        raise ValidationFailed(
            "entries must sum to zero per unit; off by "
            + ", ".join(f"{total} {unit}" for unit, total in sorted(unbalanced.items())),
            field="entries",
            details={"unbalanced": unbalanced},
        )
    try:
        # Stored as JSON: canonicalise now, so what we return and fingerprint is what is read back.
        text_form = canonical_json(dict(metadata or {}))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"metadata must be plain JSON: {exc}", field="metadata") from exc
    if "\\u0000" in text_form:
        raise ValidationFailed("metadata contains a NUL character", field="metadata")
    loaded: dict[str, Any] = json.loads(text_form)
    if _has_float(loaded):
        # PostgreSQL's JSONB rewrites 1e+20 as 100000000000000000000: the fingerprint would no
        # longer match what is read back. Amounts are integers anyway.
        raise ValidationFailed(
            "metadata numbers must be integers (send decimals as strings)", field="metadata"
        )
    return loaded


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def _insert_transaction(dialect: str) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(transactions)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(transactions.c.id)
    )


def _big(value: int) -> ColumnElement[int]:
    return bindparam(None, value, type_=BigInteger)


def _amount_by_account(amounts: Mapping[int, int]) -> ColumnElement[int]:
    """Each account's own amount as one SQL expression over `accounts.c.id`, for an UPDATE of
    exactly these accounts (a plain parameter when there is only one)."""
    ids = sorted(amounts)
    if len(ids) == 1:
        return _big(amounts[ids[0]])
    return case(*((accounts.c.id == _big(i), _big(amounts[i])) for i in ids))


def _balance_update(
    deltas: Mapping[int, int], units: Mapping[int, str], allow_overdraft: bool
) -> Any:
    """One UPDATE for every account of the posting, guarded row by row in the database.

    (SQLite: the writer holds the database lock, so lock order does not arise. PostgreSQL runs
    statements.POST_TRANSACTION, which locks the rows in id order first.)
    """
    ids = sorted(deltas)
    delta = _amount_by_account(deltas)
    new_balance = accounts.c.balance + delta
    distinct_units = set(units.values())
    if len(distinct_units) == 1:
        unit_matches = accounts.c.unit == next(iter(distinct_units))
    else:
        unit_matches = accounts.c.unit == case(*((accounts.c.id == _big(i), units[i]) for i in ids))
    conditions = [accounts.c.id.in_(ids), unit_matches]
    if allow_overdraft:
        overdrawn: ColumnElement[bool] = new_balance < 0
    else:
        conditions.append(or_(delta >= 0, new_balance >= 0, accounts.c.allow_negative))
        # Still below zero after a deposit: only an earlier overdraft can have put it there.
        overdrawn = and_(new_balance < 0, accounts.c.overdrawn)
    return (
        update(accounts)
        .where(*conditions)
        .values(balance=new_balance, overdrawn=overdrawn)
        .returning(accounts.c.id, accounts.c.balance)
    )


async def post_transaction(
    session: Executor,
    *,
    idempotency_key: str,
    entries: Sequence[EntryLine],
    kind: str,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    allow_overdraft: bool = False,
    clock: Clock,
) -> PostedTransaction:
    """Record one balanced transaction and move every balance it touches, exactly once.

    - Entries must be non-zero and sum to zero per unit (ValidationFailed otherwise).
    - The same `idempotency_key` with the same content returns the first transaction
      (`replayed=True`) and changes nothing; with different content: IdempotencyConflict.
    - A customer account never goes below zero unless `allow_overdraft` (a clawback):
      InsufficientBalance, with nothing written and the caller's transaction still usable.
    - An unknown account is NotFound; an entry whose unit is not its account's: ValidationFailed.

    Runs inside the caller's transaction (flushes, never commits).
    """
    meta = _validate_posting(idempotency_key, entries, kind, description, metadata)
    fingerprint = transaction_fingerprint(kind, description, meta, entries)
    now = clock.now()
    if now.tzinfo is None:
        raise ValueError("the clock gave a naive datetime; billfold's clocks are UTC-aware")
    dialect = dialect_name(session)

    deltas: dict[int, int] = defaultdict(int)
    units: dict[int, str] = {}
    for line in entries:
        deltas[line.account_id] += line.amount
        if units.setdefault(line.account_id, line.unit) != line.unit:
            raise ValidationFailed(
                f"ledger account {line.account_id} has entries in two units", field="entries"
            )
    values = {
        "idempotency_key": idempotency_key,
        "kind": kind,
        "description": description,
        "metadata": meta,
        "fingerprint": fingerprint,
        "created_at": now,
    }
    if dialect == "postgresql":
        claimed = await _post_postgresql(session, values, entries, allow_overdraft)
    else:
        claimed = await _post_generic(
            session, dialect, values, entries, deltas, units, allow_overdraft
        )
    if claimed is None:
        return await _replay(session, idempotency_key, fingerprint)
    transaction_id, posted = claimed
    moved = {entry.account_id: entry.balance_after for entry in posted}
    if len(moved) != len(deltas):
        await _undo_balances(session, {i: deltas[i] for i in moved})
        await _forget_transaction(session, transaction_id)
        raise await _refusal(session, deltas, units, moved)
    return PostedTransaction(
        id=transaction_id,
        idempotency_key=idempotency_key,
        kind=kind,
        description=description,
        metadata=meta,
        fingerprint=fingerprint,
        created_at=now,
        entries=tuple(posted),
    )


_Claimed = tuple[int, list[PostedEntry]]


async def _post_postgresql(
    session: Executor,
    values: dict[str, Any],
    entries: Sequence[EntryLine],
    allow_overdraft: bool,
) -> _Claimed | None:
    """Claim the key, lock, guard, move and write in one statement (statements.POST_TRANSACTION).

    None when the key had been claimed before; else the new transaction's id and the entries
    written (none for an account the guard refused).
    """
    parameters = {
        **values,
        "metadata": canonical_json(values["metadata"]),
        "account_ids": [line.account_id for line in entries],
        "units": [line.unit for line in entries],
        "amounts": [line.amount for line in entries],
        "overdraft": allow_overdraft,
    }
    driver = await _asyncpg_connection(session)
    rows: Sequence[Any]
    if driver is not None:
        rows = await driver.fetch(
            statements.POST_TRANSACTION_NUMBERED,
            *(parameters[name] for name in statements.POST_TRANSACTION_PARAMETERS),
        )
    else:
        rows = (await session.execute(_POST_TRANSACTION_PG, parameters)).all()
    if not rows:
        return None
    posted = sorted(
        (PostedEntry(*row[1:]) for row in rows if row[1] is not None), key=lambda e: e.id
    )
    return rows[0][0], posted


async def _asyncpg_connection(session: Executor) -> Any | None:
    """The asyncpg connection under `session`, inside the session's transaction, or None.

    The posting is the hot path: sent straight to asyncpg, its one statement costs about half
    the Python time it does through SQLAlchemy's text() execution (see bench/ledger.py). If
    SQLAlchemy has not sent BEGIN yet (the posting is the transaction's first statement), its
    adapter is asked to, exactly as its own cursor would; if the adapter does not look as
    expected (another SQLAlchemy version), None sends the caller through SQLAlchemy instead.
    """
    if isinstance(session, AsyncConnection):
        connection = session
    else:
        if session.new or session.dirty or session.deleted:
            await session.flush()  # what SQLAlchemy's autoflush would do before a statement
        connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    driver: Any = raw.driver_connection
    if driver is None or not hasattr(adapter, "_start_transaction"):
        return None
    if getattr(adapter, "_transaction", True) is None:
        await adapter._start_transaction()
    return driver if driver.is_in_transaction() else None


async def _post_generic(
    session: Executor,
    dialect: str,
    values: dict[str, Any],
    entries: Sequence[EntryLine],
    deltas: Mapping[int, int],
    units: Mapping[int, str],
    allow_overdraft: bool,
) -> _Claimed | None:
    """What _post_postgresql does, in three statements (SQLite: one writer at a time)."""
    transaction_id: int | None = (
        await session.execute(_insert_transaction(dialect).values(**values))
    ).scalar_one_or_none()
    if transaction_id is None:
        return None
    posted = await _move_generic(session, transaction_id, entries, deltas, units, allow_overdraft)
    return transaction_id, posted


async def _move_generic(
    session: Executor,
    transaction_id: int,
    entries: Sequence[EntryLine],
    deltas: Mapping[int, int],
    units: Mapping[int, str],
    allow_overdraft: bool,
) -> list[PostedEntry]:
    """Guard and move the balances, then write the entries of the accounts that moved."""
    updated = {
        row.id: row.balance
        for row in await session.execute(_balance_update(deltas, units, allow_overdraft))
    }
    # Running balances: each account's balance before this posting, then entry by entry.
    running = {i: updated[i] - deltas[i] for i in updated}
    rows = []
    for line in entries:
        if line.account_id not in updated:
            continue
        running[line.account_id] += line.amount
        rows.append(
            {
                "transaction_id": transaction_id,
                "account_id": line.account_id,
                "unit": line.unit,
                "amount": line.amount,
                "balance_after": running[line.account_id],
            }
        )
    if not rows:
        return []
    written = await session.execute(
        insert(entries_table).values(rows).returning(*_POSTED_ENTRY_COLUMNS)
    )
    return sorted((PostedEntry(*row) for row in written), key=lambda e: e.id)


async def _replay(session: Executor, idempotency_key: str, fingerprint: str) -> PostedTransaction:
    first = await get_transaction_by_key(session, idempotency_key)
    if first is None:
        # Only possible when the first posting with this key committed after our statement's
        # snapshot was taken under a stricter isolation level than READ COMMITTED.
        raise Conflict("a posting with this idempotency key is in progress; retry")
    if first.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "idempotency key was already used for a different posting",
            field="idempotency_key",
            details={"idempotency_key": idempotency_key, "transaction_id": first.id},
        )
    return first


async def _undo_balances(session: Executor, applied: Mapping[int, int]) -> None:
    """Take back the balance changes of a posting refused part-way (its rows stay locked)."""
    if not applied:
        return
    restored = accounts.c.balance - _amount_by_account(applied)
    await session.execute(
        update(accounts)
        .where(accounts.c.id.in_(sorted(applied)))
        .values(balance=restored, overdrawn=and_(restored < 0, ~accounts.c.allow_negative))
    )


async def _forget_transaction(session: Executor, transaction_id: int) -> None:
    """Remove a refused posting's rows (entries already written for the accounts that moved)."""
    await session.execute(
        delete(entries_table).where(entries_table.c.transaction_id == transaction_id)
    )
    await session.execute(delete(transactions).where(transactions.c.id == transaction_id))


async def _refusal(
    session: Executor,
    deltas: Mapping[int, int],
    units: Mapping[int, str],
    updated: Mapping[int, int],
) -> BillfoldError:
    """Why the guarded UPDATE left some accounts out: missing, wrong unit, or not enough funds."""
    refused = sorted(set(deltas) - set(updated))
    found = {
        row.id: row
        for row in await session.execute(
            select(accounts.c.id, accounts.c.unit, accounts.c.balance).where(
                accounts.c.id.in_(refused)
            )
        )
    }
    for account_id in refused:
        row = found.get(account_id)
        if row is None:
            return NotFound(f"no ledger account {account_id}", field="entries")
        if row.unit != units[account_id]:
            return ValidationFailed(
                f"ledger account {account_id} counts {row.unit}, not {units[account_id]}",
                field="entries",
            )
    account_id = refused[0]
    return InsufficientBalance(
        f"ledger account {account_id} has {found[account_id].balance} "
        f"{units[account_id]}; {-deltas[account_id]} needed",
        details={
            "account_id": account_id,
            "balance": found[account_id].balance,
            "requested": -deltas[account_id],
            "unit": units[account_id],
        },
    )


# --- reading transactions and history ----------------------------------------------------------


async def get_transaction_by_key(
    session: Executor, idempotency_key: str
) -> PostedTransaction | None:
    """The transaction posted under `idempotency_key` (replayed=True), or None."""
    row = (
        await session.execute(
            select(transactions).where(transactions.c.idempotency_key == idempotency_key)
        )
    ).first()
    if row is None:
        return None
    lines = await session.execute(
        select(*_POSTED_ENTRY_COLUMNS)
        .where(entries_table.c.transaction_id == row.id)
        .order_by(entries_table.c.id)
    )
    return PostedTransaction(
        id=row.id,
        idempotency_key=row.idempotency_key,
        kind=row.kind,
        description=row.description,
        metadata=row.metadata,
        fingerprint=row.fingerprint,
        created_at=row.created_at,
        entries=tuple(PostedEntry(*r) for r in lines),
        replayed=True,
    )


def _check_page(page: int, page_size: int) -> None:
    if page < 1:
        raise ValidationFailed("page starts at 1", field="page")
    if not 1 <= page_size <= 200:
        raise ValidationFailed("page size must be 1 to 200", field="page_size")


def _history_of(account_id: int) -> Select[Any]:
    """An account's movements with their transactions, newest first."""
    return (
        select(
            entries_table.c.id.label("entry_id"),
            entries_table.c.transaction_id,
            transactions.c.idempotency_key,
            transactions.c.kind,
            transactions.c.description,
            transactions.c.metadata,
            entries_table.c.amount,
            entries_table.c.unit,
            entries_table.c.balance_after,
            transactions.c.created_at,
        )
        .join(transactions, transactions.c.id == entries_table.c.transaction_id)
        .where(entries_table.c.account_id == account_id)
        .order_by(entries_table.c.id.desc())
    )


async def history_before(
    session: AsyncSession, account_id: int, *, before_entry_id: int | None, limit: int = 500
) -> list[HistoryItem]:
    """Up to `limit` of an account's movements older than entry `before_entry_id` (the newest
    when None), newest first: for reading a whole history in batches by keyset (an export),
    without counting or offsets."""
    stmt = _history_of(account_id).limit(limit)
    if before_entry_id is not None:
        stmt = stmt.where(entries_table.c.id < before_entry_id)
    return [HistoryItem(**row._mapping) for row in await session.execute(stmt)]


async def account_history(
    session: AsyncSession, account_id: int, *, page: int = 1, page_size: int = 20
) -> HistoryPage:
    """An account's movements, newest first, a page at a time (with the total for page counts)."""
    _check_page(page, page_size)
    total = (
        await session.execute(
            select(func.count())
            .select_from(entries_table)
            .where(entries_table.c.account_id == account_id)
        )
    ).scalar_one()
    rows = await session.execute(
        _history_of(account_id).limit(page_size).offset((page - 1) * page_size)
    )
    return HistoryPage(
        items=[HistoryItem(**row._mapping) for row in rows],
        page=page,
        page_size=page_size,
        total=total,
    )


async def customer_history(
    session: AsyncSession,
    billing_account_id: str,
    unit: str = CREDITS,
    *,
    name: str = MAIN,
    page: int = 1,
    page_size: int = 20,
) -> HistoryPage:
    """A billing account's movements in `unit`, newest first (empty if it has no account)."""
    account = await find_ledger_account(
        session, billing_account_id=billing_account_id, name=name, unit=unit
    )
    if account is None:
        _check_page(page, page_size)
        return HistoryPage(items=[], page=page, page_size=page_size, total=0)
    return await account_history(session, account.id, page=page, page_size=page_size)


# --- conveniences for the credits and payments domains ------------------------------------------


async def transfer(
    session: AsyncSession,
    *,
    source: AccountRef,
    destination: AccountRef,
    amount: int,
    idempotency_key: str,
    kind: str,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    allow_overdraft: bool = False,
    clock: Clock,
) -> PostedTransaction:
    """Move a positive `amount` from `source` to `destination` (same unit) as one transaction."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValidationFailed("amount must be a positive integer", field="amount")
    if source.unit != destination.unit:
        raise ValidationFailed(
            f"cannot move {source.unit} into a {destination.unit} account", field="unit"
        )
    if source.id == destination.id:
        raise ValidationFailed("source and destination are the same account", field="account")
    return await post_transaction(
        session,
        idempotency_key=idempotency_key,
        entries=[source.line(-amount), destination.line(amount)],
        kind=kind,
        description=description,
        metadata=metadata,
        allow_overdraft=allow_overdraft,
        clock=clock,
    )


async def grant_credits(
    session: AsyncSession,
    *,
    billing_account_id: str,
    credits: int,
    idempotency_key: str,
    clock: Clock,
    source: SystemAccount | str = SystemAccount.PROMOTIONS,
    kind: str = "credit_grant",
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> PostedTransaction:
    """Add `credits` to a billing account, taken from a system account (promotions by default;
    `SystemAccount.CREDIT_SALES` for credits that were paid for)."""
    customer, system = await _credits_accounts(session, billing_account_id, source, clock)
    return await transfer(
        session,
        source=system,
        destination=customer,
        amount=credits,
        idempotency_key=idempotency_key,
        kind=kind,
        description=description,
        metadata=metadata,
        clock=clock,
    )


async def debit_credits(
    session: AsyncSession,
    *,
    billing_account_id: str,
    credits: int,
    idempotency_key: str,
    clock: Clock,
    destination: SystemAccount | str = SystemAccount.USAGE,
    kind: str = "usage",
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    allow_overdraft: bool = False,
) -> PostedTransaction:
    """Take `credits` from a billing account (usage by default). InsufficientBalance when the
    balance is short, unless `allow_overdraft` (a clawback after a refund, say)."""
    customer, system = await _credits_accounts(session, billing_account_id, destination, clock)
    return await transfer(
        session,
        source=customer,
        destination=system,
        amount=credits,
        idempotency_key=idempotency_key,
        kind=kind,
        description=description,
        metadata=metadata,
        allow_overdraft=allow_overdraft,
        clock=clock,
    )


def shard_for(billing_account_id: str) -> int:
    """The shard of the system accounts a billing account's postings use (stable everywhere)."""
    return zlib.crc32(billing_account_id.encode()) % SYSTEM_SHARDS


async def _credits_accounts(
    session: AsyncSession, billing_account_id: str, system: SystemAccount | str, clock: Clock
) -> tuple[AccountRef, AccountRef]:
    """A billing account's credits account and its shard of system account `system`: one read
    when both exist (the usual case), created otherwise."""
    shard = shard_for(billing_account_id)
    customer_key = account_key(billing_account_id, MAIN, CREDITS)
    system_key = account_key(None, str(system), CREDITS, shard)
    found = {
        row.key: _ref(row)
        for row in await session.execute(
            select(*_REF_COLUMNS).where(accounts.c.key.in_([customer_key, system_key]))
        )
    }
    customer = found.get(customer_key) or await customer_account(
        session, billing_account_id, clock=clock
    )
    other = found.get(system_key) or await system_account(
        session, system, CREDITS, clock=clock, spread_by=shard
    )
    return customer, other
