"""The embedded job worker applies the webhook events that are due (billfold wired to its
real Stripe adapter on the sandbox)."""

from __future__ import annotations

import asyncio

import pytest

from billfold.config import Settings
from billfold.container import Container
from billfold.jobs import JobRunner, Worker
from billfold.stripe.gateway import StripeClientGateway
from billfold.stripe.inbox import store_event
from billfold.stripe.models import WebhookEvent
from tests.sandbox_fixtures import SandboxServer
from tests.sandbox_stripe import sandbox_gateway
from tests.subscriptions.fixtures import *  # noqa: F403


@pytest.fixture
def gateway(billing_settings: Settings, sandbox_server: SandboxServer) -> StripeClientGateway:
    return sandbox_gateway(billing_settings, sandbox_server)


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
