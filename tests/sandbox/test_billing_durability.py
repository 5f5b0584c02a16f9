"""Billing survives what the sandbox promises: restarts (state file), idempotent retries, and
the async SDK."""

from __future__ import annotations

from pathlib import Path

import httpx
import stripe

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState
from tests.sandbox.billing_support import (
    DAY,
    HOUR,
    JAN_1_2026,
    advance,
    customer_on_clock,
    make_catalog,
    subscribed,
)
from tests.sandbox_fixtures import ServedApp


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_billing_restart", base_addresses={"api": url}, max_network_retries=0
    )


def test_a_subscription_renews_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    served = ServedApp(create_sandbox_app(state_file=path))
    try:
        client = _client(served.url)
        _, who, sub = subscribed(client, trial_period_days=7)
        session = client.v1.billing_portal.sessions.create(
            params={"customer": who.customer, "return_url": "https://app.example/"}
        )
    finally:
        served.stop()

    served = ServedApp(create_sandbox_app(SandboxState(path)))
    try:
        client = _client(served.url)
        advance(client, who.clock, JAN_1_2026 + 7 * DAY + 2 * HOUR)
        sub = client.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "active"
        invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert (invoice.billing_reason, invoice.status, invoice.total) == (
            "subscription_cycle",
            "paid",
            2000,
        )
        # The portal page still opens (the port changed with the restart).
        assert (
            httpx.get(session.url.replace(session.url.split("/p/")[0], served.url)).status_code
            == 200
        )
    finally:
        served.stop()


def test_idempotent_retries_create_one_subscription(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)
    params = {"customer": who.customer, "items": [{"price": catalog.monthly}]}

    first = client.v1.subscriptions.create(params=params, options={"idempotency_key": "sub-1"})  # type: ignore[arg-type]
    again = client.v1.subscriptions.create(params=params, options={"idempotency_key": "sub-1"})  # type: ignore[arg-type]

    assert again.id == first.id
    assert len(client.v1.subscriptions.list(params={"customer": who.customer}).data) == 1
    assert len(client.v1.invoices.list(params={"customer": who.customer}).data) == 1
    session_params = {
        "mode": "subscription",
        "line_items": [{"price": catalog.monthly, "quantity": 1}],
        "success_url": "https://app.example/ok",
    }
    one = client.v1.checkout.sessions.create(
        params=session_params, options={"idempotency_key": "cs-1"}
    )  # type: ignore[arg-type]
    two = client.v1.checkout.sessions.create(
        params=session_params, options={"idempotency_key": "cs-1"}
    )  # type: ignore[arg-type]
    assert one.id == two.id


async def test_async_client_drives_a_subscription(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    catalog = make_catalog(client)
    who = customer_on_clock(client)

    sub = await client.v1.subscriptions.create_async(
        params={"customer": who.customer, "items": [{"price": catalog.yearly}]}
    )
    sub = await client.v1.subscriptions.update_async(sub.id, params={"cancel_at_period_end": True})
    listed = await client.v1.invoices.list_async(params={"subscription": sub.id})

    assert (sub.status, sub.cancel_at_period_end) == ("active", True)
    assert [i.total for i in listed.data] == [20000]
    canceled = await client.v1.subscriptions.cancel_async(sub.id)
    assert canceled.status == "canceled"
