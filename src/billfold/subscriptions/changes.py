"""Changing a subscription: cancel, reactivate, change its plan.

No database lock is held while Stripe answers (ARCHITECTURE.md, "Calling Stripe: reserve,
call, record"): these take no session and open their own short units of work, so the caller
must hold no transaction (the routes end theirs with `billfold.api.deps.end_transaction`).

1. Reserve (commit): lock the subscription row for this step only, check the rules, and insert
   a `reserved` `SubscriptionChange` carrying the whole Stripe request. A subscription has at
   most one reserved change (a partial unique index): a request that finds one reserved (another
   request is calling Stripe, or died doing so) finishes it instead of waiting on a lock, with
   its stored request and key, which Stripe answers with the same object. When that change is
   the one this request asks for, its answer is this request's answer: two concurrent cancels
   (or the same plan change twice) make one Stripe change.
2. Call Stripe with the key `{kind}:{change id}`; no transaction is open.
3. Record (commit): under the row's lock, a conditional UPDATE (`... WHERE state = 'reserved'`)
   so that of the requests that finished one change exactly one writes Stripe's answer on the
   subscription (through `sync_subscription`, used only if the row's revision has not moved
   since the reservation) and the audit entry. Stripe's webhook for the change is applied later
   the same way every event is, idempotently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.catalog.service import load_catalog, resolve_price
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import AuditRecorder
from billfold.errors import BillfoldError, UpstreamUnavailable, ValidationFailed
from billfold.stripe.gateway import (
    ProrationBehavior,
    StripeGateway,
    SubscriptionSnapshot,
    gateway_of,
)
from billfold.subscriptions.models import (
    CHANGEABLE_STATUSES,
    MAX_QUANTITY,
    ChangeState,
    Subscription,
    SubscriptionChange,
)
from billfold.subscriptions.reads import current_subscription
from billfold.subscriptions.reservations import finish_own_reservation
from billfold.subscriptions.sync import (
    PrefetchedSubscription,
    lock_subscription,
    prefetch_subscription,
    sync_subscription,
)

NO_ACTIVE_SUBSCRIPTION = "No active Stripe subscription found"
NOT_SET_TO_CANCEL = "Subscription is not set to cancel"

CANCEL_NOW = "cancel-now"
CANCEL_AT_PERIOD_END = "cancel-at-period-end"
REACTIVATE = "reactivate"
CHANGE_PLAN = "change-plan"

# How many times one change may find another change of the subscription reserved (finishing it
# each time) before it gives up with a Conflict.
MAX_CHANGE_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class _Change:
    """A `SubscriptionChange` as a unit of work that has ended saw it."""

    id: str
    subscription_id: str
    account_id: str
    stripe_subscription_id: str
    kind: str
    revision: int
    request: dict[str, Any]

    @classmethod
    def of(cls, row: SubscriptionChange) -> _Change:
        return cls(
            row.id,
            row.subscription_id,
            row.account_id,
            row.stripe_subscription_id,
            row.kind,
            row.revision,
            dict(row.request),
        )

    @property
    def idempotency_key(self) -> str:
        return f"{self.kind}:{self.id}"


def _change_id(subscription_id: str, seq: int) -> str:
    # Derived from billfold's own ids: the subscription and its change count.
    digest = hashlib.sha256(f"{subscription_id}|{seq}".encode()).hexdigest()
    return f"chg_{digest[:40]}"


async def _changeable(session: AsyncSession, account: BillingAccount) -> Subscription:
    sub = await current_subscription(session, account)
    if sub is None or sub.status not in CHANGEABLE_STATUSES:
        raise ValidationFailed(NO_ACTIVE_SUBSCRIPTION)
    locked = await lock_subscription(session, sub.stripe_subscription_id)
    if locked is None or locked.status not in CHANGEABLE_STATUSES:
        raise ValidationFailed(NO_ACTIVE_SUBSCRIPTION)
    return locked


# What a change asks of Stripe, from the locked row: its rules raise ValidationFailed.
RequestFor = Callable[[AsyncSession, Subscription], Awaitable[dict[str, Any]]]


async def _reserve(
    container: Container, account_id: str, kind: str, request_for: RequestFor
) -> tuple[_Change, bool]:
    """Step 1, one short unit of work: the subscription's reserved change if it has one, else a
    new one. True with it when it is the change this request asks for."""
    async with container.db.transaction() as session:
        account = await session.get(BillingAccount, account_id)
        assert account is not None
        sub = await _changeable(session, account)
        request = await request_for(session, sub)
        pending = (
            await session.execute(
                select(SubscriptionChange).where(
                    SubscriptionChange.subscription_id == sub.id,
                    SubscriptionChange.state == ChangeState.RESERVED,
                )
            )
        ).scalar_one_or_none()
        if pending is not None:
            return _Change.of(pending), pending.kind == kind and pending.request == request
        last = await session.execute(
            select(func.max(SubscriptionChange.seq)).where(
                SubscriptionChange.subscription_id == sub.id
            )
        )
        seq = (last.scalar_one() or 0) + 1
        now = container.clock.now()
        row = SubscriptionChange(
            id=_change_id(sub.id, seq),
            subscription_id=sub.id,
            account_id=sub.account_id,
            stripe_subscription_id=sub.stripe_subscription_id,
            seq=seq,
            kind=kind,
            revision=sub.revision,
            state=ChangeState.RESERVED,
            request=request,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        return _Change.of(row), True


async def _call(gateway: StripeGateway, change: _Change) -> SubscriptionSnapshot:
    """Step 2, no unit of work open: the change's own request, under its own key."""
    subscriptions = gateway.subscriptions
    sid, key, r = change.stripe_subscription_id, change.idempotency_key, change.request
    if change.kind == CANCEL_NOW:
        return await subscriptions.cancel(sid, idempotency_key=key)
    if change.kind in (CANCEL_AT_PERIOD_END, REACTIVATE):
        return await subscriptions.update(
            sid, cancel_at_period_end=change.kind == CANCEL_AT_PERIOD_END, idempotency_key=key
        )
    assert change.kind == CHANGE_PLAN, change.kind
    return await subscriptions.update(
        sid,
        item_id=r["item_id"],
        price_id=r["price_id"],
        quantity=r["quantity"],
        proration_behavior=r["proration"],
        idempotency_key=key,
    )


async def _close(session: AsyncSession, change: _Change, state: str, container: Container) -> bool:
    closed = await session.execute(
        update(SubscriptionChange)
        .where(
            SubscriptionChange.id == change.id,
            SubscriptionChange.state == ChangeState.RESERVED,
        )
        .values(state=state, updated_at=container.clock.now())
        .execution_options(synchronize_session=False)
    )
    return getattr(closed, "rowcount", 0) == 1


class _Moved(Exception):
    """The row was written since the change was reserved: Stripe's answer may be older."""


async def _audit(
    session: AsyncSession, audit: AuditRecorder, change: _Change, sub: Subscription
) -> None:
    if change.kind == CHANGE_PLAN:
        action = "subscription.plan_changed"
        details: dict[str, Any] = {
            "from": change.request["before"],
            "to": {"price_id": sub.price_id, "plan": sub.plan_code, "quantity": sub.quantity},
            "proration": change.request["proration"],
        }
    elif change.kind == REACTIVATE:
        action, details = "subscription.reactivated", {"status": sub.status}
    else:
        action = (
            "subscription.canceled"
            if change.kind == CANCEL_NOW
            else "subscription.cancel_scheduled"
        )
        details = {"status": sub.status, "current_period_end": sub.current_period_end}
    await audit.record(
        session,
        action,
        account_id=change.account_id,
        target=change.stripe_subscription_id,
        details=details,
    )


async def _record(
    container: Container, change: _Change, snapshot: SubscriptionSnapshot, audit: AuditRecorder
) -> Subscription:
    """Step 3, one short unit of work: of the requests that finished `change`, exactly one
    writes Stripe's answer and the audit entry. Stripe's answer is written only if the row's
    revision has not moved since the reservation; otherwise the state is read from Stripe
    again (no transaction open) and written the way `sync_subscription` writes an event's."""
    prefetched = PrefetchedSubscription(change.stripe_subscription_id, change.revision, snapshot)
    for last in (False, True):
        try:
            async with container.db.transaction() as session:
                # The row first, then the change: the order every writer locks them in.
                sub = await lock_subscription(session, change.stripe_subscription_id)
                assert sub is not None
                if not await _close(session, change, ChangeState.RECORDED, container):
                    return sub  # another request recorded it, in a transaction now committed
                if not last and sub.revision != prefetched.revision:
                    raise _Moved
                sub = await sync_subscription(
                    session,
                    container,
                    change.stripe_subscription_id,
                    prefetched=prefetched,
                    fallback=snapshot,
                )
                await _audit(session, audit, change, sub)
                return sub
        except _Moved:
            prefetched = await prefetch_subscription(container, change.stripe_subscription_id)
    raise AssertionError("unreachable")


async def _refuse(container: Container, change: _Change) -> None:
    async with container.db.transaction() as session:
        await _close(session, change, ChangeState.REFUSED, container)


async def _change(
    container: Container,
    account: BillingAccount,
    kind: str,
    request_for: RequestFor,
    audit: AuditRecorder,
) -> Subscription:
    gateway = gateway_of(container)

    async def one_round() -> Subscription | None:
        change, mine = await _reserve(container, account.id, kind, request_for)
        try:
            snapshot = await _call(gateway, change)
        except UpstreamUnavailable:
            # Stripe may have made the change: left reserved, the next change of this
            # subscription finishes it with the same key (Stripe answers the same object).
            raise
        except BillfoldError:
            # Stripe refused the request itself: retrying it can never succeed.
            await _refuse(container, change)
            if mine:
                raise
            return None
        sub = await _record(container, change, snapshot, audit)
        # Another request's change, finished here: go round with the state it left.
        return sub if mine else None

    return await finish_own_reservation(
        MAX_CHANGE_ROUNDS,
        one_round,
        busy="too many changes are being made to this subscription at once; try again",
    )


async def cancel(
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
    immediately: bool = False,
) -> Subscription:
    """Cancel the account's subscription at the end of the period (access stays until then),
    or now. ValidationFailed ("No active Stripe subscription found") when there is none.
    Takes no session: the caller holds no transaction (see the module's docstring)."""

    async def request_for(session: AsyncSession, sub: Subscription) -> dict[str, Any]:
        return {}

    kind = CANCEL_NOW if immediately else CANCEL_AT_PERIOD_END
    return await _change(container, account, kind, request_for, audit)


async def reactivate(
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
) -> Subscription:
    """Undo a cancellation scheduled for the period end. ValidationFailed ("Subscription is
    not set to cancel") when none is scheduled. Takes no session (see the module's
    docstring)."""

    async def request_for(session: AsyncSession, sub: Subscription) -> dict[str, Any]:
        if not sub.cancel_at_period_end:
            raise ValidationFailed(NOT_SET_TO_CANCEL)
        return {}

    return await _change(container, account, REACTIVATE, request_for, audit)


async def change_plan(
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
    price_id: str | None = None,
    plan: str | None = None,
    interval: str | None = None,
    currency: str | None = None,
    quantity: int | None = None,
    proration: ProrationBehavior = "create_prorations",
) -> Subscription:
    """Move the subscription to another catalog price and/or quantity, prorating by default
    (`proration`: create_prorations, always_invoice, or none). Takes no session (see the
    module's docstring)."""
    if proration not in ("create_prorations", "always_invoice", "none"):
        raise ValidationFailed(
            "proration must be create_prorations, always_invoice or none", field="proration"
        )
    if quantity is not None and not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(f"quantity must be 1 to {MAX_QUANTITY}", field="quantity")

    async def request_for(session: AsyncSession, sub: Subscription) -> dict[str, Any]:
        catalog = await load_catalog(session, container.settings)
        target_price = sub.price_id
        if price_id is not None or plan is not None:
            _, price = resolve_price(
                catalog,
                price_id=price_id,
                plan=plan,
                interval=interval,
                currency=currency or sub.currency,
            )
            target_price = price.stripe_price_id
        if target_price == sub.price_id and (quantity is None or quantity == sub.quantity):
            raise ValidationFailed("the subscription is already on this plan", field="price_id")
        return {
            "item_id": sub.raw_item_id,
            "price_id": target_price,
            "quantity": quantity,
            "proration": proration,
            "before": {"price_id": sub.price_id, "plan": sub.plan_code, "quantity": sub.quantity},
        }

    return await _change(container, account, CHANGE_PLAN, request_for, audit)
