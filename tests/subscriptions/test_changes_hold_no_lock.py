"""No database lock is held while Stripe answers a cancel, a plan change (reserve, call,
record) or a portal session: while one subscription's change is in flight, another account
writes and a webhook's sync writes the same subscription; concurrent identical changes make one
Stripe change. On
SQLite (where a transaction holds the whole database's write lock) and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.config import Settings
from billfold.container import Container
from billfold.errors import UpstreamUnavailable
from billfold.stripe.gateway import SubscriptionSnapshot
from billfold.subscriptions import sync
from billfold.subscriptions.models import ChangeState, SubscriptionChange
from tests.fakes.stripe_gateway import FakePortal, FakeStripeGateway, FakeSubscriptions
from tests.subscriptions.fixtures import bearer
from tests.subscriptions.test_service import _subscribed

S = "/api/subscriptions"
YEARLY = "billfold_premium_yearly_usd"
# Far below SQLite's 30 s busy timeout: a write waiting on a held lock fails the test quickly.
WRITE_WITHIN_SECONDS = 5


class BlockingSubscriptions(FakeSubscriptions):
    """The fake's subscriptions, with every update and cancel held until `release` is set."""

    def __init__(self, gateway: FakeStripeGateway) -> None:
        super().__init__(gateway)
        self.release = asyncio.Event()
        self.keys: list[str] = []
        self._arrived = asyncio.Condition()

    async def _hold(self, key: str) -> None:
        async with self._arrived:
            self.keys.append(key)
            self._arrived.notify_all()
        await self.release.wait()

    async def in_flight(self, calls: int = 1) -> None:
        """Wait until `calls` changes are held."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.keys) >= calls)

    async def update(self, subscription_id: str, **kwargs: Any) -> SubscriptionSnapshot:
        await self._hold(kwargs["idempotency_key"])
        return await super().update(subscription_id, **kwargs)

    async def cancel(self, subscription_id: str, *, idempotency_key: str) -> SubscriptionSnapshot:
        await self._hold(idempotency_key)
        return await super().cancel(subscription_id, idempotency_key=idempotency_key)


class BlockingPortal(FakePortal):
    """The fake's portal, every session held until `release` is set."""

    def __init__(self, gateway: FakeStripeGateway) -> None:
        super().__init__(gateway)
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()

    async def create_session(self, *, customer_id: str, return_url: str) -> str:
        self.in_flight.set()
        await self.release.wait()
        return await super().create_session(customer_id=customer_id, return_url=return_url)


class BlockingStripe(FakeStripeGateway):
    def __init__(self) -> None:
        super().__init__()
        self.subscriptions = self.blocking = BlockingSubscriptions(self)
        self.portal = self.blocking_portal = BlockingPortal(self)


@pytest.fixture
def gateway() -> FakeStripeGateway:
    return BlockingStripe()


def _updates(gateway: BlockingStripe) -> int:
    return sum(e["type"] == "customer.subscription.updated" for e in gateway.stripe.events)


async def _actions(container: Container) -> list[str]:
    async with container.db.transaction() as session:
        return list((await session.execute(select(AuditEntry.action))).scalars().all())


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/cancel", None), ("PUT", "/update", {"priceId": YEARLY})],
    ids=["cancel", "change_plan"],
)
async def test_others_write_while_stripe_answers_a_change(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    container: Container,
    gateway: BlockingStripe,
    synced: dict[str, str],
    audit: Any,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    gateway.blocking.release.set()
    _, sub_id = await _subscribed(container, gateway, audit)
    gateway.blocking.release.clear()
    alice = asyncio.create_task(
        api.request(method, f"{S}{path}", json=body, headers=bearer(billing_settings, "alice"))
    )
    await asyncio.wait_for(gateway.blocking.in_flight(), WRITE_WITHIN_SECONDS)
    # Bob's first request creates his billing account: a write, on SQLite the write lock.
    bob = await asyncio.wait_for(
        api.get(f"{S}/current", headers=bearer(billing_settings, "bob")), WRITE_WITHIN_SECONDS
    )
    assert bob.status_code == 200 and not alice.done()

    # A webhook's sync of the very subscription being changed: its row is not locked either.
    async def sync_alice() -> None:
        async with container.db.transaction() as session:
            await sync.sync_subscription(session, container, sub_id)

    await asyncio.wait_for(sync_alice(), WRITE_WITHIN_SECONDS)
    assert not alice.done()
    gateway.blocking.release.set()
    answered = await alice
    assert answered.status_code == 200, answered.text
    got = answered.json()["subscription"]
    if path == "/cancel":
        assert got["cancelAtPeriodEnd"] is True
    else:
        assert got["interval"] == "yearly"
    async with container.db.transaction() as session:
        states = (await session.execute(select(SubscriptionChange.state))).scalars().all()
    assert states == [ChangeState.RECORDED]


@pytest.mark.parametrize(
    ("method", "path", "body", "action"),
    [
        ("POST", "/cancel", None, "subscription.cancel_scheduled"),
        ("PUT", "/update", {"priceId": YEARLY}, "subscription.plan_changed"),
    ],
    ids=["cancel", "change_plan"],
)
async def test_concurrent_identical_changes_make_one_stripe_change(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    container: Container,
    gateway: BlockingStripe,
    synced: dict[str, str],
    audit: Any,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    action: str,
) -> None:
    gateway.blocking.release.set()
    await _subscribed(container, gateway, audit)
    gateway.blocking.release.clear()
    updates, invoices = _updates(gateway), len(gateway.stripe.invoices)
    requests = [
        asyncio.create_task(
            api.request(method, f"{S}{path}", json=body, headers=bearer(billing_settings, "alice"))
        )
        for _ in range(2)
    ]
    # Both reach Stripe: the second finishes the first's reserved change, under its key.
    await asyncio.wait_for(gateway.blocking.in_flight(2), WRITE_WITHIN_SECONDS)
    assert len(set(gateway.blocking.keys)) == 1
    gateway.blocking.release.set()
    answers = await asyncio.gather(*requests)
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert _updates(gateway) == updates + 1  # one Stripe change, one replay
    if path == "/update":
        assert len(gateway.stripe.invoices) == invoices + 1  # one proration
    assert (await _actions(container)).count(action) == 1
    # The same change later is a new request to Stripe.
    again = await api.request(
        method, f"{S}{path}", json=body, headers=bearer(billing_settings, "alice")
    )
    if path == "/cancel":
        assert again.status_code == 200 and _updates(gateway) == updates + 2
    else:
        assert again.status_code == 400  # already on this plan


async def test_a_change_left_half_done_is_finished_by_the_next_one(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    container: Container,
    gateway: BlockingStripe,
    synced: dict[str, str],
    audit: Any,
) -> None:
    """A cancel whose Stripe call failed (Stripe may have made it) stays reserved; the next
    change of the subscription (a plan change) finishes it under its key first."""
    gateway.blocking.release.set()
    await _subscribed(container, gateway, audit)
    gateway.fail_next = UpstreamUnavailable("Stripe timed out")
    failed = await api.post(f"{S}/cancel", headers=bearer(billing_settings, "alice"))
    assert failed.status_code == 502, failed.text
    changed = await api.put(
        f"{S}/update", json={"priceId": YEARLY}, headers=bearer(billing_settings, "alice")
    )
    assert changed.status_code == 200, changed.text
    got = changed.json()["subscription"]
    assert got["interval"] == "yearly" and got["cancelAtPeriodEnd"] is True
    async with container.db.transaction() as session:
        rows = (
            await session.execute(
                select(SubscriptionChange.kind, SubscriptionChange.state).order_by(
                    SubscriptionChange.seq
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("cancel-at-period-end", ChangeState.RECORDED),
        ("change-plan", ChangeState.RECORDED),
    ]


async def test_another_account_writes_while_stripe_answers_a_portal_session(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    container: Container,
    gateway: BlockingStripe,
    synced: dict[str, str],
    audit: Any,
) -> None:
    gateway.blocking.release.set()
    await _subscribed(container, gateway, audit)
    alice = asyncio.create_task(api.get(f"{S}/portal", headers=bearer(billing_settings, "alice")))
    await asyncio.wait_for(gateway.blocking_portal.in_flight.wait(), WRITE_WITHIN_SECONDS)
    bob = await asyncio.wait_for(
        api.get(f"{S}/current", headers=bearer(billing_settings, "bob")), WRITE_WITHIN_SECONDS
    )
    assert bob.status_code == 200 and not alice.done()
    gateway.blocking_portal.release.set()
    answered = await alice
    assert answered.status_code == 200, answered.text
    assert "portal.opened" in await _actions(container)
