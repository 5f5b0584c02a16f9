"""The sandbox keeps its world across restarts, runs inside `billfold serve`, and standalone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import stripe

from billfold.api.sandbox_mount import BILLFOLD_ENDPOINT_ID, WEBHOOK_PATH
from billfold.app import create_app
from billfold.config import (
    SANDBOX_MOUNT_PATH,
    SANDBOX_SECRET_KEY,
    SANDBOX_WEBHOOK_SECRET,
    Settings,
)
from billfold.db.engine import Database
from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState
from tests.sandbox_fixtures import ServedApp, WebhookReceiver, free_port, start_sandbox_cli


def _client(url: str, key: str = "sk_test_persist") -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=0)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    served = ServedApp(create_sandbox_app(state_file=path))
    client = _client(served.url)
    customer = client.v1.customers.create(
        params={"email": "keep@example.com"}, options={"idempotency_key": "restart-1"}
    )
    price = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 700, "product_data": {"name": "Kept"}}
    )
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_800_000_000})
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["customer.created"]}
    )
    served.stop()
    assert path.exists()

    reloaded = SandboxState(path)
    served = ServedApp(create_sandbox_app(reloaded))
    try:
        client = _client(served.url)
        assert client.v1.customers.retrieve(customer.id).email == "keep@example.com"
        assert (
            client.v1.prices.retrieve(price.id, params={"expand": ["product"]}).product.name
            == "Kept"
        )
        assert client.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == 1_800_000_000
        replay = client.v1.customers.create(
            params={"email": "keep@example.com"}, options={"idempotency_key": "restart-1"}
        )
        assert replay.id == customer.id
        assert len(client.v1.events.list().data) == 4
        kept = client.v1.webhook_endpoints.retrieve(endpoint.id)
        assert kept.enabled_events == ["customer.created"]
        assert reloaded.require("webhook_endpoint", endpoint.id)["_secret"] == endpoint.secret
    finally:
        served.stop()


def test_webhook_secret_and_timers_persist(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    state = SandboxState(path)
    endpoint = state.webhooks.add_endpoint("http://127.0.0.1:9/x", secret="whsec_fixed")
    state.schedule(123, "x.kind", "cus_1", clock_id="clock_1", data={"n": 1})
    state.save()
    again = SandboxState(path)
    assert again.require("webhook_endpoint", endpoint["id"])["_secret"] == "whsec_fixed"
    [timer] = again.pending_timers("cus_1")
    assert (timer.at, timer.kind, timer.clock_id, timer.data) == (
        123,
        "x.kind",
        "clock_1",
        {"n": 1},
    )


def test_embedded_in_billfold_serve(
    tmp_path: Path, sqlite_url: str, webhook_receiver: WebhookReceiver
) -> None:
    receiver_base = webhook_receiver.url.rsplit("/", 1)[0]
    settings = Settings(
        jwt_secret="x" * 40,
        data_dir=tmp_path / "data",
        environment="test",
        public_url=receiver_base,  # billfold's webhook route is "served" by the receiver here
    )
    assert settings.sandbox_mode
    app = create_app(settings, database=Database(sqlite_url))
    served = ServedApp(app)
    try:
        client = _client(served.url + SANDBOX_MOUNT_PATH, SANDBOX_SECRET_KEY)
        customer = client.v1.customers.create(params={"email": "embedded@example.com"})
        other = _client(served.url + SANDBOX_MOUNT_PATH, "sk_test_someone_else")
        try:
            other.v1.customers.list()
            raise AssertionError("only the sandbox key is accepted inside billfold")
        except stripe.AuthenticationError:
            pass
        state: SandboxState = app.state.sandbox.state()
        assert state.webhooks.wait_idle(10)
        endpoint = state.require("webhook_endpoint", BILLFOLD_ENDPOINT_ID)
        assert endpoint["url"] == receiver_base + WEBHOOK_PATH
        [delivery] = webhook_receiver.deliveries
        assert delivery.path == WEBHOOK_PATH
        event = stripe.Webhook.construct_event(
            delivery.body, delivery.headers["Stripe-Signature"], SANDBOX_WEBHOOK_SECRET
        )
        assert event.type == "customer.created"
        assert event.data.object.id == customer.id
        deadline = time.monotonic() + 5  # written in the background, within 0.2 s
        while not (settings.data_dir / "sandbox.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (settings.data_dir / "sandbox.json").exists()
        assert settings.stripe_api_base == receiver_base + SANDBOX_MOUNT_PATH
    finally:
        served.stop()

    # Restarting billfold keeps the sandbox's world and its one billfold endpoint. (The state
    # is written in the background within 0.2 s, and at process exit; flush it as exit would.)
    app.state.sandbox.state().save_if_dirty()
    app = create_app(settings, database=Database(sqlite_url))
    state = app.state.sandbox.state()
    assert state.require("customer", customer.id)["email"] == "embedded@example.com"
    assert len(state.all("webhook_endpoint")) == 1


def test_standalone_cli(tmp_path: Path) -> None:
    state_file = tmp_path / "cli.json"
    process, url = start_sandbox_cli(
        state_file,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        customer = _client(url).v1.customers.create(params={"email": "cli@example.com"})
        assert customer.id.startswith("cus_")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert customer.id in state_file.read_text()


def test_deliveries_owed_at_shutdown_resume_after_restart(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    path = tmp_path / "sandbox.json"
    state = SandboxState(path)
    endpoint = state.webhooks.add_endpoint(webhook_receiver.url)
    state.webhooks.configure(paused=True)  # the process "stops" before delivering
    first = state.emit("customer.created", {"id": "cus_a", "object": "customer"})
    second = state.emit("customer.updated", {"id": "cus_a", "object": "customer"})
    state.webhooks.stop()
    state.save()
    assert webhook_receiver.deliveries == []

    restarted = SandboxState(path)
    assert restarted.webhooks.wait_idle(10)
    assert [e["id"] for e in webhook_receiver.events()] == [first["id"], second["id"]]
    delivered = webhook_receiver.deliveries[0]
    stripe.Webhook.construct_event(
        delivered.body, delivered.headers["Stripe-Signature"], endpoint["_secret"]
    )
    assert restarted.require("event", first["id"])["pending_webhooks"] == 0
    restarted.webhooks.stop()
    restarted.save()
    # Nothing is owed any more: a second restart delivers nothing again.
    again = SandboxState(path)
    assert again.webhooks.wait_idle(5)
    assert len(webhook_receiver.deliveries) == 2


def test_billfold_serve_delivers_sandbox_events_to_its_own_webhook_route(tmp_path: Path) -> None:
    """`billfold serve` without a Stripe key: the mounted sandbox answers the SDK and every
    event reaches billfold's own webhook route, which accepts the signature (2xx)."""
    port = free_port()
    billfold = Path(sys.executable).with_name("billfold")
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "BILLFOLD_DATA_DIR": str(tmp_path / "data"),
        "BILLFOLD_JWT_SECRET": "s" * 40,
    }
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "BILLFOLD_DATABASE_URL"):
        env.pop(name, None)
    process = subprocess.Popen(
        [str(billfold), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}{SANDBOX_MOUNT_PATH}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/v1/customers", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("billfold serve did not start") from None
                time.sleep(0.2)
        client = _client(base, SANDBOX_SECRET_KEY)
        customer = client.v1.customers.create(params={"email": "serve@example.com"})
        auth = {"Authorization": f"Bearer {SANDBOX_SECRET_KEY}"}
        waited = httpx.post(
            base + "/v1/test_helpers/sandbox/webhooks/wait", headers=auth, timeout=30
        ).json()
        assert waited["idle"] is True
        attempts = httpx.get(
            base + "/v1/test_helpers/sandbox/webhooks/deliveries", headers=auth
        ).json()["data"]
        mine = [a for a in attempts if a["type"] == "customer.created"]
        assert mine and all(a["endpoint"] == BILLFOLD_ENDPOINT_ID for a in mine)
        assert mine[-1]["succeeded"] is True, mine
        event = client.v1.events.list(params={"type": "customer.created"}).data[0]
        assert event.data.object.id == customer.id
        assert event.pending_webhooks == 0
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
