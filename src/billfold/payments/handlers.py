"""How Stripe's events change payment methods and payments: `handlers`, which the composition
root (billfold.wiring) gives the webhook inbox.

Every handler is safe to run twice and in any order: methods are written from Stripe's
description (a detached one is forgotten), attempts are recorded by the same conditional
UPDATE the paying code uses, and every ledger posting has a key derived from Stripe's ids.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.context import system_audit_context
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.payments import dues
from billfold.payments.charging import (
    ABANDONED,
    ATTEMPT_METADATA_KEY,
    mark_failed,
    mark_succeeded,
    record_intent,
)
from billfold.payments.checkout import record_paid_checkout, release_expired_checkout
from billfold.payments.methods import forget_method, mirror_method
from billfold.payments.models import (
    ACTIVE,
    PENDING_VERIFICATION,
    PROCESSING,
    REQUIRES_ACTION,
    RESERVED,
    SUCCEEDED,
    VERIFICATION_FAILED,
    Payment,
    PaymentAttempt,
    PaymentMethod,
)
from billfold.stripe.gateway import (
    PaymentMethodInfo,
    StripeEvent,
    checkout_session_from_stripe,
    gateway_of,
)
from billfold.stripe.gateway.types import payment_intent_from_stripe, payment_method_from_stripe
from billfold.stripe.inbox import WebhookHandlers

handlers = WebhookHandlers()
log = logging.getLogger(__name__)

PREPARED_METHOD = "payments.payment_method"


async def _account_of_customer(session: AsyncSession, customer_id: object) -> str | None:
    if not isinstance(customer_id, str) or not customer_id:
        return None
    found = await session.execute(
        select(BillingAccount.id).where(BillingAccount.stripe_customer_id == customer_id)
    )
    return found.scalar_one_or_none()


# --- payment methods ---------------------------------------------------------------------------


@handlers.on("payment_method.attached", "payment_method.updated")
async def on_payment_method(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    """A method attached to (or changed on) a customer of billfold's: mirror it."""
    info = payment_method_from_stripe(event.object)
    existing = await session.get(PaymentMethod, info.id)
    if event.type == "payment_method.updated" and existing is None:
        return
    account_id = (
        existing.account_id if existing else await _account_of_customer(session, info.customer_id)
    )
    if account_id is None:
        return
    await mirror_method(
        session, account_id, info, status=None if existing else ACTIVE, now=container.clock.now()
    )
    await system_audit_context("stripe", container.clock).record(
        session,
        f"payment_method.{event.type.split('.')[-1]}",
        account_id=account_id,
        target=info.id,
        details={"event": event.id},
    )


@handlers.on("payment_method.detached")
async def on_payment_method_detached(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    method = await session.get(PaymentMethod, str(event.object.get("id") or ""))
    if method is None:
        return
    account_id = method.account_id
    await forget_method(session, method, now=container.clock.now())
    await system_audit_context("stripe", container.clock).record(
        session,
        "payment_method.detached",
        account_id=account_id,
        target=method.id,
        details={"event": event.id},
    )


async def _prepare_setup(container: Container, event: StripeEvent) -> None:
    pm = event.object.get("payment_method")
    pm_id = pm.get("id") if isinstance(pm, dict) else pm
    if isinstance(pm_id, str) and pm_id:
        event.prepared[PREPARED_METHOD] = await gateway_of(container).payment_methods.retrieve(
            pm_id
        )


@handlers.on("setup_intent.succeeded", prepare=_prepare_setup)
async def on_setup_succeeded(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    """The method is saved (a bank account is verified): usable from now on."""
    info = event.prepared.get(PREPARED_METHOD)
    if not isinstance(info, PaymentMethodInfo):
        return
    existing = await session.get(PaymentMethod, info.id)
    account_id = (
        existing.account_id
        if existing
        else await _account_of_customer(session, event.object.get("customer"))
    )
    if account_id is None:
        return
    await mirror_method(
        session,
        account_id,
        info,
        status=ACTIVE,
        setup_intent_id=str(event.object.get("id")),
        now=container.clock.now(),
    )
    await system_audit_context("stripe", container.clock).record(
        session,
        "setup_intent.succeeded",
        account_id=account_id,
        target=info.id,
        details={"event": event.id},
    )


@handlers.on("setup_intent.setup_failed")
async def on_setup_failed(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    """A bank account whose microdeposits failed (or ran out of attempts) is unusable."""
    setup_intent_id = str(event.object.get("id") or "")
    found = await session.execute(
        select(PaymentMethod).where(PaymentMethod.setup_intent_id == setup_intent_id)
    )
    for method in found.scalars():
        if method.status == PENDING_VERIFICATION:
            method.status = VERIFICATION_FAILED
            method.updated_at = container.clock.now()
            await system_audit_context("stripe", container.clock).record(
                session,
                "payment_method.verification_failed",
                account_id=method.account_id,
                target=method.id,
                details={"event": event.id},
            )


# --- payments ----------------------------------------------------------------------------------


async def _payment_of_intent(session: AsyncSession, intent_id: object) -> Payment | None:
    if not isinstance(intent_id, str) or not intent_id:
        return None
    found = await session.execute(
        select(Payment).where(Payment.stripe_payment_intent_id == intent_id).with_for_update()
    )
    return found.scalar_one_or_none()


@handlers.on(
    "payment_intent.succeeded", "payment_intent.processing", "payment_intent.payment_failed"
)
async def on_payment_intent(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    """A bank debit settled or failed, 3-D Secure finished: the payment (and the dues) follow."""
    intent = payment_intent_from_stripe(event.object)
    now, clock = container.clock.now(), container.clock
    audit = system_audit_context("stripe", clock)
    attempt_id = intent.metadata.get(ATTEMPT_METADATA_KEY)
    if attempt_id:
        attempt = await session.get(PaymentAttempt, attempt_id)
        if attempt is not None and attempt.state == RESERVED:
            # Stripe answered the webhook before the caller recorded its answer.
            await record_intent(session, attempt_id, intent, now=now, clock=clock, audit=audit)
            return
        if attempt is not None and attempt.state == ABANDONED and intent.status == "succeeded":
            # Recovery abandoned it (Stripe's search had not found the intent) and then its
            # process made the call after all: money taken for a failed payment. Say so loudly
            # for an operator to refund; it is never silently counted as paid.
            log.warning(
                "payment intent %s succeeded for abandoned attempt %s: refund it",
                intent.id,
                attempt_id,
            )
            owner = await session.get(Payment, attempt.payment_id)
            await audit.record(
                session,
                "payment.charged_after_recovery",
                account_id=owner.account_id if owner is not None else None,
                target=attempt_id,
                details={"payment_intent": intent.id, "amount": intent.amount},
            )
            return
    payment = await _payment_of_intent(session, intent.id)
    if payment is None or payment.status not in (PROCESSING, REQUIRES_ACTION):
        return  # not ours, or already recorded (a duplicate, or an older event)
    attempt = (
        await session.execute(
            select(PaymentAttempt).where(PaymentAttempt.stripe_payment_intent_id == intent.id)
        )
    ).scalar_one_or_none()
    if event.type == "payment_intent.succeeded":
        if attempt is not None:
            attempt.state, attempt.updated_at = SUCCEEDED, now
        await mark_succeeded(session, payment, now=now, clock=clock)
        action = "payment.succeeded"
    elif event.type == "payment_intent.payment_failed":
        if attempt is not None:
            attempt.state, attempt.updated_at = "failed", now
            attempt.failure_code, attempt.decline_code = intent.last_error_code, intent.decline_code
        await mark_failed(
            session,
            payment,
            code=intent.decline_code or intent.last_error_code,
            message="Stripe reported the payment failed",
            now=now,
            clock=clock,
        )
        action = "payment.failed"
    else:
        return
    await audit.record(
        session,
        action,
        account_id=payment.account_id,
        target=payment.id,
        details={
            "event": event.id,
            "payment_intent": intent.id,
            "failure_code": payment.failure_code,
        },
    )


@handlers.on("charge.refunded", "charge.refund.updated")
async def on_charge_refunded(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    """Money returned: the payment's refunded amount and the ledger follow Stripe's total."""
    obj = event.object
    if obj.get("object") != "charge":
        return
    payment = await _payment_of_intent(session, obj.get("payment_intent"))
    total = obj.get("amount_refunded")
    if payment is None or not isinstance(total, int) or total <= payment.refunded_amount:
        return  # not ours, or an older or repeated total
    delta = total - payment.refunded_amount
    await dues.refund(
        session, payment.account_id, payment.currency, delta, payment.id, total, container.clock
    )
    payment.refunded_amount = total
    payment.updated_at = container.clock.now()
    await system_audit_context("stripe", container.clock).record(
        session,
        "payment.refunded",
        account_id=payment.account_id,
        target=payment.id,
        details={"event": event.id, "amount": delta, "refunded_total": total},
    )


@handlers.on(
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)
async def on_dispute(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    """A dispute (an ACH return comes as one): the money is withdrawn; lost, the dues it paid
    re-open; won, it is reinstated. The payment says why."""
    obj = event.object
    dispute_id = str(obj.get("id") or "")
    payment = await _payment_of_intent(session, obj.get("payment_intent"))
    if payment is None and obj.get("charge"):
        found = await session.execute(
            select(Payment).where(Payment.stripe_charge_id == str(obj["charge"])).with_for_update()
        )
        payment = found.scalar_one_or_none()
    if payment is None or payment.status != SUCCEEDED or not dispute_id:
        return
    status = str(obj.get("status") or "")
    given = obj.get("amount")
    amount = min(given if isinstance(given, int) else payment.amount, payment.amount)
    if payment.dispute_status in ("won", "lost") and payment.dispute_id == dispute_id:
        return  # closed already; a late or repeated event changes nothing
    payment.dispute_id = dispute_id
    payment.dispute_status = status
    payment.dispute_reason = str(obj.get("reason") or "") or None
    payment.updated_at = container.clock.now()
    args = (session, payment.account_id, payment.currency, amount, dispute_id, payment.id)
    if not status.startswith("warning_"):  # an inquiry withdraws nothing
        await dues.dispute_withdrawn(*args, container.clock)
    if status in ("won", "lost"):
        await dues.dispute_closed(*args, won=status == "won", clock=container.clock)
    await system_audit_context("stripe", container.clock).record(
        session,
        f"payment.dispute_{status or 'updated'}",
        account_id=payment.account_id,
        target=payment.id,
        details={"event": event.id, "dispute": dispute_id, "reason": payment.dispute_reason},
    )


@handlers.on(
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.expired",
)
async def on_checkout(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    """A payment-mode Checkout for an amount was paid, or expired unpaid (its open payment is
    released). Subscription ones are not ours."""
    checkout = checkout_session_from_stripe(event.object)
    if checkout.mode != "payment":
        return
    audit = system_audit_context("stripe", container.clock)
    if event.type == "checkout.session.expired":
        await release_expired_checkout(session, checkout, clock=container.clock, audit=audit)
    elif checkout.payment_status == "paid":
        await record_paid_checkout(session, checkout, clock=container.clock, audit=audit)
