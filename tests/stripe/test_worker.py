"""The server's background work: the retry loop applies what is due."""

from __future__ import annotations

import asyncio

from billfold.container import Container
from billfold.stripe.inbox import store_event
from billfold.stripe.models import WebhookEvent
from billfold.stripe.worker import background_work
from tests.subscriptions.fixtures import *  # noqa: F403


async def test_the_retry_loop_applies_pending_events(container: Container) -> None:
    container.settings.webhook_retry_seconds = 0.05
    event = {"id": "evt_loop", "type": "balance.available", "created": 1, "data": {"object": {}}}
    async with container.db.transaction() as session:
        await store_event(session, event, source="webhook")
    async with background_work(container):
        for _ in range(100):
            async with container.db.transaction() as session:
                row = await session.get(WebhookEvent, "evt_loop")
                if row is not None and row.status == "processed":
                    break
            await asyncio.sleep(0.05)
    assert row is not None and row.status == "processed"
