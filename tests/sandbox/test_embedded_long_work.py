"""Embedded in `billfold serve`, the sandbox's long work (a test clock advance) runs in a worker
thread under the sandbox's own lock, not on the event loop: billfold's routes keep answering
while it runs, and the sandbox's own calls wait for it, in order."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import stripe

from billfold.app import create_app
from billfold.auth.tokens import issue_token
from billfold.config import SANDBOX_MOUNT_PATH, SANDBOX_SECRET_KEY, Settings
from billfold.db.engine import Database
from billfold_sandbox.state import SandboxState
from tests.sandbox.billing_support import DAY, HOUR, customer_on_clock, make_catalog
from tests.sandbox_fixtures import SandboxServer, ServedApp

WAIT = 60.0  # generous: a loaded machine; the test never measures time


class AdvanceGate:
    """A time hook that holds the first stretch of one clock's advance until released."""

    def __init__(self) -> None:
        self.clock_id: str | None = None
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, state: SandboxState, clock_id: str | None, from_ts: int, to: int) -> None:
        if clock_id is not None and clock_id == self.clock_id and not self.started.is_set():
            self.started.set()
            assert self.release.wait(WAIT), "the test never released the advance"


def test_a_long_advance_does_not_stall_billfolds_routes(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(jwt_secret="x" * 40, data_dir=tmp_path / "data", environment="test")
    assert settings.sandbox_mode
    app = create_app(settings, database=Database(sqlite_url))
    state: SandboxState = app.state.sandbox.state()
    gate = AdvanceGate()
    state.register_time_hook(gate)
    served = ServedApp(app)
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        client = stripe.StripeClient(
            SANDBOX_SECRET_KEY,
            base_addresses={"api": served.url + SANDBOX_MOUNT_PATH},
            max_network_retries=0,
        )
        catalog = make_catalog(client)
        who = customer_on_clock(client, email="long@example.com")
        sub = client.v1.subscriptions.create(
            params={"customer": who.customer, "items": [{"price": catalog.monthly}]}
        )
        gate.clock_id = who.clock
        renewal = int(sub.items.data[0].current_period_end) + 2 * HOUR

        advancing = pool.submit(
            client.v1.test_helpers.test_clocks.advance,
            who.clock,
            params={"frozen_time": renewal},
        )
        assert gate.started.wait(WAIT), "the advance never reached the clock's first stretch"
        # The advance now holds the sandbox's lock; a sandbox call waits behind it ...
        reading: Any = pool.submit(client.v1.test_helpers.test_clocks.retrieve, who.clock)

        # ... while billfold's own routes answer, public and authenticated.
        token = issue_token(settings, "alice")
        with httpx.Client(base_url=served.url, timeout=WAIT) as http:
            health = http.get("/healthz")
            status = http.get(
                "/api/v1/payments/subscription/status",
                headers={"Authorization": f"Bearer {token}"},
            )
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok"
        assert status.status_code == 200, status.text
        assert status.json()["data"]["has_premium"] is False
        assert not gate.release.is_set() and not advancing.done()

        gate.release.set()
        assert advancing.result(WAIT).status == "advancing"  # Stripe answers before it is done
        # The read queued during the advance ran after it: it sees the clock ready.
        after = reading.result(WAIT)
        assert after.status == "ready"
        assert after.frozen_time == renewal
        invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
        assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
        assert invoices[0].status == "paid"
        assert renewal - invoices[0].created < DAY
    finally:
        gate.release.set()
        pool.shutdown(wait=True)
        served.stop()


def test_concurrent_retries_with_one_idempotency_key_make_one_object(
    sandbox_server: SandboxServer,
) -> None:
    """Handlers run in worker threads now: the idempotency check, the handler and the record
    of its response are still one step under the lock, so retries racing each other (sent
    while the sandbox is busy) create one customer and the others replay its response."""
    headers = {
        "Authorization": f"Bearer {sandbox_server.api_key}",
        "Idempotency-Key": "race-1",
    }

    def create() -> httpx.Response:
        return httpx.post(
            sandbox_server.url + "/v1/customers",
            data={"email": "race@example.com"},
            headers=headers,
            timeout=WAIT,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        with sandbox_server.state.lock:  # busy: the calls queue behind this
            futures = [pool.submit(create) for _ in range(4)]
        answers = [f.result(WAIT) for f in futures]
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.json()["id"] for a in answers}) == 1
    assert sorted(a.headers.get("Idempotent-Replayed", "false") for a in answers) == [
        "false",
        "true",
        "true",
        "true",
    ]
    assert len(sandbox_server.state.all("customer")) == 1
