"""Finding and creating billing accounts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock, SystemClock
from billfold.customers.models import AccountKind, BillingAccount
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import NotFound, ValidationFailed


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
            "created_at": now,
            "updated_at": now,
        },
        ["kind", "external_id"],
    )
    return await get_account(session, kind, external_id)
