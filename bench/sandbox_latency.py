"""One SDK call's latency against the sandbox, beside the same call against a trivial Starlette
route, in the same run (issue 11's target: the sandbox within 2x).

Both are served by uvicorn on 127.0.0.1 in this process; the same `stripe.StripeClient`
(httpx, no retries) calls `customers.retrieve` on each, alternating, after a warm-up. The
trivial route answers a fixed customer JSON; the sandbox does its whole pipeline (API key,
faults, parameter checks, the lock, render with expand, commit).

    .venv/bin/python bench/sandbox_latency.py [--calls 2000]
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
import json
import statistics
import sys
import time
from pathlib import Path

# bench/http.py would shadow the standard library's `http` for the libraries below.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox_fixtures import ServedApp

from billfold_sandbox.app import create_sandbox_app


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_bench",
        base_addresses={"api": url},
        max_network_retries=0,
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
    )


def _trivial_app(customer: dict[str, object]) -> Starlette:
    body = json.dumps(customer)

    async def retrieve(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/v1/customers/{id}", retrieve)])


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50 * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    sandbox = ServedApp(create_sandbox_app())
    sandbox_client = _client(sandbox.url)
    customer = sandbox_client.v1.customers.create(params={"email": "bench@example.com"})
    trivial = ServedApp(_trivial_app(customer.to_dict()))
    trivial_client = _client(trivial.url)
    try:
        for _ in range(200):  # warm-up: connections, code paths
            sandbox_client.v1.customers.retrieve(customer.id)
            trivial_client.v1.customers.retrieve(customer.id)
        timings: dict[str, list[float]] = {"sandbox": [], "trivial Starlette route": []}
        for _ in range(args.calls):
            for label, client in (
                ("sandbox", sandbox_client),
                ("trivial Starlette route", trivial_client),
            ):
                started = time.perf_counter()
                client.v1.customers.retrieve(customer.id)
                timings[label].append(time.perf_counter() - started)
    finally:
        sandbox.stop()
        trivial.stop()

    print(f"customers.retrieve through the stripe SDK, {args.calls} calls each, alternating")
    figures = {label: _percentiles(samples) for label, samples in timings.items()}
    for label, (p50, p99) in figures.items():
        print(f"  {label:<26} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    (s50, s99), (t50, t99) = figures["sandbox"], figures["trivial Starlette route"]
    print(f"  sandbox / trivial          p50 {s50 / t50:6.2f}x    p99 {s99 / t99:6.2f}x")


if __name__ == "__main__":
    main()
