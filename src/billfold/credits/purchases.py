"""Buying credits: a package (with an active subscription) or a top-up, through Stripe Checkout
in payment mode, by reserve / call / record (ARCHITECTURE.md "Calling Stripe"); and what
Stripe's events do to a purchase: grant once when paid, pending while a bank debit settles,
failed when it fails, clawed back in proportion when refunded or lost in a dispute.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.catalog.credits import CreditCatalog
from billfold.clock import Clock
from billfold.container import Container
from billfold.credits import service
from billfold.credits.models import (
    CreditPurchase,
    CreditRefund,
    PurchaseKind,
    PurchaseState,
)
from billfold.customers.models import BillingAccount
from billfold.customers.service import (
    ACCOUNT_METADATA_KEY,
    AuditRecorder,
    ensure_stripe_customer,
)
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import Conflict, NotFound, PaymentRequired, ValidationFailed
from billfold.ledger.service import SystemAccount
from billfold.redirects import check_redirect_url
from billfold.stripe.gateway import CheckoutSessionInfo, LineItem, gateway_of

purchases = cast(Table, CreditPurchase.__table__)
refunds = cast(Table, CreditRefund.__table__)

PURCHASE_METADATA_KEY = "billfold_credit_purchase"


@dataclass(frozen=True, slots=True)
class PurchaseStarted:
    purchase_id: str
    session_id: str
    url: str


def _purchase_id(account_id: str, idempotency_key: str | None) -> str:
    if idempotency_key:
        digest = hashlib.sha256(f"{account_id}|{idempotency_key}".encode()).hexdigest()
        return f"cpur_{digest[:40]}"
    return new_id("cpur")


async def start_purchase(
    container: Container,
    account: BillingAccount,
    catalog: CreditCatalog,
    *,
    kind: PurchaseKind,
    currency: str,
    success_url: str,
    cancel_url: str,
    audit: AuditRecorder,
    credits: int | None = None,
    package_id: str | None = None,
    subscription_active: bool = False,
    idempotency_key: str | None = None,
) -> PurchaseStarted:
    """A payment-mode Checkout session for a package or a top-up; its credits are granted when
    Stripe reports the payment. Takes no session (the caller has committed): reserve (a
    `credit_purchases` row), call (key `<kind>:<purchase id>`), record (`... WHERE state =
    'reserved'`). The same `idempotency_key` answers the same session."""
    settings = container.settings
    success = check_redirect_url(settings, success_url, field="successUrl")
    cancel = check_redirect_url(settings, cancel_url, field="cancelUrl")
    if kind == PurchaseKind.PACKAGE:
        package = catalog.package(package_id or "")
        if package is None:
            raise ValidationFailed(f"unknown package {package_id!r}", field="packageId")
        if currency not in package.prices:
            raise ValidationFailed(
                f"package {package.id} has no price in {currency.upper()}", field="currency"
            )
        if not subscription_active:
            raise PaymentRequired("credit packages need an active subscription")
        count, amount, name = package.credits, package.prices[currency], package.name
    else:
        assert credits is not None
        amount = catalog.topup_price(credits, currency)
        count, name = credits, f"{credits} credits"
    purchase_id = _purchase_id(account.id, idempotency_key)
    async with container.db.transaction() as session:
        found = (
            await session.execute(select(purchases).where(purchases.c.id == purchase_id))
        ).first()
    if found is not None and found.state == PurchaseState.OPEN and found.checkout_url:
        if found.credits != count or found.amount != amount or found.currency != currency:
            raise Conflict("this Idempotency-Key was used for another purchase")
        return PurchaseStarted(purchase_id, found.stripe_checkout_session_id, found.checkout_url)
    if found is not None and found.state != PurchaseState.RESERVED:
        raise Conflict(f"the purchase of this Idempotency-Key is {found.state}; use a new key")
    customer_id = await ensure_stripe_customer(
        container.db, gateway_of(container), account.id, clock=container.clock, audit=audit
    )
    request: dict[str, Any] = {
        "customer_id": customer_id,
        "name": name,
        "success_url": success,
        "cancel_url": cancel,
        "payment_method_types": list(catalog.payment_method_types.get(currency, ())),
    }
    now = container.clock.now()
    if found is None:
        async with container.db.transaction() as session:  # 1. reserve
            await insert_ignoring_conflict(
                session,
                purchases,
                {
                    "id": purchase_id,
                    "account_id": account.id,
                    "kind": str(kind),
                    "package_id": package_id if kind == PurchaseKind.PACKAGE else None,
                    "credits": count,
                    "amount": amount,
                    "currency": currency,
                    "state": PurchaseState.RESERVED,
                    "request": request,
                    "amount_refunded": 0,
                    "credits_clawed_back": 0,
                    "created_at": now,
                    "updated_at": now,
                },
                ["id"],
            )
            row = (
                await session.execute(select(purchases).where(purchases.c.id == purchase_id))
            ).one()
            request = dict(row.request)
            count, amount, currency = int(row.credits), int(row.amount), row.currency
    else:
        request = dict(found.request)
    prefix = "topup" if kind == PurchaseKind.TOPUP else "purchase"
    try:  # 2. call, no transaction open
        created: CheckoutSessionInfo = await gateway_of(container).checkout.create_session(
            mode="payment",
            customer_id=request["customer_id"],
            line_items=[LineItem(amount=amount, currency=currency, name=request["name"])],
            success_url=request["success_url"],
            cancel_url=request["cancel_url"],
            client_reference_id=account.id,
            metadata={ACCOUNT_METADATA_KEY: account.id, PURCHASE_METADATA_KEY: purchase_id},
            idempotency_key=f"{prefix}:{purchase_id}",
            payment_method_types=request.get("payment_method_types") or (),
        )
    except (ValidationFailed, NotFound):
        async with container.db.transaction() as session:
            await session.execute(
                update(purchases)
                .where(purchases.c.id == purchase_id, purchases.c.state == PurchaseState.RESERVED)
                .values(state=PurchaseState.FAILED, updated_at=container.clock.now())
            )
        raise
    async with container.db.transaction() as session:  # 3. record
        recorded = await session.execute(
            update(purchases)
            .where(purchases.c.id == purchase_id, purchases.c.state == PurchaseState.RESERVED)
            .values(
                state=PurchaseState.OPEN,
                stripe_checkout_session_id=created.id,
                checkout_url=created.url,
                updated_at=container.clock.now(),
            )
        )
        if getattr(recorded, "rowcount", 0) == 1:
            await audit.record(
                session,
                "credits.checkout_created",
                account_id=account.id,
                target=created.id,
                details={
                    "purchase_id": purchase_id,
                    "kind": str(kind),
                    "credits": count,
                    "amount": amount,
                    "currency": currency,
                    "package_id": package_id,
                },
            )
    if not created.url:
        raise Conflict("the Checkout session is no longer open; start a new purchase")
    return PurchaseStarted(purchase_id, created.id, created.url)


# --- what Stripe's events do -----------------------------------------------------------------


async def _purchase(session: AsyncSession, purchase_id: str) -> Any | None:
    return (await session.execute(select(purchases).where(purchases.c.id == purchase_id))).first()


async def purchase_paid(
    session: AsyncSession,
    purchase_id: str,
    *,
    session_id: str | None,
    payment_intent_id: str | None,
    clock: Clock,
    audit: AuditRecorder,
) -> bool:
    """The purchase is paid: grant its credits, once (a conditional UPDATE to `completed`, and
    the lot's key). Refunds that arrived first are clawed back at once. True when granted now."""
    row = await _purchase(session, purchase_id)
    if row is None:
        return False
    now = clock.now()
    moved = await session.execute(
        update(purchases)
        .where(
            purchases.c.id == purchase_id,
            purchases.c.state.in_(
                [PurchaseState.RESERVED, PurchaseState.OPEN, PurchaseState.PENDING]
            ),
        )
        .values(
            state=PurchaseState.COMPLETED,
            stripe_checkout_session_id=session_id,
            stripe_payment_intent_id=payment_intent_id,
            completed_at=now,
            updated_at=now,
        )
    )
    if getattr(moved, "rowcount", 0) != 1:
        return False
    await service.grant(
        session,
        account_id=row.account_id,
        credits=int(row.credits),
        key=f"purchase:{purchase_id}",
        source=row.kind,
        clock=clock,
        audit=audit,
        system=SystemAccount.CREDIT_SALES,
        description=f"{row.credits} credits ({row.kind})",
        metadata={
            "purchase_id": purchase_id,
            "amount": int(row.amount),
            "currency": row.currency,
            "checkout_session": session_id,
        },
    )
    await audit.record(
        session,
        "credits.purchase_completed",
        account_id=row.account_id,
        target=purchase_id,
        details={"credits": int(row.credits), "amount": int(row.amount), "currency": row.currency},
    )
    await settle_reversals(session, purchase_id, clock=clock, audit=audit)
    return True


async def purchase_state(
    session: AsyncSession,
    purchase_id: str,
    state: PurchaseState,
    *,
    session_id: str | None,
    payment_intent_id: str | None,
    clock: Clock,
    audit: AuditRecorder,
) -> bool:
    """A bank debit is pending (from reserved/open), failed or expired (from any state before
    completed). Never undoes a completion. True when it changed the purchase."""
    before = {
        PurchaseState.PENDING: [PurchaseState.RESERVED, PurchaseState.OPEN],
        PurchaseState.FAILED: [PurchaseState.RESERVED, PurchaseState.OPEN, PurchaseState.PENDING],
        PurchaseState.EXPIRED: [PurchaseState.RESERVED, PurchaseState.OPEN],
    }[state]
    row = await _purchase(session, purchase_id)
    if row is None:
        return False
    values: dict[str, Any] = {"state": state, "updated_at": clock.now()}
    if session_id:
        values["stripe_checkout_session_id"] = session_id
    if payment_intent_id:
        values["stripe_payment_intent_id"] = payment_intent_id
    moved = await session.execute(
        update(purchases)
        .where(purchases.c.id == purchase_id, purchases.c.state.in_(before))
        .values(**values)
    )
    if getattr(moved, "rowcount", 0) != 1:
        return False
    await service.touch_wallet(session, row.account_id, clock)
    await audit.record(
        session,
        f"credits.purchase_{state}",
        account_id=row.account_id,
        target=purchase_id,
        details={"credits": int(row.credits), "amount": int(row.amount)},
    )
    return True


async def find_purchase(
    session: AsyncSession, *, purchase_id: str | None, payment_intent_id: str | None
) -> Any | None:
    if purchase_id:
        found = await _purchase(session, purchase_id)
        if found is not None:
            return found
    if payment_intent_id:
        return (
            await session.execute(
                select(purchases).where(purchases.c.stripe_payment_intent_id == payment_intent_id)
            )
        ).first()
    return None


async def record_reversal(
    session: AsyncSession,
    purchase: Any,
    *,
    reversal_id: str,
    kind: str,
    amount: int,
    currency: str,
    clock: Clock,
) -> bool:
    """A refund (`kind="refund"`) or a lost dispute of the purchase, stored once by its id."""
    total = max(int(purchase.amount), 1)
    return await insert_ignoring_conflict(
        session,
        refunds,
        {
            "id": reversal_id,
            "purchase_id": purchase.id,
            "account_id": purchase.account_id,
            "kind": kind,
            "amount": amount,
            "currency": currency,
            "credits": int(purchase.credits) * min(amount, total) // total,
            "created_at": clock.now(),
        },
        ["id"],
    )


async def note_refunded_amount(
    session: AsyncSession, purchase_id: str, amount_refunded: int
) -> None:
    """The charge's cumulative refunded amount (only ever raised: events may come in any order)."""
    await session.execute(
        update(purchases)
        .where(purchases.c.id == purchase_id, purchases.c.amount_refunded < amount_refunded)
        .values(amount_refunded=amount_refunded)
    )


async def settle_reversals(
    session: AsyncSession, purchase_id: str, *, clock: Clock, audit: AuditRecorder
) -> int:
    """Claw back what the purchase's refunds and lost disputes take, in proportion: the target
    is `credits x reversed / amount` (reversed: the larger of the charge's refunded amount and
    the sum of the refunds seen, plus lost disputes, at most the amount); only the difference
    from what was clawed back already is taken, so any order and any repeat end the same.
    Nothing before the purchase is completed (its credits are not granted yet)."""
    row = await _purchase(session, purchase_id)
    if row is None or row.state != PurchaseState.COMPLETED:
        return 0
    sums = dict(
        (
            await session.execute(
                select(refunds.c.kind, func.coalesce(func.sum(refunds.c.amount), 0))
                .where(refunds.c.purchase_id == purchase_id)
                .group_by(refunds.c.kind)
            )
        ).all()
    )
    refunded = max(int(row.amount_refunded), int(sums.get("refund", 0)))
    reversed_amount = min(int(row.amount), refunded + int(sums.get("dispute", 0)))
    target = int(row.credits) * reversed_amount // max(int(row.amount), 1)
    delta = target - int(row.credits_clawed_back)
    if delta <= 0:
        return 0
    moved = await session.execute(
        update(purchases)
        .where(
            purchases.c.id == purchase_id,
            purchases.c.credits_clawed_back == int(row.credits_clawed_back),
        )
        .values(credits_clawed_back=target, updated_at=clock.now())
    )
    if getattr(moved, "rowcount", 0) != 1:  # pragma: no cover - one event at a time per row
        raise Conflict("the purchase changed meanwhile; retry")
    await service.claw_back(
        session,
        account_id=row.account_id,
        credits=delta,
        key=f"{purchase_id}:{target}",
        clock=clock,
        audit=audit,
        first_lot_key=f"purchase:{purchase_id}",
        details={"purchase_id": purchase_id, "reversed_amount": reversed_amount},
    )
    return delta
