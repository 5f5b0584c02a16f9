"""Billing accounts and their Stripe customer.

The Stripe customer is created lazily, once: `ensure_stripe_customer` reads the account in a
short unit of work, calls Stripe holding no lock (idempotency key `customer:{account id}`, so
concurrent first calls get the same customer back), then records it with a conditional
UPDATE (`... WHERE stripe_customer_id IS NULL`): the reserve / call / record pattern of
ARCHITECTURE.md, with the committed account row as the reservation.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock, SystemClock
from billfold.customers.models import AccountKind, BillingAccount
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.db.engine import Database
from billfold.errors import Conflict, NotFound, ValidationFailed
from billfold.stripe.gateway import StripeGateway

log = logging.getLogger("billfold.customers")

# The metadata key naming the billing account on every Stripe object billfold creates.
ACCOUNT_METADATA_KEY = "billfold_account_id"


class AuditRecorder(Protocol):
    """What the domains need of the audit log (`billfold.audit.AuditContext` is one)."""

    async def record(
        self,
        session: AsyncSession,
        action: str,
        *,
        account_id: str | None,
        target: str | None = None,
        details: dict[str, Any] | None = None,
        actor: str | None = None,
        deferred: bool = False,
    ) -> Any: ...


async def get_account(session: AsyncSession, kind: AccountKind, external_id: str) -> BillingAccount:
    """The account of `kind`/`external_id`, or NotFound."""
    account = await find_account(session, kind, external_id)
    if account is None:
        raise NotFound(f"no billing account for {kind.value} {external_id}")
    return account


async def find_account(
    session: AsyncSession, kind: AccountKind, external_id: str
) -> BillingAccount | None:
    stmt = select(BillingAccount).where(
        BillingAccount.kind == kind.value, BillingAccount.external_id == external_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_or_create_account(
    session: AsyncSession,
    kind: AccountKind,
    external_id: str,
    *,
    currency: str,
    email: str | None = None,
    clock: Clock | None = None,
) -> BillingAccount:
    """The account for this subject, created on first use (safe under concurrent first use),
    stamped with `clock`'s time (the system clock when the caller has none to give)."""
    if not external_id or len(external_id) > 255:
        raise ValidationFailed("account id must be 1 to 255 characters", field="external_id")
    account = await find_account(session, kind, external_id)
    if account is not None:
        return account
    now = (clock or SystemClock()).now()
    await insert_ignoring_conflict(
        session,
        BillingAccount.__table__,  # type: ignore[arg-type]
        {
            "id": new_id("acct"),
            "kind": kind.value,
            "external_id": external_id,
            "currency": currency.lower(),
            "email": email,
            "settings": {},
            "stripe_customer_generation": 0,
            "created_at": now,
            "updated_at": now,
        },
        ["kind", "external_id"],
    )
    return await get_account(session, kind, external_id)


# --- the Stripe customer -----------------------------------------------------------------------


def customer_idempotency_key(account_id: str, generation: int) -> str:
    """The Stripe idempotency key of the account's customer: a retry, or a concurrent first
    call, gets the same customer; after Stripe deleted one (`generation` > 0) a new key."""
    return f"customer:{account_id}" if generation == 0 else f"customer:{account_id}:g{generation}"


async def ensure_stripe_customer(
    db: Database,
    gateway: StripeGateway,
    account_id: str,
    *,
    clock: Clock,
    audit: AuditRecorder,
) -> str:
    """The account's Stripe customer id, created on first use and recorded on the account.

    Opens its own short units of work and holds none while Stripe answers, so the caller must
    hold no transaction open either, and the account must be committed. Concurrent first calls
    end with one customer: they send the same idempotency key, and the record is a conditional
    UPDATE that only the first one wins (the others read the winner's id).
    """
    async with db.transaction() as session:
        account = await session.get(BillingAccount, account_id)
        if account is None:
            raise NotFound(f"no billing account {account_id}")
        if account.stripe_customer_id:
            return account.stripe_customer_id
        generation = account.stripe_customer_generation
        email, name = account.email, account.name or f"{account.kind} {account.external_id}"
        metadata = {
            ACCOUNT_METADATA_KEY: account.id,
            "billfold_kind": account.kind,
            "billfold_external_id": account.external_id,
        }
    customer = await gateway.customers.create(
        email=email,
        name=name,
        metadata=metadata,
        idempotency_key=customer_idempotency_key(account_id, generation),
    )
    customer_id = customer.id
    async with db.transaction() as session:
        now = clock.now()
        recorded = await session.execute(
            update(BillingAccount)
            .where(
                BillingAccount.id == account_id,
                BillingAccount.stripe_customer_id.is_(None),
                BillingAccount.stripe_customer_generation == generation,
            )
            .values(stripe_customer_id=customer_id, stripe_customer_created_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(recorded, "rowcount", 0) == 1:
            await audit.record(
                session, "customer.created", account_id=account_id, target=customer_id, details={}
            )
            return customer_id
        current = (
            await session.execute(
                select(BillingAccount.stripe_customer_id).where(BillingAccount.id == account_id)
            )
        ).scalar_one()
    if current is None:
        # Stripe deleted the customer while this call created it: the caller may start over.
        raise Conflict("the account's Stripe customer was just deleted; try again")
    if current != customer_id:
        # A paid Checkout linked another customer first; Stripe keeps this unused one.
        log.warning("account %s: Stripe customer %s left unused", account_id, customer_id)
    return current


async def link_stripe_customer(
    session: AsyncSession, account: BillingAccount, customer_id: str, *, now: datetime
) -> None:
    """Record a customer Stripe reports for the account (a paid Checkout, a subscription) when
    the account has none yet; a customer it already has stays."""
    if account.stripe_customer_id is not None or not customer_id:
        return
    account.stripe_customer_id = customer_id
    account.stripe_customer_created_at = now
    account.updated_at = now
    await session.flush()


async def unlink_stripe_customer(session: AsyncSession, customer_id: str, *, now: datetime) -> None:
    """Forget a Stripe customer that was deleted; the account's next one gets a new
    idempotency key (a new generation), so the deleted one is never replayed."""
    if not customer_id:
        return
    stmt = select(BillingAccount).where(BillingAccount.stripe_customer_id == customer_id)
    account = (await session.execute(stmt)).scalar_one_or_none()
    if account is not None:
        account.stripe_customer_id = None
        account.stripe_customer_created_at = None
        account.stripe_customer_generation += 1
        account.updated_at = now
        await session.flush()
