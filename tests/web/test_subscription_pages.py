"""The subscription's tasks from the panel, in process, on billfold's real Stripe adapter and the
sandbox: subscribe through Checkout, change plan, cancel at period end, reactivate, cancel now,
open the portal; each through the same services as the API, audited as the panel's actor."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from billfold.audit.models import AuditEntry
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.customers.models import AccountKind
from billfold.customers.service import find_account
from billfold.db.engine import Database
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import deliver
from tests.web.conftest import csrf_of, sign_in


async def _deliver_all(api: httpx.AsyncClient, world: SandboxStripe) -> None:
    for event in world.events:
        assert (await deliver(api, event)).status_code == 200


async def _post(api: httpx.AsyncClient, path: str, **data: str) -> httpx.Response:
    token = csrf_of((await api.get("/subscription")).text)
    return await api.post(path, data={**data, "csrf_token": token})


async def test_the_subscription_tasks(
    api: httpx.AsyncClient,
    billing_settings: Settings,
    clock: FrozenClock,
    synced: dict[str, str],
    stripe_world: SandboxStripe,
    database: Database,
) -> None:
    await sign_in(api, billing_settings, clock, "user:carol")
    page = await api.get("/subscription")
    assert "Choose a plan" in page.text and "$6.99" in page.text and "€6.49" in page.text

    started = await _post(
        api, "/subscription/checkout", price=synced["billfold_premium_monthly_usd"]
    )
    assert started.status_code == 303, started.text
    assert started.headers["location"].startswith(stripe_world.server.url)
    session: dict[str, Any] = stripe_world.server.state.all("checkout.session")[-1]
    assert session["url"] == started.headers["location"]
    stripe_world.complete_checkout(session["id"])
    await _deliver_all(api, stripe_world)

    overview = await api.get("/")
    assert "Premium" in overview.text and "Active" in overview.text
    assert "Next renewal" in overview.text and "$6.99" in overview.text

    changed = await _post(api, "/subscription/change", price=synced["billfold_premium_yearly_usd"])
    assert changed.status_code == 303 and changed.headers["location"].endswith("done=changed")
    assert "$60.00" in (await api.get("/subscription")).text

    scheduled = await _post(api, "/subscription/cancel", when="period_end")
    assert scheduled.headers["location"].endswith("done=cancel-scheduled")
    overview = await api.get("/")
    assert "Ends on" in overview.text and "Needs your attention" in overview.text
    assert "Reactivate" in (await api.get("/subscription")).text

    reactivated = await _post(api, "/subscription/reactivate")
    assert reactivated.headers["location"].endswith("done=reactivated")
    assert "Needs your attention" not in (await api.get("/")).text
    # Reactivating what is not set to cancel is the service's 400, as a page.
    again = await _post(api, "/subscription/reactivate")
    assert again.status_code == 400 and "not set to cancel" in again.text

    portal = await _post(api, "/subscription/portal")
    assert portal.status_code == 303
    async with database.read() as reader:
        carol = await find_account(reader, AccountKind.USER, "carol")
    assert carol is not None
    assert stripe_world.portal_customer(portal.headers["location"]) == carol.stripe_customer_id

    # Cancel now asks first (a page, no JavaScript needed); a form without the confirmation
    # leads to it and cancels nothing.
    assert 'href="/subscription/cancel-now"' in (await api.get("/subscription")).text
    asked = await _post(api, "/subscription/cancel", when="now")
    assert asked.status_code == 303 and asked.headers["location"] == "/subscription/cancel-now"
    step = await api.get("/subscription/cancel-now")
    assert step.status_code == 200 and "Yes, cancel now" in step.text
    assert "Keep my subscription" in step.text and "Premium" in step.text
    assert "Change plan" in (await api.get("/subscription")).text  # still live
    now = await api.post(
        "/subscription/cancel",
        data={"when": "now", "confirm": "yes", "csrf_token": csrf_of(step.text)},
    )
    assert now.headers["location"].endswith("done=canceled")
    await _deliver_all(api, stripe_world)
    page = await api.get("/subscription")
    assert "Choose a plan" in page.text and "canceled" in page.text
    # Nothing left to cancel: the confirmation step sends back to the subscription.
    gone = await api.get("/subscription/cancel-now")
    assert gone.status_code == 303 and gone.headers["location"] == "/subscription"

    async with database.read() as reader:
        actions = (
            await reader.execute(
                select(AuditEntry.action, AuditEntry.actor).where(
                    AuditEntry.account_id == carol.id, AuditEntry.actor.like("panel:%")
                )
            )
        ).all()
    assert {action for action, _actor in actions} >= {"panel.signed_in", "checkout.created"}
