"""Reading subscriptions: which one speaks for an account, and whether it unlocks premium."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.container import Container
from billfold.customers.models import BillingAccount
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
