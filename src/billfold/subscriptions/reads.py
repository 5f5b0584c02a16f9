"""Reading subscriptions: which one speaks for an account, and whether it unlocks premium."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.auth.principal import AccountRef
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.db.hot_read import PreparedRead
from billfold.subscriptions.models import (
    LIVE_STATUSES,
    Subscription,
)


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """What an app asks before unlocking a feature."""

    has_premium: bool
    plan: str | None
    status: str | None  # Stripe's status, None when the account never subscribed
    interval: str | None  # monthly | yearly
    current_period_end: datetime | None
    cancel_at_period_end: bool
    subscription: Subscription | None


class StatusFacts(Protocol):
    """What deciding premium and which subscription speaks needs: a `Subscription`, or a row
    of `_STATUS_READ` (the hot read, which loads no entity and no `raw` JSON)."""

    @property
    def status(self) -> str: ...
    @property
    def past_due_since(self) -> datetime | None: ...
    @property
    def stripe_created(self) -> int: ...
    @property
    def stripe_subscription_id(self) -> str: ...


class StatusColumns(StatusFacts, Protocol):
    """What the status answers with, beside the facts that decide it."""

    @property
    def plan_code(self) -> str: ...
    @property
    def interval(self) -> str: ...
    @property
    def current_period_end(self) -> datetime | None: ...
    @property
    def cancel_at_period_end(self) -> bool: ...


def has_premium(subscription: StatusFacts | None, now: datetime, grace_days: int) -> bool:
    """True while active or trialing, and for `grace_days` after a subscription became past due."""
    if subscription is None:
        return False
    if subscription.status in ("active", "trialing"):
        return True
    if subscription.status == "past_due" and grace_days > 0:
        since = subscription.past_due_since or now
        return now < since + timedelta(days=grace_days)
    return False


_STATUS_RANK = {"active": 0, "trialing": 1, "past_due": 2, "unpaid": 3, "incomplete": 4}


async def list_subscriptions(session: AsyncSession, account: BillingAccount) -> list[Subscription]:
    """Every subscription of the account, newest first."""
    stmt = (
        select(Subscription)
        .where(Subscription.account_id == account.id)
        .order_by(Subscription.stripe_created.desc(), Subscription.created_at.desc())
    )
    return list((await session.execute(stmt)).scalars().all())


async def current_subscription(
    session: AsyncSession, account: BillingAccount
) -> Subscription | None:
    """The subscription that speaks for the account: the live one (active, trialing, past due,
    unpaid, incomplete, in that preference), else the newest ended one, else None. Should two
    be live (a duplicate, see `reconcile`), the choice is deterministic: by that preference,
    then the newest, then Stripe's id."""
    subscriptions = await list_subscriptions(session, account)
    live = [s for s in subscriptions if s.status in LIVE_STATUSES]
    if live:
        return min(live, key=speaks_first)
    return subscriptions[0] if subscriptions else None


# Active in document 001's sense (credit packages need it): paid up, or in a trial.
ACTIVE_STATUSES = frozenset({"active", "trialing"})


async def has_active_subscription(session: AsyncSession, account: BillingAccount) -> bool:
    """Whether the subscription that speaks for the account (`current_subscription`) is
    active or trialing."""
    found = await current_subscription(session, account)
    return found is not None and found.status in ACTIVE_STATUSES


def speaks_first(sub: StatusFacts) -> tuple[int, int, str]:
    return (_STATUS_RANK.get(sub.status, 9), -sub.stripe_created, sub.stripe_subscription_id)


async def status(
    session: AsyncSession, container: Container, account: BillingAccount
) -> SubscriptionStatus:
    """The account's premium flag and the facts behind it (document 004's status)."""
    sub = await current_subscription(session, account)
    return SubscriptionStatus(
        has_premium=has_premium(sub, container.clock.now(), container.settings.past_due_grace_days),
        plan=sub.plan_code if sub else None,
        status=sub.status if sub else None,
        interval=sub.interval if sub else None,
        current_period_end=sub.current_period_end if sub else None,
        cancel_at_period_end=bool(sub.cancel_at_period_end) if sub else False,
        subscription=sub,
    )


# The status read, built once: the columns it answers with, no ORM entity (no identity map, no
# `raw` JSON decoded), for the read apps make on every page ("is this user premium?").
_STATUS_READ = (
    select(
        Subscription.status,
        Subscription.plan_code,
        Subscription.interval,
        Subscription.current_period_end,
        Subscription.cancel_at_period_end,
        Subscription.past_due_since,
        Subscription.stripe_created,
        Subscription.stripe_subscription_id,
    )
    .where(Subscription.account_id == bindparam("account_id"))
    .order_by(Subscription.stripe_created.desc(), Subscription.created_at.desc())
)


async def premium_status(
    session: AsyncSession, container: Container, account: BillingAccount
) -> SubscriptionStatus:
    """`status` without the subscription itself (`subscription` is None): the same choice of
    the subscription that speaks and the same premium rule, from its columns only."""
    rows = (await session.execute(_STATUS_READ, {"account_id": account.id})).all()
    return _status_of(rows, container)


def _status_of(rows: Sequence[StatusColumns], container: Container) -> SubscriptionStatus:
    live = [r for r in rows if r.status in LIVE_STATUSES]
    sub = min(live, key=speaks_first) if live else (rows[0] if rows else None)
    now, grace = container.clock.now(), container.settings.past_due_grace_days
    return SubscriptionStatus(
        has_premium=has_premium(sub, now, grace),
        plan=sub.plan_code if sub else None,
        status=sub.status if sub else None,
        interval=sub.interval if sub else None,
        current_period_end=sub.current_period_end if sub else None,
        cancel_at_period_end=bool(sub.cancel_at_period_end) if sub else False,
        subscription=None,
    )


@dataclass(frozen=True, slots=True)
class _StatusRow:
    status: str
    plan_code: str
    interval: str
    current_period_end: datetime | None
    cancel_at_period_end: bool
    past_due_since: datetime | None
    stripe_created: int
    stripe_subscription_id: str


# The status read of the account a caller names, in one statement from the account's kind and
# external id (tenancy's AccountRef) to its subscriptions' columns: an account without any is
# one row of NULLs, a missing account no row.
_STATUS_BY_REF = PreparedRead(
    select(BillingAccount.id, *_STATUS_READ.selected_columns)
    .select_from(BillingAccount)
    .outerjoin(Subscription, and_(Subscription.account_id == BillingAccount.id))
    .where(
        BillingAccount.kind == bindparam("kind", None),
        BillingAccount.external_id == bindparam("external_id", None),
    )
    .order_by(Subscription.stripe_created.desc(), Subscription.created_at.desc())
)


async def premium_status_of(container: Container, ref: AccountRef) -> SubscriptionStatus | None:
    """`premium_status` of the account `ref` names, in one hot read (db/hot_read.py) with no
    unit of work; None when the account does not exist yet (the caller creates it through
    tenancy and asks again)."""
    rows = await container.db.read_rows(
        _STATUS_BY_REF, kind=ref.kind.value, external_id=ref.external_id
    )
    if not rows:
        return None
    facts = [_StatusRow(*row[1:]) for row in rows if row[1] is not None]
    return _status_of(facts, container)
