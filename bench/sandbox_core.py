"""Stripe sandbox core throughput over loopback with the official SDK.

Measures, against a sandbox served by uvicorn on 127.0.0.1: customers created per second (in
memory, then with a state file, sequential and from threads), retrieves and list pages per
second, a metadata search over N customers, idempotent replays per second, and webhook
deliveries per second to a local receiver (signed, in order).

    .venv/bin/python bench/sandbox_core.py [--customers 1000] [--threads 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where bench/http.py would hide the
# standard library's `http` package (imported by httpx, PyJWT, asyncpg...): it goes last.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import stripe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox_fixtures import ServedApp

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_bench",
        base_addresses={"api": url},
        max_network_retries=0,
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
    )


def _rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<52} {count / seconds:>9.0f}/s  ({count} in {seconds:.2f} s)")


def _creates(client: stripe.StripeClient, n: int, threads: int) -> float:
    def one(i: int) -> None:
        client.v1.customers.create(params={"email": f"b{i}@example.com", "metadata": {"i": str(i)}})

    started = time.perf_counter()
    if threads <= 1:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(n)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    n = args.customers

    with tempfile.TemporaryDirectory() as tmp:
        for label, state in (
            ("in memory", SandboxState()),
            ("state file", SandboxState(Path(tmp) / "sandbox.json")),
        ):
            served = ServedApp(create_sandbox_app(state))
            client = _client(served.url)
            _rate(f"customers.create, sequential ({label})", n, _creates(client, n, 1))
            _rate(
                f"customers.create, {args.threads} threads ({label})",
                n,
                _creates(client, n, args.threads),
            )
            served.stop()
            state.save_if_dirty()
        size = (Path(tmp) / "sandbox.json").stat().st_size
        label = f"state file after {2 * n} customers (+ events)"
        print(f"{label:<52} {size / 1e6:>9.1f} MB")
        started = time.perf_counter()
        reloaded = SandboxState(Path(tmp) / "sandbox.json")
        print(f"{'state file load':<52} {time.perf_counter() - started:>9.2f} s")
        assert len(reloaded.all("customer")) == 2 * n

    state = SandboxState()
    served = ServedApp(create_sandbox_app(state))
    client = _client(served.url)
    _creates(client, n, args.threads)
    ids = [c["id"] for c in state.all("customer")]
    started = time.perf_counter()
    for cid in ids[:500]:
        client.v1.customers.retrieve(cid)
    _rate("customers.retrieve", min(500, n), time.perf_counter() - started)
    started = time.perf_counter()
    pages = 0
    for _ in client.v1.customers.list(params={"limit": 100}).auto_paging_iter():
        pages += 1
    _rate("customers listed through pages of 100 (objects)", pages, time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(50):
        client.v1.customers.search(params={"query": f"metadata['i']:'{i}'"})
    _rate(f"customers.search over {n} customers", 50, time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(500):
        client.v1.customers.create(
            params={"email": "same@example.com"}, options={"idempotency_key": "bench-replay"}
        )
    _rate("idempotent replays", 500, time.perf_counter() - started)

    # Webhook deliveries to a local receiver.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.webhooks.add_endpoint(f"http://127.0.0.1:{httpd.server_address[1]}/hook")
    started = time.perf_counter()
    for i in range(n):
        client.v1.products.create(params={"name": f"p{i}"})
    state.webhooks.wait_idle(120)
    _rate(
        "events delivered as signed webhooks (create + deliver)",
        len(received),
        time.perf_counter() - started,
    )
    httpd.shutdown()
    served.stop()


if __name__ == "__main__":
    main()
