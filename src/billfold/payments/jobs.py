"""Autopay: a recurring job of the job runner settles the dues of every account with autopay
on, with the same ordered fallback as `pay-balance`.

- The sweep (`payments.autopay`, once per slot however many workers run) enqueues one job per
  account and currency owed, keyed by the dues being paid (`autopay:<payment id>`): the same dues
  are never enqueued twice, and the payment's own id comes from the same dues, so two runs of
  one job make one payment (and Stripe sees one idempotency key per attempt).
- An account whose earlier payment (a bank debit) is still pending is skipped until Stripe
  settles or fails it.
- A failed run is recorded (the attempts carry the decline codes) and the next waits the
  configured back-off (`BILLFOLD_AUTOPAY_RETRY_DAYS`, default 1, 3, 5 days); after the last,
  autopay is turned off with the reason recorded.
- `payments.recover` (every minute) finishes the payments whose process died between reserving
  and recording (older than `BILLFOLD_PAYMENTS_RECOVER_AFTER_SECONDS`): see
  `charging.recover_payment`; it also cancels the payments left waiting for 3-D Secure past
  `BILLFOLD_PAYMENTS_ACTION_TIMEOUT_SECONDS` (default 24 h): see `charging.expire_action`.
- `payments.sync_default` makes the account's default method the Stripe customer's when it
  changed without a request to push it (a webhook, a decline): see `sync_default`.
- The sweep runs every `BILLFOLD_AUTOPAY_INTERVAL_SECONDS` (default 900): its schedule is added
  by `job_registry(settings)`, which the composition root wires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.context import system_audit_context
from billfold.clock import Clock
from billfold.config import Settings
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import ensure_stripe_customer
from billfold.errors import Conflict
from billfold.jobs import JobRegistry, JobRun, enqueue
from billfold.jobs.registry import Schedule
from billfold.ledger.models import LedgerAccount, LedgerEntry
from billfold.payments import dues
from billfold.payments.charging import (
    Attempt,
    expire_actions,
    next_attempt,
    recover_payment,
    reserve_dues_payment,
    run_payment,
    stale_payments,
)
from billfold.payments.methods import SYNC_DEFAULT, push_default
from billfold.payments.models import FAILED, PaymentSettings
from billfold.stripe.gateway import gateway_of

jobs = JobRegistry()

AUTOPAY_SWEEP = "payments.autopay"
AUTOPAY_ACCOUNT = "payments.autopay_account"
RECOVER_SWEEP = "payments.recover"
RECOVER_EVERY_SECONDS = 60


def retry_delays(settings: Settings) -> tuple[timedelta, ...]:
    """Waits after the 1st, 2nd, ... failed run; a failure after the last turns autopay off."""
    return tuple(timedelta(days=days) for days in settings.autopay_retry_days)


def job_registry(settings: Settings) -> JobRegistry:
    """Payments' job kinds, with the autopay sweep every `autopay_interval_seconds` (the
    module-level `jobs` declares the kinds; a schedule is a deployment's setting)."""
    registry = JobRegistry()
    registry.include(jobs)
    registry.schedules[AUTOPAY_SWEEP] = Schedule(
        AUTOPAY_SWEEP, every_seconds=settings.autopay_interval_seconds
    )
    registry.schedules[RECOVER_SWEEP] = Schedule(RECOVER_SWEEP, every_seconds=RECOVER_EVERY_SECONDS)
    return registry


async def due_autopay(session: AsyncSession, *, now: datetime) -> list[tuple[str, str, str]]:
    """(account id, currency, dues marker) of every account with autopay on, not waiting out a
    back-off, owing settled dues and with no payment of them pending. One query."""
    pending = LedgerAccount.__table__.alias("pending")
    newest = (
        select(func.max(LedgerEntry.id))
        .where(LedgerEntry.account_id == LedgerAccount.id)
        .scalar_subquery()
    )
    stmt = (
        select(LedgerAccount.billing_account_id, LedgerAccount.unit, LedgerAccount.id, newest)
        .join(PaymentSettings, PaymentSettings.account_id == LedgerAccount.billing_account_id)
        .outerjoin(
            pending,
            and_(
                pending.c.billing_account_id == LedgerAccount.billing_account_id,
                pending.c.name == dues.DUES_PENDING,
                pending.c.unit == LedgerAccount.unit,
            ),
        )
        .where(
            LedgerAccount.name == dues.DUES,
            LedgerAccount.balance > 0,
            PaymentSettings.autopay.is_(True),
            or_(
                PaymentSettings.autopay_retry_at.is_(None), PaymentSettings.autopay_retry_at <= now
            ),
            or_(pending.c.balance.is_(None), pending.c.balance == 0),
        )
    )
    return [
        (str(account_id), str(unit), f"{ledger_id}:{entry}")
        for account_id, unit, ledger_id, entry in await session.execute(stmt)
    ]


@jobs.kind(AUTOPAY_SWEEP, max_attempts=3)
async def autopay_sweep(run: JobRun) -> None:
    """Enqueue one autopay job per account and currency owed (keyed by the dues)."""
    async with run.transaction() as session:
        await enqueue_due_autopay(session, clock=run.container.clock)


async def enqueue_due_autopay(session: AsyncSession, *, clock: Clock) -> int:
    """The sweep's work in the caller's transaction: how many jobs it wrote."""
    written = 0
    for account_id, currency, marker in await due_autopay(session, now=clock.now()):
        payment_id = dues.payment_id_for_dues(account_id, currency, marker)
        written += await enqueue(
            session,
            AUTOPAY_ACCOUNT,
            {"account_id": account_id, "currency": currency},
            key=f"autopay:{payment_id}",
            clock=clock,
        )
    return written


@jobs.kind(AUTOPAY_ACCOUNT, max_attempts=5)
async def autopay_account(run: JobRun) -> None:
    """Pay one account's settled dues in one currency, by priority with fallback."""
    await autopay(run.container, run.payload["account_id"], run.payload["currency"])


async def autopay(container: Container, account_id: str, currency: str) -> str | None:
    """One autopay run for an account and currency; the payment's status (None: nothing to
    do, autopay off, backing off, or a payment of these dues pending)."""
    audit = system_audit_context("autopay", container.clock)
    now = container.clock.now()
    first: Attempt = None
    # One writer checks, reserves the payment and its first attempt (a busy autopay run is
    # mostly commits). A Conflict (the dues changed meanwhile) rolls it all back.
    try:
        async with container.db.transaction() as session:
            settings = await session.get(PaymentSettings, account_id)
            if settings is None or not settings.autopay:
                return None
            if settings.autopay_retry_at is not None and settings.autopay_retry_at > now:
                return None
            account = await session.get(BillingAccount, account_id)
            assert account is not None
            customer_id = account.stripe_customer_id
            payment_id = None
            if customer_id is not None:
                payment_id = await _reserve(
                    session, account_id, currency, now=now, clock=container.clock
                )
                if payment_id is None:
                    return None
                first = await next_attempt(
                    session, payment_id, customer_id, now=now, clock=container.clock
                )
    except Conflict:
        return None
    if customer_id is None:
        customer_id = await ensure_stripe_customer(
            container.db, gateway_of(container), account_id, clock=container.clock, audit=audit
        )
    if payment_id is None:
        try:
            async with container.db.transaction() as session:
                payment_id = await _reserve(
                    session, account_id, currency, now=now, clock=container.clock
                )
        except Conflict:
            return None
        if payment_id is None:
            return None
    outcome = await run_payment(
        container, payment_id, customer_id=customer_id, audit=audit, first=first
    )
    await _after_run(
        container, account_id, outcome.payment.status, outcome.payment.failure_code, payment_id
    )
    return outcome.payment.status


async def _reserve(
    session: AsyncSession, account_id: str, currency: str, *, now: datetime, clock: Clock
) -> str | None:
    """Never while an earlier debit of these dues is processing (`unless_pending`)."""
    return await reserve_dues_payment(
        session,
        account_id,
        currency,
        kind="autopay",
        now=now,
        clock=clock,
        unless_pending=True,
        savepoint=False,
    )


async def _after_run(
    container: Container, account_id: str, status: str, failure_code: str | None, payment_id: str
) -> None:
    """Back-off after a failure, autopay off after the last. (A success resets it in the
    transaction that records it: `charging.mark_succeeded`.)"""
    if status != FAILED:
        return
    now = container.clock.now()
    audit = system_audit_context("autopay", container.clock)
    async with container.db.transaction() as session:
        settings = await session.get(PaymentSettings, account_id, with_for_update=True)
        if settings is None:
            return
        delays = retry_delays(container.settings)
        settings.autopay_failures += 1
        if settings.autopay_failures > len(delays):
            settings.autopay = False
            settings.autopay_retry_at = None
            settings.autopay_stopped_at = now
            settings.autopay_stopped_reason = (
                f"autopay stopped after {settings.autopay_failures} failed payments "
                f"(last: {failure_code or 'declined'})"
            )
            await audit.record(
                session,
                "autopay.stopped",
                account_id=account_id,
                target=payment_id,
                details={"reason": settings.autopay_stopped_reason},
            )
        else:
            settings.autopay_retry_at = now + delays[settings.autopay_failures - 1]
            await audit.record(
                session,
                "autopay.failed",
                account_id=account_id,
                target=payment_id,
                details={
                    "failure_code": failure_code,
                    "retry_at": settings.autopay_retry_at.isoformat(),
                },
            )
        settings.updated_at = now


class _DefaultMoved(Exception):
    """The default changed while the job pushed the one it read."""


@jobs.kind(SYNC_DEFAULT, max_attempts=10)
async def sync_default(run: JobRun) -> None:
    """Make the account's default method the Stripe customer's (`_renumber` writes this job
    when a webhook, a decline or a request changed it). Read, call Stripe, then finish the
    job in a transaction that locks the settings row and checks the default is still the one
    pushed: a change committed meanwhile is pushed too (its own enqueue found this job still
    running), and a change after that finds this job done and queues it again."""
    account_id = run.payload["account_id"]
    audit = system_audit_context("payments", run.container.clock)
    for _ in range(5):
        pushed = await push_default(run.container, account_id, audit=audit)
        try:
            async with run.transaction() as session:
                settings = await session.get(
                    PaymentSettings, account_id, with_for_update=True, populate_existing=True
                )
                if settings is not None and settings.default_payment_method_id != pushed:
                    raise _DefaultMoved
            return
        except _DefaultMoved:
            continue
    raise Conflict("the default payment method kept changing; tried again later")


@jobs.kind(RECOVER_SWEEP, max_attempts=3)
async def recover_sweep(run: JobRun) -> None:
    """Finish the payments interrupted between reserving and recording, and cancel those
    left waiting for 3-D Secure past `payments_action_timeout_seconds`."""
    await recover_stale_payments(run.container)
    await expire_actions(run.container)


async def recover_stale_payments(container: Container) -> dict[str, str]:
    """Recover every payment reserved longer ago than `payments_recover_after_seconds` and not
    touched since; an autopay payment's outcome counts in its account's back-off as a run's
    would. Returns each recovered payment's status."""
    audit = system_audit_context("recovery", container.clock)
    before = container.clock.now() - timedelta(
        seconds=container.settings.payments_recover_after_seconds
    )
    async with container.db.read() as session:
        stale = await stale_payments(session, before=before)
    recovered: dict[str, str] = {}
    for payment_id in stale:
        payment = await recover_payment(container, payment_id, before=before, audit=audit)
        if payment is None:
            continue
        recovered[payment_id] = payment.status
        if payment.kind == "autopay":
            await _after_run(
                container, payment.account_id, payment.status, payment.failure_code, payment_id
            )
    return recovered
