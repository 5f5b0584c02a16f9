"""Stripe sandbox payment throughput over loopback with the official SDK.

Measures, against a sandbox served by uvicorn on 127.0.0.1: PaymentIntents created and
confirmed with `pm_card_visa` per second (sequential, then from concurrent threads), declines
per second, and `pay()` (the engine billing calls, no HTTP) per second.

    .venv/bin/python bench/sandbox_payments.py [--payments 300] [--threads 8]
"""

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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import stripe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox_fixtures import ServedApp

from billfold_sandbox import payments
from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.state import SandboxState


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_bench",
        base_addresses={"api": url},
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
        max_network_retries=0,
    )


def _pay(client: stripe.StripeClient, payment_method: str) -> float:
    started = time.perf_counter()
    try:
        client.v1.payment_intents.create(
            params={
                "amount": 1999,
                "currency": "usd",
                "payment_method": payment_method,
                "confirm": True,
            }
        )
    except stripe.CardError:
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    state = SandboxState()
    served = ServedApp(create_sandbox_app(state))
    client = _client(served.url)
    try:
        _pay(client, "pm_card_visa")  # warm up
        for label, pm in (("succeeded", "pm_card_visa"), ("declined", "pm_card_chargeDeclined")):
            started = time.perf_counter()
            latencies = [_pay(client, pm) for _ in range(args.payments)]
            elapsed = time.perf_counter() - started
            print(
                f"sequential {label:9}: {args.payments / elapsed:7.1f} payments/s, "
                f"median {statistics.median(latencies) * 1000:.1f} ms, "
                f"p95 {sorted(latencies)[int(len(latencies) * 0.95)] * 1000:.1f} ms"
            )
        clients = [_client(served.url) for _ in range(args.threads)]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(
                pool.map(
                    lambda i: _pay(clients[i % args.threads], "pm_card_visa"),
                    range(args.payments),
                )
            )
        elapsed = time.perf_counter() - started
        print(
            f"{args.threads} threads          : {args.payments / elapsed:7.1f} payments/s "
            "(handlers run one at a time under the state lock)"
        )
        customer = client.v1.customers.create(params={"email": "bench@example.com"}).id
        pm = payments.attach_payment_method(state, "pm_card_visa", customer)
        started = time.perf_counter()
        for _ in range(args.payments):
            payments.pay(
                state, customer=customer, amount=1999, currency="usd", payment_method=pm["id"]
            )
        elapsed = time.perf_counter() - started
        print(f"pay() in process     : {args.payments / elapsed:7.1f} payments/s")
        print(f"events recorded      : {len(state.all('event'))}")
    finally:
        state.webhooks.stop()
        served.stop()


if __name__ == "__main__":
    main()
