"""billfold's own routes while its embedded sandbox advances a test clock over many subscriptions
(issue 11: long sandbox work must not stall billfold's requests).

`billfold serve` in sandbox mode (SQLite in a temporary directory) is served by uvicorn in this
process. N customers on one test clock each subscribe to a monthly price; the clock is then
advanced past the renewal (N renewal invoices, finalized and charged) in a thread, while this
thread keeps calling billfold's `/healthz` until the advance returns. Prints how long the
advance took and the latency of the `/healthz` calls made meanwhile (webhook deliveries are
paused: the figures are about the event loop, not billfold applying N x 10 events).

    .venv/bin/python bench/sandbox_embedded_advance.py [--subscriptions 1000]
"""

# ruff: noqa: E402  (the path is fixed before the imports, see below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where bench/http.py would hide the
# standard library's `http` package (imported by httpx, PyJWT, asyncpg...): it goes last.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# bench/http.py would shadow the standard library's `http` for the libraries below.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx
import stripe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox_fixtures import ServedApp

from billfold.app import create_app
from billfold.config import SANDBOX_MOUNT_PATH, SANDBOX_SECRET_KEY, Settings
from billfold.db.engine import Database
from billfold.db.migrate import upgrade_blocking

JAN_1_2026 = 1_767_225_600


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=1000)
    n = parser.parse_args().subscriptions
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/billfold.db"
        upgrade_blocking(url)
        settings = Settings(jwt_secret="b" * 40, data_dir=Path(tmp) / "data", environment="test")
        app = create_app(settings, database=Database(url))
        app.state.sandbox.webhooks.configure(paused=True)
        served = ServedApp(app)
        try:
            client = stripe.StripeClient(
                SANDBOX_SECRET_KEY,
                base_addresses={"api": served.url + SANDBOX_MOUNT_PATH},
                max_network_retries=0,
            )
            price = client.v1.prices.create(
                params={
                    "currency": "usd",
                    "unit_amount": 2000,
                    "recurring": {"interval": "month"},
                    "product_data": {"name": "Bench"},
                }
            )
            clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN_1_2026})
            started = time.perf_counter()
            for i in range(n):
                customer = client.v1.customers.create(
                    params={
                        "email": f"bench{i}@example.com",
                        "test_clock": clock.id,
                        "payment_method": "pm_card_visa",
                        "invoice_settings": {"default_payment_method": "pm_card_visa"},
                    }
                )
                client.v1.subscriptions.create(
                    params={"customer": customer.id, "items": [{"price": price.id}]}
                )
            print(f"{n} subscriptions on one test clock in {time.perf_counter() - started:.1f} s")

            done = threading.Event()
            took: list[float] = []

            def advance() -> None:
                t0 = time.perf_counter()
                client.v1.test_helpers.test_clocks.advance(
                    clock.id, params={"frozen_time": JAN_1_2026 + 32 * 86_400}
                )
                took.append(time.perf_counter() - t0)
                done.set()

            latencies: list[float] = []
            worker = threading.Thread(target=advance)
            with httpx.Client(base_url=served.url, timeout=600) as http:
                http.get("/healthz")
                worker.start()
                while not done.is_set():
                    t0 = time.perf_counter()
                    assert http.get("/healthz").status_code == 200
                    latencies.append(time.perf_counter() - t0)
            worker.join()
            invoices = client.v1.invoices.list(params={"limit": 1}).data
            assert invoices and invoices[0].billing_reason == "subscription_cycle"
            print(f"advance over {n} renewals: {took[0]:.2f} s")
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"/healthz meanwhile: {len(latencies)} calls, "
                f"p50 {statistics.median(latencies) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
                f"max {latencies[-1] * 1000:.2f} ms"
            )
        finally:
            served.stop()


if __name__ == "__main__":
    main()
