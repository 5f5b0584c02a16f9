"""The inbox's apply step: a new delivery's notes, repeats of applied events, and a failing
handler whose writes are rolled back with the claim, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from billfold.container import Container
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import get_or_create_account
from billfold.stripe.gateway import StripeEvent
from billfold.stripe.inbox import StoredEvent, WebhookHandlers, process_event, receive_webhook
from billfold.stripe.models import WebhookEvent
from billfold.subscriptions import checkout, sync
from billfold.subscriptions.handlers import NOTED
from billfold.subscriptions.models import Subscription
from tests.fakes.stripe_gateway import FakeStripeGateway, sign
from tests.subscriptions.fixtures import WEBHOOK_SECRET


async def _receive(container: Container, event: dict[str, Any]) -> StoredEvent:
    payload = json.dumps(event).encode()
    async with container.db.transaction() as session:
        return await receive_webhook(
            session,
            container.settings,
            payload,
            sign(payload, WEBHOOK_SECRET),
            handlers=container.webhook_handlers,
        )


async def test_new_delivery_notes_the_revision_and_repeats_are_not_applied_again(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    async with container.db.transaction() as session:
        account = await get_or_create_account(session, AccountKind.USER, "alice", currency="usd")
    started = await checkout.start_checkout(
        container, account, audit=audit, price_id="billfold_premium_monthly_usd"
    )
    sub_id = gateway.stripe.complete_checkout(started.id)
    first, *rest = gateway.stripe.events
    stored = await _receive(container, first)
    assert stored.inserted and stored.event is not None and not stored.done
    noted = stored.event.prepared[NOTED]
    assert noted == sync.NotedRevision(sub_id, None)  # no row yet
    assert await process_event(container, stored) == "processed"
    for event in rest:
        assert await process_event(container, await _receive(container, event)) == "processed"
    again = await _receive(container, first)
    assert again.done and not again.inserted
    assert await process_event(container, again) is None
    async with container.db.transaction() as session:
        row = await session.get(WebhookEvent, first["id"])
        assert row is not None and row.status == "processed" and row.attempts == 1
        sub = (await session.execute(Subscription.__table__.select())).one()
        assert sub.stripe_subscription_id == sub_id and sub.status == "active"


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
    assert await process_event(container, stored) == "failed"
    assert await process_event(container, "evt_fails") == "failed"
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
