"""A plan's credit allowance: granted once per paid invoice, spent first, expiring at the
period's end, with what was left rolled over up to the cap (sandbox renewals, both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.credits.models import CreditLot
from billfold.db.engine import Database
from billfold.ledger.verify import verify_ledger
from tests.api.stripe_events import deliver_all
from tests.credits.test_routes import backend, deliver_shuffled_twice
from tests.sandbox_fixtures import SANDBOX_EPOCH
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import WEBHOOK_SECRET, bearer

B = "/api/billing"
WEBHOOK = "/api/stripe/webhook"


@pytest.fixture
def billing_settings(tmp_path: Path) -> Settings:
    """The premium plan includes 300 credits a period; up to 100 left over roll over."""
    default = resources.files("billfold.catalog").joinpath("default_catalog.toml").read_text()
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        default.replace(
            "trial_days = 0\n",
            "trial_days = 0\ncredits_per_period = 300\ncredits_rollover_cap = 100\n",
            1,
        )
    )
    return Settings(
        jwt_secret="test-secret-that-is-long-enough-for-hs256-0123456789",
        data_dir=tmp_path / "data",
        frontend_url="https://app.example.com",
        stripe_webhook_secret=[WEBHOOK_SECRET],
        environment="test",
        catalog_file=catalog,
    )


async def test_allowance_per_paid_invoice_expires_and_rolls_over(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
    database: Database,
    clock: FrozenClock,
) -> None:
    clock.advance(datetime.fromtimestamp(SANDBOX_EPOCH, UTC) - clock.now())  # Stripe's time
    headers = bearer(billing_settings, "allowed")
    subscribe = await api.post(
        "/api/subscriptions/subscribe",
        json={"planId": "premium", "interval": "monthly"},
        headers=headers,
    )
    assert subscribe.status_code == 200, subscribe.text
    subscription_id = stripe_world.complete_checkout(subscribe.json()["sessionId"])
    await deliver_shuffled_twice(api, stripe_world, seed=7)
    assert (await api.get(f"{B}/balance", headers=headers)).json()["credits"] == 300
    spent = await api.post(
        f"{B}/usage",
        json={"credits": 120, "idempotencyKey": "month-1"},
        headers=await backend(database, "allowed"),
    )
    assert spent.json()["balance"] == 180
    period_end = stripe_world.subscriptions[subscription_id]["items"]["data"][0][
        "current_period_end"
    ]
    # Past the renewal and its invoice's finalization (an hour later).
    target = period_end + 2 * 3600
    stripe_world.advance_clock(target - SANDBOX_EPOCH)
    clock.advance(timedelta(seconds=target - SANDBOX_EPOCH))
    await deliver_shuffled_twice(api, stripe_world, seed=8)
    await deliver_all(api, stripe_world, path=WEBHOOK)
    # 180 left expired at the period's end; 100 of them rolled over beside the new 300.
    assert (await api.get(f"{B}/balance", headers=headers)).json()["credits"] == 400
    async with database.read() as session:
        rows = (
            await session.execute(
                select(
                    CreditLot.key, CreditLot.granted, CreditLot.remaining, CreditLot.expires_at
                ).order_by(CreditLot.id)
            )
        ).all()
    first, renewal, rollover = rows
    assert (first.granted, first.remaining) == (300, 0)
    assert (renewal.granted, renewal.remaining, rollover.granted) == (300, 300, 100)
    assert first.expires_at == datetime.fromtimestamp(period_end, UTC)
    assert renewal.expires_at == rollover.expires_at > first.expires_at
    async with database.read() as session:
        assert await verify_ledger(session) == []
