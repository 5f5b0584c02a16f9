"""No database lock is held while Stripe answers a checkout (reserve, call, record): while one
account's Checkout call is in flight, a request for another account writes; concurrent starts
for one account still share one session. On SQLite (where a transaction holds the whole
database's write lock) and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billfold.config import Settings
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.customers.service import ensure_stripe_customer
from billfold.errors import UpstreamUnavailable
from billfold.stripe.gateway import CheckoutSessionInfo
from billfold.subscriptions.models import CheckoutAttempt, CheckoutState
from tests.fakes.stripe_gateway import FakeCheckout, FakeStripeGateway
from tests.subscriptions.fixtures import bearer
from tests.subscriptions.test_service import _account, _checkout

S = "/api/subscriptions"
MONTHLY = "billfold_premium_monthly_usd"
YEARLY = "billfold_premium_yearly_usd"
# Far below SQLite's 30 s busy timeout: a write waiting on a held lock fails the test quickly.
WRITE_WITHIN_SECONDS = 5


class BlockingCheckout(FakeCheckout):
    """The fake's Checkout, with every session creation held until `release` is set."""

    def __init__(self, gateway: FakeStripeGateway) -> None:
        super().__init__(gateway)
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()
        self.creations = 0

    async def create_session(self, **kwargs: Any) -> CheckoutSessionInfo:
        self.creations += 1
        self.in_flight.set()
        await self.release.wait()
        return await super().create_session(**kwargs)


class BlockingStripe(FakeStripeGateway):
    """The fake, with every Checkout creation held until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.checkout = self.blocking = BlockingCheckout(self)
        self.in_flight = self.blocking.in_flight
        self.release = self.blocking.release

    @property
    def creations(self) -> int:
        return self.blocking.creations


@pytest.fixture
def gateway() -> FakeStripeGateway:
    return BlockingStripe()


async def test_another_account_writes_while_stripe_answers_a_checkout(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    container: Container,
    gateway: BlockingStripe,
    synced: dict[str, str],
) -> None:
    alice = asyncio.create_task(
        api.post(
            f"{S}/subscribe",
            json={"priceId": MONTHLY},
            headers=bearer(billing_settings, "alice"),
        )
    )
    await asyncio.wait_for(gateway.in_flight.wait(), WRITE_WITHIN_SECONDS)
    # Bob's first request creates his billing account: a write, on SQLite the write lock.
    bob = await asyncio.wait_for(
        api.get(f"{S}/current", headers=bearer(billing_settings, "bob")), WRITE_WITHIN_SECONDS
    )
    assert bob.status_code == 200 and not alice.done()
    async with container.db.transaction() as session:
        accounts = (await session.execute(select(BillingAccount.external_id))).scalars().all()
    assert set(accounts) == {"alice", "bob"}
    gateway.release.set()
    answered = await alice
    assert answered.status_code == 200, answered.text
    assert answered.json()["sessionId"] in gateway.stripe.sessions


async def test_concurrent_starts_for_one_account_share_the_session_in_flight(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    gateway: BlockingStripe,
    synced: dict[str, str],
) -> None:
    starts = [
        asyncio.create_task(
            api.post(
                f"{S}/subscribe",
                json={"priceId": MONTHLY},
                headers=bearer(billing_settings, "alice"),
            )
        )
        for _ in range(3)
    ]
    await asyncio.wait_for(gateway.in_flight.wait(), WRITE_WITHIN_SECONDS)
    await asyncio.sleep(0.1)  # let the other starts reach the account's reserved attempt
    gateway.release.set()
    answers = await asyncio.gather(*starts)
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert len({a.json()["sessionId"] for a in answers}) == 1
    assert len(gateway.stripe.sessions) == 1


async def test_an_attempt_left_half_done_is_finished_by_the_next_start(
    container: Container, gateway: BlockingStripe, synced: dict[str, str], audit: Any
) -> None:
    """A start whose Stripe call failed after the reserve leaves a reserved attempt; the next
    start (another offer) finishes it under its key, then expires its session, so the account
    still has one open session."""
    gateway.release.set()
    account = await _account(container)
    await ensure_stripe_customer(
        container.db, gateway, account.id, clock=container.clock, audit=audit
    )
    gateway.fail_next = UpstreamUnavailable("Stripe timed out")
    with pytest.raises(UpstreamUnavailable):
        await _checkout(container, account, audit, price_id=MONTHLY)
    yearly = await _checkout(container, account, audit, price_id=YEARLY)
    assert [cs["id"] for cs in gateway.stripe.sessions.values() if cs["status"] == "open"] == [
        yearly.id
    ]
    async with container.db.transaction() as session:
        states = (
            (await session.execute(select(CheckoutAttempt.state).order_by(CheckoutAttempt.seq)))
            .scalars()
            .all()
        )
    assert states == [CheckoutState.CLOSED, CheckoutState.OPEN]
