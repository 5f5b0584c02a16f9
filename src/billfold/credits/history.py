"""Document 001's two histories, read from billfold's own tables (never from Stripe):

- the credit history: purchases and top-ups (pending, completed, failed; not the sessions
  never paid), refunds and lost disputes (`refund`), and subscription invoices
  (`subscription`), newest first;
- the billing history: Stripe's invoices, charges and refunds mirrored from webhooks.

Both are cached by (account, version, page): every write bumps the account's version in its
own transaction, so a read after a commit never finds a stale page, in any process. The cache
is Redis when BILLFOLD_REDIS_URL is set, in process otherwise.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Table, case, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.credits.models import (
    BillingHistoryItem,
    CreditPurchase,
    CreditRefund,
    PurchaseKind,
    PurchaseState,
)
from billfold.errors import ValidationFailed

log = logging.getLogger(__name__)
purchases = cast(Table, CreditPurchase.__table__)
refunds = cast(Table, CreditRefund.__table__)
items = cast(Table, BillingHistoryItem.__table__)

MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: str
    type: str
    amount: int  # minor units
    currency: str
    credits: int | None
    status: str
    created_at: str  # ISO 8601
    description: str | None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[HistoryRow]
    page: int
    page_size: int
    total: int


def check_page(page: Any, page_size: Any) -> tuple[int, int]:
    if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= MAX_PAGE:
        raise ValidationFailed(f"page must be a whole number from 1 to {MAX_PAGE}", field="page")
    if (
        isinstance(page_size, bool)
        or not isinstance(page_size, int)
        or not (1 <= page_size <= MAX_PAGE_SIZE)
    ):
        raise ValidationFailed(f"pageSize must be 1 to {MAX_PAGE_SIZE}", field="pageSize")
    return page, page_size


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


_VISIBLE = [PurchaseState.PENDING, PurchaseState.COMPLETED, PurchaseState.FAILED]


async def credit_history(session: AsyncSession, account_id: str, page: int, size: int) -> Page:
    p = select(
        purchases.c.id,
        # An auto top-up is a top-up to document 001's clients.
        case(
            (purchases.c.kind == PurchaseKind.AUTO_TOPUP, literal(str(PurchaseKind.TOPUP))),
            else_=purchases.c.kind,
        ).label("type"),
        purchases.c.amount,
        purchases.c.currency,
        purchases.c.credits,
        purchases.c.state.label("status"),
        purchases.c.created_at,
        case(
            (purchases.c.kind == PurchaseKind.AUTO_TOPUP, literal("auto top-up")),
            else_=purchases.c.package_id,
        ).label("description"),
    ).where(purchases.c.account_id == account_id, purchases.c.state.in_(_VISIBLE))
    r = select(
        refunds.c.id,
        literal("refund").label("type"),
        refunds.c.amount,
        refunds.c.currency,
        refunds.c.credits,
        literal("completed").label("status"),
        refunds.c.created_at,
        refunds.c.kind.label("description"),
    ).where(refunds.c.account_id == account_id)
    s = select(
        items.c.id,
        literal("subscription").label("type"),
        items.c.amount,
        items.c.currency,
        literal(None).label("credits"),
        items.c.status,
        items.c.created_at,
        items.c.description,
    ).where(
        items.c.account_id == account_id,
        items.c.type == "invoice",
        items.c.subscription_id.is_not(None),
        items.c.status.in_(["paid", "open", "uncollectible"]),
    )
    every = union_all(p, r, s).subquery()
    total = (await session.execute(select(func.count()).select_from(every))).scalar_one()
    rows = await session.execute(
        select(every)
        .order_by(every.c.created_at.desc(), every.c.id.desc())
        .limit(size)
        .offset((page - 1) * size)
    )
    out = []
    for row in rows:
        status = {"paid": "completed", "open": "pending", "uncollectible": "failed"}.get(
            row.status, row.status
        )
        description = row.description
        if row.type == "credit_purchase" and description:
            description = f"credit package {description}"
        elif row.type == "refund":
            description = "lost dispute" if description == "dispute" else "refund"
        out.append(
            HistoryRow(
                id=row.id,
                type=row.type,
                amount=int(row.amount),
                currency=row.currency,
                credits=int(row.credits) if row.credits is not None else None,
                status=status,
                created_at=_iso(row.created_at),
                description=description,
            )
        )
    return Page(out, page, size, int(total))


async def billing_history(session: AsyncSession, account_id: str, page: int, size: int) -> Page:
    total = (
        await session.execute(
            select(func.count()).select_from(items).where(items.c.account_id == account_id)
        )
    ).scalar_one()
    rows = await session.execute(
        select(items)
        .where(items.c.account_id == account_id)
        .order_by(items.c.created_at.desc(), items.c.id.desc())
        .limit(size)
        .offset((page - 1) * size)
    )
    return Page(
        [
            HistoryRow(
                id=row.id,
                type=row.type,
                amount=int(row.amount),
                currency=row.currency,
                credits=None,
                status=row.status,
                created_at=_iso(row.created_at),
                description=row.description,
            )
            for row in rows
        ],
        page,
        size,
        int(total),
    )


# --- the cache -----------------------------------------------------------------------------


class PageCache(Protocol):
    async def get(self, key: str) -> Page | None: ...
    async def put(self, key: str, value: Page) -> None: ...


class LocalPageCache:
    """In process, least recently used first out."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.pages: OrderedDict[str, Page] = OrderedDict()

    async def get(self, key: str) -> Page | None:
        found = self.pages.get(key)
        if found is not None:
            self.pages.move_to_end(key)
        return found

    async def put(self, key: str, value: Page) -> None:
        self.pages[key] = value
        self.pages.move_to_end(key)
        while len(self.pages) > self.size:
            self.pages.popitem(last=False)


class RedisPageCache:
    """Shared by every instance (BILLFOLD_REDIS_URL); a Redis error reads the database."""

    def __init__(self, client: Any, prefix: str, ttl: int = 300) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl

    async def get(self, key: str) -> Page | None:
        try:
            raw = await self.client.get(f"{self.prefix}:credits:{key}")
        except Exception:
            log.warning("credits cache: redis unreachable", exc_info=True)
            return None
        if raw is None:
            return None
        data = json.loads(raw)
        return Page(
            [HistoryRow(**r) for r in data["rows"]], data["page"], data["page_size"], data["total"]
        )

    async def put(self, key: str, value: Page) -> None:
        try:
            await self.client.set(
                f"{self.prefix}:credits:{key}", json.dumps(asdict(value)), ex=self.ttl
            )
        except Exception:
            log.warning("credits cache: redis unreachable", exc_info=True)


def cache_key(kind: str, account_id: str, version: int, page: int, size: int) -> str:
    return f"{kind}:{account_id}:v{version}:{page}:{size}"
