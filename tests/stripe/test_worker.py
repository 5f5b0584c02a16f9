"""The server's background work: the sandbox catalog sync refuses a sandbox that is not its
own, and the embedded job worker applies the webhook events that are due."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import func, select

from billfold.catalog.models import CatalogPriceLink
from billfold.container import Container
from billfold.jobs import JobRunner, Worker
from billfold.stripe.inbox import store_event
from billfold.stripe.models import WebhookEvent
from billfold.stripe.worker import sync_catalog_when_ready
from tests.subscriptions.fake_stripe import FakeStripeGateway
from tests.subscriptions.fixtures import *  # noqa: F403


class StateLike:
    """What the worker reads of the mounted sandbox's state: `lock` and `get`."""

    def __init__(self, objects: dict[tuple[str, str], Any]) -> None:
        self.lock = threading.RLock()
        self.objects = objects

    def get(self, kind: str, object_id: str) -> Any:
        return self.objects.get((kind, object_id))


async def _links(container: Container) -> int:
    async with container.db.transaction() as session:
        return int(
            (await session.execute(select(func.count()).select_from(CatalogPriceLink))).scalar_one()
        )


async def test_the_sync_is_kept_only_if_it_landed_in_our_sandbox(
    container: Container, gateway: FakeStripeGateway
) -> None:
    assert container.settings.sandbox_mode
    elsewhere = StateLike({})
    assert await sync_catalog_when_ready(container, sandbox_state=elsewhere) is False
    assert await _links(container) == 0

    ours = StateLike({("product", "billfold_premium"): {"id": "billfold_premium"}})
    assert await sync_catalog_when_ready(container, sandbox_state=ours) is True
    assert await _links(container) == 4


async def test_the_embedded_worker_applies_pending_events(container: Container) -> None:
    event = {"id": "evt_loop", "type": "balance.available", "created": 1, "data": {"object": {}}}
    async with container.db.transaction() as session:
        await store_event(session, event, source="webhook", clock=container.clock)
    assert container.jobs is not None
    worker = Worker(JobRunner(container, container.jobs), poll_seconds=0.05)
    async with worker.running():
        for _ in range(200):
            async with container.db.transaction() as session:
                row = await session.get(WebhookEvent, "evt_loop")
                if row is not None and row.status == "processed":
                    break
            await asyncio.sleep(0.05)
    assert row is not None and row.status == "processed"
