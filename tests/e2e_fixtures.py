"""End-to-end fixture: billfold served by uvicorn on a loopback port, talking to the Stripe
sandbox (`sandbox_server`) through the real SDK, and receiving the sandbox's signed webhooks.

    async def test_flow(billfold_server: BillfoldServer) -> None:
        headers = billfold_server.bearer("alice")
        async with billfold_server.http() as http:
            await http.post("/api/v1/payments/create-checkout-session", headers=headers, ...)
        await billfold_server.settle()   # every webhook delivered and applied

The server has its own `Database` on the test's database URL (its engine lives on the server
thread's event loop); the catalog is synced into the sandbox before the test starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import func, select

from billfold.app import create_app
from billfold.auth.tokens import issue_token
from billfold.catalog.service import load_catalog, sync_catalog
from billfold.clock import SystemClock
from billfold.config import Settings
from billfold.container import Container
from billfold.db.engine import Database
from billfold.jobs.models import Job, JobStatus
from billfold.stripe.gateway import StripeClientGateway
from billfold.stripe.models import WebhookEvent
from tests.sandbox_fixtures import SandboxServer, ServedApp

E2E_JWT_SECRET = "e2e-secret-that-is-long-enough-for-hs256-0123456789"
WEBHOOK_PATH = "/api/v1/payments/webhook"


@dataclass
class BillfoldServer:
    url: str
    settings: Settings
    container: Container
    sandbox: SandboxServer
    database: Database  # the test's own (test event loop)
    prices: dict[str, str]  # lookup key -> sandbox price id
    served: ServedApp

    def bearer(self, subject: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.settings, subject, **claims)}"}

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)

    async def settle(self, stall: float = 60.0) -> None:
        """Wait until the sandbox delivered every webhook and billfold applied every event and
        ran every job that is due.

        It waits on the work itself, not on a deadline: as long as deliveries are made or
        events applied, it keeps waiting (a loaded machine, or a history delivered twice over,
        one delivery after another, takes as long as it takes). It fails only when nothing has
        moved for `stall` seconds, naming what is still owed."""
        webhooks = self.sandbox.state.webhooks
        last_progress = time.monotonic()
        seen: tuple[int, int, int, int] | None = None
        while True:
            idle = await asyncio.to_thread(webhooks.wait_idle, 1.0)
            async with self.database.read() as session:
                waiting = (
                    await session.execute(
                        select(func.count())
                        .select_from(WebhookEvent)
                        .where(WebhookEvent.status != "processed")
                    )
                ).scalar_one()
                # And the jobs that are due: one an event wrote may call Stripe after the
                # event is applied (the default method pushed to the customer), and Stripe's
                # answer is another event.
                waiting += (
                    await session.execute(
                        select(func.count())
                        .select_from(Job)
                        .where(
                            Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                            Job.run_at <= datetime.now(UTC),
                        )
                    )
                ).scalar_one()
            if idle and waiting == 0:
                # One more look: an applied event may have made Stripe emit another.
                if await asyncio.to_thread(webhooks.wait_idle, 0.2):
                    return
            # Progress: a delivery attempt made (the newest entry of the attempt log changes),
            # deliveries still owed, events still to apply.
            log = list(webhooks.deliveries)
            last = log[-1] if log else None
            pending = webhooks.pending()
            now = (len(log), id(last), pending, waiting)
            if now != seen:
                seen, last_progress = now, time.monotonic()
            elif time.monotonic() - last_progress > stall:
                raise AssertionError(
                    f"not settled: nothing moved for {stall:.0f}s with {pending} deliveries "
                    f"queued or in flight and {waiting} events unapplied or jobs due "
                    f"({len(log)} delivery attempts so far, the last {last})"
                )
            await asyncio.sleep(0.05)


def sandbox_gateway(settings: Settings, sandbox: SandboxServer) -> StripeClientGateway:
    client = stripe.StripeClient(
        sandbox.api_key, base_addresses={"api": sandbox.url}, max_network_retries=1
    )
    return StripeClientGateway(settings, client=client)


@pytest.fixture
def billfold_catalog_file() -> Path | None:
    """The catalog the e2e server sells (None: the embedded default); override per module."""
    return None


@pytest.fixture
async def billfold_server(
    database: Database,
    sandbox_server: SandboxServer,
    tmp_path: Path,
    billfold_catalog_file: Path | None,
) -> AsyncIterator[BillfoldServer]:
    settings = Settings(
        catalog_file=billfold_catalog_file,
        stripe_secret_key=sandbox_server.api_key,
        stripe_publishable_key="pk_test_sandbox_tests",
        stripe_webhook_secret=["whsec_set_once_the_endpoint_exists"],
        jwt_secret=E2E_JWT_SECRET,
        data_dir=tmp_path / "billfold-data",
        frontend_url="https://app.example.com",
        environment="test",
    )
    async with database.transaction() as session:
        catalog = await load_catalog(session, settings)
        await sync_catalog(
            session, sandbox_gateway(settings, sandbox_server), catalog, clock=SystemClock()
        )
        catalog = await load_catalog(session, settings)
    prices = {p.lookup_key: p.stripe_price_id or "" for _, p in catalog.prices(active_only=False)}

    server_db = Database(database.url, pool_size=10)
    app = create_app(
        settings,
        database=server_db,
        clock=SystemClock(),
        stripe_gateway=sandbox_gateway(settings, sandbox_server),
    )
    served = ServedApp(app)
    endpoint = sandbox_server.state.webhooks.add_endpoint(
        served.url + WEBHOOK_PATH, enabled_events=["*"]
    )
    settings.stripe_webhook_secret = [str(endpoint["_secret"])]
    server = BillfoldServer(
        url=served.url,
        settings=settings,
        container=app.state.container,
        sandbox=sandbox_server,
        database=database,
        prices=prices,
        served=served,
    )
    try:
        yield server
    finally:
        sandbox_server.state.webhooks.stop()
        await asyncio.to_thread(served.stop)
