"""The credit balance read apps make on every page, in one hot read (db/hot_read.py).

`service.get_balance` reads the balance of an account already resolved, in the request's unit
of work; `balance_by_ref` goes from the account's kind and external id (tenancy's
`AccountRef`) to its credits, held credits, wallet version and the balances of other ledger
accounts of the same billing account it is asked for (document 003's dues ride along on the
same path), in one statement: one round trip, one snapshot, no session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, select

from billfold.auth.principal import AccountRef
from billfold.credits.models import HELD, CreditWallet
from billfold.credits.service import Balance
from billfold.customers.models import BillingAccount
from billfold.db.engine import Database
from billfold.db.hot_read import PreparedRead
from billfold.ledger.models import LedgerAccount
from billfold.ledger.schemas import CREDITS
from billfold.ledger.service import MAIN

ledger = cast(Table, LedgerAccount.__table__)
wallets = cast(Table, CreditWallet.__table__)


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's credits and, by (name, unit), the other ledger balances asked for."""

    account_id: str
    settings: dict[str, Any]
    balance: Balance
    others: tuple[tuple[str, str, int], ...]


def _ledger_balance(account_id: Any, name: str) -> Any:
    # The account's key (ledger.service.account_key), built in SQL from the joined account.
    key = account_id + f":{name}:{CREDITS}"
    return select(ledger.c.balance).where(ledger.c.key == key).scalar_subquery()


def _balance_read(others: tuple[str, ...]) -> PreparedRead:
    account = cast(Table, BillingAccount.__table__)
    other = ledger.alias("other")
    statement = (
        select(
            account.c.id,
            account.c.settings,
            _ledger_balance(account.c.id, MAIN),
            _ledger_balance(account.c.id, HELD),
            select(wallets.c.version).where(wallets.c.account_id == account.c.id).scalar_subquery(),
            other.c.name,
            other.c.unit,
            other.c.balance,
        )
        .select_from(account)
        .outerjoin(
            other,
            and_(other.c.billing_account_id == account.c.id, other.c.name.in_(others or ("",))),
        )
        .where(
            account.c.kind == bindparam("kind", None),
            account.c.external_id == bindparam("external_id", None),
        )
    )
    return PreparedRead(statement)


_READS: dict[tuple[str, ...], PreparedRead] = {}


async def balance_by_ref(
    db: Database, ref: AccountRef, *, others: tuple[str, ...] = ()
) -> AccountBalance | None:
    """The credits of the account `ref` names and the balances of its ledger accounts named in
    `others` (any unit); None when the account does not exist yet."""
    read = _READS.get(others)
    if read is None:
        read = _READS[others] = _balance_read(others)
    rows = await db.read_rows(read, kind=ref.kind.value, external_id=ref.external_id)
    if not rows:
        return None
    first = rows[0]
    return AccountBalance(
        account_id=first[0],
        settings=first[1] or {},
        balance=Balance(
            credits=int(first[2] or 0), held=int(first[3] or 0), version=int(first[4] or 0)
        ),
        others=tuple((r[5], r[6], int(r[7])) for r in rows if r[5] is not None),
    )
