"""The inbox: a delivery stored in one statement, events applied in batches (one note
statement and one Stripe read per subscription for a batch, Stripe's order, each event once),
repeats of applied events, and a failing handler whose writes are rolled back on its own, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from billfold.container import Container
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import get_or_create_account
from billfold.jobs import Job
from billfold.stripe.gateway import StripeEvent
from billfold.stripe.inbox import (
    StoredEvent,
    WebhookHandlers,
    job_key,
    process_due,
    process_event,
    receive_webhook,
)
from billfold.stripe.models import WebhookEvent
from billfold.subscriptions import checkout
from billfold.subscriptions.models import Subscription
from tests.fakes.stripe_gateway import FakeStripeGateway, sign
from tests.subscriptions.fixtures import WEBHOOK_SECRET


async def _receive(container: Container, event: dict[str, Any]) -> StoredEvent:
    payload = json.dumps(event).encode()
    return await receive_webhook(
        container.db,
        container.settings,
        payload,
        sign(payload, WEBHOOK_SECRET),
        clock=container.clock,
    )


class Statements:
    """SQL statements and connection checkouts on `container.db` (writers and readers)."""

    def __init__(self, container: Container) -> None:
        writers, readers = container.db.engine.sync_engine, container.db.read_engine.sync_engine
        # On PostgreSQL the readers are the writers' engine with options (one pool, one set of
        # listeners); SQLite's have their own.
        self.engines = [writers] if readers.pool is writers.pool else [writers, readers]
        self.statements: list[str] = []
        self.checkouts = 0

    def __enter__(self) -> Statements:
        for engine in self.engines:
            sa_event.listen(engine, "before_cursor_execute", self._statement)
            sa_event.listen(engine, "checkout", self._checkout)
        return self

    def __exit__(self, *_: object) -> None:
        for engine in self.engines:
            sa_event.remove(engine, "before_cursor_execute", self._statement)
            sa_event.remove(engine, "checkout", self._checkout)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith(("BEGIN", "PRAGMA")):
            self.statements.append(statement)

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1


async def _counts(container: Container) -> tuple[int, int, list[Any]]:
    async with container.db.read() as session:
        events = (await session.execute(select(func.count()).select_from(WebhookEvent))).scalar()
        jobs = list((await session.execute(select(Job.key, Job.status, Job.run_at))).all())
    return int(events or 0), len(jobs), sorted(jobs)


async def test_a_delivery_is_one_statement_and_a_repeat_writes_nothing(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    async with container.db.transaction() as session:
        account = await get_or_create_account(session, AccountKind.USER, "alice", currency="usd")
    started = await checkout.start_checkout(
        container, account, audit=audit, price_id="billfold_premium_monthly_usd"
    )
    gateway.stripe.complete_checkout(started.id)
    first, *rest = gateway.stripe.events
    with Statements(container) as seen:
        stored = await _receive(container, first)
    assert stored.inserted and stored.id == first["id"]
    # The event and its job: one statement on one checkout (SQLite: its two INSERTs).
    assert seen.checkouts == 1
    assert len(seen.statements) == (1 if not container.db.is_sqlite else 2)
    assert await _counts(container) == (1, 1, [(job_key(first["id"]), "queued", ANY_TIME)])
    before = await _counts(container)
    with Statements(container) as seen:
        again = await _receive(container, first)
    assert not again.inserted and seen.checkouts == 1
    assert await _counts(container) == before  # a repeat writes nothing
    assert await process_event(container, stored) == "processed"
    for event in rest:
        await _receive(container, event)
    assert (await process_due(container)).processed == len(rest)
    again = await _receive(container, first)
    assert not again.inserted
    assert await process_event(container, again) == "processed"  # done already: not run again
    async with container.db.transaction() as session:
        row = await session.get(WebhookEvent, first["id"])
        assert row is not None and row.status == "processed" and row.attempts == 1
        sub = (await session.execute(Subscription.__table__.select())).one()
        assert sub.status == "active"


class _AnyTime:
    def __eq__(self, other: object) -> bool:
        return other is not None


ANY_TIME: Any = _AnyTime()


async def test_a_batch_applies_each_event_once_with_one_read_per_subscription(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    """A subscription's whole history, delivered twice in shuffled order, is applied in one
    batch: each event once, one revision statement and one Stripe read for the batch, and
    billfold's subscription ends equal to Stripe's."""
    async with container.db.transaction() as session:
        account = await get_or_create_account(session, AccountKind.USER, "carol", currency="usd")
    started = await checkout.start_checkout(
        container, account, audit=audit, price_id="billfold_premium_monthly_usd"
    )
    sub_id = gateway.stripe.complete_checkout(started.id)
    gateway.stripe.end_period(sub_id, payment_fails=True)
    gateway.stripe.end_period(sub_id)
    await gateway.subscriptions.update(sub_id, cancel_at_period_end=True, idempotency_key="k1")
    deliveries = gateway.stripe.events * 2
    random.Random(3).shuffle(deliveries)
    for event in deliveries:
        await _receive(container, event)
    calls = len(gateway.stripe.calls)
    with Statements(container) as seen:
        report = await process_due(container)
    assert report.processed == len(gateway.stripe.events) and report.failed == 0
    assert gateway.stripe.calls[calls:] == ["retrieve_subscription"]
    revisions = [
        s
        for s in seen.statements
        if s.startswith("SELECT subscriptions.stripe_subscription_id, subscriptions.revision")
    ]
    assert len(revisions) == 1
    async with container.db.read() as session:
        rows = (await session.execute(select(WebhookEvent))).scalars().all()
        sub = (await session.execute(select(Subscription))).scalar_one()
    assert all(r.status == "processed" and r.attempts == 1 for r in rows)
    stripe_sub = gateway.stripe.subscriptions[sub_id]
    assert (sub.status, sub.cancel_at_period_end) == (
        stripe_sub["status"],
        stripe_sub["cancel_at_period_end"],
    )


@pytest.fixture
def failing_handler(container: Container) -> Iterator[str]:
    event_type = "billfold.test.fails_after_writing"
    extra = WebhookHandlers()

    @extra.on(event_type)
    async def handler(session: Any, container: Container, event: StripeEvent) -> None:
        account = await session.get(BillingAccount, event.object["account"])
        account.name = "written before the failure"
        await session.flush()
        raise RuntimeError("handler failed after writing")

    wired = container.webhook_handlers
    assert wired is not None
    container.webhook_handlers = WebhookHandlers.combine([wired, extra])
    yield event_type
    container.webhook_handlers = wired


async def test_a_failing_handler_rolls_back_its_writes_and_the_claim(
    container: Container, failing_handler: str
) -> None:
    async with container.db.transaction() as session:
        account = await get_or_create_account(session, AccountKind.USER, "bob", currency="usd")
    event = {
        "id": "evt_fails",
        "object": "event",
        "type": failing_handler,
        "created": 1_700_000_000,
        "data": {"object": {"account": account.id}},
    }
    stored = await _receive(container, event)
    good = dict(event, id="evt_fine", type="balance.available", created=1_700_000_001)
    await _receive(container, good)
    # One batch: the failing event's writes roll back on their own; the other is applied.
    report = await process_due(container)
    assert (report.processed, report.failed) == (1, 1)
    assert await process_event(container, stored) == "failed"
    async with container.db.transaction() as session:
        row = await session.get(WebhookEvent, "evt_fails")
        assert row is not None and row.status == "failed" and row.attempts == 2
        # The second failure waits 10 s (5 s, doubling), counted on the injected clock.
        assert row.processed_at is None
        assert row.next_attempt_at == container.clock.now() + timedelta(seconds=10)
        assert row.last_error == "RuntimeError: handler failed after writing"
        assert row.last_traceback and "handler failed after writing" in row.last_traceback
        kept = await session.get(BillingAccount, account.id)
        assert kept is not None and kept.name != "written before the failure"
