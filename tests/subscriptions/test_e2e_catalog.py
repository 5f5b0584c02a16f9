"""The catalog against the Stripe sandbox through the real SDK."""

from __future__ import annotations

import pytest

from billfold.catalog.service import load_catalog, sync_catalog
from billfold.clock import SystemClock
from tests.e2e_fixtures import BillfoldServer, sandbox_gateway

# The SDK's httpx client posts form bodies with `data=`, which httpx deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def test_plans_show_the_sandbox_prices_and_sync_is_idempotent(
    billfold_server: BillfoldServer,
) -> None:
    server = billfold_server
    async with server.http() as http:
        response = await http.get("/api/v1/payments/plans")
        body = response.json()
    assert body["success"] is True
    ids = [p["stripe_price_id"] for p in body["data"]["plans"]]
    assert ids == [
        server.prices["billfold_premium_monthly_usd"],
        server.prices["billfold_premium_yearly_usd"],
    ]
    state = server.sandbox.state
    with state.lock:
        stored = {p["id"]: p for p in state.all("price")}
        products = [p["id"] for p in state.all("product")]
    # The plan's product, and one per credit package of the catalog (billfold_credits_*).
    assert [p for p in products if not p.startswith("billfold_credits_")] == ["billfold_premium"]
    monthly = stored[ids[0]]
    assert monthly["unit_amount"] == 699 and monthly["recurring"]["interval"] == "month"
    assert monthly["lookup_key"] == "billfold_premium_monthly_usd"
    assert len([p for p in stored.values() if p["product"] == "billfold_premium"]) == 4

    async with server.database.transaction() as session:
        catalog = await load_catalog(session, server.settings)
        report = await sync_catalog(
            session, sandbox_gateway(server.settings, server.sandbox), catalog, clock=SystemClock()
        )
    assert report.prices_created == 0 and report.prices_unchanged == 4
    assert report.products_updated == 0 and report.products_unchanged == 1
    assert not report.changed and report.summary().startswith("nothing changed")
    with state.lock:
        assert len([p for p in state.all("price") if p["product"] == "billfold_premium"]) == 4
