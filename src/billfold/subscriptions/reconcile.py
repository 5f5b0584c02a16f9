"""Comparing billfold's subscriptions with Stripe's, and fixing billfold's copy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import (
    ACCOUNT_METADATA_KEY,
    AuditRecorder,
)
from billfold.errors import NotFound
from billfold.stripe.gateway import (
    CustomerInfo,
    SubscriptionSnapshot,
    gateway_of,
)
from billfold.subscriptions.models import (
    LIVE_STATUSES,
    Subscription,
)
from billfold.subscriptions.reads import speaks_first
from billfold.subscriptions.sync import (
    AccountNotYetKnown,
    sync_subscription,
)

log = logging.getLogger("billfold.subscriptions")


@dataclass(frozen=True, slots=True)
class Difference:
    """One way billfold's copy of a subscription differs from Stripe's."""

    stripe_subscription_id: str
    field: str
    billfold: Any
    stripe: Any


def _compare(sub: Subscription | None, snapshot: SubscriptionSnapshot) -> list[Difference]:
    if sub is None:
        return [Difference(snapshot.id, "missing", None, snapshot.status)]
    pairs: list[tuple[str, Any, Any]] = [
        ("status", sub.status, snapshot.status),
        ("price_id", sub.price_id, snapshot.price_id),
        ("quantity", sub.quantity, snapshot.quantity),
        ("cancel_at_period_end", sub.cancel_at_period_end, snapshot.cancel_at_period_end),
        ("current_period_end", sub.current_period_end, snapshot.current_period_end),
        ("canceled_at", sub.canceled_at, snapshot.canceled_at),
    ]
    return [Difference(snapshot.id, name, a, b) for name, a, b in pairs if a != b]


async def reconcile(
    session: AsyncSession,
    container: Container,
    *,
    fix: bool = False,
    audit: AuditRecorder | None = None,
) -> list[Difference]:
    """Compare every Stripe subscription with billfold's copy and list each difference; with
    `fix`, bring billfold's copy in line (subscriptions of unknown customers stay reported)."""
    gateway = gateway_of(container)
    differences: list[Difference] = []
    seen: set[str] = set()
    for snapshot in await gateway.subscriptions.list():
        seen.add(snapshot.id)
        row = (
            await session.execute(
                select(Subscription).where(Subscription.stripe_subscription_id == snapshot.id)
            )
        ).scalar_one_or_none()
        found = _compare(row, snapshot)
        differences.extend(found)
        if fix and found:
            try:
                fixed = await sync_subscription(session, container, snapshot.id, audit=audit)
            except AccountNotYetKnown:
                log.warning("reconcile: %s has no billing account", snapshot.id)
                continue
            if audit is not None:
                await audit.record(
                    session,
                    "subscription.reconciled",
                    account_id=fixed.account_id,
                    target=snapshot.id,
                    details={
                        "differences": [
                            {"field": d.field, "billfold": d.billfold, "stripe": d.stripe}
                            for d in found
                        ]
                    },
                )
    rows = (await session.execute(select(Subscription))).scalars().all()
    for row in rows:
        if row.stripe_subscription_id not in seen:
            differences.append(
                Difference(row.stripe_subscription_id, "missing_in_stripe", row.status, None)
            )
    differences.extend(duplicate_subscriptions(rows))
    return differences


DUPLICATE = "duplicate_live_subscription"


def duplicate_subscriptions(rows: Sequence[Subscription]) -> list[Difference]:
    """Accounts paying for more than one live subscription (e.g. one created outside
    billfold): one `Difference` per extra subscription (`billfold`: the account, `stripe`: the
    subscription that speaks for it). `--fix` leaves them alone: which to cancel and whether
    to refund is the operator's decision."""
    by_account: dict[str, list[Subscription]] = {}
    for row in rows:
        if row.status in LIVE_STATUSES:
            by_account.setdefault(row.account_id, []).append(row)
    found: list[Difference] = []
    for account_id, live in sorted(by_account.items()):
        if len(live) > 1:
            first, *extra = sorted(live, key=speaks_first)
            found.extend(
                Difference(
                    sub.stripe_subscription_id, DUPLICATE, account_id, first.stripe_subscription_id
                )
                for sub in extra
            )
    return found


# --- orphan Stripe customers ---------------------------------------------------------------------

ORPHAN = "orphan_customer"
NO_ACCOUNT = "no_account"  # the account it names does not exist (its creation was rolled back)
UNLINKED = "account_unlinked"  # the account exists and has no customer: this one is its own
TAKEN = "account_has_another"  # the account is linked to another customer


@dataclass(frozen=True, slots=True)
class OrphanCustomer:
    """A Stripe customer naming a billing account (`billfold_account_id`) that is not linked to it.

    `repair`: what `--fix` did (`linked`, `deleted`), or None: left alone (not fixing, or the
    customer has a live subscription, which only an operator may end)."""

    customer_id: str
    account_id: str
    reason: str
    linked_customer_id: str | None
    live_subscriptions: int
    repair: str | None = None


async def orphan_customers(
    container: Container, *, fix: bool = False, audit: AuditRecorder | None = None
) -> list[OrphanCustomer]:
    """Stripe customers whose `billfold_account_id` names no account, or an account linked to
    another customer (a crash between creating the customer and recording it, before
    `customer:{account id}` keys). With `fix`: an account with no customer gets its orphan (the
    one with a live subscription, else the oldest); any other orphan with no live subscription
    is deleted in Stripe (Stripe keeps it retrievable as deleted and it can be charged, reused
    or listed no more; metadata on it would leave a chargeable customer behind). An orphan
    with a live subscription is only reported: whether to cancel and refund is a decision.

    Holds no transaction while Stripe answers: list, read the accounts, then one short unit of
    work per repair (a conditional link, or the audit entry after a deletion)."""
    gateway = gateway_of(container)
    customers = [c for c in await gateway.customers.list() if c.metadata.get(ACCOUNT_METADATA_KEY)]
    customers.reverse()  # oldest first
    named = {c.metadata[ACCOUNT_METADATA_KEY] for c in customers}
    async with container.db.transaction() as session:
        rows = await session.execute(
            select(BillingAccount.id, BillingAccount.stripe_customer_id).where(
                BillingAccount.id.in_(named)
            )
        )
        linked: dict[str, str | None] = {account_id: cid for account_id, cid in rows.all()}
    candidates: list[tuple[CustomerInfo, int]] = []
    for customer in customers:
        account_id = customer.metadata[ACCOUNT_METADATA_KEY]
        if account_id in linked and linked[account_id] == customer.id:
            continue
        subscriptions = await gateway.subscriptions.list(customer_id=customer.id)
        live = sum(1 for s in subscriptions if s.status in LIVE_STATUSES)
        candidates.append((customer, live))
    # An unlinked account takes the orphan that pays first, then the oldest.
    candidates.sort(key=lambda pair: -pair[1])
    found: list[OrphanCustomer] = []
    for customer, live in candidates:
        account_id = customer.metadata[ACCOUNT_METADATA_KEY]
        if account_id not in linked:
            reason, other = NO_ACCOUNT, None
        elif linked[account_id] is None:
            reason, other = UNLINKED, None
        else:
            reason, other = TAKEN, linked[account_id]
        repair = None
        if fix:
            repair = await _repair(container, customer.id, account_id, reason, live, audit)
            if repair == "linked":
                linked[account_id] = customer.id
        found.append(OrphanCustomer(customer.id, account_id, reason, other, live, repair))
    found.sort(key=lambda o: (o.account_id, o.customer_id))
    return found


async def _repair(
    container: Container,
    customer_id: str,
    account_id: str,
    reason: str,
    live: int,
    audit: AuditRecorder | None,
) -> str | None:
    gateway = gateway_of(container)
    if reason == UNLINKED:
        async with container.db.transaction() as session:
            now = container.clock.now()
            done = await session.execute(
                update(BillingAccount)
                .where(BillingAccount.id == account_id, BillingAccount.stripe_customer_id.is_(None))
                .values(
                    stripe_customer_id=customer_id, stripe_customer_created_at=now, updated_at=now
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(done, "rowcount", 0) == 1:
                if audit is not None:
                    await audit.record(
                        session,
                        "customer.linked",
                        account_id=account_id,
                        target=customer_id,
                        details={"by": "reconcile"},
                    )
                return "linked"
        # Linked meanwhile (a request recorded its customer): this one is surplus.
    if live:
        return None
    try:
        await gateway.customers.delete(customer_id)
    except NotFound:
        pass  # deleted meanwhile
    async with container.db.transaction() as session:
        exists = await session.get(BillingAccount, account_id) is not None
        if audit is not None:
            await audit.record(
                session,
                "customer.orphan_deleted",
                account_id=account_id if exists else None,
                target=customer_id,
                details={"reason": reason, "billfold_account_id": account_id},
            )
    return "deleted"
