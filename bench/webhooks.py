"""Webhook inbox throughput: signed Stripe events applied per second, with duplicates and
shuffled order, through billfold's real HTTP route, and a check of the end state.

A fake Stripe (billfold's gateway interface, in memory) plays out a history for many
subscriptions: checkout, renewals (some failing), cancel at period end, reactivation, plan
changes, immediate cancellations. Every event is then signed and POSTed to
`/api/v1/payments/webhook` by concurrent senders, 20% of them twice, in shuffled order. Applying
an event re-reads the subscription from the gateway, as it would from Stripe. The figure is
deliveries per second from the first POST until the inbox has nothing left to apply; the run
fails unless billfold's subscriptions equal the fake Stripe's and every event was applied once.

    .venv/bin/python bench/webhooks.py [--subscriptions 300] [--senders 16] [--postgres URL]
                                       [--sqlite] [--stripe-latency-ms 100]

PostgreSQL: a scratch database is created on the server of --postgres (default: the local one,
database `test`) and dropped at the end; --sqlite runs on a temporary SQLite file instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where bench/http.py would hide the
# standard library's `http` package (imported by httpx, PyJWT, asyncpg...): it goes last.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

# The fake Stripe gateway lives with the tests (run from anywhere: the repo root is on the path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.stripe_gateway import FakeStripeGateway, sign

from billfold.app import create_app
from billfold.catalog.service import load_catalog, sync_catalog
from billfold.clock import SystemClock
from billfold.config import Settings
from billfold.container import Container
from billfold.customers.models import AccountKind
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.db.migrate import upgrade_blocking
from billfold.stripe.gateway import LineItem
from billfold.stripe.inbox import process_due
from billfold.stripe.models import WebhookEvent
from billfold.subscriptions.models import Subscription

SECRET = "whsec_bench_webhooks"
DUPLICATE_SHARE = 0.20


class SlowGateway:
    """The fake gateway with a network round trip added to every call (real Stripe answers
    in 100-500 ms); shows what holding locks while asking Stripe would cost."""

    def __init__(self, inner: FakeStripeGateway, latency: float) -> None:
        self.inner = inner
        self.latency = latency

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or not asyncio.iscoroutinefunction(target):
            return target

        async def slow(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(self.latency)
            return await target(*args, **kwargs)

        return slow


async def play_history(
    container: Container, gateway: FakeStripeGateway, subscriptions: int, rng: random.Random
) -> None:
    """Accounts with customers, then a life for each subscription, in the fake Stripe."""
    async with container.db.transaction() as session:
        catalog = await load_catalog(session, container.settings)
        await sync_catalog(session, gateway, catalog, clock=container.clock)
        catalog = await load_catalog(session, container.settings)
    monthly = catalog.find_price("billfold_premium_monthly_usd")
    yearly = catalog.find_price("billfold_premium_yearly_usd")
    assert monthly and yearly and monthly[1].stripe_price_id and yearly[1].stripe_price_id
    for n in range(subscriptions):
        async with container.db.transaction() as session:
            account = await get_or_create_account(
                session, AccountKind.USER, f"bench-user-{n}", currency="usd"
            )
            customer = (
                await gateway.customers.create(
                    email=None, name=None, metadata={}, idempotency_key=f"c-{n}"
                )
            ).id
            account.stripe_customer_id = customer
            account_id = account.id
        started = await gateway.checkout.create_session(
            mode="subscription",
            customer_id=customer,
            line_items=[LineItem(price_id=monthly[1].stripe_price_id, quantity=1)],
            success_url="https://app.example.com/ok",
            cancel_url="https://app.example.com/no",
            allow_promotion_codes=False,
            client_reference_id=account_id,
            metadata={"billfold_account_id": account_id, "billfold_plan": "premium"},
            idempotency_key=f"cs-{n}",
        )
        sub_id = gateway.stripe.complete_checkout(started.id)
        for step in range(rng.randint(1, 4)):
            choice = rng.random()
            key = f"{sub_id}-{step}"
            status = gateway.stripe.subscriptions[sub_id]["status"]
            if status == "canceled":
                break
            if choice < 0.3:
                gateway.stripe.end_period(sub_id, payment_fails=rng.random() < 0.3)
            elif choice < 0.5:
                await gateway.subscriptions.update(
                    sub_id, cancel_at_period_end=True, idempotency_key=key
                )
            elif choice < 0.65:
                await gateway.subscriptions.update(
                    sub_id, cancel_at_period_end=False, idempotency_key=key
                )
            elif choice < 0.85:
                await gateway.subscriptions.update(
                    sub_id,
                    price_id=yearly[1].stripe_price_id,
                    proration_behavior="create_prorations",
                    idempotency_key=key,
                )
            else:
                await gateway.subscriptions.cancel(sub_id, idempotency_key=key)


def stripe_end_state(gateway: FakeStripeGateway) -> list[tuple[Any, ...]]:
    state = []
    for sub in gateway.stripe.subscriptions.values():
        item = sub["items"]["data"][0]
        state.append(
            (
                sub["id"],
                sub["status"],
                item["price"]["id"],
                item["quantity"],
                sub["cancel_at_period_end"],
                item["current_period_end"],
            )
        )
    return sorted(state)


async def billfold_end_state(db: Database) -> list[tuple[Any, ...]]:
    async with db.transaction() as session:
        rows = (await session.execute(select(Subscription))).scalars().all()
        return sorted(
            (
                r.stripe_subscription_id,
                r.status,
                r.price_id,
                r.quantity,
                r.cancel_at_period_end,
                int(r.current_period_end.timestamp()) if r.current_period_end else None,
            )
            for r in rows
        )


async def bench(
    url: str,
    label: str,
    subscriptions: int,
    senders: int,
    latency_ms: float,
    show_statements: bool = False,
) -> bool:
    upgrade_blocking(url)
    db = Database(url, pool_size=senders + 4)
    gateway = FakeStripeGateway()
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp()),
        jwt_secret="bench-secret-that-is-long-enough-for-hs256-0123456789",
        stripe_webhook_secret=[SECRET],
        environment="test",
        # A backlog comes from Stripe's few addresses at once: no budget may refuse it here.
        rate_limit_webhook="1000000/second",
        rate_limit_address="1000000/second",
    )
    container = Container(settings=settings, db=db, clock=SystemClock(), stripe_gateway=gateway)
    rng = random.Random(2026)
    try:
        await play_history(container, gateway, subscriptions, rng)
        events = list(gateway.stripe.events)
        deliveries = events + rng.sample(events, int(len(events) * DUPLICATE_SHARE))
        rng.shuffle(deliveries)
        bodies = [json.dumps(e).encode() for e in deliveries]

        # History was played on the fast fake; deliveries see Stripe's latency.
        served_gateway: Any = SlowGateway(gateway, latency_ms / 1000) if latency_ms else gateway
        container.stripe_gateway = served_gateway
        app = create_app(settings, database=db, stripe_gateway=served_gateway)
        transport = httpx.ASGITransport(app=app)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        statuses: dict[int, int] = {}

        async def sender(client: httpx.AsyncClient) -> None:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                response = await client.post(
                    "/api/v1/payments/webhook",
                    content=body,
                    headers={"Stripe-Signature": sign(body, SECRET)},
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        # Round trips: statements and transactions (pool checkouts; each also pings first).
        trips = {"statements": 0, "transactions": 0}

        kinds: dict[str, int] = {}

        def count_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            trips["statements"] += 1
            kind = re.sub(r"sa_savepoint_\d+", "sa_savepoint", " ".join(statement.split()[:4])[:70])
            kinds[kind] = kinds.get(kind, 0) + 1

        def count_transaction(*_: Any) -> None:
            trips["transactions"] += 1

        event.listen(db.engine.sync_engine, "before_cursor_execute", count_statement)
        event.listen(db.engine.sync_engine, "checkout", count_transaction)
        started = time.perf_counter()
        cpu_started = time.process_time()
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await asyncio.gather(*(sender(client) for _ in range(senders)))
        # Whatever a concurrent worker skipped (locked) is applied by the retry pass.
        leftover = await process_due(container, limit=100_000)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        event.remove(db.engine.sync_engine, "before_cursor_execute", count_statement)
        event.remove(db.engine.sync_engine, "checkout", count_transaction)

        expected = stripe_end_state(gateway)
        actual = await billfold_end_state(db)
        async with db.transaction() as session:
            stored = (
                await session.execute(select(func.count()).select_from(WebhookEvent))
            ).scalar()
            unapplied = (
                await session.execute(
                    select(func.count())
                    .select_from(WebhookEvent)
                    .where(WebhookEvent.status != "processed")
                )
            ).scalar()
        ok = actual == expected and stored == len(events) and unapplied == 0
        print(
            f"{label} (Stripe latency {latency_ms:g} ms): "
            f"{len(deliveries)} signed deliveries ({len(events)} events, "
            f"{len(deliveries) - len(events)} duplicates, shuffled) for {subscriptions} "
            f"subscriptions, {senders} senders: {len(deliveries) / elapsed:,.0f} deliveries/s, "
            f"{len(events) / elapsed:,.0f} events applied/s ({elapsed:.2f} s; "
            f"HTTP {dict(sorted(statuses.items()))}, "
            f"{leftover.processed} applied by the retry pass)"
        )
        print(
            f"{label}: per delivery {1000 * cpu / len(deliveries):.2f} ms of this process's CPU "
            f"({len(deliveries) / cpu:,.0f} deliveries per CPU-second), "
            f"{trips['statements'] / len(deliveries):.2f} SQL statements, "
            f"{trips['transactions'] / len(deliveries):.2f} connection checkouts"
        )
        print(
            f"RESULT rate={len(deliveries) / elapsed:.1f} "
            f"cpu_ms={1000 * cpu / len(deliveries):.3f} "
            f"statements={trips['statements'] / len(deliveries):.3f} "
            f"checkouts={trips['transactions'] / len(deliveries):.3f} ok={int(ok)}"
        )
        if show_statements:
            for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
                print(f"  {n / len(deliveries):5.2f}  {kind}")
        print(
            f"{label}: end state {'matches' if actual == expected else 'DIFFERS FROM'} Stripe "
            f"for {len(expected)} subscriptions; {stored} events stored once, {unapplied} unapplied"
        )
        return ok
    finally:
        await db.dispose()


def interleaved(baseline: str, rounds: int, argv: list[str]) -> int:
    """This bench on this checkout and on `baseline` (another checkout's src/, e.g. the commit
    before a change), alternately in child processes, so the machine's load weighs on both
    alike; then the medians and their ratios."""
    import os
    import statistics
    import subprocess

    figures: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    failed = False
    for n in range(rounds):
        for which in ("before", "after"):
            env = dict(os.environ)
            if which == "before":
                env["PYTHONPATH"] = baseline + os.pathsep + env.get("PYTHONPATH", "")
            child = subprocess.run(
                [sys.executable, __file__, *argv], env=env, capture_output=True, text=True
            )
            for line in child.stdout.splitlines():
                if line.startswith("RESULT "):
                    values = dict(part.split("=") for part in line.split()[1:])
                    figures[which].append({k: float(v) for k, v in values.items()})
                    failed = failed or values["ok"] != "1"
                else:
                    print(f"[{which} {n + 1}] {line}")
            if child.returncode not in (0, 1):
                print(child.stderr[-3000:])
                return 2
    medians = {
        which: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for which, runs in figures.items()
        if runs
    }
    if len(medians) == 2:
        before, after = medians["before"], medians["after"]
        for key, unit in (
            ("rate", "deliveries/s"),
            ("cpu_ms", "ms CPU/delivery"),
            ("statements", "statements/delivery"),
            ("checkouts", "checkouts/delivery"),
        ):
            print(
                f"median {unit}: before {before[key]:.2f}, after {after[key]:.2f} "
                f"(after/before {after[key] / before[key]:.2f}x)"
            )
        cpu_rate = 1000 / after["cpu_ms"], 1000 / before["cpu_ms"]
        print(f"deliveries per CPU-second: before {cpu_rate[1]:,.0f}, after {cpu_rate[0]:,.0f}")
    return 1 if failed else 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=300)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sqlite", action="store_true", help="Run on SQLite instead.")
    parser.add_argument(
        "--stripe-latency-ms", type=float, default=0, help="Added to every Stripe call."
    )
    parser.add_argument(
        "--statements", action="store_true", help="Print the SQL statements per delivery."
    )
    parser.add_argument(
        "--baseline",
        help="Another checkout's src/ to run interleaved with this one (before/after).",
    )
    parser.add_argument("--rounds", type=int, default=2, help="With --baseline: runs of each.")
    args = parser.parse_args()
    if args.baseline:
        argv = [a for a in sys.argv[1:]]
        at = argv.index("--baseline")
        del argv[at : at + 2]
        if "--rounds" in argv:
            at = argv.index("--rounds")
            del argv[at : at + 2]
        return interleaved(args.baseline, args.rounds, argv)
    if args.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            ok = await bench(
                url,
                "sqlite",
                args.subscriptions,
                args.senders,
                args.stripe_latency_ms,
                args.statements,
            )
        return 0 if ok else 1
    name = f"billfold_bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(args.postgres, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.postgres.rsplit("/", 1)[0] + "/" + name
    try:
        ok = await bench(
            url,
            "postgresql",
            args.subscriptions,
            args.senders,
            args.stripe_latency_ms,
            args.statements,
        )
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
