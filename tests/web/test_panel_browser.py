"""The panel in a real browser (Playwright with Debian's Chromium) against billfold served by
uvicorn and the Stripe sandbox (`billfold_server`), on both databases: a customer signs in by
link, subscribes through the sandbox's hosted Checkout, cancels at period end, reactivates,
cancels now, reads the activity and signs out; an operator signs in by link, finds the account,
grants promotional credits and takes them back, retries a failed webhook event and a dead
job, and runs the checks. Every page is checked with axe-core (no serious or critical
violation) and photographed at desktop and phone widths into /tmp/panel-shots/. Skipped
without Chromium; with BILLFOLD_REQUIRE_BROWSER=1 (CI), failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from billfold.auth.apikeys import create_api_key
from billfold.jobs.models import Job
from billfold.stripe.inbox import job_key
from billfold.stripe.models import WebhookEvent
from tests.e2e_fixtures import BillfoldServer
from tests.sandbox.browser_env import CHROMIUM, require_browser

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "axe" / "axe.min.js"
SHOTS = Path("/tmp/panel-shots")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


async def check_page(page: Any, name: str, database: str) -> None:
    """axe-core on the page as it is (no serious or critical violation), then its screenshots at
    desktop and phone widths."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {json.dumps(bad, indent=1)}"
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        await page.screenshot(path=str(SHOTS / f"{database}-{name}-{label}.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)


async def _link(server: BillfoldServer, headers: dict[str, str], **body: Any) -> str:
    async with server.http() as http:
        response = await http.post("/api/v1/panel/sign-in-links", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["url"])


@pytest.fixture
def database_name(request: pytest.FixtureRequest) -> str:
    return "postgres" if "postgres" in request.node.name else "sqlite"


async def test_a_customer_and_an_operator_in_the_browser(
    billfold_server: BillfoldServer, database_name: str
) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before the browser)

    server = billfold_server
    # Checkout and the portal send the customer back to the panel.
    server.settings.public_url = server.url
    link = await _link(server, server.bearer("dana"))

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # bypass_csp: the test injects axe-core, which the panel's CSP would refuse.
            context = await browser.new_context(bypass_csp=True, viewport=DESKTOP, locale="en-US")
            page = await context.new_page()

            # Sign in by link: the overview, with no subscription yet.
            await page.goto(link)
            await page.wait_for_url(f"{server.url}/")
            assert "You have no subscription yet." in await page.inner_text("main")
            await check_page(page, "overview-empty", database_name)

            # By keyboard alone: the skip link first, then the navigation to the subscription.
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
            for _ in range(10):
                await page.keyboard.press("Tab")
                if await page.evaluate("document.activeElement.textContent") == "Subscription":
                    break
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/subscription")
            await check_page(page, "plans", database_name)

            # Subscribe through the sandbox's hosted Checkout; back on the panel.
            await page.get_by_role("button", name="Subscribe to Premium, monthly, USD").click()
            await page.wait_for_url("**/checkout/**")
            await page.check("[data-testid=method-4242424242424242]")
            await page.click("[data-testid=submit]")
            await page.wait_for_url("**/subscription?done=checkout-success")
            await server.settle()
            await page.goto(f"{server.url}/")
            main = await page.inner_text("main")
            assert "Premium" in main and "Active" in main and "$6.99" in main
            await check_page(page, "overview-active", database_name)

            # Cancel at period end: the overview asks for attention; reactivate; cancel now.
            await page.goto(f"{server.url}/subscription")
            await check_page(page, "subscription-active", database_name)
            await page.get_by_role("button", name="Cancel at the end of the period").click()
            await page.wait_for_url("**done=cancel-scheduled")
            assert "will end with the current period" in await page.inner_text("[role=status]")
            await server.settle()
            await page.goto(f"{server.url}/")
            assert "Needs your attention" in await page.inner_text("main")
            await check_page(page, "overview-attention", database_name)
            await page.goto(f"{server.url}/subscription")
            await page.get_by_role("button", name="Reactivate").click()
            await page.wait_for_url("**done=reactivated")
            await page.get_by_role("link", name="Cancel now…").click()
            await page.wait_for_url("**/subscription/cancel-now")
            await check_page(page, "cancel-now", database_name)
            await page.get_by_role("button", name="Yes, cancel now").click()
            await page.wait_for_url("**done=canceled")
            await server.settle()
            await page.reload()
            assert "Choose a plan" in await page.inner_text("main")

            # The activity: the audit trail of all of it.
            await page.get_by_role("link", name="Activity").click()
            await page.wait_for_url("**/activity")
            trail = await page.inner_text("main")
            assert "checkout.created" in trail and "panel.signed_in" in trail
            await check_page(page, "activity", database_name)

            await page.get_by_role("button", name="Sign out").click()
            assert "You are signed out." in await page.inner_text("main")
            await page.goto(f"{server.url}/")
            assert "Sign in" in await page.inner_text("h1")
            await check_page(page, "signed-out", database_name)

            # The operator: a link asked for with an API key.
            async with server.database.transaction() as session:
                key = await create_api_key(session, "operator")
                # A failed event to retry: one already applied, marked as given up.
                event = (
                    await session.execute(
                        select(WebhookEvent)
                        .where(WebhookEvent.type == "customer.subscription.updated")
                        .limit(1)
                    )
                ).scalar_one()
                event_id = event.id
                event.status = "dead"
                event.last_error = "ConnectionError: the database went away"
                await session.execute(
                    update(Job)
                    .where(Job.key == job_key(event_id))
                    .values(status="dead", last_error="ConnectionError: the database went away")
                )
                # A dead job to retry: another event's, already done, marked as given up.
                other = (
                    await session.execute(
                        select(Job)
                        .where(Job.key.like("stripe-event:%"), Job.key != job_key(event_id))
                        .order_by(Job.id)
                        .limit(1)
                    )
                ).scalar_one()
                dead_job = other.id
                other.status = "dead"
                other.last_error = "TimeoutError: Stripe did not answer"
            operator_link = await _link(server, {"X-API-Key": key.secret}, operator=True)
            await page.goto(operator_link)
            await page.wait_for_url("**/operator")
            await page.fill("#q", "dana")
            await page.get_by_role("button", name="Find").click()
            await page.get_by_role("link", name="dana").click()
            await page.wait_for_url("**/operator/accounts/**")
            assert "Canceled" in await page.inner_text("main")
            await check_page(page, "operator-account", database_name)

            # Grant promotional credits with a reason, then take back what is left of them.
            await page.fill("#grant-credits", "25")
            await page.fill("#grant-reason", "sorry for the outage")
            await page.get_by_role("button", name="Grant credits").click()
            await page.wait_for_url("**/operator/accounts/**?done=Granted+25+credits")
            assert "Granted 25 credits" in await page.inner_text("[role=status]")
            assert "Balance: 25 credits" in await page.inner_text("main")
            assert "Promotion" in await page.inner_text("section[aria-labelledby=lots-h]")
            await check_page(page, "operator-account-granted", database_name)
            await page.get_by_label("Reason", exact=True).last.fill("granted twice")
            await page.get_by_role("button", name="Revoke unspent credits of grant").click()
            await page.wait_for_url("**?done=Took+back+25+credits")
            assert "Balance: 0 credits" in await page.inner_text("main")

            await page.get_by_role("link", name="Webhook events").click()
            assert "the database went away" in await page.inner_text("main")
            await check_page(page, "operator-events", database_name)
            await page.get_by_role("button", name=f"Retry event {event_id}").click()
            await page.wait_for_url("**/operator/events?done=**")
            assert f"Event {event_id} applied" in await page.inner_text("[role=status]")
            assert "No failed webhook events." in await page.inner_text("main")

            await page.get_by_role("link", name="Jobs").click()
            assert "Stripe did not answer" in await page.inner_text("main")
            await check_page(page, "operator-jobs", database_name)
            await page.get_by_role("button", name=f"Retry job {dead_job}").click()
            await page.wait_for_url("**/operator/jobs?done=**")
            assert f"Job {dead_job} queued again" in await page.inner_text("[role=status]")
            assert await page.get_by_role("button", name=f"Retry job {dead_job}").count() == 0
            await page.get_by_role("link", name="Checks").click()
            await page.get_by_role("button", name="Run the checks").click()
            main = await page.inner_text("main")
            assert "The ledger is consistent." in main and "hash chain is intact" in main
            await check_page(page, "operator-checks", database_name)
        finally:
            await browser.close()
