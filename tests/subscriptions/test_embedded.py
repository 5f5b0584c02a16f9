"""The embedded default: no Stripe key, the sandbox mounted inside billfold's own server. The
catalog is synced into it at start-up, and a subscription works end to end with no setup."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from billfold.app import create_app
from billfold.auth.tokens import issue_token
from billfold.config import SANDBOX_MOUNT_PATH, SANDBOX_SECRET_KEY, Settings
from billfold.db.engine import Database
from tests.sandbox_fixtures import free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
async def embedded(database: Database, tmp_path: Path) -> AsyncIterator[tuple[str, Settings]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        jwt_secret="embedded-secret-that-is-long-enough-for-hs256-012345",
        frontend_url="https://app.example.com",
        host="127.0.0.1",
        port=free_port(),
    )
    assert settings.sandbox_mode
    app = create_app(settings, database=Database(database.url))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "billfold did not start"
        await asyncio.sleep(0.02)
    try:
        yield settings.base_url, settings
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)


async def _until(check: Any, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_plans_have_sandbox_prices_at_once_and_a_subscription_works(
    embedded: tuple[str, Settings],
) -> None:
    base, settings = embedded
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def synced_plans() -> list[dict[str, Any]] | None:
            plans: list[dict[str, Any]] = (await http.get("/api/v1/payments/plans")).json()["data"][
                "plans"
            ]
            return plans if all(p["stripe_price_id"] for p in plans) else None

        plans = await _until(synced_plans)
        assert [p["plan_code"] for p in plans] == ["premium_monthly", "premium_yearly"]
        assert all(p["stripe_price_id"].startswith("price_") for p in plans)

        headers = {"Authorization": f"Bearer {issue_token(settings, 'newcomer')}"}
        response = await http.post(
            "/api/v1/payments/create-checkout-session",
            json={"price_id": plans[0]["stripe_price_id"], "interval": "monthly"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        session_id = response.json()["data"]["session_id"]
        paid = await http.post(
            f"{SANDBOX_MOUNT_PATH}/v1/test_helpers/checkout/sessions/{session_id}/complete",
            headers={"Authorization": f"Bearer {SANDBOX_SECRET_KEY}"},
        )
        assert paid.status_code == 200, paid.text

        async def premium() -> bool:
            status = await http.get("/api/v1/payments/subscription/status", headers=headers)
            return bool(status.json()["data"]["has_premium"])

        assert await _until(premium)
