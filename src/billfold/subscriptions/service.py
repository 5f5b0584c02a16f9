"""Subscriptions: checkout, status, cancel, reactivate, plan change, portal, and keeping
billfold's copy of every subscription equal to Stripe's.

Every dialect (`/api/v1/payments`, organizations, `/api/subscriptions`, `/api/billing`, tRPC)
calls these functions and nothing else. They take the request's session (they `flush`, the edge
commits), the `Container` (settings, clock and the Stripe gateway) and an audit recorder, and
raise only `billfold.errors` types.

Writes are ordered per subscription by its row lock and its `revision`: whoever writes holds
the lock and a state read from Stripe after every earlier write, so a slower writer can never
put back an older state (see `sync_subscription`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.catalog.service import BILLFOLD_INTERVAL, Catalog, load_catalog, resolve_price
from billfold.config import Settings
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import (
    ACCOUNT_METADATA_KEY,
    AuditRecorder,
    ensure_stripe_customer,
    link_stripe_customer,
)
from billfold.db.base import new_id
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import Conflict, NotFound, ValidationFailed
from billfold.stripe.gateway import (
    CheckoutSessionInfo,
    LineItem,
    ProrationBehavior,
    StripeGateway,
    SubscriptionSnapshot,
    gateway_of,
)
from billfold.subscriptions.models import (
    CHANGEABLE_STATUSES,
    LIVE_STATUSES,
    CheckoutAttempt,
    CheckoutState,
    Subscription,
)

log = logging.getLogger("billfold.subscriptions")

PLAN_METADATA_KEY = "billfold_plan"
NO_ACTIVE_SUBSCRIPTION = "No active Stripe subscription found"
NOT_SET_TO_CANCEL = "Subscription is not set to cancel"
MAX_QUANTITY = 10_000


@dataclass(frozen=True, slots=True)
class CheckoutStarted:
    """A Checkout session the caller redirects the customer to."""

    id: str
    url: str
    customer_id: str
    plan_code: str
    price_id: str
    interval: str


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """What an app asks before unlocking a feature."""

    has_premium: bool
    plan: str | None
    status: str | None  # Stripe's status, None when the account never subscribed
    interval: str | None  # monthly | yearly
    current_period_end: datetime | None
    cancel_at_period_end: bool
    subscription: Subscription | None


# --- reading ---------------------------------------------------------------------------------


def has_premium(subscription: Subscription | None, now: datetime, grace_days: int) -> bool:
    """True while active or trialing, and for `grace_days` after a subscription became past due."""
    if subscription is None:
        return False
    if subscription.status in ("active", "trialing"):
        return True
    if subscription.status == "past_due" and grace_days > 0:
        since = subscription.past_due_since or now
        return now < since + timedelta(days=grace_days)
    return False


_STATUS_RANK = {"active": 0, "trialing": 1, "past_due": 2, "unpaid": 3, "incomplete": 4}


async def list_subscriptions(session: AsyncSession, account: BillingAccount) -> list[Subscription]:
    """Every subscription of the account, newest first."""
    stmt = (
        select(Subscription)
        .where(Subscription.account_id == account.id)
        .order_by(Subscription.stripe_created.desc(), Subscription.created_at.desc())
    )
    return list((await session.execute(stmt)).scalars().all())


async def current_subscription(
    session: AsyncSession, account: BillingAccount
) -> Subscription | None:
    """The subscription that speaks for the account: the live one (active, trialing, past due,
    unpaid, incomplete, in that preference), else the newest ended one, else None. Should two
    be live (a duplicate, see `reconcile`), the choice is deterministic: by that preference,
    then the newest, then Stripe's id."""
    subscriptions = await list_subscriptions(session, account)
    live = [s for s in subscriptions if s.status in LIVE_STATUSES]
    if live:
        return min(live, key=_speaks_first)
    return subscriptions[0] if subscriptions else None


def _speaks_first(sub: Subscription) -> tuple[int, int, str]:
    return (_STATUS_RANK.get(sub.status, 9), -sub.stripe_created, sub.stripe_subscription_id)


async def status(
    session: AsyncSession, container: Container, account: BillingAccount
) -> SubscriptionStatus:
    """The account's premium flag and the facts behind it (document 004's status)."""
    sub = await current_subscription(session, account)
    return SubscriptionStatus(
        has_premium=has_premium(sub, container.clock.now(), container.settings.past_due_grace_days),
        plan=sub.plan_code if sub else None,
        status=sub.status if sub else None,
        interval=sub.interval if sub else None,
        current_period_end=sub.current_period_end if sub else None,
        cancel_at_period_end=bool(sub.cancel_at_period_end) if sub else False,
        subscription=sub,
    )


# --- redirects ---------------------------------------------------------------------------------


def check_redirect_url(settings: Settings, url: str, *, field: str) -> str:
    """`url` when it is http(s) on an allowed host (FRONTEND_URL's, STRIPE_SUCCESS/CANCEL_URL's,
    BILLFOLD_ALLOWED_REDIRECT_HOSTS); otherwise ValidationFailed: billfold is no open redirect."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise ValidationFailed(f"{field} is not a URL", field=field) from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationFailed(f"{field} must be an http(s) URL", field=field)
    if len(url) > 2048:
        raise ValidationFailed(f"{field} is longer than 2048 characters", field=field)
    if host.lower() not in settings.redirect_hosts:
        raise ValidationFailed(f"{field} must point to an allowed host, not {host}", field=field)
    return url


def _default_success_url(settings: Settings) -> str:
    return settings.stripe_success_url or (
        settings.frontend_url.rstrip("/") + "/billing/success?session_id={CHECKOUT_SESSION_ID}"
    )


def _default_cancel_url(settings: Settings) -> str:
    return settings.stripe_cancel_url or settings.frontend_url.rstrip("/") + "/billing/cancel"


# --- checkout and portal -----------------------------------------------------------------------

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
        settings, success_url or _default_success_url(settings), field="success_url"
    )
    cancel = check_redirect_url(
        settings, cancel_url or _default_cancel_url(settings), field="cancel_url"
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

    for _round in range(MAX_CHECKOUT_ROUNDS):
        attempt = await _reserve_checkout(
            container, account.id, offer=offer, request=request, keyed_attempt_id=keyed
        )
        if attempt.state == CheckoutState.OPEN:
            reusable = await _settle_open_checkout(
                container, attempt, offer=offer, customer_id=customer_id
            )
            if reusable is not None and reusable.url:
                return started(reusable.id, reusable.url, reusable.customer_id)
            continue
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
            continue
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
    raise Conflict("too many checkouts are being started for this account at once; try again")


async def open_portal(
    session: AsyncSession,
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
    return_url: str | None = None,
) -> str:
    """A Stripe billing portal URL for the account; NotFound when it has no Stripe customer yet
    (it has never started a checkout). `return_url` must be on an allowed host."""
    settings = container.settings
    url = check_redirect_url(settings, return_url or settings.frontend_url, field="return_url")
    if not account.stripe_customer_id:
        raise NotFound("no billing record for this account yet: start a checkout first")
    portal_url = await gateway_of(container).portal.create_session(
        customer_id=account.stripe_customer_id, return_url=url
    )
    await audit.record(
        session,
        "portal.opened",
        account_id=account.id,
        target=account.stripe_customer_id,
        details={"return_url": url},
    )
    return portal_url


# --- changing a subscription -------------------------------------------------------------------


async def _lock(session: AsyncSession, stripe_subscription_id: str) -> Subscription | None:
    stmt = (
        select(Subscription)
        .where(Subscription.stripe_subscription_id == stripe_subscription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def _changeable(session: AsyncSession, account: BillingAccount) -> Subscription:
    sub = await current_subscription(session, account)
    if sub is None or sub.status not in CHANGEABLE_STATUSES:
        raise ValidationFailed(NO_ACTIVE_SUBSCRIPTION)
    locked = await _lock(session, sub.stripe_subscription_id)
    if locked is None or locked.status not in CHANGEABLE_STATUSES:
        raise ValidationFailed(NO_ACTIVE_SUBSCRIPTION)
    return locked


def _key(sub: Subscription, action: str) -> str:
    # The row's revision changes with every write, so the same action later is a new request
    # to Stripe, while a retry of this one (the write never committed) replays the same key.
    return f"billfold-{action}-{sub.id}-r{sub.revision}"


async def cancel(
    session: AsyncSession,
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
    immediately: bool = False,
) -> Subscription:
    """Cancel the account's subscription at the end of the period (access stays until then),
    or now. ValidationFailed ("No active Stripe subscription found") when there is none."""
    gateway = gateway_of(container)
    sub = await _changeable(session, account)
    if immediately:
        snapshot = await gateway.subscriptions.cancel(
            sub.stripe_subscription_id, idempotency_key=_key(sub, "cancel-now")
        )
        action = "subscription.canceled"
    else:
        snapshot = await gateway.subscriptions.update(
            sub.stripe_subscription_id,
            cancel_at_period_end=True,
            idempotency_key=_key(sub, "cancel-at-period-end"),
        )
        action = "subscription.cancel_scheduled"
    catalog = await load_catalog(session, container.settings)
    _write(sub, snapshot, catalog, container.clock.now())
    await session.flush()
    await audit.record(
        session,
        action,
        account_id=account.id,
        target=sub.stripe_subscription_id,
        details={"status": sub.status, "current_period_end": sub.current_period_end},
    )
    return sub


async def reactivate(
    session: AsyncSession,
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
) -> Subscription:
    """Undo a cancellation scheduled for the period end. ValidationFailed ("Subscription is
    not set to cancel") when none is scheduled."""
    sub = await _changeable(session, account)
    if not sub.cancel_at_period_end:
        raise ValidationFailed(NOT_SET_TO_CANCEL)
    snapshot = await gateway_of(container).subscriptions.update(
        sub.stripe_subscription_id,
        cancel_at_period_end=False,
        idempotency_key=_key(sub, "reactivate"),
    )
    catalog = await load_catalog(session, container.settings)
    _write(sub, snapshot, catalog, container.clock.now())
    await session.flush()
    await audit.record(
        session,
        "subscription.reactivated",
        account_id=account.id,
        target=sub.stripe_subscription_id,
        details={"status": sub.status},
    )
    return sub


async def change_plan(
    session: AsyncSession,
    container: Container,
    account: BillingAccount,
    *,
    audit: AuditRecorder,
    price_id: str | None = None,
    plan: str | None = None,
    interval: str | None = None,
    currency: str | None = None,
    quantity: int | None = None,
    proration: ProrationBehavior = "create_prorations",
) -> Subscription:
    """Move the subscription to another catalog price and/or quantity, prorating by default
    (`proration`: create_prorations, always_invoice, or none)."""
    if proration not in ("create_prorations", "always_invoice", "none"):
        raise ValidationFailed(
            "proration must be create_prorations, always_invoice or none", field="proration"
        )
    if quantity is not None and not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(f"quantity must be 1 to {MAX_QUANTITY}", field="quantity")
    catalog = await load_catalog(session, container.settings)
    sub = await _changeable(session, account)
    target_price = sub.price_id
    if price_id is not None or plan is not None:
        _, price = resolve_price(
            catalog,
            price_id=price_id,
            plan=plan,
            interval=interval,
            currency=currency or sub.currency,
        )
        target_price = price.stripe_price_id
    if target_price == sub.price_id and (quantity is None or quantity == sub.quantity):
        raise ValidationFailed("the subscription is already on this plan", field="price_id")
    before = {"price_id": sub.price_id, "plan": sub.plan_code, "quantity": sub.quantity}
    snapshot = await gateway_of(container).subscriptions.update(
        sub.stripe_subscription_id,
        item_id=sub.raw_item_id,
        price_id=target_price,
        quantity=quantity,
        proration_behavior=proration,
        idempotency_key=_key(sub, f"change-{target_price}-{quantity}-{proration}"),
    )
    _write(sub, snapshot, catalog, container.clock.now())
    await session.flush()
    await audit.record(
        session,
        "subscription.plan_changed",
        account_id=account.id,
        target=sub.stripe_subscription_id,
        details={
            "from": before,
            "to": {"price_id": sub.price_id, "plan": sub.plan_code, "quantity": sub.quantity},
            "proration": proration,
        },
    )
    return sub


# --- keeping billfold's copy equal to Stripe's -------------------------------------------------


def _plan_code_for(catalog: Catalog, snapshot: SubscriptionSnapshot) -> str | None:
    for key in (snapshot.price_id, snapshot.lookup_key):
        if key:
            found = catalog.find_price(key)
            if found is not None:
                return found[0].code
    if snapshot.product_id:
        plan = next((p for p in catalog.plans if p.product_id == snapshot.product_id), None)
        if plan is not None:
            return plan.code
    return snapshot.metadata.get(PLAN_METADATA_KEY)


def _write(
    sub: Subscription,
    snapshot: SubscriptionSnapshot,
    catalog: Catalog | None,
    now: datetime,
    *,
    seen_at: int | None = None,
) -> dict[str, tuple[Any, Any]]:
    """Copy Stripe's state onto the row; returns what changed (field: (before, after)).
    Without a `catalog` the row keeps its plan (its price did not change)."""
    before = _fingerprint(sub)
    if snapshot.status == "past_due":
        if sub.status != "past_due" or sub.past_due_since is None:
            sub.past_due_since = now
    else:
        sub.past_due_since = None
    sub.stripe_customer_id = snapshot.customer_id
    sub.status = snapshot.status
    sub.price_id = snapshot.price_id
    if catalog is not None:
        sub.plan_code = _plan_code_for(catalog, snapshot)
    sub.interval = BILLFOLD_INTERVAL.get(snapshot.interval or "", snapshot.interval)
    sub.currency = snapshot.currency
    sub.unit_amount = snapshot.unit_amount
    sub.quantity = snapshot.quantity
    sub.current_period_start = snapshot.current_period_start
    sub.current_period_end = snapshot.current_period_end
    sub.cancel_at_period_end = snapshot.cancel_at_period_end
    sub.cancel_at = snapshot.cancel_at
    sub.canceled_at = snapshot.canceled_at
    sub.ended_at = snapshot.ended_at
    sub.trial_end = snapshot.trial_end
    sub.stripe_created = snapshot.created
    sub.raw = snapshot.raw
    if seen_at is not None:
        sub.stripe_seen_at = max(sub.stripe_seen_at or 0, seen_at)
    after = _fingerprint(sub)
    changed = {name: (before[name], after[name]) for name in after if before[name] != after[name]}
    # Every write moves the revision (see `sync_subscription`), changed or not.
    sub.revision = (sub.revision or 0) + 1
    if changed:
        sub.updated_at = now
    return changed


_WATCHED = (
    "status",
    "price_id",
    "quantity",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "canceled_at",
    "ended_at",
    "trial_end",
)


def _fingerprint(sub: Subscription) -> dict[str, Any]:
    return {name: getattr(sub, name) for name in _WATCHED}


class AccountNotYetKnown(NotFound):
    """A Stripe object names a customer billfold cannot place yet (retried later)."""

    code = "account_not_yet_known"


async def _account_for_snapshot(
    session: AsyncSession, snapshot: SubscriptionSnapshot, account_hint: str | None
) -> BillingAccount:
    for account_id in (account_hint, snapshot.metadata.get(ACCOUNT_METADATA_KEY)):
        if account_id:
            found = await session.get(BillingAccount, account_id)
            if found is not None:
                return found
    if snapshot.customer_id:
        stmt = select(BillingAccount).where(
            BillingAccount.stripe_customer_id == snapshot.customer_id
        )
        found = (await session.execute(stmt)).scalar_one_or_none()
        if found is not None:
            return found
    raise AccountNotYetKnown(
        f"subscription {snapshot.id} belongs to customer {snapshot.customer_id}, "
        "which no billing account has (yet)"
    )


@dataclass(frozen=True, slots=True)
class PrefetchedSubscription:
    """A subscription read from Stripe before the row lock was taken, with the row's revision
    at that moment (None: no row yet); `snapshot` is None when Stripe did not know it."""

    stripe_subscription_id: str
    revision: int | None
    snapshot: SubscriptionSnapshot | None


async def subscription_revision(session: AsyncSession, stripe_subscription_id: str) -> int | None:
    """The revision of billfold's row for a Stripe subscription (None: no row yet)."""
    return (
        await session.execute(
            select(Subscription.revision).where(
                Subscription.stripe_subscription_id == stripe_subscription_id
            )
        )
    ).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class NotedRevision:
    """A row's revision read before any Stripe read that `prefetch_subscription` will do (in
    the transaction that stored the event), which saves it a transaction of its own."""

    stripe_subscription_id: str
    revision: int | None


async def prefetch_subscription(
    container: Container, stripe_subscription_id: str, *, noted: NotedRevision | None = None
) -> PrefetchedSubscription:
    """Read a subscription from Stripe holding no lock (see `sync_subscription`). The row's
    revision is read first, unless `noted` already holds it for this subscription."""
    if noted is not None and noted.stripe_subscription_id == stripe_subscription_id:
        revision = noted.revision
    else:
        async with container.db.transaction() as session:
            revision = await subscription_revision(session, stripe_subscription_id)
    try:
        snapshot: SubscriptionSnapshot | None = await gateway_of(container).subscriptions.retrieve(
            stripe_subscription_id
        )
    except NotFound:
        snapshot = None
    return PrefetchedSubscription(stripe_subscription_id, revision, snapshot)


async def sync_subscription(
    session: AsyncSession,
    container: Container,
    stripe_subscription_id: str,
    *,
    account_hint: str | None = None,
    seen_at: int | None = None,
    fallback: SubscriptionSnapshot | None = None,
    prefetched: PrefetchedSubscription | None = None,
    audit: AuditRecorder | None = None,
) -> Subscription:
    """Make billfold's row for a Stripe subscription equal to what Stripe says now.

    Whoever writes the row holds its lock and a state read from Stripe after every earlier
    write: either read under the lock, or `prefetched` before it while the row's revision has
    not moved since (every write bumps it). So the last writer always writes the newest state
    and the order in which events arrive does not matter. `fallback` (an event's own copy) is
    used only when Stripe no longer knows the subscription, and only if it is newer than what
    the row already holds.
    """
    gateway = gateway_of(container)
    now = container.clock.now()

    async def read() -> tuple[SubscriptionSnapshot, bool]:
        try:
            return await gateway.subscriptions.retrieve(stripe_subscription_id), True
        except NotFound:
            if fallback is None:
                raise
            return fallback, False

    def still_current(row: Subscription | None) -> bool:
        return (
            prefetched is not None
            and prefetched.stripe_subscription_id == stripe_subscription_id
            and prefetched.revision == (row.revision if row is not None else None)
            and (prefetched.snapshot is not None or fallback is not None)
        )

    sub = await _lock(session, stripe_subscription_id)
    if still_current(sub):
        assert prefetched is not None
        snapshot = prefetched.snapshot or fallback
        assert snapshot is not None
        authoritative = prefetched.snapshot is not None
    else:
        snapshot, authoritative = await read()
    created = False
    if sub is None:
        account = await _account_for_snapshot(session, snapshot, account_hint)
        # Before the insert: locks are taken account first, then subscription, everywhere.
        await link_stripe_customer(session, account, snapshot.customer_id, now=now)
        created = await insert_ignoring_conflict(
            session,
            Subscription.__table__,  # type: ignore[arg-type]
            {
                "id": new_id("bsub"),
                "account_id": account.id,
                "stripe_subscription_id": snapshot.id,
                "stripe_customer_id": snapshot.customer_id,
                "status": snapshot.status,
                "quantity": snapshot.quantity,
                "cancel_at_period_end": False,
                "stripe_created": snapshot.created,
                "stripe_seen_at": 0,
                "revision": 0,
                "raw": {},
                "created_at": now,
                "updated_at": now,
            },
            ["stripe_subscription_id"],
        )
        sub = await _lock(session, stripe_subscription_id)
        assert sub is not None
        if not created:
            # A concurrent first sync inserted (and maybe wrote) the row while this one was
            # reading Stripe without a lock to hold: read again, now under the row's lock.
            snapshot, authoritative = await read()
    if not authoritative and seen_at is not None and not created and seen_at <= sub.stripe_seen_at:
        return sub  # an older event's copy never overwrites newer state
    previous_status = None if created else sub.status
    if created and snapshot.status in LIVE_STATUSES:
        others = (
            (
                await session.execute(
                    select(Subscription.stripe_subscription_id).where(
                        Subscription.account_id == sub.account_id,
                        Subscription.id != sub.id,
                        Subscription.status.in_(LIVE_STATUSES),
                    )
                )
            )
            .scalars()
            .all()
        )
        if others:
            log.warning(
                "account %s now pays for %s besides %s: see `billfold stripe reconcile`",
                sub.account_id,
                snapshot.id,
                ", ".join(others),
            )
    # The plan follows the price: the catalog is read only when the price is new to the row.
    same_price = not created and sub.plan_code is not None and sub.price_id == snapshot.price_id
    catalog = None if same_price else await load_catalog(session, container.settings)
    changed = _write(sub, snapshot, catalog, now, seen_at=seen_at)
    await session.flush()
    if audit is not None and (created or changed):
        if created:
            action = "subscription.created"
        elif previous_status != sub.status:
            action = "subscription.status_changed"
        else:
            action = "subscription.updated"
        await audit.record(
            session,
            action,
            account_id=sub.account_id,
            target=sub.stripe_subscription_id,
            details={
                "from": previous_status,
                "to": sub.status,
                "plan": sub.plan_code,
                "changed": {name: {"from": old, "to": new} for name, (old, new) in changed.items()},
            },
            actor="stripe",
        )
    return sub


async def link_checkout_customer(
    session: AsyncSession, account_id: str | None, customer_id: str | None, *, now: datetime
) -> None:
    """Link a completed Checkout session's customer to its account if it has none yet."""
    if not account_id or not customer_id:
        return
    account = await session.get(BillingAccount, account_id)
    if account is not None:
        await link_stripe_customer(session, account, customer_id, now=now)


@dataclass(frozen=True, slots=True)
class Difference:
    """One way billfold's copy of a subscription differs from Stripe's."""

    stripe_subscription_id: str
    field: str
    billfold: Any
    stripe: Any


def _compare(sub: Subscription | None, snapshot: SubscriptionSnapshot) -> list[Difference]:
    if sub is None:
        return [Difference(snapshot.id, "missing", None, snapshot.status)]
    pairs: list[tuple[str, Any, Any]] = [
        ("status", sub.status, snapshot.status),
        ("price_id", sub.price_id, snapshot.price_id),
        ("quantity", sub.quantity, snapshot.quantity),
        ("cancel_at_period_end", sub.cancel_at_period_end, snapshot.cancel_at_period_end),
        ("current_period_end", sub.current_period_end, snapshot.current_period_end),
        ("canceled_at", sub.canceled_at, snapshot.canceled_at),
    ]
    return [Difference(snapshot.id, name, a, b) for name, a, b in pairs if a != b]


async def reconcile(
    session: AsyncSession,
    container: Container,
    *,
    fix: bool = False,
    audit: AuditRecorder | None = None,
) -> list[Difference]:
    """Compare every Stripe subscription with billfold's copy and list each difference; with
    `fix`, bring billfold's copy in line (subscriptions of unknown customers stay reported)."""
    gateway = gateway_of(container)
    differences: list[Difference] = []
    seen: set[str] = set()
    for snapshot in await gateway.subscriptions.list():
        seen.add(snapshot.id)
        row = (
            await session.execute(
                select(Subscription).where(Subscription.stripe_subscription_id == snapshot.id)
            )
        ).scalar_one_or_none()
        found = _compare(row, snapshot)
        differences.extend(found)
        if fix and found:
            try:
                fixed = await sync_subscription(session, container, snapshot.id, audit=audit)
            except AccountNotYetKnown:
                log.warning("reconcile: %s has no billing account", snapshot.id)
                continue
            if audit is not None:
                await audit.record(
                    session,
                    "subscription.reconciled",
                    account_id=fixed.account_id,
                    target=snapshot.id,
                    details={
                        "differences": [
                            {"field": d.field, "billfold": d.billfold, "stripe": d.stripe}
                            for d in found
                        ]
                    },
                )
    rows = (await session.execute(select(Subscription))).scalars().all()
    for row in rows:
        if row.stripe_subscription_id not in seen:
            differences.append(
                Difference(row.stripe_subscription_id, "missing_in_stripe", row.status, None)
            )
    differences.extend(duplicate_subscriptions(rows))
    return differences


DUPLICATE = "duplicate_live_subscription"


def duplicate_subscriptions(rows: Sequence[Subscription]) -> list[Difference]:
    """Accounts paying for more than one live subscription (e.g. one created outside
    billfold): one `Difference` per extra subscription (`billfold`: the account, `stripe`: the
    subscription that speaks for it). `--fix` leaves them alone: which to cancel and whether
    to refund is the operator's decision."""
    by_account: dict[str, list[Subscription]] = {}
    for row in rows:
        if row.status in LIVE_STATUSES:
            by_account.setdefault(row.account_id, []).append(row)
    found: list[Difference] = []
    for account_id, live in sorted(by_account.items()):
        if len(live) > 1:
            first, *extra = sorted(live, key=_speaks_first)
            found.extend(
                Difference(
                    sub.stripe_subscription_id, DUPLICATE, account_id, first.stripe_subscription_id
                )
                for sub in extra
            )
    return found
