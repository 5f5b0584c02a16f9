"""Auto top-up: when a movement brings an account's credits under its threshold
(`threshold.note_balance`), a job charges the account's default saved payment method off
session and the credits are granted when Stripe confirms the payment.

The charge belongs to the payments domain, which credits may not import (sibling domains):
it is behind `TopupPayments`, a small protocol the composition root implements on
`payments.methods` and `payments.charging.charge_once` (billfold.wiring) and hands to the job
kind (`auto_topup_jobs`). Each top-up is a `credit_purchases` row of kind `auto_topup`, so it
is granted, shown in the history, refunded and disputed like any top-up.

One run is reserve / call / record (ARCHITECTURE.md "Calling Stripe"):

1. **Reserve** (commit), under the settings row's lock: the guardrails, then a purchase row
   `reserved` whose id comes from the account and its attempt number. Guardrails: one top-up
   in flight per account (also a partial unique index), a cooldown after the last attempt, a
   daily count cap and a monthly money cap (the customer's), and none after
   `MAX_FAILURES_IN_ROW` failed charges in a row until a payment method is saved, another
   becomes the default (the `credits.auto_topup_resume` sweep) or the customer turns it on
   again (`status = stopped`, with the reason, in the audit log too).
2. **Call** the payments domain with the key `auto_topup:<purchase id>`, no transaction open.
3. **Record** (commit): a card's `succeeded` grants now (`purchases.purchase_paid`: once); a
   bank debit is `pending` until `payment_intent.succeeded` grants or `payment_failed` fails it
   (handlers.py); a decline counts a failure.

A crossing refused by a guardrail is not retried: the next fires after the balance is back at
or above the threshold (a grant) and falls under it again.

A run that never records (its `credits.auto_topup` job dead after its attempts) would leave its
row `reserved`, in flight for ever, refusing every later top-up of the account. The job's dead
handling releases it (`release_stranded`: the row failed, a failure counted towards the stop,
`credits.auto_topup_released` audited with the reason), and the recurring
`credits.auto_topup_sweep` releases any reserved row older than `STRANDED_AFTER` that no live
job will finish (a job that died before this existed, or whose failure could not be recorded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.context import system_audit_context
from billfold.catalog.credits import CreditCatalog, read_credit_catalog
from billfold.clock import Clock
from billfold.container import Container
from billfold.credits import purchases, service
from billfold.credits.models import (
    AutoTopupStatus,
    CreditAutoTopup,
    CreditPurchase,
    PurchaseKind,
    PurchaseState,
)
from billfold.credits.threshold import AUTO_TOPUP_JOB, AUTO_TOPUP_MAX_ATTEMPTS, note_balance
from billfold.customers.service import AuditRecorder
from billfold.errors import Conflict, NotFound, PaymentRequired, ValidationFailed
from billfold.jobs import Job, JobFailure, JobRegistry, JobRun, JobStatus
from billfold.ledger.service import balance_of

purchase_rows = cast(Table, CreditPurchase.__table__)

COOLDOWN = timedelta(minutes=10)
MAX_FAILURES_IN_ROW = 3
AUTO_TOPUP_RESUME_JOB = "credits.auto_topup_resume"
AUTO_TOPUP_SWEEP_JOB = "credits.auto_topup_sweep"
# A reserved row this old with no live job for its account is released by the sweep (longer
# than a job's attempts and back-offs, so a run still trying is never cut short).
STRANDED_AFTER = timedelta(minutes=30)
RELEASED_CODE = "job_dead"
# `TopupPayments.charged`: a charge payments has not settled itself (a crash inside its call
# to Stripe, which its recovery job resolves).
UNSETTLED = "unsettled"
MAX_PER_DAY = 100
MAX_THRESHOLD = 10**9
MAX_MONTHLY_LIMIT = 10**12


# --- what credits needs of payments --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopupCharge:
    """What became of an off-session charge: `succeeded`, `processing` (a bank debit), or
    `failed` (declined, or the method could not be charged)."""

    status: str
    payment_intent_id: str | None = None
    failure_code: str | None = None


class TopupPayments(Protocol):
    """The payments domain as the auto top-up needs it (billfold.wiring implements it)."""

    async def default_method(self, session: AsyncSession, account_id: str) -> str | None:
        """The account's default usable saved payment method, if any."""
        ...

    async def charge(
        self,
        container: Container,
        account_id: str,
        *,
        amount: int,
        currency: str,
        payment_method_id: str,
        idempotency_key: str,
        description: str,
    ) -> TopupCharge:
        """Charge `amount` off session on the method, once per key."""
        ...

    async def charged(
        self, session: AsyncSession, account_id: str, *, idempotency_key: str
    ) -> TopupCharge | None:
        """What became of the charge made with `idempotency_key`: succeeded or processing
        (money taken or on its way), `unsettled` (payments itself does not know yet: its
        recovery asks Stripe later), or None (none recorded, or it failed)."""
        ...


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AutoTopupSettings:
    """An account's auto top-up as the customer sees it (None: never set)."""

    enabled: bool
    threshold: int | None
    credits: int | None
    currency: str | None
    max_per_day: int | None
    monthly_limit: int | None
    status: str
    stopped_reason: str | None
    failures_in_row: int
    last_attempt_at: datetime | None


def _view(row: CreditAutoTopup | None) -> AutoTopupSettings:
    if row is None:
        return AutoTopupSettings(
            enabled=False,
            threshold=None,
            credits=None,
            currency=None,
            max_per_day=None,
            monthly_limit=None,
            status=AutoTopupStatus.DISABLED,
            stopped_reason=None,
            failures_in_row=0,
            last_attempt_at=None,
        )
    return AutoTopupSettings(
        enabled=row.enabled,
        threshold=row.threshold,
        credits=row.credits,
        currency=row.currency,
        max_per_day=row.max_per_day,
        monthly_limit=row.monthly_limit,
        status=row.status,
        stopped_reason=row.stopped_reason,
        failures_in_row=row.failures_in_row,
        last_attempt_at=row.last_attempt_at,
    )


async def read_settings(session: AsyncSession, account_id: str) -> AutoTopupSettings:
    """The account's auto top-up settings and state (defaults when never set). Reads only."""
    return _view(await session.get(CreditAutoTopup, account_id))


def _whole(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{field} must be a whole number", field=field)
    if not low <= value <= high:
        raise ValidationFailed(f"{field} must be {low} to {high}", field=field)
    return value


_UNSET = object()


async def save_settings(
    session: AsyncSession,
    account_id: str,
    changes: Mapping[str, Any],
    *,
    catalog: CreditCatalog,
    default_currency: str,
    clock: Clock,
    audit: AuditRecorder,
) -> AutoTopupSettings:
    """Change the account's auto top-up (`changes`: any of enabled, threshold, credits,
    currency, max_per_day, monthly_limit; the others keep their values). Every value is
    checked before anything is written (ValidationFailed naming the field). Turning it on
    resumes a stopped auto top-up and, when the balance is already under the threshold, fires
    it now."""
    row = await session.get(CreditAutoTopup, account_id, with_for_update=True)
    current = _view(row)

    def given(name: str) -> Any:
        return changes.get(name, _UNSET)

    enabled = given("enabled")
    if enabled is _UNSET or enabled is None:
        enabled = current.enabled
    elif not isinstance(enabled, bool):
        raise ValidationFailed("enabled must be true or false", field="enabled")
    values: dict[str, Any] = {}
    for name, old in (
        ("threshold", current.threshold),
        ("credits", current.credits),
        ("currency", current.currency),
        ("max_per_day", current.max_per_day),
        ("monthly_limit", current.monthly_limit),
    ):
        new = given(name)
        values[name] = old if new is _UNSET or new is None else new
    if values["currency"] is None:
        values["currency"] = default_currency
    if not isinstance(values["currency"], str) or not values["currency"].strip():
        raise ValidationFailed("currency must be EUR or USD", field="currency")
    currency = catalog.check_currency(values["currency"])
    for name in ("threshold", "credits", "max_per_day", "monthly_limit"):
        if values[name] is None:
            if enabled:
                raise ValidationFailed(f"{name} is required to turn auto top-up on", field=name)
    threshold = values["threshold"]
    if threshold is not None:
        threshold = _whole(threshold, "threshold", low=1, high=MAX_THRESHOLD)
    credits = values["credits"]
    price = None
    if credits is not None:
        credits = service.check_credits(credits, maximum=catalog.max_topup_credits)
        price = catalog.topup_price(credits, currency)
    max_per_day = values["max_per_day"]
    if max_per_day is not None:
        max_per_day = _whole(max_per_day, "max_per_day", low=1, high=MAX_PER_DAY)
    monthly_limit = values["monthly_limit"]
    if monthly_limit is not None:
        monthly_limit = _whole(monthly_limit, "monthly_limit", low=1, high=MAX_MONTHLY_LIMIT)
        if price is not None and monthly_limit < price:
            raise ValidationFailed(
                f"monthly_limit must cover one top-up ({price} minor units of {currency.upper()})",
                field="monthly_limit",
            )
    now = clock.now()
    was_stopped = current.status == AutoTopupStatus.STOPPED
    status = AutoTopupStatus.ACTIVE if enabled else AutoTopupStatus.DISABLED
    if row is None:
        row = CreditAutoTopup(
            account_id=account_id,
            crossings=0,
            attempts=0,
            failures_in_row=0,
            created_at=now,
        )
        session.add(row)
    row.enabled = enabled
    row.threshold = threshold or 0
    row.credits = credits or 0
    row.currency = currency
    row.max_per_day = max_per_day or 0
    row.monthly_limit = monthly_limit or 0
    row.status = status
    row.armed = True
    if enabled:
        # Turned on (again): a stop after failed charges ends here.
        row.failures_in_row = 0
        row.stopped_reason = None
        row.stopped_at = None
        row.stopped_method_id = None
    row.updated_at = now
    await session.flush()
    await audit.record(
        session,
        "credits.auto_topup_updated",
        account_id=account_id,
        target=account_id,
        details={
            "enabled": enabled,
            "threshold": threshold,
            "credits": credits,
            "currency": currency,
            "max_per_day": max_per_day,
            "monthly_limit": monthly_limit,
        },
    )
    if enabled:
        await _resumed(
            session, account_id, "turned on again" if was_stopped else None, clock, audit
        )
    return _view(row)


async def _resumed(
    session: AsyncSession, account_id: str, reason: str | None, clock: Clock, audit: AuditRecorder
) -> None:
    """On (again): the resume audited (`reason`), and a balance already under fires now."""
    if reason is not None:
        await audit.record(
            session,
            "credits.auto_topup_resumed",
            account_id=account_id,
            target=account_id,
            details={"reason": reason},
        )
    await note_balance(session, account_id, await balance_of(session, account_id), clock)


async def resume_after_method_change(
    session: AsyncSession, account_id: str, *, clock: Clock, audit: AuditRecorder
) -> bool:
    """A payment method was saved: an auto top-up stopped by failed charges resumes (and fires
    if the balance is under the threshold). True when it resumed."""
    row = await session.get(CreditAutoTopup, account_id, with_for_update=True)
    if row is None or row.status != AutoTopupStatus.STOPPED or not row.enabled:
        return False
    await _resume_row(session, row, "payment method changed", clock, audit)
    return True


async def _resume_row(
    session: AsyncSession, row: CreditAutoTopup, reason: str, clock: Clock, audit: AuditRecorder
) -> None:
    row.status = AutoTopupStatus.ACTIVE
    row.failures_in_row = 0
    row.stopped_reason = None
    row.stopped_at = None
    row.stopped_method_id = None
    row.armed = True
    row.updated_at = clock.now()
    await session.flush()
    await _resumed(session, row.account_id, reason, clock, audit)


async def resume_where_default_changed(
    session: AsyncSession,
    payments: TopupPayments,
    *,
    clock: Clock,
    audit: AuditRecorder,
    limit: int = 200,
) -> int:
    """Stopped auto top-ups whose account's default payment method is no longer the one that
    failed (the customer chose another default, which Stripe sends no event for) resume. The
    recurring `credits.auto_topup_resume` job runs it. Returns how many resumed."""
    rows = (
        (
            await session.execute(
                select(CreditAutoTopup)
                .where(
                    CreditAutoTopup.status == AutoTopupStatus.STOPPED,
                    CreditAutoTopup.enabled.is_(True),
                )
                .order_by(CreditAutoTopup.account_id)
                .limit(limit)
                .with_for_update()
            )
        )
        .scalars()
        .all()
    )
    resumed = 0
    for row in rows:
        default = await payments.default_method(session, row.account_id)
        if default is not None and default != row.stopped_method_id:
            await _resume_row(session, row, "default payment method changed", clock, audit)
            resumed += 1
    return resumed


# --- one run -------------------------------------------------------------------------------


def _purchase_id(account_id: str, attempt: int) -> str:
    digest = hashlib.sha256(f"{account_id}|auto_topup|{attempt}".encode()).hexdigest()
    return f"atu_{digest[:40]}"


def _day_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def _month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=UTC)


async def _guardrail(
    session: AsyncSession, row: CreditAutoTopup, amount: int, now: datetime
) -> str | None:
    """Why no top-up may start now (None: it may)."""
    if row.last_attempt_at is not None and now - row.last_attempt_at < COOLDOWN:
        return "cooldown"
    counted = (
        purchase_rows.c.account_id == row.account_id,
        purchase_rows.c.kind == PurchaseKind.AUTO_TOPUP,
        purchase_rows.c.state != PurchaseState.FAILED,
    )
    today = (
        await session.execute(
            select(func.count())
            .select_from(purchase_rows)
            .where(*counted, purchase_rows.c.created_at >= _day_start(now))
        )
    ).scalar_one()
    if int(today) >= row.max_per_day:
        return "daily_cap"
    month = (
        await session.execute(
            select(func.coalesce(func.sum(purchase_rows.c.amount), 0)).where(
                *counted,
                purchase_rows.c.currency == row.currency,
                purchase_rows.c.created_at >= _month_start(now),
            )
        )
    ).scalar_one()
    if int(month) + amount > row.monthly_limit:
        return "monthly_cap"
    return None


@dataclass(frozen=True, slots=True)
class _Reserved:
    purchase_id: str
    amount: int
    currency: str
    credits: int
    payment_method_id: str


async def _skip(session: AsyncSession, account_id: str, reason: str, audit: AuditRecorder) -> None:
    await audit.record(
        session,
        "credits.auto_topup_skipped",
        account_id=account_id,
        target=account_id,
        details={"reason": reason},
    )


async def _reserve(
    container: Container, payments: TopupPayments, account_id: str, audit: AuditRecorder
) -> _Reserved | str:
    """Step 1: the reserved purchase to charge, or why none is charged."""
    clock = container.clock
    catalog = read_credit_catalog(container.settings)
    async with container.db.transaction() as session:
        row = await session.get(CreditAutoTopup, account_id, with_for_update=True)
        if row is None or row.status != AutoTopupStatus.ACTIVE:
            return "not_active"
        in_flight = (
            await session.execute(
                select(purchase_rows).where(
                    purchase_rows.c.account_id == account_id,
                    purchase_rows.c.kind == PurchaseKind.AUTO_TOPUP,
                    purchase_rows.c.state.in_([PurchaseState.RESERVED, PurchaseState.PENDING]),
                )
            )
        ).first()
        if in_flight is not None and in_flight.state == PurchaseState.RESERVED:
            # An earlier run reserved it and died before recording: finish it, same key.
            return _Reserved(
                purchase_id=in_flight.id,
                amount=int(in_flight.amount),
                currency=in_flight.currency,
                credits=int(in_flight.credits),
                payment_method_id=str(in_flight.request["payment_method_id"]),
            )
        if in_flight is not None:
            await _skip(session, account_id, "in_flight", audit)
            return "in_flight"
        if await balance_of(session, account_id) >= row.threshold:
            row.armed = True
            return "not_needed"
        now = clock.now()
        amount = catalog.topup_price(row.credits, row.currency)
        refused = await _guardrail(session, row, amount, now)
        if refused is not None:
            await _skip(session, account_id, refused, audit)
            return refused
        method = await payments.default_method(session, account_id)
        if method is None:
            await _skip(session, account_id, "no_usable_payment_method", audit)
            return "no_usable_payment_method"
        row.attempts += 1
        row.last_attempt_at = now
        row.updated_at = now
        purchase_id = _purchase_id(account_id, row.attempts)
        await session.execute(
            purchase_rows.insert().values(
                id=purchase_id,
                account_id=account_id,
                kind=PurchaseKind.AUTO_TOPUP,
                credits=row.credits,
                amount=amount,
                currency=row.currency,
                state=PurchaseState.RESERVED,
                request={"payment_method_id": method, "attempt": row.attempts},
                amount_refunded=0,
                credits_clawed_back=0,
                created_at=now,
                updated_at=now,
            )
        )
        await audit.record(
            session,
            "credits.auto_topup_started",
            account_id=account_id,
            target=purchase_id,
            details={
                "credits": row.credits,
                "amount": amount,
                "currency": row.currency,
                "payment_method_id": method,
            },
        )
        return _Reserved(purchase_id, amount, row.currency, int(row.credits), method)


async def _count_failure(
    session: AsyncSession,
    account_id: str,
    purchase_id: str,
    code: str | None,
    *,
    method_id: str | None,
    clock: Clock,
    audit: AuditRecorder,
) -> None:
    row = await session.get(CreditAutoTopup, account_id, with_for_update=True)
    if row is None:
        return
    now = clock.now()
    row.failures_in_row += 1
    row.updated_at = now
    await audit.record(
        session,
        "credits.auto_topup_failed",
        account_id=account_id,
        target=purchase_id,
        details={"failure_code": code, "failures_in_row": row.failures_in_row},
    )
    if row.failures_in_row >= MAX_FAILURES_IN_ROW and row.status == AutoTopupStatus.ACTIVE:
        row.status = AutoTopupStatus.STOPPED
        row.stopped_at = now
        row.stopped_method_id = method_id
        row.stopped_reason = (
            f"stopped after {row.failures_in_row} failed charges in a row "
            f"(last: {code or 'declined'}); save a payment method or turn it on again"
        )
        await audit.record(
            session,
            "credits.auto_topup_stopped",
            account_id=account_id,
            target=purchase_id,
            details={"reason": row.stopped_reason},
        )


async def record_outcome(
    session: AsyncSession,
    purchase: Any,
    status: str,
    *,
    payment_intent_id: str | None,
    failure_code: str | None,
    clock: Clock,
    audit: AuditRecorder,
) -> bool:
    """Step 3 (and the webhook of the charge's intent): succeeded grants the credits (once),
    processing is pending, anything else fails and counts a failure. True when it changed
    the purchase."""
    account_id = purchase.account_id
    if status == "succeeded":
        granted = await purchases.purchase_paid(
            session,
            purchase.id,
            session_id=None,
            payment_intent_id=payment_intent_id,
            clock=clock,
            audit=audit,
        )
        if granted:
            row = await session.get(CreditAutoTopup, account_id, with_for_update=True)
            if row is not None:
                row.failures_in_row = 0
        return granted
    if status == "processing":
        return await purchases.purchase_state(
            session,
            purchase.id,
            PurchaseState.PENDING,
            session_id=None,
            payment_intent_id=payment_intent_id,
            clock=clock,
            audit=audit,
        )
    failed = await purchases.purchase_state(
        session,
        purchase.id,
        PurchaseState.FAILED,
        session_id=None,
        payment_intent_id=payment_intent_id,
        clock=clock,
        audit=audit,
    )
    if failed:
        await _count_failure(
            session,
            account_id,
            purchase.id,
            failure_code,
            method_id=(purchase.request or {}).get("payment_method_id"),
            clock=clock,
            audit=audit,
        )
    return failed


async def run_auto_topup(
    container: Container, payments: TopupPayments, account_id: str, audit: AuditRecorder
) -> str:
    """One auto top-up for the account: reserve, charge, record. Returns the purchase's state
    (`completed`, `pending`, `failed`) or why nothing was charged (`cooldown`, `daily_cap`,
    `monthly_cap`, `in_flight`, `not_needed`, `not_active`, `no_usable_payment_method`)."""
    reserved = await _reserve(container, payments, account_id, audit)
    if isinstance(reserved, str):
        return reserved
    try:  # 2. call, no transaction open
        charge = await payments.charge(
            container,
            account_id,
            amount=reserved.amount,
            currency=reserved.currency,
            payment_method_id=reserved.payment_method_id,
            idempotency_key=charge_key(reserved.purchase_id),
            description=f"auto top-up: {reserved.credits} credits",
        )
    except (Conflict, PaymentRequired, NotFound, ValidationFailed) as exc:
        # The method can no longer be charged (removed, blocked): a failed charge.
        charge = TopupCharge(status="failed", failure_code=exc.code)
    if charge.status not in ("succeeded", "processing"):
        charge = TopupCharge("failed", charge.payment_intent_id, charge.failure_code or "declined")
    async with container.db.transaction() as session:  # 3. record
        purchase = (
            await session.execute(
                select(purchase_rows).where(purchase_rows.c.id == reserved.purchase_id)
            )
        ).one()
        await record_outcome(
            session,
            purchase,
            charge.status,
            payment_intent_id=charge.payment_intent_id,
            failure_code=charge.failure_code,
            clock=container.clock,
            audit=audit,
        )
        state = (
            await session.execute(
                select(purchase_rows.c.state).where(purchase_rows.c.id == reserved.purchase_id)
            )
        ).scalar_one()
    return str(state)


def charge_key(purchase_id: str) -> str:
    """The idempotency key of an auto top-up's charge: one charge per reserved top-up."""
    return f"auto_topup:{purchase_id}"


# --- a run that died ------------------------------------------------------------------------


async def release_stranded(
    session: AsyncSession,
    payments: TopupPayments,
    account_id: str,
    reason: str,
    *,
    clock: Clock,
    audit: AuditRecorder,
    reserved_before: datetime | None = None,
) -> str | None:
    """The account's reserved auto top-up that no run will record (its job died) is failed,
    so it no longer counts as in flight: audited as `credits.auto_topup_released` with
    `reason`, and counted as a failed charge (`job_dead`) towards the stop after
    `MAX_FAILURES_IN_ROW`. Only a row reserved before `reserved_before` when given. Returns the
    released purchase's id (None: none was reserved)."""
    await session.get(CreditAutoTopup, account_id, with_for_update=True)  # _reserve's lock order
    conditions = [
        purchase_rows.c.account_id == account_id,
        purchase_rows.c.kind == PurchaseKind.AUTO_TOPUP,
        purchase_rows.c.state == PurchaseState.RESERVED,
    ]
    if reserved_before is not None:
        conditions.append(purchase_rows.c.updated_at < reserved_before)
    purchase = (await session.execute(select(purchase_rows).where(*conditions))).first()
    if purchase is None:
        return None
    # The run may have died after Stripe took the money (its charge recorded by payments, the
    # top-up not): then it is granted (or pending), never failed with the money kept.
    charge = await payments.charged(
        session, account_id, idempotency_key=charge_key(str(purchase.id))
    )
    if charge is not None and charge.status == UNSETTLED:
        return None  # left reserved: the sweep comes back once payments knows
    if charge is not None:
        await record_outcome(
            session,
            purchase,
            charge.status,
            payment_intent_id=charge.payment_intent_id,
            failure_code=None,
            clock=clock,
            audit=audit,
        )
        await audit.record(
            session,
            "credits.auto_topup_recovered",
            account_id=account_id,
            target=purchase.id,
            details={"reason": reason, "charge": charge.status},
        )
        return str(purchase.id)
    failed = await record_outcome(
        session,
        purchase,
        "failed",
        payment_intent_id=None,
        failure_code=RELEASED_CODE,
        clock=clock,
        audit=audit,
    )
    if not failed:  # pragma: no cover - the settings row's lock orders it after any record
        return None
    await audit.record(
        session,
        "credits.auto_topup_released",
        account_id=account_id,
        target=purchase.id,
        details={"reason": reason},
    )
    return str(purchase.id)


async def release_all_stranded(
    session: AsyncSession,
    payments: TopupPayments,
    *,
    clock: Clock,
    audit: AuditRecorder,
    limit: int = 200,
) -> int:
    """The sweep: every reserved auto top-up older than `STRANDED_AFTER` whose account has no
    `credits.auto_topup` job left to finish it (none queued, running or waiting to retry) is
    released (`release_stranded`). Returns how many."""
    cutoff = clock.now() - STRANDED_AFTER
    accounts = (
        (
            await session.execute(
                select(purchase_rows.c.account_id)
                .where(
                    purchase_rows.c.kind == PurchaseKind.AUTO_TOPUP,
                    purchase_rows.c.state == PurchaseState.RESERVED,
                    purchase_rows.c.updated_at < cutoff,
                )
                .order_by(purchase_rows.c.account_id)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    released = 0
    for account_id in accounts:
        live = (
            await session.execute(
                select(Job.id)
                .where(
                    Job.kind == AUTO_TOPUP_JOB,
                    Job.key.startswith(f"auto-topup:{account_id}:", autoescape=True),
                    Job.status.in_(
                        [JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.FAILED.value]
                    ),
                )
                .limit(1)
            )
        ).first()
        if live is not None:
            continue
        reason = "no job left to finish it (its job died or is gone)"
        if await release_stranded(
            session, payments, account_id, reason, clock=clock, audit=audit, reserved_before=cutoff
        ):
            released += 1
    return released


def auto_topup_jobs(payments: TopupPayments) -> JobRegistry:
    """The auto top-up's job kinds, on the payments the composition root gives it."""
    jobs = JobRegistry()

    async def released_when_dead(session: AsyncSession, run: JobRun, failure: JobFailure) -> None:
        """The job's last attempt failed: its reserved row is released, in the transaction
        that marks the job dead."""
        if not failure.dead:
            return
        clock = run.container.clock
        await release_stranded(
            session,
            payments,
            str(run.payload["account_id"]),
            f"its job died after {run.attempt} attempts: {failure.error}"[:500],
            clock=clock,
            audit=system_audit_context("auto_topup", clock),
        )

    @jobs.kind(AUTO_TOPUP_JOB, max_attempts=AUTO_TOPUP_MAX_ATTEMPTS, on_failure=released_when_dead)
    async def auto_topup(run: JobRun) -> None:
        """Charge and grant one auto top-up (the guardrails decide whether it may start)."""
        await run_auto_topup(
            run.container,
            payments,
            str(run.payload["account_id"]),
            system_audit_context("auto_topup", run.container.clock),
        )

    @jobs.every(AUTO_TOPUP_RESUME_JOB, seconds=60)
    async def auto_topup_resume(run: JobRun) -> None:
        """Resume stopped auto top-ups whose default payment method changed."""
        clock = run.container.clock
        async with run.transaction() as session:
            await resume_where_default_changed(
                session, payments, clock=clock, audit=system_audit_context("auto_topup", clock)
            )

    @jobs.every(AUTO_TOPUP_SWEEP_JOB, seconds=300)
    async def auto_topup_sweep(run: JobRun) -> None:
        """Release reserved auto top-ups that no job will finish."""
        clock = run.container.clock
        async with run.transaction() as session:
            await release_all_stranded(
                session, payments, clock=clock, audit=system_audit_context("auto_topup", clock)
            )

    return jobs
