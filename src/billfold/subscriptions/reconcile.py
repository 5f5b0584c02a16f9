"""Comparing billfold's subscriptions with Stripe's, and fixing billfold's copy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.container import Container
from billfold.customers.service import (
    AuditRecorder,
)
from billfold.stripe.gateway import (
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
