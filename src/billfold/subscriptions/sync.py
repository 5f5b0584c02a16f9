"""Keeping billfold's copy of every subscription equal to Stripe's.

Writes are ordered per subscription by its row lock and its `revision`: whoever writes holds
the lock and a state read from Stripe after every earlier write, so a slower writer can never
put back an older state (see `sync_subscription`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.catalog.service import BILLFOLD_INTERVAL, Catalog, load_catalog
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import (
    ACCOUNT_METADATA_KEY,
    AuditRecorder,
    link_stripe_customer,
)
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import NotFound
from billfold.stripe.gateway import (
    SubscriptionSnapshot,
    gateway_of,
)
from billfold.subscriptions.models import (
    LIVE_STATUSES,
    PLAN_METADATA_KEY,
    Subscription,
)

log = logging.getLogger("billfold.subscriptions")

# In a unit of work's `session.info`: by Stripe subscription id, (the row's revision before this
# transaction first wrote it, the revision of its latest write here), for `sync_subscription`.
_OWN_WRITES = "billfold.subscriptions.own_writes"


async def lock_subscription(
    session: AsyncSession, stripe_subscription_id: str
) -> Subscription | None:
    stmt = (
        select(Subscription)
        .where(Subscription.stripe_subscription_id == stripe_subscription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def _plan_code_for(catalog: Catalog, snapshot: SubscriptionSnapshot) -> str | None:
    for key in (snapshot.price_id, snapshot.lookup_key):
        if key:
            found = catalog.find_price(key)
            if found is not None:
                return found[0].code
    if snapshot.product_id:
        plan = next((p for p in catalog.plans if p.product_id == snapshot.product_id), None)
        if plan is not None:
            return plan.code
    return snapshot.metadata.get(PLAN_METADATA_KEY)


def write_snapshot(
    sub: Subscription,
    snapshot: SubscriptionSnapshot,
    catalog: Catalog | None,
    now: datetime,
    *,
    seen_at: int | None = None,
) -> dict[str, tuple[Any, Any]]:
    """Copy Stripe's state onto the row; returns what changed (field: (before, after)).
    Without a `catalog` the row keeps its plan (its price did not change)."""
    before = _fingerprint(sub)
    if snapshot.status == "past_due":
        if sub.status != "past_due" or sub.past_due_since is None:
            sub.past_due_since = now
    else:
        sub.past_due_since = None
    sub.stripe_customer_id = snapshot.customer_id
    sub.status = snapshot.status
    sub.price_id = snapshot.price_id
    if catalog is not None:
        sub.plan_code = _plan_code_for(catalog, snapshot)
    sub.interval = BILLFOLD_INTERVAL.get(snapshot.interval or "", snapshot.interval)
    sub.currency = snapshot.currency
    sub.unit_amount = snapshot.unit_amount
    sub.quantity = snapshot.quantity
    sub.current_period_start = snapshot.current_period_start
    sub.current_period_end = snapshot.current_period_end
    sub.cancel_at_period_end = snapshot.cancel_at_period_end
    sub.cancel_at = snapshot.cancel_at
    sub.canceled_at = snapshot.canceled_at
    sub.ended_at = snapshot.ended_at
    sub.trial_end = snapshot.trial_end
    sub.stripe_created = snapshot.created
    sub.raw = snapshot.raw
    if seen_at is not None:
        sub.stripe_seen_at = max(sub.stripe_seen_at or 0, seen_at)
    after = _fingerprint(sub)
    changed = {name: (before[name], after[name]) for name in after if before[name] != after[name]}
    # Every write moves the revision (see `sync_subscription`), changed or not.
    sub.revision = (sub.revision or 0) + 1
    if changed:
        sub.updated_at = now
    return changed


_WATCHED = (
    "status",
    "price_id",
    "quantity",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "canceled_at",
    "ended_at",
    "trial_end",
)


def _fingerprint(sub: Subscription) -> dict[str, Any]:
    return {name: getattr(sub, name) for name in _WATCHED}


class AccountNotYetKnown(NotFound):
    """A Stripe object names a customer billfold cannot place yet (retried later)."""

    code = "account_not_yet_known"


async def _account_for_snapshot(
    session: AsyncSession, snapshot: SubscriptionSnapshot, account_hint: str | None
) -> BillingAccount:
    for account_id in (account_hint, snapshot.metadata.get(ACCOUNT_METADATA_KEY)):
        if account_id:
            found = await session.get(BillingAccount, account_id)
            if found is not None:
                return found
    if snapshot.customer_id:
        stmt = select(BillingAccount).where(
            BillingAccount.stripe_customer_id == snapshot.customer_id
        )
        found = (await session.execute(stmt)).scalar_one_or_none()
        if found is not None:
            return found
    raise AccountNotYetKnown(
        f"subscription {snapshot.id} belongs to customer {snapshot.customer_id}, "
        "which no billing account has (yet)"
    )


@dataclass(frozen=True, slots=True)
class PrefetchedSubscription:
    """A subscription read from Stripe before the row lock was taken, with the row's revision
    at that moment (None: no row yet); `snapshot` is None when Stripe did not know it."""

    stripe_subscription_id: str
    revision: int | None
    snapshot: SubscriptionSnapshot | None


async def subscription_revision(session: AsyncSession, stripe_subscription_id: str) -> int | None:
    """The revision of billfold's row for a Stripe subscription (None: no row yet)."""
    return (
        await session.execute(
            select(Subscription.revision).where(
                Subscription.stripe_subscription_id == stripe_subscription_id
            )
        )
    ).scalar_one_or_none()


async def subscription_revisions(
    session: AsyncSession, stripe_subscription_ids: set[str]
) -> dict[str, int]:
    """The revisions of billfold's rows for these Stripe subscriptions (those that have one)."""
    if not stripe_subscription_ids:
        return {}
    rows = await session.execute(
        select(Subscription.stripe_subscription_id, Subscription.revision).where(
            Subscription.stripe_subscription_id.in_(stripe_subscription_ids)
        )
    )
    return {str(sub_id): int(revision) for sub_id, revision in rows.all()}


@dataclass(frozen=True, slots=True)
class NotedRevision:
    """A row's revision read before any Stripe read that `prefetch_subscription` will do (in
    the transaction that stored the event), which saves it a transaction of its own."""

    stripe_subscription_id: str
    revision: int | None


async def prefetch_subscription(
    container: Container, stripe_subscription_id: str, *, noted: NotedRevision | None = None
) -> PrefetchedSubscription:
    """Read a subscription from Stripe holding no lock (see `sync_subscription`). The row's
    revision is read first, unless `noted` already holds it for this subscription."""
    if noted is not None and noted.stripe_subscription_id == stripe_subscription_id:
        revision = noted.revision
    else:
        async with container.db.transaction() as session:
            revision = await subscription_revision(session, stripe_subscription_id)
    try:
        snapshot: SubscriptionSnapshot | None = await gateway_of(container).subscriptions.retrieve(
            stripe_subscription_id
        )
    except NotFound:
        snapshot = None
    return PrefetchedSubscription(stripe_subscription_id, revision, snapshot)


async def sync_subscription(
    session: AsyncSession,
    container: Container,
    stripe_subscription_id: str,
    *,
    account_hint: str | None = None,
    seen_at: int | None = None,
    fallback: SubscriptionSnapshot | None = None,
    prefetched: PrefetchedSubscription | None = None,
    audit: AuditRecorder | None = None,
) -> Subscription:
    """Make billfold's row for a Stripe subscription equal to what Stripe says now.

    Whoever writes the row holds its lock and a state read from Stripe after every earlier
    write: either read under the lock, or `prefetched` before it while the row's revision has
    not moved since (every write bumps it). So the last writer always writes the newest state
    and the order in which events arrive does not matter. `fallback` (an event's own copy) is
    used only when Stripe no longer knows the subscription, and only if it is newer than what
    the row already holds.
    """
    gateway = gateway_of(container)
    now = container.clock.now()

    async def read() -> tuple[SubscriptionSnapshot, bool]:
        try:
            return await gateway.subscriptions.retrieve(stripe_subscription_id), True
        except NotFound:
            if fallback is None:
                raise
            return fallback, False

    def still_current(row: Subscription | None) -> bool:
        if prefetched is None or prefetched.stripe_subscription_id != stripe_subscription_id:
            return False
        if prefetched.snapshot is None and fallback is None:
            return False
        revision = row.revision if row is not None else None
        # Or the row moved since the read only by this transaction's own writes (a batch of
        # events about it): each wrote a state read after the read's revision, as this one is.
        own = session.info.get(_OWN_WRITES, {}).get(stripe_subscription_id)
        return prefetched.revision == revision or (
            own is not None and own == (prefetched.revision, revision)
        )

    sub = await lock_subscription(session, stripe_subscription_id)
    if still_current(sub):
        assert prefetched is not None
        snapshot = prefetched.snapshot or fallback
        assert snapshot is not None
        authoritative = prefetched.snapshot is not None
    else:
        snapshot, authoritative = await read()
    created = False
    if sub is None:
        account = await _account_for_snapshot(session, snapshot, account_hint)
        # Before the insert: locks are taken account first, then subscription, everywhere.
        await link_stripe_customer(session, account, snapshot.customer_id, now=now)
        created = await insert_ignoring_conflict(
            session,
            Subscription.__table__,  # type: ignore[arg-type]
            {
                "id": new_id("bsub"),
                "account_id": account.id,
                "stripe_subscription_id": snapshot.id,
                "stripe_customer_id": snapshot.customer_id,
                "status": snapshot.status,
                "quantity": snapshot.quantity,
                "cancel_at_period_end": False,
                "stripe_created": snapshot.created,
                "stripe_seen_at": 0,
                "revision": 0,
                "raw": {},
                "created_at": now,
                "updated_at": now,
            },
            ["stripe_subscription_id"],
        )
        sub = await lock_subscription(session, stripe_subscription_id)
        assert sub is not None
        if not created:
            # A concurrent first sync inserted (and maybe wrote) the row while this one was
            # reading Stripe without a lock to hold: read again, now under the row's lock.
            snapshot, authoritative = await read()
    if not authoritative and seen_at is not None and not created and seen_at <= sub.stripe_seen_at:
        return sub  # an older event's copy never overwrites newer state
    previous_status = None if created else sub.status
    if created and snapshot.status in LIVE_STATUSES:
        others = (
            (
                await session.execute(
                    select(Subscription.stripe_subscription_id).where(
                        Subscription.account_id == sub.account_id,
                        Subscription.id != sub.id,
                        Subscription.status.in_(LIVE_STATUSES),
                    )
                )
            )
            .scalars()
            .all()
        )
        if others:
            log.warning(
                "account %s now pays for %s besides %s: see `billfold stripe reconcile`",
                sub.account_id,
                snapshot.id,
                ", ".join(others),
            )
    # The plan follows the price: the catalog is read only when the price is new to the row.
    same_price = not created and sub.plan_code is not None and sub.price_id == snapshot.price_id
    catalog = None if same_price else await load_catalog(session, container.settings)
    before = None if created else sub.revision
    changed = write_snapshot(sub, snapshot, catalog, now, seen_at=seen_at)
    await session.flush()
    own = session.info.setdefault(_OWN_WRITES, {})
    found = own.get(stripe_subscription_id)
    base = found[0] if found is not None and found[1] == before else before
    own[stripe_subscription_id] = (base, sub.revision)
    if audit is not None and (created or changed):
        if created:
            action = "subscription.created"
        elif previous_status != sub.status:
            action = "subscription.status_changed"
        else:
            action = "subscription.updated"
        await audit.record(
            session,
            action,
            account_id=sub.account_id,
            target=sub.stripe_subscription_id,
            details={
                "from": previous_status,
                "to": sub.status,
                "plan": sub.plan_code,
                "changed": {name: {"from": old, "to": new} for name, (old, new) in changed.items()},
            },
            actor="stripe",
        )
    return sub


async def link_checkout_customer(
    session: AsyncSession, account_id: str | None, customer_id: str | None, *, now: datetime
) -> None:
    """Link a completed Checkout session's customer to its account if it has none yet."""
    if not account_id or not customer_id:
        return
    account = await session.get(BillingAccount, account_id)
    if account is not None:
        await link_stripe_customer(session, account, customer_id, now=now)
