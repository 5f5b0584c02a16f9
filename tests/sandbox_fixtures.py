"""Fixtures for tests that drive the Stripe sandbox with the real `stripe` SDK over loopback.

- `sandbox_server`: the sandbox app served by uvicorn in a background thread on a free
  127.0.0.1 port (one per test session, its state reset before each test and its sandbox-wide
  clock set to `SANDBOX_EPOCH`, a fixed instant). It has `.url`,
  `.state`, `.api_key`, `.wait_for_webhooks()` (and `await .wait_for_webhooks_async()`),
  `.advance_clock(clock_id, to)`.
- `stripe_client`: `stripe.StripeClient` pointed at it (sync calls, and `*_async` calls use
  httpx); `make_stripe_client(**options)` for other options (retries, timeouts).
- `webhook_receiver`: a tiny HTTP server collecting deliveries (`.url`, `.deliveries`,
  `.events()`, `.fail_next(n)`, `.register(sandbox_server, ...)`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import uvicorn

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState

SANDBOX_API_KEY = "sk_test_sandbox_tests"
# Tests never start from the wall clock: the sandbox-wide clock of `sandbox_server` starts at
# 2026-01-15T12:00:00Z (in a 31-day month, on purpose) whatever the date, then runs on.
SANDBOX_EPOCH = 1_768_478_400


def start_sandbox_clock_at(state: SandboxState, at: int = SANDBOX_EPOCH) -> None:
    """Set the sandbox-wide clock (objects on no test clock) to `at`; it runs on from there."""
    with state.lock:
        state.clock_offset = at - int(time.time())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sandbox_cli(state_file: Path, **popen: Any) -> tuple[subprocess.Popen[bytes], str]:
    """`billfold sandbox serve --state-file ...` on a free port, once it answers: (process, url)."""
    port = free_port()
    billfold = Path(sys.executable).with_name("billfold")
    process = subprocess.Popen(
        [str(billfold), "sandbox", "serve", "--port", str(port), "--state-file", str(state_file)],
        **popen,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/v1/customers", timeout=1)
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError("billfold sandbox serve did not start") from None
            time.sleep(0.1)


class ServedApp:
    """An ASGI app served by uvicorn in a daemon thread on 127.0.0.1 and a free port."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def served_billfold(data_dir: Path, database_url: str) -> Iterator[tuple[str, stripe.StripeClient]]:
    """`billfold serve` in sandbox mode on a free loopback port: yields the mounted sandbox's
    base URL (`http://127.0.0.1:<port>/stripe-sandbox`) and an SDK client for it."""
    from billfold.app import create_app
    from billfold.config import SANDBOX_MOUNT_PATH, SANDBOX_SECRET_KEY, Settings
    from billfold.db.engine import Database

    settings = Settings(jwt_secret="x" * 40, data_dir=data_dir, environment="test")
    assert settings.sandbox_mode
    served = ServedApp(create_app(settings, database=Database(database_url)))
    try:
        base = served.url + SANDBOX_MOUNT_PATH
        yield (
            base,
            stripe.StripeClient(
                SANDBOX_SECRET_KEY, base_addresses={"api": base}, max_network_retries=0
            ),
        )
    finally:
        served.stop()


@dataclass
class SandboxServer:
    """A running sandbox: its base URL and its state (for helpers that skip HTTP)."""

    url: str
    state: SandboxState
    served: ServedApp
    api_key: str = SANDBOX_API_KEY

    def wait_for_webhooks(self, timeout: float = 15.0) -> None:
        """Block until every queued webhook delivery is done (fails the test on timeout)."""
        if not self.state.webhooks.wait_idle(timeout):
            raise AssertionError(
                f"webhook deliveries still pending after {timeout}s: "
                f"{self.state.webhooks.pending()}"
            )

    async def wait_for_webhooks_async(self, seconds: float = 15.0) -> None:
        """The same, without blocking the test's event loop (when it serves the receiver)."""
        await asyncio.to_thread(self.wait_for_webhooks, seconds)

    def advance_clock(self, clock_id: str, to_ts: int) -> None:
        """Advance a test clock in-process (same effect as the advance API call)."""
        from billfold_sandbox.resources.test_clocks import advance_test_clock

        with self.state.lock:
            clock = self.state.require("test_helpers.test_clock", clock_id)
            advance_test_clock(self.state, clock, to_ts)

    def client(self, **options: Any) -> stripe.StripeClient:
        """A StripeClient on this sandbox (no retries, httpx for sync and async calls)."""
        options.setdefault("max_network_retries", 0)
        options.setdefault("http_client", stripe.HTTPXClient(allow_sync_methods=True))
        return stripe.StripeClient(
            self.api_key,
            base_addresses={"api": self.url, "files": self.url, "connect": self.url},
            **options,
        )


@pytest.fixture(scope="session")
def _sandbox_session() -> Iterator[SandboxServer]:
    state = SandboxState()
    served = ServedApp(create_sandbox_app(state))
    server = SandboxServer(url=served.url, state=state, served=served)
    try:
        yield server
    finally:
        state.webhooks.stop()
        served.stop()


@pytest.fixture
def sandbox_server(_sandbox_session: SandboxServer) -> Iterator[SandboxServer]:
    """The running sandbox, emptied before the test, its clock at `SANDBOX_EPOCH`."""
    _sandbox_session.state.reset()
    start_sandbox_clock_at(_sandbox_session.state)
    yield _sandbox_session
    _sandbox_session.state.webhooks.stop()


@pytest.fixture
def make_stripe_client(sandbox_server: SandboxServer) -> Callable[..., stripe.StripeClient]:
    return sandbox_server.client


@pytest.fixture
def stripe_client(sandbox_server: SandboxServer) -> stripe.StripeClient:
    """`stripe.StripeClient` on the sandbox (no automatic retries, so faults show)."""
    return sandbox_server.client()


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: str

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class WebhookReceiver:
    """Collects webhook deliveries; answers 200, or 500 for the next `fail_next(n)` calls."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    failures_left: int = 0
    status_for: Callable[[Delivery], int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, n: int) -> None:
        with self.lock:
            self.failures_left = n

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d.event for d in self.deliveries]

    def event_types(self) -> list[str]:
        return [e["type"] for e in self.events()]

    def register(
        self, sandbox: SandboxServer, enabled_events: list[str] | None = None
    ) -> tuple[str, str]:
        """Create a webhook endpoint for this receiver; returns (endpoint id, secret)."""
        endpoint = sandbox.state.webhooks.add_endpoint(
            self.url, enabled_events=enabled_events or ["*"]
        )
        return str(endpoint["id"]), str(endpoint["_secret"])


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            delivery = Delivery(
                self.path, dict(self.headers.items()), self.rfile.read(length).decode()
            )
            with receiver.lock:
                receiver.deliveries.append(delivery)
                status = 200
                if receiver.failures_left > 0:
                    receiver.failures_left -= 1
                    status = 500
                elif receiver.status_for is not None:
                    status = receiver.status_for(delivery)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = httpd.server_address[1]
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{port}/webhook")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        httpd.shutdown()
        httpd.server_close()
