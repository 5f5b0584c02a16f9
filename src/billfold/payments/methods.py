"""Payment methods: saved from setup intents (cards, US bank accounts verified by
microdeposits), mirrored from Stripe, one default and a full priority order.

Invariant: priorities are 1..n over the account's methods, and the default is the first
usable one by priority (setting a default moves it to the front; a new priority order makes its
first usable method the default). Calls to Stripe are made with no transaction open.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.context import AuditContext
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import ensure_stripe_customer
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import Conflict, NotFound, PaymentFailed, ValidationFailed
from billfold.jobs import enqueue
from billfold.payments.dues import dues_of
from billfold.payments.models import (
    ACTIVE,
    PENDING_VERIFICATION,
    USABLE_STATUSES,
    VERIFICATION_FAILED,
    PaymentMethod,
    PaymentSettings,
)
from billfold.stripe.gateway import (
    BankAccount,
    PaymentMethodInfo,
    SetupIntentInfo,
    SetupMethod,
    gateway_of,
)

ACCOUNT_METADATA_KEY = "billfold_account"
# Stripe's limits on wrong microdeposit answers.
MAX_AMOUNT_ATTEMPTS = 3
# The job that makes the account's default the Stripe customer's (payments/jobs.py runs it).
SYNC_DEFAULT = "payments.sync_default"
MAX_DESCRIPTOR_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class StartedSetup:
    """A setup intent as the client needs it (its secret finishes it with Stripe.js)."""

    setup_intent_id: str
    client_secret: str | None
    status: str
    payment_method_id: str | None
    next_action: str | None


async def settings_of(
    session: AsyncSession, account_id: str, *, clock_now: datetime
) -> PaymentSettings:
    """The account's payment settings row, created on first use (in a writing transaction)."""
    found = await session.get(PaymentSettings, account_id)
    if found is None:
        found = PaymentSettings(
            account_id=account_id, autopay=False, autopay_failures=0, updated_at=clock_now
        )
        session.add(found)
        await session.flush()
    return found


async def read_settings(session: AsyncSession, account_id: str) -> PaymentSettings | None:
    return await session.get(PaymentSettings, account_id)


async def list_methods(
    session: AsyncSession, account_id: str, *, limit: int | None = None
) -> list[PaymentMethod]:
    """The account's methods in priority order (the first `limit`, when given)."""
    rows = await session.execute(
        select(PaymentMethod)
        .where(PaymentMethod.account_id == account_id)
        .order_by(PaymentMethod.priority, PaymentMethod.created_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def own_method(
    session: AsyncSession, account_id: str, payment_method_id: str
) -> PaymentMethod:
    """The account's method `payment_method_id`; NotFound for an unknown one or another's."""
    found = await session.get(PaymentMethod, payment_method_id)
    if found is None or found.account_id != account_id:
        raise NotFound(f"no payment method {payment_method_id}", field="payment_method_id")
    return found


def _usable(method: PaymentMethod) -> bool:
    return method.status in USABLE_STATUSES and method.blocked_reason is None


async def _renumber(
    session: AsyncSession, account_id: str, order: Sequence[PaymentMethod], *, now: datetime
) -> None:
    """Priorities 1..n in `order`; the default becomes the first usable method."""
    for index, method in enumerate(order, start=1):
        if method.priority != index:
            method.priority = index
            method.updated_at = now
    settings = await settings_of(session, account_id, clock_now=now)
    first = next((m.id for m in order if _usable(m)), None)
    if settings.default_payment_method_id != first:
        settings.default_payment_method_id = first
        settings.updated_at = now
        if first is not None:
            # The Stripe customer's default follows through the job runner, written in this
            # transaction (a webhook or a decline changed it too, with no request to push
            # it after the commit). One job per account: a finished one is queued again.
            await enqueue(
                session,
                SYNC_DEFAULT,
                {"account_id": account_id},
                key=f"{SYNC_DEFAULT}:{account_id}",
                requeue_finished=True,
                run_at=now,
            )
    await session.flush()


async def refresh_default(session: AsyncSession, account_id: str, *, now: datetime) -> None:
    """After a method became unusable (blocked by a decline): the default is the first usable."""
    await _renumber(session, account_id, await list_methods(session, account_id), now=now)


async def mirror_method(
    session: AsyncSession,
    account_id: str,
    info: PaymentMethodInfo,
    *,
    status: str | None,
    setup_intent_id: str | None = None,
    now: datetime,
) -> PaymentMethod:
    """Write Stripe's description of a method (new ones go last by priority)."""
    method = await session.get(PaymentMethod, info.id, with_for_update=True)
    if method is None:
        last = (
            await session.execute(
                select(func.max(PaymentMethod.priority)).where(
                    PaymentMethod.account_id == account_id
                )
            )
        ).scalar_one()
        # ON CONFLICT DO NOTHING: the webhook and the customer's request (the panel finishing
        # a setup Stripe.js confirmed) may both be first; the loser updates the winner's row.
        await insert_ignoring_conflict(
            session,
            PaymentMethod.__table__,  # type: ignore[arg-type]
            {
                "id": info.id,
                "account_id": account_id,
                "type": info.type,
                "status": status or ACTIVE,
                "priority": int(last or 0) + 1,
                "verification_failures": 0,
                "setup_intent_id": setup_intent_id,
                "created_at": now,
                "updated_at": now,
            },
            ["id"],
        )
        method = await session.get(
            PaymentMethod, info.id, with_for_update=True, populate_existing=True
        )
        assert method is not None
    if method.account_id != account_id:
        raise Conflict(f"payment method {info.id} belongs to another account")
    if status is not None and method.status != VERIFICATION_FAILED:
        method.status = status
    method.type = info.type
    method.brand, method.last4 = info.brand, info.last4
    method.exp_month, method.exp_year = info.exp_month, info.exp_year
    method.bank_name = info.bank_name
    if setup_intent_id:
        method.setup_intent_id = setup_intent_id
    method.updated_at = now
    await session.flush()
    await _renumber(session, account_id, await list_methods(session, account_id), now=now)
    return method


async def forget_method(session: AsyncSession, method: PaymentMethod, *, now: datetime) -> None:
    """Remove a method; the next by priority takes its place (and the default's)."""
    account_id = method.account_id
    await session.execute(delete(PaymentMethod).where(PaymentMethod.id == method.id))
    session.expunge(method)
    await _renumber(session, account_id, await list_methods(session, account_id), now=now)


def _setup_key(account_id: str, method: str, client_key: str | None) -> str:
    if client_key:
        digest = hashlib.sha256(f"{account_id}:{method}:{client_key}".encode()).hexdigest()[:32]
        return f"setup_intent:psi_{digest}"
    return f"setup_intent:{new_id('psi')}"


async def start_setup(
    container: Container,
    account: BillingAccount,
    *,
    method: SetupMethod,
    audit: AuditContext,
    payment_method_id: str | None = None,
    bank_account: BankAccount | None = None,
    idempotency_key: str | None = None,
) -> StartedSetup:
    """A setup intent for a card or a US bank account. Confirmed at once when it names a
    payment method (a test `pm_card_visa`, or one Stripe.js made) or a typed-in bank account,
    which then waits for its microdeposits; otherwise its client secret finishes it."""
    gateway = gateway_of(container)
    customer_id = await ensure_stripe_customer(
        container.db, gateway, account.id, clock=container.clock, audit=audit
    )
    try:
        intent = await gateway.setup_intents.create(
            customer_id=customer_id,
            method=method,
            metadata={ACCOUNT_METADATA_KEY: account.id},
            idempotency_key=_setup_key(account.id, method, idempotency_key),
            payment_method_id=payment_method_id,
            bank_account=bank_account,
        )
    except PaymentFailed as exc:
        raise ValidationFailed(exc.message, field="payment_method_id") from exc
    await _record_setup(container, account.id, intent, audit=audit)
    return _started(intent, client_secret=intent.client_secret)


def _started(intent: SetupIntentInfo, *, client_secret: str | None) -> StartedSetup:
    return StartedSetup(
        setup_intent_id=intent.id,
        client_secret=client_secret,
        status=intent.status,
        payment_method_id=intent.payment_method_id,
        next_action=intent.next_action,
    )


async def _record_setup(
    container: Container,
    account_id: str,
    intent: SetupIntentInfo,
    *,
    audit: AuditContext,
    action: str = "setup_intent.created",
) -> None:
    """Mirror the method a setup intent saved (or is verifying) without waiting for the
    webhook; the webhook writes the same state again."""
    if intent.payment_method_id is None:
        async with container.db.transaction() as session:
            await audit.record(
                session,
                action,
                account_id=account_id,
                target=intent.id,
                details={"status": intent.status},
            )
        return
    info = await gateway_of(container).payment_methods.retrieve(intent.payment_method_id)
    status = (
        ACTIVE
        if intent.status == "succeeded"
        else PENDING_VERIFICATION
        if intent.next_action == "verify_with_microdeposits"
        else None
    )
    async with container.db.transaction() as session:
        await audit.record(
            session,
            action,
            account_id=account_id,
            target=intent.id,
            details={"status": intent.status},
        )
        if status is not None:
            await mirror_method(
                session,
                account_id,
                info,
                status=status,
                setup_intent_id=intent.id,
                now=container.clock.now(),
            )
            await audit.record(
                session,
                "payment_method.saved",
                account_id=account_id,
                target=info.id,
                details={"type": info.type, "status": status},
            )
    if intent.status == "succeeded":
        # Saved and usable: when it is (now) the default, Stripe's invoices should charge it.
        await sync_default_to_stripe(container, account_id, audit=audit, only_if=info.id)


async def finish_setup(
    container: Container, account: BillingAccount, setup_intent_id: str, *, audit: AuditContext
) -> StartedSetup:
    """After Stripe.js confirmed a setup intent in the customer's browser (a card, or a bank
    account now waiting for its microdeposits): mirror the method it saved without waiting for
    the webhook. Safe to repeat; another account's setup intent is NotFound."""
    intent = await gateway_of(container).setup_intents.retrieve(setup_intent_id)
    if intent.metadata.get(ACCOUNT_METADATA_KEY) != account.id:
        raise NotFound(f"no setup intent {setup_intent_id}", field="setup_intent_id")
    await _record_setup(container, account.id, intent, audit=audit, action="setup_intent.finished")
    return _started(intent, client_secret=None)


async def set_autopay(
    session: AsyncSession,
    account_id: str,
    enabled: bool,
    *,
    audit: AuditContext,
    now: datetime,
) -> PaymentSettings:
    """Turn autopay on or off (turning it on clears an earlier stop and its back-off)."""
    found = await settings_of(session, account_id, clock_now=now)
    found.autopay = enabled
    if enabled:
        found.autopay_failures = 0
        found.autopay_retry_at = None
        found.autopay_stopped_reason = None
        found.autopay_stopped_at = None
    found.updated_at = now
    await audit.record(
        session, "autopay.enabled" if enabled else "autopay.disabled", account_id=account_id
    )
    return found


async def verify_microdeposits(
    container: Container,
    account: BillingAccount,
    *,
    payment_method_id: str,
    amounts: Sequence[int] | None,
    descriptor_code: str | None,
    audit: AuditContext,
) -> PaymentMethod:
    """Check the customer's microdeposits for a pending bank account. Wrong answers: 400 with
    the attempts left; too many: the method is `verification_failed` (and unusable). Verified
    and the account's default: the Stripe customer's default too."""
    if (amounts is None) == (descriptor_code is None):
        raise ValidationFailed("send amounts (two) or descriptor_code", field="amounts")
    async with container.db.read() as session:
        method = await own_method(session, account.id, payment_method_id)
        if method.status != PENDING_VERIFICATION or method.setup_intent_id is None:
            raise Conflict(f"payment method {payment_method_id} is not waiting for microdeposits")
        setup_intent_id = method.setup_intent_id
    limit = MAX_AMOUNT_ATTEMPTS if amounts is not None else MAX_DESCRIPTOR_ATTEMPTS
    gateway = gateway_of(container)
    failed: ValidationFailed | None = None
    try:
        intent = await gateway.setup_intents.verify_microdeposits(
            setup_intent_id, amounts=amounts, descriptor_code=descriptor_code
        )
    except ValidationFailed as exc:
        failed = exc
        intent = await gateway.setup_intents.retrieve(setup_intent_id)
    now = container.clock.now()
    verified: PaymentMethod | None = None
    async with container.db.transaction() as session:
        method = await own_method(session, account.id, payment_method_id)
        if intent.status == "succeeded":
            info = await _retrieve_after(container, payment_method_id)
            method = await mirror_method(session, account.id, info, status=ACTIVE, now=now)
            await audit.record(
                session,
                "payment_method.verified",
                account_id=account.id,
                target=payment_method_id,
                details={},
            )
            verified = method
        elif intent.status in ("requires_payment_method", "canceled") or (
            method.verification_failures + 1 >= limit
        ):
            method.status = VERIFICATION_FAILED
            method.updated_at = now
            await _renumber(session, account.id, await list_methods(session, account.id), now=now)
            await audit.record(
                session,
                "payment_method.verification_failed",
                account_id=account.id,
                target=payment_method_id,
                details={"code": intent.last_error_code},
            )
            await session.commit()
            raise ValidationFailed(
                "too many wrong microdeposit answers: this bank account cannot be verified; "
                "add it again",
                field="amounts" if amounts is not None else "descriptor_code",
                details={"attempts_left": 0},
            )
        else:
            method.verification_failures += 1
            method.updated_at = now
            left = max(limit - method.verification_failures, 0)
            await audit.record(
                session,
                "payment_method.verification_refused",
                account_id=account.id,
                target=payment_method_id,
                details={"attempts_left": left},
            )
    if verified is not None:
        await sync_default_to_stripe(container, account.id, audit=audit, only_if=verified.id)
        return verified
    message = failed.message if failed is not None else "the microdeposits do not match"
    raise ValidationFailed(
        f"{message.split(' You have')[0]} {left} attempt{'s' if left != 1 else ''} left.",
        field="amounts" if amounts is not None else "descriptor_code",
        details={"attempts_left": left},
    )


async def _retrieve_after(container: Container, payment_method_id: str) -> PaymentMethodInfo:
    return await gateway_of(container).payment_methods.retrieve(payment_method_id)


async def set_priority(
    session: AsyncSession,
    account_id: str,
    order: Sequence[str],
    *,
    audit: AuditContext,
    now: datetime,
) -> list[PaymentMethod]:
    """A new full order: a permutation of the account's methods (400 otherwise)."""
    methods = await list_methods(session, account_id)
    by_id = {m.id: m for m in methods}
    if len(order) != len(set(order)) or set(order) != set(by_id):
        raise ValidationFailed(
            "payment_method_ids must list each of the account's payment methods once",
            field="payment_method_ids",
        )
    ordered = [by_id[i] for i in order]
    await _renumber(session, account_id, ordered, now=now)
    await audit.record(
        session, "payment_methods.reordered", account_id=account_id, details={"order": list(order)}
    )
    return ordered


async def move_method(
    session: AsyncSession,
    account_id: str,
    payment_method_id: str,
    *,
    step: int,
    audit: AuditContext,
    now: datetime,
) -> list[PaymentMethod]:
    """Move a method `step` places in the priority order (-1: one up); at either end it stays.
    Its first usable method becomes the default, as with any new order."""
    method = await own_method(session, account_id, payment_method_id)
    order = [m.id for m in await list_methods(session, account_id)]
    at = order.index(method.id)
    to = min(max(at + step, 0), len(order) - 1)
    order.insert(to, order.pop(at))
    return await set_priority(session, account_id, order, audit=audit, now=now)


async def set_default(
    session: AsyncSession,
    account_id: str,
    payment_method_id: str,
    *,
    audit: AuditContext,
    now: datetime,
) -> list[PaymentMethod]:
    """Make a usable method the default: it moves to the front of the priority order."""
    method = await own_method(session, account_id, payment_method_id)
    if not _usable(method):
        raise Conflict(
            f"payment method {payment_method_id} is {method.status} and cannot be the default"
        )
    methods = await list_methods(session, account_id)
    ordered = [method, *(m for m in methods if m.id != method.id)]
    await _renumber(session, account_id, ordered, now=now)
    await audit.record(
        session, "payment_methods.default_set", account_id=account_id, target=payment_method_id
    )
    return ordered


async def sync_default_to_stripe(
    container: Container, account_id: str, *, audit: AuditContext, only_if: str | None = None
) -> str | None:
    """Make the account's default method the Stripe customer's too
    (`invoice_settings.default_payment_method`), so Stripe's own invoices (a subscription's
    renewal) charge it. Called with no transaction open, after the change is committed;
    setting the same default again is harmless, so a retry after a failure is safe.
    `only_if`: only when that method is the default (a method just saved or verified)."""
    default, customer_id = await _defaults(container, account_id)
    if default is None or customer_id is None or only_if not in (None, default):
        return None
    await gateway_of(container).customers.set_default_payment_method(customer_id, default)
    async with container.db.transaction() as session:
        await audit.record(
            session,
            "payment_methods.stripe_default_set",
            account_id=account_id,
            target=default,
            details={"customer": customer_id},
        )
    return default


async def push_default(container: Container, account_id: str, *, audit: AuditContext) -> str | None:
    """`sync_default_to_stripe` for the job runner: the default it read (and pushed, when the
    account has a Stripe customer), None when there is none."""
    default, _customer = await _defaults(container, account_id)
    if default is not None:
        await sync_default_to_stripe(container, account_id, audit=audit, only_if=default)
    return default


async def _defaults(container: Container, account_id: str) -> tuple[str | None, str | None]:
    """The account's default method and its Stripe customer (read, no lock)."""
    async with container.db.read() as session:
        settings = await read_settings(session, account_id)
        account = await session.get(BillingAccount, account_id)
        return (
            settings.default_payment_method_id if settings else None,
            account.stripe_customer_id if account else None,
        )


async def make_default(
    container: Container, account: BillingAccount, payment_method_id: str, *, audit: AuditContext
) -> None:
    """`set_default` in a transaction of its own, then the Stripe customer's default."""
    async with container.db.transaction() as session:
        await set_default(
            session, account.id, payment_method_id, audit=audit, now=container.clock.now()
        )
    await sync_default_to_stripe(container, account.id, audit=audit)


async def remove_method(
    container: Container, account: BillingAccount, payment_method_id: str, *, audit: AuditContext
) -> None:
    """Detach a method at Stripe and forget it; the next by priority is promoted. Refused
    (409) for the last usable method while autopay is on and money is owed."""
    async with container.db.read() as session:
        method = await own_method(session, account.id, payment_method_id)
        await _check_removable(session, account.id, method)
    try:
        await gateway_of(container).payment_methods.detach(payment_method_id)
    except (NotFound, ValidationFailed):
        pass  # detached at Stripe already (by the customer, or a retry of this call)
    async with container.db.transaction() as session:
        found = await session.get(PaymentMethod, payment_method_id)
        if found is None or found.account_id != account.id:
            return  # the webhook of the detach was faster
        await forget_method(session, found, now=container.clock.now())
        await audit.record(
            session, "payment_method.removed", account_id=account.id, target=payment_method_id
        )
    await sync_default_to_stripe(container, account.id, audit=audit)


async def _check_removable(session: AsyncSession, account_id: str, method: PaymentMethod) -> None:
    if not _usable(method):
        return
    settings = await read_settings(session, account_id)
    if settings is None or not settings.autopay:
        return
    others = [
        m for m in await list_methods(session, account_id) if m.id != method.id and _usable(m)
    ]
    owed = any(d.total > 0 for d in await dues_of(session, account_id))
    if not others and owed:
        raise Conflict(
            "this is the last usable payment method while autopay is on and money is owed: "
            "add another method, pay the balance or turn autopay off first",
            field="payment_method_id",
        )
