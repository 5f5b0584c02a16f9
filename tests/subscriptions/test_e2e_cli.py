"""`billfold stripe sync` after webhook downtime and `billfold stripe reconcile [--fix]`, against
the sandbox with real subscriptions, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from billfold.cli import app
from billfold.config import get_settings
from billfold.subscriptions.models import Subscription
from tests.e2e_fixtures import BillfoldServer
from tests.subscriptions.test_e2e_flow import P, sandbox_call, status_of, subscribe

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def cli_env(billfold_server: BillfoldServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    settings = billfold_server.settings
    monkeypatch.setenv("BILLFOLD_DATABASE_URL", billfold_server.database.url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", billfold_server.sandbox.api_key)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", settings.webhook_secrets[0])
    monkeypatch.setenv("BILLFOLD_STRIPE_API_BASE", billfold_server.sandbox.url)
    monkeypatch.setenv("BILLFOLD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("BILLFOLD_JWT_SECRET", settings.jwt_secret or "")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def billfold(*args: str) -> Result:
    # The command runs its own event loop: give it a thread of its own.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_sync_fills_the_gap_after_webhook_downtime(
    billfold_server: BillfoldServer, cli_env: None
) -> None:
    server = billfold_server
    sandbox_call(server, "POST", "/v1/test_helpers/sandbox/webhooks", paused=True)
    async with server.http() as http:
        headers = server.bearer("frank")
        response = await http.post(
            f"{P}/create-checkout-session",
            json={"price_id": server.prices["billfold_premium_monthly_usd"], "interval": "monthly"},
            headers=headers,
        )
        session_id = response.json()["data"]["session_id"]
        sandbox_call(server, "POST", f"/v1/test_helpers/checkout/sessions/{session_id}/complete")
        assert (await status_of(http, headers))["has_premium"] is False  # nothing arrived

        result = await billfold("stripe", "sync", "--since", "0")
        assert result.exit_code == 0, result.output
        assert "0 failed" in result.output, result.output
        assert (await status_of(http, headers))["has_premium"] is True, result.output

        # The deliveries arrive later after all: duplicates, applied once, nothing changes.
        sandbox_call(server, "POST", "/v1/test_helpers/sandbox/webhooks", paused=False)
        await server.settle()
        status = await status_of(http, headers)
        assert status["has_premium"] is True and status["status"] == "active"


async def test_reconcile_reports_and_repairs(
    billfold_server: BillfoldServer, cli_env: None
) -> None:
    server = billfold_server
    async with server.http() as http:
        headers = await subscribe(server, http, "grace", "billfold_premium_monthly_usd")
        result = await billfold("stripe", "reconcile")
        assert result.exit_code == 0, result.output
        assert "billfold and Stripe agree" in result.output

        # billfold's copy drifts (a lost event, a bad manual edit).
        async with server.database.transaction() as session:
            await session.execute(
                update(Subscription).values(status="canceled", cancel_at_period_end=True)
            )
        assert (await status_of(http, headers))["has_premium"] is False
        result = await billfold("stripe", "reconcile")
        assert result.exit_code == 1
        assert "status" in result.output and "cancel_at_period_end" in result.output
        assert "2 differences" in result.output

        result = await billfold("stripe", "reconcile", "--fix")
        assert result.exit_code == 0, result.output
        assert "2 differences repaired" in result.output
        status = await status_of(http, headers)
        assert status["has_premium"] is True and status["cancel_at_period_end"] is False
        result = await billfold("stripe", "reconcile")
        assert "billfold and Stripe agree" in result.output
