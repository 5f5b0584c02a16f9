"""Starting a subscription: Stripe Checkout (reserve, call, record) and the billing portal."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.catalog.service import load_catalog, resolve_price
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import (
    ACCOUNT_METADATA_KEY,
    AuditRecorder,
    ensure_stripe_customer,
)
from billfold.errors import Conflict, NotFound, ValidationFailed
from billfold.redirects import check_redirect_url, default_cancel_url, default_success_url
from billfold.stripe.gateway import (
    CheckoutSessionInfo,
    LineItem,
    StripeGateway,
    gateway_of,
)
from billfold.subscriptions.models import (
    LIVE_STATUSES,
    MAX_QUANTITY,
    PLAN_METADATA_KEY,
    CheckoutAttempt,
    CheckoutState,
    Subscription,
)
from billfold.subscriptions.reads import current_subscription
from billfold.subscriptions.reservations import finish_own_reservation
from billfold.subscriptions.sync import (
    subscription_revision,
)


@dataclass(frozen=True, slots=True)
class CheckoutStarted:
    """A Checkout session the caller redirects the customer to."""

    id: str
    url: str
    customer_id: str
    plan_code: str
    price_id: str
    interval: str


# How many times one start may find the account's slot taken by another attempt (finishing or
# settling it each time) before it gives up with a Conflict.
MAX_CHECKOUT_ROUNDS = 8


def _attempt_id(account_id: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join([account_id, *parts]).encode()).hexdigest()
    return f"chk_{digest[:40]}"


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A `CheckoutAttempt` as a unit of work that has ended saw it."""

    id: str
    account_id: str
    offer: str
    state: str
    request: dict[str, Any]
    session_id: str | None

    @classmethod
    def of(cls, row: CheckoutAttempt) -> _Attempt:
        return cls(
            row.id,
            row.account_id,
            row.offer,
            row.state,
            dict(row.request),
            row.stripe_checkout_session_id,
        )

    def sells(self, offer: str, customer_id: str) -> bool:
        """True when this attempt is the checkout a start with `offer` asks for."""
        return self.offer == offer and self.request.get("customer_id") == customer_id


def _refuse_second_subscription(existing: Subscription | None) -> None:
    if existing is not None and existing.status in LIVE_STATUSES:
        raise Conflict(
            f"the account already has a subscription ({existing.status}); change its plan "
            "or cancel it instead"
        )


async def _lock_account(session: AsyncSession, account_id: str) -> BillingAccount:
    stmt = (
        select(BillingAccount)
        .where(BillingAccount.id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def _reserve_checkout(
    container: Container,
    account_id: str,
    *,
    offer: str,
    request: dict[str, Any],
    keyed_attempt_id: str | None,
) -> _Attempt:
    """Step 1, one short unit of work: the account's current attempt when it has one (to be
    finished or settled first), else a new reserved attempt. The account row is locked only
    until this commits (on SQLite, BEGIN IMMEDIATE already serializes writers)."""
    async with container.db.transaction() as session:
        account = await _lock_account(session, account_id)
        _refuse_second_subscription(await current_subscription(session, account))
        current = (
            await session.execute(
                select(CheckoutAttempt).where(
                    CheckoutAttempt.account_id == account_id,
                    CheckoutAttempt.state != CheckoutState.CLOSED,
                )
            )
        ).scalar_one_or_none()
        if current is not None:
            return _Attempt.of(current)
        used = await session.get(CheckoutAttempt, keyed_attempt_id) if keyed_attempt_id else None
        if used is not None:
            raise Conflict(
                "the Checkout session of this Idempotency-Key is no longer open: "
                "start a new checkout with a new key"
            )
        last = await session.execute(
            select(func.max(CheckoutAttempt.seq)).where(CheckoutAttempt.account_id == account_id)
        )
        seq = (last.scalar_one() or 0) + 1
        now = container.clock.now()
        row = CheckoutAttempt(
            # Derived from billfold's own ids: the account, its attempt count and the offer
            # (or the caller's Idempotency-Key), so a retry of this start replays the same call.
            id=keyed_attempt_id or _attempt_id(account_id, str(seq), offer),
            account_id=account_id,
            seq=seq,
            offer=offer,
            state=CheckoutState.RESERVED,
            request=request,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        return _Attempt.of(row)


async def _create_checkout_session(
    gateway: StripeGateway, attempt: _Attempt
) -> CheckoutSessionInfo:
    """Step 2, no unit of work open: the attempt's own request, under its own key."""
    r = attempt.request
    return await gateway.checkout.create_session(
        mode="subscription",
        customer_id=r["customer_id"],
        line_items=[LineItem(price_id=r["price_id"], quantity=r["quantity"])],
        success_url=r["success_url"],
        cancel_url=r["cancel_url"],
        allow_promotion_codes=r["allow_promotion_codes"],
        client_reference_id=attempt.account_id,
        metadata=r["metadata"],
        trial_period_days=r["trial_period_days"],
        idempotency_key=f"checkout:{attempt.id}",
    )


async def _record_checkout(
    container: Container,
    attempt: _Attempt,
    created: CheckoutSessionInfo | None,
    audit: AuditRecorder,
) -> _Attempt:
    """Step 3, one short unit of work: a conditional UPDATE (`... WHERE state = 'reserved'`),
    so of the requests that finished the same attempt exactly one records (and audits) it.
    `created` None: Stripe refused the request, the attempt is closed. Returns the attempt as
    it is now."""
    is_open = created is not None and created.status == "open" and bool(created.url)
    async with container.db.transaction() as session:
        recorded = await session.execute(
            update(CheckoutAttempt)
            .where(
                CheckoutAttempt.id == attempt.id,
                CheckoutAttempt.state == CheckoutState.RESERVED,
            )
            .values(
                state=CheckoutState.OPEN if is_open else CheckoutState.CLOSED,
                stripe_checkout_session_id=created.id if created else None,
                url=created.url if created else None,
                updated_at=container.clock.now(),
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(recorded, "rowcount", 0) == 1 and created is not None and is_open:
            r = attempt.request
            await audit.record(
                session,
                "checkout.created",
                account_id=attempt.account_id,
                target=created.id,
                details={
                    "plan": r["metadata"].get(PLAN_METADATA_KEY),
                    "price_id": r["price_id"],
                    "interval": r["interval"],
                    "quantity": r["quantity"],
                },
            )
        row = await session.get(CheckoutAttempt, attempt.id, populate_existing=True)
        assert row is not None
        return _Attempt.of(row)


async def _settle_open_checkout(
    container: Container, attempt: _Attempt, *, offer: str, customer_id: str
) -> CheckoutSessionInfo | None:
    """Deal with the account's open attempt before another is reserved (no lock held while
    Stripe answers): its session is returned to be reused when it is still open and sells the
    same `offer`; expired in Stripe when it is open and sells something else; then the attempt
    is closed (conditionally: a concurrent settler may have closed it). Conflict while it was
    paid but its subscription has not reached billfold yet (the webhook is on its way)."""
    gateway = gateway_of(container)
    found: CheckoutSessionInfo | None = None
    if attempt.session_id:
        try:
            found = await gateway.checkout.retrieve_session(attempt.session_id)
        except NotFound:
            found = None
    if found is not None and found.status == "open":
        if attempt.offer == offer and found.customer_id == customer_id and found.url:
            return found
        try:
            found = await gateway.checkout.expire_session(found.id)
        except ValidationFailed:
            # Paid (or expired) between the two calls: see what it is now.
            found = await gateway.checkout.retrieve_session(found.id)
    async with container.db.transaction() as session:
        if found is not None and found.status == "complete" and found.subscription_id:
            known = await subscription_revision(session, found.subscription_id)
            if known is None:
                raise Conflict(
                    "the account's previous Checkout session was just paid; its subscription "
                    "is being recorded"
                )
        await session.execute(
            update(CheckoutAttempt)
            .where(CheckoutAttempt.id == attempt.id, CheckoutAttempt.state == CheckoutState.OPEN)
            .values(state=CheckoutState.CLOSED, updated_at=container.clock.now())
            .execution_options(synchronize_session=False)
        )
    return None


async def start_checkout(
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
    price_id: str | None = None,
    plan: str | None = None,
    interval: str | None = None,
    currency: str | None = None,
    quantity: int = 1,
    success_url: str | None = None,
    cancel_url: str | None = None,
    allow_promotion_codes: bool = False,
    idempotency_key: str | None = None,
) -> CheckoutStarted:
    """Open a subscription-mode Stripe Checkout session for a catalog price.

    The price is named by `price_id` (a Stripe price id, a lookup key, a plan code or the
    plan's product id) or by `plan` + `interval` (+ `currency`). Refuses (409 Conflict) while
    the account has a live subscription; redirect URLs must be on an allowed host (400). The
    subscription itself is recorded when Stripe's webhook reports it.

    No database lock is held while Stripe answers: this takes no session but opens its own
    short units of work, so the caller must have committed (the account included) and hold no
    transaction. Reserve, call, record:

    1. reserve: lock the account row, refuse a second subscription, and insert a `reserved`
       `CheckoutAttempt` (at most one attempt per account is not closed); commit;
    2. call Stripe with the attempt's stored request and the key `checkout:{attempt id}`;
    3. record: a conditional UPDATE from `reserved` to `open`, and the audit entry; commit.

    When the account already has an attempt, this start deals with it first: a reserved one
    (another start is calling Stripe, or died doing so) is finished with its own request and
    key, which Stripe answers with the same session; an open one is reused if it sells the same
    offer, else expired. So the same offer returns the same session, a different offer expires
    the old one, a paid one not yet recorded is a 409, and concurrent starts leave one open
    session. The caller's `idempotency_key` names the attempt: the same key replays it.
    """
    settings = container.settings
    if not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(f"quantity must be 1 to {MAX_QUANTITY}", field="quantity")
    success = check_redirect_url(
        settings, success_url or default_success_url(settings), field="success_url"
    )
    cancel = check_redirect_url(
        settings, cancel_url or default_cancel_url(settings), field="cancel_url"
    )
    async with container.db.transaction() as session:
        catalog = await load_catalog(session, settings)
        _refuse_second_subscription(await current_subscription(session, account))
    chosen_plan, price = resolve_price(
        catalog,
        price_id=price_id,
        plan=plan,
        interval=interval,
        currency=currency or account.currency,  # a plan named by code: the account's currency
    )
    assert price.stripe_price_id is not None  # resolve_price guarantees it
    offer = hashlib.sha256(
        "|".join(
            [price.stripe_price_id, str(quantity), success, cancel, str(allow_promotion_codes)]
        ).encode()
    ).hexdigest()
    customer_id = await ensure_stripe_customer(
        container.db, gateway_of(container), account.id, clock=container.clock, audit=audit
    )
    request: dict[str, Any] = {
        "customer_id": customer_id,
        "price_id": price.stripe_price_id,
        "interval": price.interval,
        "quantity": quantity,
        "success_url": success,
        "cancel_url": cancel,
        "allow_promotion_codes": allow_promotion_codes,
        "metadata": {ACCOUNT_METADATA_KEY: account.id, PLAN_METADATA_KEY: chosen_plan.code},
        "trial_period_days": chosen_plan.trial_days or None,
    }
    keyed = _attempt_id(account.id, "key", idempotency_key) if idempotency_key else None

    def started(session_id: str, url: str, customer: str | None) -> CheckoutStarted:
        assert price.stripe_price_id is not None
        return CheckoutStarted(
            id=session_id,
            url=url,
            customer_id=customer or customer_id,
            plan_code=chosen_plan.code,
            price_id=price.stripe_price_id,
            interval=price.interval,
        )

    async def one_round() -> CheckoutStarted | None:
        attempt = await _reserve_checkout(
            container, account.id, offer=offer, request=request, keyed_attempt_id=keyed
        )
        if attempt.state == CheckoutState.OPEN:
            reusable = await _settle_open_checkout(
                container, attempt, offer=offer, customer_id=customer_id
            )
            if reusable is not None and reusable.url:
                return started(reusable.id, reusable.url, reusable.customer_id)
            return None
        try:
            created: CheckoutSessionInfo | None = await _create_checkout_session(
                gateway_of(container), attempt
            )
        except (ValidationFailed, NotFound):
            # Stripe refused the request itself: retrying it can never succeed, so the attempt
            # is closed rather than left for every later start to trip over.
            await _record_checkout(container, attempt, None, audit)
            if attempt.sells(offer, customer_id):
                raise
            return None
        assert created is not None
        now = await _record_checkout(container, attempt, created, audit)
        if now.sells(offer, customer_id):
            if now.state == CheckoutState.OPEN and now.session_id == created.id and created.url:
                return started(created.id, created.url, created.customer_id)
            if now.state == CheckoutState.CLOSED and now.id == keyed:
                raise Conflict(
                    f"the Checkout session of this Idempotency-Key is {created.status}: "
                    "start a new checkout with a new key"
                )
        # Another start's attempt, finished here, or ours replaced meanwhile: go round.
        return None

    return await finish_own_reservation(
        MAX_CHECKOUT_ROUNDS,
        one_round,
        busy="too many checkouts are being started for this account at once; try again",
    )


async def open_portal(
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
    return_url: str | None = None,
) -> str:
    """A Stripe billing portal URL for the account; NotFound when it has no Stripe customer yet
    (it has never started a checkout). `return_url` must be on an allowed host.

    A portal session moves no money, so nothing is reserved; but no lock is held while Stripe
    answers: this takes no session (the caller holds no transaction) and writes its audit
    entry in a short unit of work of its own after the call."""
    settings = container.settings
    url = check_redirect_url(settings, return_url or settings.frontend_url, field="return_url")
    if not account.stripe_customer_id:
        raise NotFound("no billing record for this account yet: start a checkout first")
    portal_url = await gateway_of(container).portal.create_session(
        customer_id=account.stripe_customer_id, return_url=url
    )
    async with container.db.transaction() as session:
        await audit.record(
            session,
            "portal.opened",
            account_id=account.id,
            target=account.stripe_customer_id,
            details={"return_url": url},
        )
    return portal_url
