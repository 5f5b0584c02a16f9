"""Paying: the settled dues (`pay_balance`, autopay) and one-off charges (`charge_once`), each
tried on the account's methods in priority order (the ordered fallback).

Reserve, call, record (ARCHITECTURE.md "Calling Stripe"), per attempt:

1. **Reserve** (commit): a dues payment's id is derived from the dues it pays, and the dues move
   to pending in the same transaction (the ledger's guarded update refuses to move them twice).
   Each attempt is a row `<payment id>:<n>` naming its method and its whole Stripe request.
2. **Call** Stripe with the key `payment_attempt:<attempt id>`, no transaction open.
3. **Record** (commit): `UPDATE ... WHERE state = 'reserved'`: of the callers (a retry, a second
   worker, the webhook of the same intent) exactly one records the outcome.

Which declines move on and which stop is the decline code's: a card reported lost or stolen, or
a fraudulent decline, is never tried again (the method is blocked); insufficient funds may be
retried later (autopay's back-off), and the next method is tried now.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.context import AuditContext, system_audit_context
from billfold.clock import Clock
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import ensure_stripe_customer
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import (
    Conflict,
    InsufficientBalance,
    NotFound,
    PaymentRequired,
    UpstreamUnavailable,
    ValidationFailed,
)
from billfold.payments import dues
from billfold.payments.methods import list_methods, own_method, refresh_default
from billfold.payments.models import (
    FAILED,
    PROCESSING,
    REQUIRES_ACTION,
    RESERVED,
    SUCCEEDED,
    USABLE_STATUSES,
    Payment,
    PaymentAttempt,
    PaymentMethod,
    PaymentSettings,
)
from billfold.stripe.gateway import PaymentIntentInfo, gateway_of

# Declines after which a method is never charged again.
NEVER_RETRY = frozenset(
    {
        "lost_card",
        "stolen_card",
        "fraudulent",
        "pickup_card",
        "restricted_card",
        "merchant_blacklist",
        "security_violation",
    }
)
log = logging.getLogger(__name__)

PAYMENT_METADATA_KEY = "billfold_payment"
ATTEMPT_METADATA_KEY = "billfold_attempt"

PaymentKind = Literal["balance", "autopay", "one_off", "auto_topup"]
# Charges of an amount rather than of dues (a failure voids them). An auto top-up of credits
# (credits.autotopup, through billfold.wiring) is one, charged off session.
ONE_OFF_KINDS = ("one_off", "auto_topup")


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """A payment after its attempts; `client_secret` when 3-D Secure waits for the customer."""

    payment: Payment
    attempts: list[PaymentAttempt]
    client_secret: str | None = None


# --- reserve -----------------------------------------------------------------------------------


async def reserve_dues_payment(
    session: AsyncSession,
    account_id: str,
    currency: str,
    *,
    kind: PaymentKind,
    now: datetime,
    clock: Clock,
    unless_pending: bool = False,
    savepoint: bool = True,
) -> str | None:
    """Reserve a payment of the account's settled dues in `currency` (None: nothing owed, or
    with `unless_pending` a payment of earlier dues still pending). Two callers over the same
    dues get the same payment id and one reservation. Conflict when the dues changed under it;
    without `savepoint` the caller then rolls its transaction back (the payment row with it)."""
    # The marker first, then the amounts: a payment that commits in between moved the dues to
    # pending (seen below), so two callers never reserve different payments of the same dues.
    marker = await dues.dues_marker(session, account_id, currency)
    if marker is None:
        return None
    owed = await dues.currency_dues(session, account_id, currency)
    if owed.settled <= 0 or (unless_pending and owed.pending > 0):
        return None
    payment_id = dues.payment_id_for_dues(account_id, currency, marker)
    # A savepoint: a refused reservation leaves no payment row behind in the caller's
    # transaction (it may catch the Conflict and commit).
    async with session.begin_nested() if savepoint else contextlib.nullcontext():
        inserted = await insert_ignoring_conflict(
            session,
            Payment.__table__,  # type: ignore[arg-type]
            {
                "id": payment_id,
                "account_id": account_id,
                "kind": kind,
                "amount": owed.settled,
                "currency": currency,
                "description": "balance due",
                "status": RESERVED,
                "refunded_amount": 0,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            },
            ["id"],
        )
        if inserted:
            try:
                await dues.reserve_dues(
                    session, account_id, currency, owed.settled, payment_id, clock
                )
            except InsufficientBalance as exc:
                raise Conflict("the dues changed while being paid; try again") from exc
    return payment_id


# --- the attempts ------------------------------------------------------------------------------


def _usable(method: PaymentMethod) -> bool:
    return method.status in USABLE_STATUSES and method.blocked_reason is None


async def _attempts(session: AsyncSession, payment_id: str) -> list[PaymentAttempt]:
    rows = await session.execute(
        select(PaymentAttempt)
        .where(PaymentAttempt.payment_id == payment_id)
        .order_by(PaymentAttempt.seq)
    )
    return list(rows.scalars())


async def _next_attempt(container: Container, payment_id: str, customer_id: str) -> Attempt:
    """In one short writer: the attempt to make now, see `next_attempt`."""
    async with container.db.transaction() as session:
        return await next_attempt(
            session, payment_id, customer_id, now=container.clock.now(), clock=container.clock
        )


async def next_attempt(
    session: AsyncSession, payment_id: str, customer_id: str, *, now: datetime, clock: Clock
) -> Attempt:
    """The attempt to make now (a reserved one to finish, or a new one on the next usable
    method, reserved in the caller's transaction), or None when the payment is no longer being
    tried (after failing it when no method is left)."""
    payment = await session.get(Payment, payment_id, with_for_update=True, populate_existing=True)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    if payment.status != RESERVED:
        return None
    tried = await _attempts(session, payment_id)
    if tried and tried[-1].state == RESERVED:
        return _request_of(tried[-1])
    used = {a.payment_method_id for a in tried}
    if payment.requested_payment_method_id is not None:
        candidates = [await session.get(PaymentMethod, payment.requested_payment_method_id)]
    else:
        candidates = list(await list_methods(session, payment.account_id))
    method = next(
        (m for m in candidates if m is not None and _usable(m) and m.id not in used), None
    )
    if method is None:
        await _fail(session, payment, tried, now=now, clock=clock)
        return None
    seq = len(tried) + 1
    attempt = PaymentAttempt(
        id=f"{payment_id}:{seq}",
        payment_id=payment_id,
        seq=seq,
        payment_method_id=method.id,
        state=RESERVED,
        request={
            "customer_id": customer_id,
            "payment_method_id": method.id,
            "amount": payment.amount,
            "currency": payment.currency,
            "on_session": payment.kind == "one_off" and method.type == "card",
            "description": payment.description,
        },
        created_at=now,
        updated_at=now,
    )
    session.add(attempt)
    payment.attempts = seq
    payment.payment_method_id = method.id
    payment.updated_at = now
    await session.flush()
    return _request_of(attempt)


def _request_of(attempt: PaymentAttempt) -> tuple[str, dict[str, Any]]:
    return attempt.id, dict(attempt.request)


# An attempt to make: its id and its stored Stripe request (None: no attempt left to make).
Attempt = tuple[str, dict[str, Any]] | None


async def _fail(
    session: AsyncSession,
    payment: Payment,
    tried: list[PaymentAttempt],
    *,
    now: datetime,
    clock: Clock,
) -> None:
    """Every method declined (or none is usable): the dues re-open (a one-off is voided)."""
    last = tried[-1] if tried else None
    payment.status = FAILED
    payment.failure_code = (
        (last.decline_code or last.failure_code) if last is not None else "no_usable_payment_method"
    )
    if payment.failure_message is None:
        payment.failure_message = (
            f"declined on {len(tried)} payment method(s)" if tried else "no usable payment method"
        )
    payment.updated_at = now
    await dues.release(
        session,
        payment.account_id,
        payment.currency,
        payment.amount,
        payment.id,
        one_off=payment.kind in ONE_OFF_KINDS,
        clock=clock,
    )


async def record_intent(
    session: AsyncSession,
    attempt_id: str,
    intent: PaymentIntentInfo,
    *,
    now: datetime,
    clock: Clock,
    audit: AuditContext,
) -> bool:
    """Record Stripe's answer for a reserved attempt, once (True: this call recorded it).
    Also called by the webhook of the intent, whichever comes first."""
    declined = intent.status in ("requires_payment_method", "canceled")
    state = {
        "succeeded": SUCCEEDED,
        "processing": PROCESSING,
        "requires_action": REQUIRES_ACTION,
        "requires_confirmation": REQUIRES_ACTION,
    }.get(intent.status, "declined" if declined else intent.status)
    recorded = await session.execute(
        update(PaymentAttempt)
        .where(PaymentAttempt.id == attempt_id, PaymentAttempt.state == RESERVED)
        .values(
            state=state,
            stripe_payment_intent_id=intent.id,
            failure_code=intent.last_error_code,
            decline_code=intent.decline_code,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(recorded, "rowcount", 0) != 1:
        return False
    attempt = await session.get(PaymentAttempt, attempt_id, populate_existing=True)
    assert attempt is not None
    payment = await session.get(Payment, attempt.payment_id, with_for_update=True)
    assert payment is not None
    details = {
        "payment_id": payment.id,
        "payment_method_id": attempt.payment_method_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "status": state,
        "decline_code": intent.decline_code,
        "payment_intent": intent.id,
    }
    await audit.record(
        session,
        f"payment.attempt_{state}",
        account_id=payment.account_id,
        target=attempt_id,
        details=details,
    )
    if declined:
        code = intent.decline_code or intent.last_error_code
        if code in NEVER_RETRY:
            method = await session.get(PaymentMethod, attempt.payment_method_id)
            if method is not None and method.blocked_reason is None:
                method.blocked_reason = code
                method.updated_at = now
                await refresh_default(session, payment.account_id, now=now)
                await audit.record(
                    session,
                    "payment_method.blocked",
                    account_id=payment.account_id,
                    target=method.id,
                    details={"decline_code": code},
                )
        payment.failure_code = code
        payment.updated_at = now
        return True
    payment.stripe_payment_intent_id = intent.id
    payment.stripe_charge_id = intent.latest_charge_id
    payment.payment_method_id = attempt.payment_method_id
    payment.updated_at = now
    if state == SUCCEEDED:
        await mark_succeeded(session, payment, now=now, clock=clock)
    else:
        payment.status = state
    await session.flush()
    return True


async def mark_succeeded(
    session: AsyncSession, payment: Payment, *, now: datetime, clock: Clock
) -> None:
    payment.status = SUCCEEDED
    payment.failure_code = None
    payment.failure_message = None
    payment.updated_at = now
    await dues.settle(
        session, payment.account_id, payment.currency, payment.amount, payment.id, clock
    )
    if payment.kind == "autopay":
        # Autopay's back-off starts over; one statement, which writes (and locks) nothing
        # when there was no failure to forget.
        await session.execute(
            update(PaymentSettings)
            .where(
                PaymentSettings.account_id == payment.account_id,
                or_(
                    PaymentSettings.autopay_failures != 0,
                    PaymentSettings.autopay_retry_at.is_not(None),
                ),
            )
            .values(autopay_failures=0, autopay_retry_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )


async def mark_failed(
    session: AsyncSession,
    payment: Payment,
    *,
    code: str | None,
    message: str | None,
    now: datetime,
    clock: Clock,
) -> None:
    """A processing payment (a bank debit) or a 3-D Secure one failed: dues re-open."""
    payment.failure_message = message
    await _fail(session, payment, [], now=now, clock=clock)
    payment.failure_code = code or payment.failure_code


async def run_payment(
    container: Container,
    payment_id: str,
    *,
    customer_id: str,
    audit: AuditContext,
    return_url: str | None = None,
    first: Attempt = None,
) -> PaymentOutcome:
    """Try the payment's methods in priority order until one succeeds (or starts processing,
    or waits for 3-D Secure), recording every attempt. Safe to run twice at once: the second
    run finishes the same attempts with the same Stripe keys, and one of them records each.
    `first`: the attempt the caller reserved with the payment (`next_attempt`), in one
    transaction with it."""
    gateway = gateway_of(container)
    client_secret: str | None = None
    attempt = first or await _next_attempt(container, payment_id, customer_id)
    while attempt is not None:
        attempt_id, request = attempt
        call = (
            gateway.payment_intents.create_on_session
            if request.get("on_session")
            else gateway.payment_intents.create_off_session
        )
        extra = {"return_url": return_url} if request.get("on_session") and return_url else {}
        intent = await call(
            customer_id=request["customer_id"],
            payment_method_id=request["payment_method_id"],
            amount=request["amount"],
            currency=request["currency"],
            metadata={PAYMENT_METADATA_KEY: payment_id, ATTEMPT_METADATA_KEY: attempt_id},
            idempotency_key=f"payment_attempt:{attempt_id}",
            description=request.get("description"),
            **extra,
        )
        if intent.status == "requires_action":
            client_secret = intent.client_secret
        now = container.clock.now()
        async with container.db.transaction() as session:
            await record_intent(
                session, attempt_id, intent, now=now, clock=container.clock, audit=audit
            )
            await session.flush()
            # Loaded (and locked) by record_intent when it recorded: no query then.
            payment = await session.get(Payment, payment_id)
            assert payment is not None
            if payment.status == RESERVED:
                # Declined: the next method, reserved in the same transaction.
                attempt = await next_attempt(
                    session, payment_id, customer_id, now=now, clock=container.clock
                )
                if attempt is not None:
                    continue
            # Succeeded, processing, waiting for 3-D Secure, or failed: the outcome as recorded.
            await session.flush()
            attempts = await _attempts(session, payment_id)
            session.expunge_all()
            return PaymentOutcome(payment=payment, attempts=attempts, client_secret=client_secret)
    async with container.db.read() as session:
        found = await session.get(Payment, payment_id)
        assert found is not None
        attempts = await _attempts(session, payment_id)
        session.expunge_all()
    return PaymentOutcome(payment=found, attempts=attempts, client_secret=client_secret)


# --- the routes' services ----------------------------------------------------------------------


async def pay_balance(
    container: Container,
    account: BillingAccount,
    *,
    currency: str | None,
    audit: AuditContext,
    kind: PaymentKind = "balance",
) -> PaymentOutcome:
    """Charge the settled dues off session, by priority with fallback. 409 when nothing is
    owed or a payment of them is already in flight; 402 when no method is usable."""
    currency = (currency or account.currency or container.settings.stripe_default_currency).lower()
    _, currency = dues.check_amount(1, currency)
    async with container.db.read() as session:
        if not any(_usable(m) for m in await list_methods(session, account.id)):
            raise PaymentRequired("add a usable payment method first")
    customer_id = await ensure_stripe_customer(
        container.db, gateway_of(container), account.id, clock=container.clock, audit=audit
    )
    async with container.db.transaction() as session:
        payment_id = await reserve_dues_payment(
            session,
            account.id,
            currency,
            kind=kind,
            now=container.clock.now(),
            clock=container.clock,
        )
        if payment_id is None:
            payment_id = await _reserved_payment(session, account.id, currency)
        if payment_id is None:
            owed = await dues.currency_dues(session, account.id, currency)
            raise Conflict(
                "a payment of these dues is in flight" if owed.pending else "nothing is owed",
                field="currency",
            )
        await audit.record(
            session,
            "payment.started",
            account_id=account.id,
            target=payment_id,
            details={"kind": kind, "currency": currency},
        )
    return await run_payment(container, payment_id, customer_id=customer_id, audit=audit)


async def _reserved_payment(session: AsyncSession, account_id: str, currency: str) -> str | None:
    """A dues payment still being tried (its caller died, or is still at it): finishing it
    with its stored requests and keys makes the same Stripe calls, never new ones."""
    found = await session.execute(
        select(Payment.id)
        .where(
            Payment.account_id == account_id,
            Payment.currency == currency,
            Payment.status == RESERVED,
            Payment.kind.not_in(ONE_OFF_KINDS),
        )
        .order_by(Payment.created_at)
        .limit(1)
    )
    return found.scalar_one_or_none()


def payment_id_for(account_id: str, idempotency_key: str) -> str:
    """The id of the payment `charge_once` makes for an account with an idempotency key: the
    same key, the same payment (a retry finds the one it made)."""
    return "pay_" + hashlib.sha256(f"{account_id}:{idempotency_key}".encode()).hexdigest()[:32]


async def charge_once(
    container: Container,
    account: BillingAccount,
    *,
    amount: object,
    currency: str,
    description: str | None,
    payment_method_id: str | None,
    audit: AuditContext,
    idempotency_key: str | None = None,
    return_url: str | None = None,
    kind: Literal["one_off", "auto_topup"] = "one_off",
) -> PaymentOutcome:
    """Charge an amount once, on `payment_method_id` or by priority with fallback. A card
    asking for 3-D Secure answers `requires_action` with the client secret to finish it.
    `kind="auto_topup"` charges off session (the customer is not there)."""
    total, currency = dues.check_amount(amount, currency)
    async with container.db.read() as session:
        if payment_method_id is not None:
            method = await own_method(session, account.id, payment_method_id)
            if not _usable(method):
                raise Conflict(
                    f"payment method {payment_method_id} is not usable ({method.status})",
                    field="payment_method_id",
                )
        elif not any(_usable(m) for m in await list_methods(session, account.id)):
            raise PaymentRequired("add a usable payment method first")
    customer_id = await ensure_stripe_customer(
        container.db, gateway_of(container), account.id, clock=container.clock, audit=audit
    )
    payment_id = payment_id_for(account.id, idempotency_key) if idempotency_key else new_id("pay")
    now = container.clock.now()
    async with container.db.transaction() as session:
        inserted = await insert_ignoring_conflict(
            session,
            Payment.__table__,  # type: ignore[arg-type]
            {
                "id": payment_id,
                "account_id": account.id,
                "kind": kind,
                "amount": total,
                "currency": currency,
                "description": description,
                "status": RESERVED,
                "requested_payment_method_id": payment_method_id,
                "refunded_amount": 0,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            },
            ["id"],
        )
        if inserted:
            await dues.reserve_one_off(
                session, account.id, currency, total, payment_id, description, container.clock
            )
            await audit.record(
                session,
                "payment.started",
                account_id=account.id,
                target=payment_id,
                details={"kind": kind, "amount": total, "currency": currency},
            )
        else:
            existing = await session.get(Payment, payment_id)
            if existing is None or existing.account_id != account.id or existing.amount != total:
                raise Conflict("Idempotency-Key reused with a different charge")
    return await run_payment(
        container, payment_id, customer_id=customer_id, audit=audit, return_url=return_url
    )


async def list_payments(
    session: AsyncSession, account_id: str, *, limit: int, before: str | None = None
) -> tuple[list[Payment], dict[str, list[PaymentAttempt]]]:
    """The account's payments newest first, with their attempts."""
    stmt = select(Payment).where(Payment.account_id == account_id)
    if before is not None:
        anchor = await session.get(Payment, before)
        if anchor is None or anchor.account_id != account_id:
            raise NotFound(f"no payment {before}", field="cursor")
        stmt = stmt.where(
            (Payment.created_at < anchor.created_at)
            | ((Payment.created_at == anchor.created_at) & (Payment.id < anchor.id))
        )
    rows = await session.execute(
        stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)
    )
    payments = list(rows.scalars())
    attempts: dict[str, list[PaymentAttempt]] = {p.id: [] for p in payments}
    if payments:
        found = await session.execute(
            select(PaymentAttempt)
            .where(PaymentAttempt.payment_id.in_(list(attempts)))
            .order_by(PaymentAttempt.payment_id, PaymentAttempt.seq)
        )
        for attempt in found.scalars():
            attempts[attempt.payment_id].append(attempt)
    return payments, attempts


# --- recovery ----------------------------------------------------------------------------------

ABANDONED = "abandoned"  # an attempt whose process died before Stripe made its intent
INTERRUPTED = "interrupted"


async def stale_payments(
    session: AsyncSession, *, before: datetime, limit: int = 500, status: str = RESERVED
) -> list[str]:
    """Payments still `reserved` (being tried) that nothing touched since `before`: their
    process died between reserving and recording (a live run touches them every attempt).
    With `status=REQUIRES_ACTION`: those waiting for 3-D Secure since before `before`."""
    rows = await session.execute(
        select(Payment.id)
        .where(Payment.status == status, Payment.updated_at < before)
        .order_by(Payment.updated_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def recover_payment(
    container: Container, payment_id: str, *, before: datetime, audit: AuditContext
) -> Payment | None:
    """Finish a payment whose process died between reserving and recording: each attempt left
    reserved is looked up at Stripe by its metadata (`billfold_attempt`, the same id as its
    idempotency key) and its answer recorded as the caller would have; an attempt Stripe never
    saw is abandoned. A payment still not settled then fails: dues re-open, a one-off charge is
    voided (nothing is charged anew: the customer of a one-off is gone, and autopay's next run
    pays the re-opened dues). None when the payment is not stale (any more)."""
    async with container.db.read() as session:
        payment = await session.get(Payment, payment_id)
        if payment is None or payment.status != RESERVED or payment.updated_at >= before:
            return None
        reserved = [a.id for a in await _attempts(session, payment_id) if a.state == RESERVED]
    gateway = gateway_of(container)
    for attempt_id in reserved:
        intent = await gateway.payment_intents.find_by_metadata(ATTEMPT_METADATA_KEY, attempt_id)
        now = container.clock.now()
        async with container.db.transaction() as session:
            if intent is not None:
                await record_intent(
                    session, attempt_id, intent, now=now, clock=container.clock, audit=audit
                )
                continue
            abandoned = await session.execute(
                update(PaymentAttempt)
                .where(PaymentAttempt.id == attempt_id, PaymentAttempt.state == RESERVED)
                .values(state=ABANDONED, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(abandoned, "rowcount", 0) == 1:
                await audit.record(
                    session,
                    "payment.attempt_abandoned",
                    account_id=payment.account_id,
                    target=attempt_id,
                    details={"payment_id": payment_id},
                )
    now = container.clock.now()
    async with container.db.transaction() as session:
        found = await session.get(Payment, payment_id, with_for_update=True, populate_existing=True)
        assert found is not None
        if found.status == RESERVED:
            tried = await _attempts(session, payment_id)
            if any(a.state == RESERVED for a in tried):
                return found  # a live run reserved a new attempt meanwhile: it records it
            found.failure_message = "interrupted before its outcome was recorded"
            await _fail(session, found, tried, now=now, clock=container.clock)
            if not any(a.state == "declined" for a in tried):
                found.failure_code = INTERRUPTED
        await audit.record(
            session,
            "payment.recovered",
            account_id=found.account_id,
            target=payment_id,
            details={"status": found.status, "attempts": reserved},
        )
        await session.flush()
        session.expunge(found)
    return found


# --- 3-D Secure left unfinished ----------------------------------------------------------------

ACTION_EXPIRED = "action_expired"  # the failure code of a payment whose 3-D Secure timed out


async def expire_action(
    container: Container, payment_id: str, *, before: datetime, audit: AuditContext
) -> Payment | None:
    """A payment still waiting for 3-D Secure since before `before`: cancel its PaymentIntent
    (Stripe cancels nothing by itself), keyed by its attempt, and record the outcome: failed
    with `action_expired`, its dues re-opened (a one-off charge voided). Stripe's answer
    decides: a customer who finished just before the cancel paid, and that is recorded
    instead. Reserve (read), call with no transaction open, record under the payment's lock
    (a webhook of the same intent may record it first: then nothing more is done). None when
    the payment is not waiting (any more) or Stripe's answer is not final yet."""
    async with container.db.read() as session:
        payment = await session.get(Payment, payment_id)
        if payment is None or payment.status != REQUIRES_ACTION or payment.updated_at >= before:
            return None
        waiting = [
            a
            for a in await _attempts(session, payment_id)
            if a.state == REQUIRES_ACTION and a.stripe_payment_intent_id
        ]
    if not waiting:
        return None
    attempt_id, intent_id = waiting[-1].id, str(waiting[-1].stripe_payment_intent_id)
    intents = gateway_of(container).payment_intents
    try:
        intent = await intents.cancel(intent_id, idempotency_key=f"payment_expire:{attempt_id}")
    except (ValidationFailed, NotFound):
        # Not cancelable: it succeeded (or began processing) just now. Record that instead.
        intent = await intents.retrieve(intent_id)
    now, clock = container.clock.now(), container.clock
    async with container.db.transaction() as session:
        found = await session.get(Payment, payment_id, with_for_update=True, populate_existing=True)
        assert found is not None
        attempt = await session.get(PaymentAttempt, attempt_id, populate_existing=True)
        assert attempt is not None
        if found.status != REQUIRES_ACTION or attempt.state != REQUIRES_ACTION:
            return None  # recorded meanwhile (the webhook of the intent)
        if intent.status == "succeeded":
            attempt.state = SUCCEEDED
            await mark_succeeded(session, found, now=now, clock=clock)
        elif intent.status == "processing":
            attempt.state = PROCESSING
            found.status, found.updated_at = PROCESSING, now
        elif intent.status in ("canceled", "requires_payment_method"):
            attempt.state = "canceled"
            hours = container.settings.payments_action_timeout_seconds / 3600
            await mark_failed(
                session,
                found,
                code=ACTION_EXPIRED,
                message=f"3-D Secure was not completed within {hours:g} h; "
                "the payment was canceled",
                now=now,
                clock=clock,
            )
        else:
            return None  # still waiting at Stripe (the cancel did not take): the next sweep
        attempt.updated_at = now
        await audit.record(
            session,
            "payment.action_expired",
            account_id=found.account_id,
            target=payment_id,
            details={
                "payment_intent": intent_id,
                "attempt": attempt_id,
                "stripe_status": intent.status,
                "status": found.status,
            },
        )
        await session.flush()
        session.expunge(found)
    return found


async def expire_actions(container: Container) -> dict[str, str]:
    """`expire_action` for every payment waiting for 3-D Secure longer than
    `payments_action_timeout_seconds`; each one's new status. A payment Stripe could not be
    asked about is left for the next run."""
    audit = system_audit_context("payments", container.clock)
    before = container.clock.now() - timedelta(
        seconds=container.settings.payments_action_timeout_seconds
    )
    async with container.db.read() as session:
        waiting = await stale_payments(session, before=before, status=REQUIRES_ACTION)
    expired: dict[str, str] = {}
    for payment_id in waiting:
        try:
            payment = await expire_action(container, payment_id, before=before, audit=audit)
        except UpstreamUnavailable:
            log.warning("payment %s: Stripe unreachable, its 3-D Secure expires later", payment_id)
            continue
        if payment is not None:
            expired[payment_id] = payment.status
    return expired
