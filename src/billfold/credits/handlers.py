"""How Stripe's events change credits (`handlers`, given to the webhook inbox by billfold.wiring):

- `checkout.session.completed` with `payment_status=paid`, or
  `checkout.session.async_payment_succeeded`: the purchase is completed and its credits granted,
  once; `completed` while unpaid (a bank debit): pending; `async_payment_failed`: failed;
  `expired`: expired. Only payment-mode sessions carrying billfold's purchase id.
- `charge.refunded`, `refund.created|updated`: the purchase's refunds, clawed back in proportion;
  `charge.dispute.closed` with `status=lost`: the disputed amount clawed back too.
- `payment_intent.succeeded|payment_failed` of an auto top-up's charge (a bank debit settles
  later): granted or failed, once; `payment_method.attached`, `setup_intent.succeeded`: a saved
  method resumes an auto top-up stopped by failed charges (autotopup.py).
- invoices, charges and refunds of a known customer are mirrored into `billing_history_items`
  (document 001's billing history), each kept at its newest event.

Each handler is safe to repeat and to run in any order: states only move forward by
conditional UPDATEs, grants and clawbacks are keyed, and the clawback target is cumulative.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.context import system_audit_context
from billfold.catalog.service import load_catalog
from billfold.container import Container
from billfold.credits import autotopup, purchases, service
from billfold.credits.models import BillingHistoryItem, PurchaseKind, PurchaseState
from billfold.customers.models import BillingAccount
from billfold.db.dialect import insert_ignoring_conflict
from billfold.stripe.gateway import (
    StripeEvent,
    checkout_session_from_stripe,
    from_epoch,
    invoice_subscription_id,
)
from billfold.stripe.gateway.types import id_of, payment_intent_from_stripe
from billfold.stripe.inbox import WebhookHandlers

handlers = WebhookHandlers()
history_items = cast(Table, BillingHistoryItem.__table__)


@handlers.on(
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
)
async def on_checkout(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    checkout = checkout_session_from_stripe(event.object)
    purchase_id = checkout.metadata.get(purchases.PURCHASE_METADATA_KEY)
    if checkout.mode != "payment" or not purchase_id:
        return
    audit = system_audit_context("stripe", container.clock)
    clock = container.clock
    paid = event.type == "checkout.session.async_payment_succeeded" or (
        event.type == "checkout.session.completed" and checkout.payment_status == "paid"
    )
    if paid:
        await purchases.purchase_paid(
            session,
            purchase_id,
            session_id=checkout.id,
            payment_intent_id=checkout.payment_intent_id,
            clock=clock,
            audit=audit,
        )
        return
    state = {
        "checkout.session.completed": PurchaseState.PENDING,
        "checkout.session.async_payment_failed": PurchaseState.FAILED,
        "checkout.session.expired": PurchaseState.EXPIRED,
    }[event.type]
    await purchases.purchase_state(
        session,
        purchase_id,
        state,
        session_id=checkout.id,
        payment_intent_id=checkout.payment_intent_id,
        clock=clock,
        audit=audit,
    )


@handlers.on("charge.refunded")
async def on_charge_refunded(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    charge = event.object
    found = await purchases.find_purchase(
        session,
        purchase_id=(charge.get("metadata") or {}).get(purchases.PURCHASE_METADATA_KEY),
        payment_intent_id=id_of(charge.get("payment_intent")),
    )
    if found is None:
        return
    for refund in ((charge.get("refunds") or {}).get("data")) or []:
        if refund.get("id") and refund.get("status") not in ("failed", "canceled"):
            await purchases.record_reversal(
                session,
                found,
                reversal_id=str(refund["id"]),
                kind="refund",
                amount=int(refund.get("amount") or 0),
                currency=str(refund.get("currency") or found.currency),
                clock=container.clock,
            )
    await purchases.note_refunded_amount(session, found.id, int(charge.get("amount_refunded") or 0))
    await service.touch_wallet(session, found.account_id, container.clock)
    await purchases.settle_reversals(
        session,
        found.id,
        clock=container.clock,
        audit=system_audit_context("stripe", container.clock),
    )


async def _claw_back(
    session: AsyncSession, container: Container, reversal: dict[str, Any], kind: str
) -> None:
    """A refund or a lost dispute of a credit purchase (found by its metadata or its payment
    intent): recorded once under its id, then the credits clawed back in proportion."""
    found = await purchases.find_purchase(
        session,
        purchase_id=(reversal.get("metadata") or {}).get(purchases.PURCHASE_METADATA_KEY),
        payment_intent_id=id_of(reversal.get("payment_intent")),
    )
    if found is None:
        return
    await purchases.record_reversal(
        session,
        found,
        reversal_id=str(reversal["id"]),
        kind=kind,
        amount=int(reversal.get("amount") or 0),
        currency=str(reversal.get("currency") or found.currency),
        clock=container.clock,
    )
    await service.touch_wallet(session, found.account_id, container.clock)
    await purchases.settle_reversals(
        session,
        found.id,
        clock=container.clock,
        audit=system_audit_context("stripe", container.clock),
    )


@handlers.on("refund.created", "refund.updated")
async def on_refund(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    refund = event.object
    if refund.get("id") and refund.get("status") not in ("failed", "canceled"):
        await _claw_back(session, container, refund, "refund")
    await _mirror(session, container, event, "refund")


@handlers.on("charge.dispute.closed", "charge.dispute.funds_withdrawn")
async def on_dispute(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    """A lost dispute takes its amount back: clawed back like a refund."""
    dispute = event.object
    if dispute.get("status") == "lost" and dispute.get("id"):
        await _claw_back(session, container, dispute, "dispute")


@handlers.on("payment_intent.succeeded", "payment_intent.payment_failed")
async def on_auto_topup_intent(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    """An auto top-up's charge settled (granted, once) or failed (a failure counted)."""
    intent = payment_intent_from_stripe(event.object)
    found = (
        await session.execute(
            select(purchases.purchases).where(
                purchases.purchases.c.stripe_payment_intent_id == intent.id,
                purchases.purchases.c.kind == PurchaseKind.AUTO_TOPUP,
            )
        )
    ).first()
    if found is None:
        return
    await autotopup.record_outcome(
        session,
        found,
        "succeeded" if event.type == "payment_intent.succeeded" else "failed",
        payment_intent_id=intent.id,
        failure_code=intent.decline_code or intent.last_error_code,
        clock=container.clock,
        audit=system_audit_context("stripe", container.clock),
    )


@handlers.on("payment_method.attached", "setup_intent.succeeded")
async def on_method_saved(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    """A payment method was saved: an auto top-up stopped by failed charges resumes."""
    account_id = await _account_of_customer(session, id_of(event.object.get("customer")))
    if account_id is None:
        return
    await autotopup.resume_after_method_change(
        session,
        account_id,
        clock=container.clock,
        audit=system_audit_context("stripe", container.clock),
    )


# --- the billing history mirror ------------------------------------------------------------


async def _account_of_customer(session: AsyncSession, customer_id: str | None) -> str | None:
    if not customer_id:
        return None
    return (
        await session.execute(
            select(BillingAccount.id).where(BillingAccount.stripe_customer_id == customer_id)
        )
    ).scalar_one_or_none()


def _mirrored(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    if kind == "invoice":
        return {
            "amount": int(obj.get("amount_paid") or obj.get("amount_due") or obj.get("total") or 0),
            "status": str(obj.get("status") or "draft"),
            "description": obj.get("description") or obj.get("number"),
            "subscription_id": invoice_subscription_id(obj),
        }
    if kind == "charge":
        return {
            "amount": int(obj.get("amount") or 0),
            "status": "refunded" if obj.get("refunded") else str(obj.get("status") or "pending"),
            "description": obj.get("description"),
            "subscription_id": None,
        }
    return {
        "amount": int(obj.get("amount") or 0),
        "status": str(obj.get("status") or "pending"),
        "description": obj.get("reason"),
        "subscription_id": None,
    }


async def _mirror(
    session: AsyncSession, container: Container, event: StripeEvent, kind: str
) -> None:
    """Keep the object's newest state seen (by the event's `created`; an older event changes
    nothing), for an account billfold knows."""
    obj = event.object
    object_id = obj.get("id")
    account_id = await _account_of_customer(session, id_of(obj.get("customer")))
    if not object_id or account_id is None:
        return
    now = container.clock.now()
    values = {
        **_mirrored(kind, obj),
        "currency": str(obj.get("currency") or "usd")[:3],
        "seen_at": event.created,
        "updated_at": now,
    }
    inserted = await insert_ignoring_conflict(
        session,
        history_items,
        {
            "id": str(object_id),
            "account_id": account_id,
            "type": kind,
            "created_at": from_epoch(obj.get("created")) or now,
            **values,
        },
        ["id"],
    )
    if not inserted:
        await session.execute(
            update(history_items)
            .where(history_items.c.id == str(object_id), history_items.c.seen_at <= event.created)
            .values(**values)
        )
    await service.touch_wallet(session, account_id, container.clock)


@handlers.on(
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "invoice.updated",
)
async def on_invoice(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    await _mirror(session, container, event, "invoice")


@handlers.on("invoice.paid")
async def on_invoice_paid(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    """A plan's credit allowance, once per paid subscription invoice."""
    invoice = event.object
    if not invoice_subscription_id(invoice) or not invoice.get("id"):
        return
    account_id = await _account_of_customer(session, id_of(invoice.get("customer")))
    if account_id is None:
        return
    catalog = await load_catalog(session, container.settings)
    for line in (invoice.get("lines") or {}).get("data") or []:
        pricing = line.get("pricing") or {}
        price_id = (pricing.get("price_details") or {}).get("price") or id_of(line.get("price"))
        found = catalog.find_price(str(price_id)) if price_id else None
        period = line.get("period") or {}
        start, end = from_epoch(period.get("start")), from_epoch(period.get("end"))
        if found is None or not found[0].credits_per_period or start is None or end is None:
            continue
        plan = found[0]
        await service.grant_allowance(
            session,
            account_id=account_id,
            invoice_id=str(invoice["id"]),
            credits=plan.credits_per_period * max(int(line.get("quantity") or 1), 1),
            period_start=start,
            period_end=end,
            rollover_cap=plan.credits_rollover_cap,
            clock=container.clock,
            audit=system_audit_context("stripe", container.clock),
        )
        return  # one allowance per invoice


@handlers.on(
    "charge.succeeded", "charge.failed", "charge.pending", "charge.updated", "charge.refunded"
)
async def on_charge(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    await _mirror(session, container, event, "charge")
