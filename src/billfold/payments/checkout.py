"""A Stripe Checkout session in payment mode for an amount (document 003's
`checkout_session` with `amount`): the customer pays on Stripe's page; when Stripe reports the
session completed, the payment is recorded and its one-off charge posted and settled in the
ledger (keys from the payment's id, so a repeated event changes nothing).

Reserve, call, record: the payment row (status `open`) is the reservation and its id the
idempotency key's (`checkout_payment:<payment id>`). A session that expires unpaid
(`checkout.session.expired`) releases it: the payment is `expired`, nothing was posted, and its
Idempotency-Key is spent (a new one starts a new session).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.context import AuditContext
from billfold.clock import Clock
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import ensure_stripe_customer
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import Conflict
from billfold.payments import dues
from billfold.payments.charging import PAYMENT_METADATA_KEY, mark_succeeded
from billfold.payments.methods import ACCOUNT_METADATA_KEY
from billfold.payments.models import Payment
from billfold.redirects import check_redirect_url, default_cancel_url, default_success_url
from billfold.stripe.gateway import CheckoutSessionInfo, LineItem, gateway_of

OPEN = "open"
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class PaymentCheckout:
    id: str
    url: str
    payment_id: str


async def start_payment_checkout(
    container: Container,
    account: BillingAccount,
    *,
    amount: object,
    currency: str | None,
    description: str | None,
    success_url: str | None,
    cancel_url: str | None,
    audit: AuditContext,
    idempotency_key: str | None = None,
) -> PaymentCheckout:
    """A payment-mode Checkout session for `amount` minor units of `currency`."""
    settings = container.settings
    total, code = dues.check_amount(
        amount, currency or account.currency or settings.stripe_default_currency
    )
    success = check_redirect_url(
        settings, success_url or default_success_url(settings), field="success_url"
    )
    cancel = check_redirect_url(
        settings, cancel_url or default_cancel_url(settings), field="cancel_url"
    )
    gateway = gateway_of(container)
    customer_id = await ensure_stripe_customer(
        container.db, gateway, account.id, clock=container.clock, audit=audit
    )
    payment_id = (
        "pay_"
        + hashlib.sha256(f"{account.id}:checkout:{idempotency_key}".encode()).hexdigest()[:32]
        if idempotency_key
        else new_id("pay")
    )
    now = container.clock.now()
    async with container.db.transaction() as session:
        inserted = await insert_ignoring_conflict(
            session,
            Payment.__table__,  # type: ignore[arg-type]
            {
                "id": payment_id,
                "account_id": account.id,
                "kind": "checkout",
                "amount": total,
                "currency": code,
                "description": description,
                "status": OPEN,
                "refunded_amount": 0,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            },
            ["id"],
        )
        if not inserted:
            existing = await session.get(Payment, payment_id)
            if existing is None or (existing.amount, existing.currency) != (total, code):
                raise Conflict("Idempotency-Key reused with a different amount")
            if existing.status == EXPIRED:
                raise Conflict("this Checkout session expired unpaid: send a new Idempotency-Key")
    created = await gateway.checkout.create_session(
        mode="payment",
        customer_id=customer_id,
        success_url=success,
        cancel_url=cancel,
        client_reference_id=account.id,
        metadata={PAYMENT_METADATA_KEY: payment_id, ACCOUNT_METADATA_KEY: account.id},
        idempotency_key=f"checkout_payment:{payment_id}",
        line_items=[LineItem(amount=total, currency=code, name=description or "Payment")],
        currency=code,
    )
    async with container.db.transaction() as session:
        await audit.record(
            session,
            "checkout.created",
            account_id=account.id,
            target=created.id,
            details={
                "mode": "payment",
                "payment_id": payment_id,
                "amount": total,
                "currency": code,
            },
        )
    return PaymentCheckout(id=created.id, url=created.url or "", payment_id=payment_id)


async def record_paid_checkout(
    session: AsyncSession, checkout: CheckoutSessionInfo, *, clock: Clock, audit: AuditContext
) -> None:
    """A paid payment-mode session: the payment succeeded; its charge is posted and settled."""
    payment_id = checkout.metadata.get(PAYMENT_METADATA_KEY)
    if not payment_id:
        return
    payment = await session.get(Payment, payment_id, with_for_update=True)
    if payment is None or payment.status != OPEN:
        return  # not ours, or recorded already
    now = clock.now()
    await dues.reserve_one_off(
        session,
        payment.account_id,
        payment.currency,
        payment.amount,
        payment.id,
        payment.description,
        clock,
    )
    payment.stripe_payment_intent_id = checkout.payment_intent_id
    await mark_succeeded(session, payment, now=now, clock=clock)
    await audit.record(
        session,
        "payment.succeeded",
        account_id=payment.account_id,
        target=payment.id,
        details={"checkout_session": checkout.id},
    )


async def release_expired_checkout(
    session: AsyncSession, checkout: CheckoutSessionInfo, *, clock: Clock, audit: AuditContext
) -> bool:
    """An unpaid payment-mode session expired: its open payment is released (`expired`), once
    (True: this call released it). Nothing was posted to the ledger for it."""
    payment_id = checkout.metadata.get(PAYMENT_METADATA_KEY)
    if not payment_id:
        return False
    payment = await session.get(Payment, payment_id, with_for_update=True)
    if payment is None or payment.status != OPEN:
        return False  # not ours, paid, or released already
    payment.status = EXPIRED
    payment.failure_code = "expired"
    payment.failure_message = "the Checkout session expired unpaid"
    payment.updated_at = clock.now()
    await audit.record(
        session,
        "payment.checkout_expired",
        account_id=payment.account_id,
        target=payment.id,
        details={"checkout_session": checkout.id, "amount": payment.amount},
    )
    return True
