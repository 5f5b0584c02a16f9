"""One subscription at a time: concurrent and repeated checkout starts for one account leave at
most one open Checkout session, and two subscriptions paid anyway are tracked, reported and
decided deterministically; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import ACCOUNT_METADATA_KEY
from billfold.errors import Conflict
from billfold.stripe.gateway import CheckoutSessionInfo, LineItem
from billfold.stripe.inbox import process_due, store_event
from billfold.subscriptions import changes, checkout, reads, reconcile
from billfold.subscriptions.models import CheckoutAttempt, CheckoutState
from tests.fakes.stripe_gateway import FakeCheckout, FakeStripeGateway
from tests.subscriptions.test_service import _account, _checkout

MONTHLY = "billfold_premium_monthly_usd"
YEARLY = "billfold_premium_yearly_usd"


class SlowCheckout(FakeCheckout):
    """The fake with a round trip on every Checkout call, so concurrent starts interleave."""

    async def retrieve_session(self, session_id: str) -> CheckoutSessionInfo:
        await asyncio.sleep(0.02)
        return await super().retrieve_session(session_id)

    async def expire_session(self, session_id: str) -> CheckoutSessionInfo:
        await asyncio.sleep(0.02)
        return await super().expire_session(session_id)

    async def create_session(self, **kwargs: Any) -> CheckoutSessionInfo:
        await asyncio.sleep(0.02)
        return await super().create_session(**kwargs)


@pytest.fixture
def gateway() -> FakeStripeGateway:
    slow = FakeStripeGateway()
    slow.checkout = SlowCheckout(slow)
    return slow


def _open_sessions(gateway: FakeStripeGateway) -> list[str]:
    return [cs["id"] for cs in gateway.stripe.sessions.values() if cs["status"] == "open"]


async def _apply_events(container: Container, gateway: FakeStripeGateway) -> None:
    for event in gateway.stripe.events:
        async with container.db.transaction() as session:
            await store_event(session, event, source="webhook", clock=container.clock)
    await process_due(container)


async def test_concurrent_starts_leave_one_open_session(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    results = await asyncio.gather(
        *(
            _checkout(container, account, audit, price_id=price, quantity=quantity)
            for price, quantity in [(MONTHLY, 1), (YEARLY, 1), (MONTHLY, 2), (YEARLY, 3)]
        ),
        return_exceptions=True,
    )
    started = [r for r in results if isinstance(r, checkout.CheckoutStarted)]
    assert len(started) == 4, results
    # Whichever order the starts were serialized in, only the last one's session is open.
    assert len(_open_sessions(gateway)) == 1
    async with container.db.transaction() as session:
        recorded = (
            await session.execute(
                select(CheckoutAttempt.stripe_checkout_session_id).where(
                    CheckoutAttempt.account_id == account.id,
                    CheckoutAttempt.state == CheckoutState.OPEN,
                )
            )
        ).scalar_one()
    assert _open_sessions(gateway) == [recorded]
    # One Stripe customer for the account, however many starts raced.
    assert len(gateway.stripe.customers) == 1


async def test_concurrent_identical_starts_share_one_session(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    results = await asyncio.gather(
        *(
            _checkout(container, account, audit, price_id=MONTHLY, idempotency_key=f"k{n}")
            for n in range(3)
        )
    )
    assert len({r.id for r in results}) == 1
    assert _open_sessions(gateway) == [results[0].id]


async def test_a_replaced_session_cannot_be_paid_and_a_paid_one_blocks_the_next(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    monthly = await _checkout(container, account, audit, price_id=MONTHLY)
    again = await _checkout(container, account, audit, price_id=MONTHLY)
    assert again.id == monthly.id  # same offer, still open: reused
    yearly = await _checkout(container, account, audit, price_id=YEARLY)
    assert yearly.id != monthly.id
    assert gateway.stripe.sessions[monthly.id]["status"] == "expired"
    with pytest.raises(ValueError):
        gateway.stripe.complete_checkout(monthly.id)
    sub_id = gateway.stripe.complete_checkout(yearly.id)
    # Paid, but the webhook has not arrived: a new start is refused rather than a second sale.
    with pytest.raises(Conflict):
        await _checkout(container, account, audit, price_id=MONTHLY)
    await _apply_events(container, gateway)
    with pytest.raises(Conflict):
        await _checkout(container, account, audit, price_id=MONTHLY)
    status = await _status(container, account)
    assert status.has_premium and status.subscription is not None
    assert status.subscription.stripe_subscription_id == sub_id
    # Once it ended, the paid session is forgotten and a new checkout opens.
    await gateway.subscriptions.cancel(sub_id, idempotency_key="end-it")
    await _apply_events(container, gateway)
    assert not (await _status(container, account)).has_premium
    renewed = await _checkout(container, account, audit, price_id=MONTHLY)
    assert _open_sessions(gateway) == [renewed.id]


async def _status(container: Container, account: BillingAccount) -> reads.SubscriptionStatus:
    async with container.db.transaction() as session:
        return await reads.status(session, container, account)


async def test_two_paid_subscriptions_are_tracked_reported_and_decided_deterministically(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    ours = await _checkout(container, account, audit, price_id=MONTHLY)
    first = gateway.stripe.complete_checkout(ours.id)
    # A second subscription for the same customer, created outside billfold.
    outside = await gateway.checkout.create_session(
        mode="subscription",
        customer_id=ours.customer_id,
        line_items=[LineItem(price_id=synced[YEARLY])],
        success_url="https://app.example.com/ok",
        cancel_url="https://app.example.com/no",
        client_reference_id=account.id,
        metadata={ACCOUNT_METADATA_KEY: account.id},
        idempotency_key="made-in-the-dashboard",
    )
    second = gateway.stripe.complete_checkout(outside.id)
    # Any delivery order ends in the same state.
    gateway.stripe.events.reverse()
    await _apply_events(container, gateway)
    async with container.db.transaction() as session:
        rows = await reads.list_subscriptions(session, account)
        assert sorted(r.stripe_subscription_id for r in rows) == sorted([first, second])
        differences = await reconcile.reconcile(session, container)
    # Both active: the newer one speaks for the account; the other is the reported duplicate.
    status = await _status(container, account)
    assert status.has_premium and status.subscription is not None
    assert status.subscription.stripe_subscription_id == second
    assert [(d.stripe_subscription_id, d.field, d.billfold, d.stripe) for d in differences] == [
        (first, reconcile.DUPLICATE, account.id, second)
    ]
    # Canceling the one that speaks leaves the other one, still premium, no duplicate.
    canceled = await changes.cancel(container, account, audit=audit, immediately=True)
    assert canceled.stripe_subscription_id == second
    status = await _status(container, account)
    assert status.has_premium and status.subscription is not None
    assert status.subscription.stripe_subscription_id == first
    async with container.db.transaction() as session:
        assert await reconcile.reconcile(session, container) == []
