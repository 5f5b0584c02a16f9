"""A plan with a trial (from a catalog file), end to end: trialing gives premium, and the
subscription turns active when the trial ends and the first invoice is paid."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_fixtures import BillfoldServer
from tests.subscriptions.test_e2e_flow import DAY, P, advance_sandbox, sandbox_call, status_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TRIAL_CATALOG = """
[[plans]]
code = "team"
name = "Team"
description = "Team plan"
features = ["Everyone on one bill"]
trial_days = 7

  [[plans.prices]]
  interval = "monthly"
  currency = "usd"
  amount = 1500
"""


@pytest.fixture
def billfold_catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(TRIAL_CATALOG)
    return path


async def test_trial_then_paid(billfold_server: BillfoldServer) -> None:
    server = billfold_server
    async with server.http() as http:
        plans = (await http.get(f"{P}/plans")).json()["data"]["plans"]
        assert [(p["plan_code"], p["price"]) for p in plans] == [("team_monthly", 15.0)]
        headers = server.bearer("tina")
        response = await http.post(
            f"{P}/create-checkout-session",
            json={"price_id": plans[0]["stripe_price_id"], "interval": "monthly"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        session_id = response.json()["data"]["session_id"]
        sandbox_call(server, "POST", f"/v1/test_helpers/checkout/sessions/{session_id}/complete")
        await server.settle()
        status = await status_of(http, headers)
        assert status["status"] == "trialing" and status["has_premium"] is True
        assert status["plan"] == "team"

        advance_sandbox(server, 8 * DAY)
        await server.settle()
        status = await status_of(http, headers)
        assert status["status"] == "active" and status["has_premium"] is True
