"""The billing panel's pages: server time (p50, p99) of each page for an account with 1,000
ledger entries (and 300 audit entries, 200 credit purchases and billing history items, a live
subscription, 5 saved cards, 300 dues charges and 120 payments), on SQLite and PostgreSQL.

Server time is measured inside the process, around the ASGI app: from the request's arrival to
the last byte of its response (a CSV download included), with no network in between; requests
are sent one at a time by httpx's in-process transport. The customer's pages are read through a
customer's session, the console's through an operator's.

    .venv/bin/python bench/panel.py [--requests 200] [--entries 1000] [--only sqlite|postgresql]
                                    [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]

SQLite runs on a temporary file; PostgreSQL on a scratch database created on --postgres's server,
migrated, and dropped at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package from everything imported below.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.app import create_app
from billfold.audit.service import record_event
from billfold.auth.principal import AccountRef
from billfold.auth.sessions import issue_sign_in_link
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.credits.models import BillingHistoryItem, CreditPurchase
from billfold.customers.models import AccountKind
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.db.migrate import upgrade_blocking
from billfold.ledger.service import debit_credits, grant_credits
from billfold.payments import dues
from billfold.payments.models import Payment, PaymentMethod
from billfold.subscriptions.models import Subscription

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class ServerTimer:
    """Wraps an ASGI app: the time from each request to the last byte of its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: MutableMapping[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - started

        await self.app(scope, receive, timed_send)


async def _seed(db: Database, clock: FrozenClock, entries: int) -> str:
    """The benchmarked account: `entries` ledger entries, 300 audit entries, a subscription;
    and 20 other accounts with a little history of their own. Returns its id."""
    async with db.transaction() as session:
        account = await get_or_create_account(
            session, AccountKind.USER, "bench-user", currency="usd", clock=clock
        )
        account.email = "bench@example.com"
        now = clock.now()
        session.add(
            Subscription(
                id="sub_row_bench",
                account_id=account.id,
                stripe_subscription_id="sub_bench",
                stripe_customer_id="cus_bench",
                plan_code="premium",
                price_id="price_bench_monthly",
                interval="monthly",
                currency="usd",
                unit_amount=699,
                status="active",
                current_period_start=now,
                current_period_end=now + timedelta(days=30),
                stripe_created=int(now.timestamp()),
                raw={"id": "sub_bench", "object": "subscription"},
                created_at=now,
                updated_at=now,
            )
        )
    for start in range(0, entries, 250):
        async with db.transaction() as session:
            for n in range(start, min(entries, start + 250)):
                if n % 4 == 3:
                    await debit_credits(
                        session,
                        billing_account_id=account.id,
                        credits=5,
                        idempotency_key=f"bench-debit:{n}",
                        clock=clock,
                        description=f"usage #{n}",
                    )
                else:
                    await grant_credits(
                        session,
                        billing_account_id=account.id,
                        credits=10,
                        idempotency_key=f"bench-grant:{n}",
                        clock=clock,
                        description=f"top-up #{n}",
                    )
    async with db.transaction() as session:
        for n in range(200):  # the credit and billing histories: 200 rows each
            at = clock.now() - timedelta(hours=n)
            session.add(
                CreditPurchase(
                    id=f"cpur_bench_{n}",
                    account_id=account.id,
                    kind="topup",
                    credits=100,
                    amount=1100,
                    currency="usd",
                    state="completed",
                    request={},
                    created_at=at,
                    updated_at=at,
                )
            )
            session.add(
                BillingHistoryItem(
                    id=f"ch_bench_{n}",
                    account_id=account.id,
                    type="charge",
                    amount=1100,
                    currency="usd",
                    status="succeeded",
                    created_at=at,
                    updated_at=at,
                )
            )
        for n in range(300):
            await record_event(
                session,
                action="credits.used",
                actor="user:bench-user",
                account_id=account.id,
                target=f"usage-{n}",
                at=clock.now(),
            )
        for other in range(20):
            neighbour = await get_or_create_account(
                session, AccountKind.USER, f"neighbour-{other}", currency="usd", clock=clock
            )
            await grant_credits(
                session,
                billing_account_id=neighbour.id,
                credits=10,
                idempotency_key=f"bench-neighbour:{other}",
                clock=clock,
            )
    return account.id


async def _seed_payments(db: Database, clock: FrozenClock, account_id: str) -> None:
    """The account's money side: 5 saved cards, 300 dues charges and 120 payments (rows as
    Stripe's answers leave them; the benchmark calls no Stripe)."""
    now = clock.now()
    async with db.transaction() as session:
        for n in range(5):
            session.add(
                PaymentMethod(
                    id=f"pm_bench_{n}", account_id=account_id, type="card", status="active",
                    brand="visa", last4=f"{4242 + n}", exp_month=12, exp_year=2034,
                    priority=n + 1, verification_failures=0, created_at=now, updated_at=now,
                )
            )  # fmt: skip
        for n in range(300):
            await dues.add_charge(
                session, account_id, amount=100 + n, currency="usd", charge_id=f"due_bench_{n}",
                description=f"usage #{n}", clock=clock,
            )  # fmt: skip
        for n in range(120):
            session.add(
                Payment(
                    id=f"pay_bench{n:04d}", account_id=account_id, kind="balance", amount=500,
                    currency="usd", status="succeeded", payment_method_id=f"pm_bench_{n % 5}",
                    refunded_amount=0, attempts=1, created_at=now - timedelta(minutes=n),
                    updated_at=now,
                )
            )  # fmt: skip


async def _signed_in(
    app: Any, settings: Settings, clock: FrozenClock, account: str | None
) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://billfold.bench"
    )
    ref = AccountRef.parse(account) if account else None
    token = issue_sign_in_link(settings, ref, now=clock.now(), operator=account is None)
    response = await client.get(f"/sign-in?token={token}")
    assert response.status_code == 303, response.text
    return client


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def bench(url: str, label: str, requests: int, entries: int) -> None:
    if label == "sqlite":
        upgrade_blocking(url)
    db = Database(url, pool_size=10)
    clock = FrozenClock()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            jwt_secret="bench-secret-that-is-long-enough-for-hs256-0123456789",
            data_dir=Path(data_dir),
            environment="test",
            rate_limit="1000000/minute",
            rate_limit_address="1000000/minute",
        )
        seeded = time.perf_counter()
        account_id = await _seed(db, clock, entries)
        await _seed_payments(db, clock, account_id)
        seeded = time.perf_counter() - seeded
        timer = ServerTimer(create_app(settings, database=db, clock=clock))
        customer = await _signed_in(timer, settings, clock, "user:bench-user")
        operator = await _signed_in(timer, settings, clock, None)
        pages: list[tuple[str, httpx.AsyncClient, str]] = [
            ("overview", customer, "/"),
            ("subscription", customer, "/subscription"),
            ("credits", customer, "/credits"),
            ("credits: top-up price (htmx)", customer, "/credits/topup/price?credits=600"),
            ("activity: histories (htmx)", customer, "/activity/histories"),
            ("credits.csv (200 rows)", customer, "/activity/credits.csv"),
            ("activity (page 1)", customer, "/activity"),
            ("activity (page 40)", customer, "/activity?page=40"),
            ("activity (htmx page 20)", customer, "/activity?page=20"),
            ("ledger.csv (1,000 rows)", customer, "/activity/ledger.csv"),
            ("audit.csv (301 rows)", customer, "/activity/audit.csv"),
            ("payment methods (5)", customer, "/payment-methods"),
            ("activity (older payments)", customer, "/activity?payments_before=pay_bench0050"),
            ("payments.csv (120 rows)", customer, "/activity/payments.csv"),
            ("dues.csv (300 rows)", customer, "/activity/dues.csv"),
            ("operator: find by email", operator, "/operator?q=bench@example.com"),
            ("operator: account", operator, f"/operator/accounts/{account_id}"),
            ("operator: webhook events", operator, "/operator/events"),
            ("operator: jobs", operator, "/operator/jobs"),
        ]
        print(f"\n{label}: {entries} ledger entries seeded in {seeded:.1f}s; {requests} requests")
        print(f"{'page':<28} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>9}")
        for name, client, path in pages:
            headers = {"HX-Request": "true"} if "htmx" in name else {}
            times: list[float] = []
            size = 0
            for n in range(requests + 10):
                response = await client.get(path, headers=headers)
                assert response.status_code == 200, (path, response.status_code)
                if n >= 10:  # the first ten warm the caches up
                    times.append(timer.last)
                size = len(response.content)
            p50 = statistics.median(times) * 1000
            p99 = _percentile(times, 0.99) * 1000
            print(f"{name:<28} {p50:8.2f} {p99:8.2f} {size:9d}")
        await customer.aclose()
        await operator.aclose()
    await db.dispose()


async def _with_scratch_postgres(admin_url: str, requests: int, entries: int) -> None:
    name = f"billfold_bench_panel_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        await asyncio.to_thread(upgrade_blocking, url)
        await bench(url, "postgresql", requests, entries)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            asyncio.run(bench(url, "sqlite", args.requests, args.entries))
    if args.only != "sqlite":
        asyncio.run(_with_scratch_postgres(args.postgres, args.requests, args.entries))


if __name__ == "__main__":
    main()
