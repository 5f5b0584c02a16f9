"""Changing a subscription: cancel, reactivate, change its plan."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.catalog.service import load_catalog, resolve_price
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import (
    AuditRecorder,
)
from billfold.errors import ValidationFailed
from billfold.stripe.gateway import (
    ProrationBehavior,
    gateway_of,
)
from billfold.subscriptions.models import (
    CHANGEABLE_STATUSES,
    MAX_QUANTITY,
    Subscription,
)
from billfold.subscriptions.reads import current_subscription
from billfold.subscriptions.sync import (
    lock_subscription,
    write_snapshot,
)

NO_ACTIVE_SUBSCRIPTION = "No active Stripe subscription found"
NOT_SET_TO_CANCEL = "Subscription is not set to cancel"


async def _changeable(session: AsyncSession, account: BillingAccount) -> Subscription:
    sub = await current_subscription(session, account)
    if sub is None or sub.status not in CHANGEABLE_STATUSES:
        raise ValidationFailed(NO_ACTIVE_SUBSCRIPTION)
    locked = await lock_subscription(session, sub.stripe_subscription_id)
    if locked is None or locked.status not in CHANGEABLE_STATUSES:
        raise ValidationFailed(NO_ACTIVE_SUBSCRIPTION)
    return locked


def _key(sub: Subscription, action: str) -> str:
    # The row's revision changes with every write, so the same action later is a new request
    # to Stripe, while a retry of this one (the write never committed) replays the same key.
    return f"billfold-{action}-{sub.id}-r{sub.revision}"


async def cancel(
    session: AsyncSession,
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
    immediately: bool = False,
) -> Subscription:
    """Cancel the account's subscription at the end of the period (access stays until then),
    or now. ValidationFailed ("No active Stripe subscription found") when there is none."""
    gateway = gateway_of(container)
    sub = await _changeable(session, account)
    if immediately:
        snapshot = await gateway.subscriptions.cancel(
            sub.stripe_subscription_id, idempotency_key=_key(sub, "cancel-now")
        )
        action = "subscription.canceled"
    else:
        snapshot = await gateway.subscriptions.update(
            sub.stripe_subscription_id,
            cancel_at_period_end=True,
            idempotency_key=_key(sub, "cancel-at-period-end"),
        )
        action = "subscription.cancel_scheduled"
    catalog = await load_catalog(session, container.settings)
    write_snapshot(sub, snapshot, catalog, container.clock.now())
    await session.flush()
    await audit.record(
        session,
        action,
        account_id=account.id,
        target=sub.stripe_subscription_id,
        details={"status": sub.status, "current_period_end": sub.current_period_end},
    )
    return sub


async def reactivate(
    session: AsyncSession,
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
) -> Subscription:
    """Undo a cancellation scheduled for the period end. ValidationFailed ("Subscription is
    not set to cancel") when none is scheduled."""
    sub = await _changeable(session, account)
    if not sub.cancel_at_period_end:
        raise ValidationFailed(NOT_SET_TO_CANCEL)
    snapshot = await gateway_of(container).subscriptions.update(
        sub.stripe_subscription_id,
        cancel_at_period_end=False,
        idempotency_key=_key(sub, "reactivate"),
    )
    catalog = await load_catalog(session, container.settings)
    write_snapshot(sub, snapshot, catalog, container.clock.now())
    await session.flush()
    await audit.record(
        session,
        "subscription.reactivated",
        account_id=account.id,
        target=sub.stripe_subscription_id,
        details={"status": sub.status},
    )
    return sub


async def change_plan(
    session: AsyncSession,
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
    (`proration`: create_prorations, always_invoice, or none)."""
    if proration not in ("create_prorations", "always_invoice", "none"):
        raise ValidationFailed(
            "proration must be create_prorations, always_invoice or none", field="proration"
        )
    if quantity is not None and not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(f"quantity must be 1 to {MAX_QUANTITY}", field="quantity")
    catalog = await load_catalog(session, container.settings)
    sub = await _changeable(session, account)
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
    before = {"price_id": sub.price_id, "plan": sub.plan_code, "quantity": sub.quantity}
    snapshot = await gateway_of(container).subscriptions.update(
        sub.stripe_subscription_id,
        item_id=sub.raw_item_id,
        price_id=target_price,
        quantity=quantity,
        proration_behavior=proration,
        idempotency_key=_key(sub, f"change-{target_price}-{quantity}-{proration}"),
    )
    write_snapshot(sub, snapshot, catalog, container.clock.now())
    await session.flush()
    await audit.record(
        session,
        "subscription.plan_changed",
        account_id=account.id,
        target=sub.stripe_subscription_id,
        details={
            "from": before,
            "to": {"price_id": sub.price_id, "plan": sub.plan_code, "quantity": sub.quantity},
            "proration": proration,
        },
    )
    return sub
