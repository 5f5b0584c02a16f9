"""Autopay: the same fallback on the job runner, back-off and stop after the last retry,
never while a bank debit of the dues is processing; and two `billfold worker` processes at once
charge each account's dues exactly once (SQLite and PostgreSQL, against the sandbox)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from billfold import wiring
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.db.engine import Database
from billfold.jobs import Job, enqueue
from billfold.payments.jobs import (
    AUTOPAY_ACCOUNT,
    AUTOPAY_SWEEP,
    RECOVER_SWEEP,
    autopay,
    job_registry,
    retry_delays,
)
from billfold.payments.models import Payment, PaymentAttempt
from tests.jobs.test_workers import Workers
from tests.payments.conftest import Billing
from tests.sandbox_stripe import SandboxStripe


async def _account_id(database: Database, user: str) -> str:
    async with database.read() as session:
        found = await session.execute(
            select(BillingAccount.id).where(BillingAccount.external_id == user)
        )
        return str(found.scalar_one())


def test_the_schedule_and_back_off_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert retry_delays(defaults) == (timedelta(days=1), timedelta(days=3), timedelta(days=5))
    assert job_registry(defaults).schedules[AUTOPAY_SWEEP].every_seconds == 900
    assert job_registry(defaults).schedules[RECOVER_SWEEP].every_seconds == 60
    assert {AUTOPAY_SWEEP, RECOVER_SWEEP} <= set(wiring.job_registry(defaults).schedules)
    monkeypatch.setenv("BILLFOLD_AUTOPAY_INTERVAL_SECONDS", "300")
    monkeypatch.setenv("BILLFOLD_AUTOPAY_RETRY_DAYS", "2, 0.5")
    configured = Settings()
    assert retry_delays(configured) == (timedelta(days=2), timedelta(hours=12))
    assert job_registry(configured).schedules[AUTOPAY_SWEEP].every_seconds == 300
    for name, value in (
        ("BILLFOLD_AUTOPAY_RETRY_DAYS", "1,-2"),
        ("BILLFOLD_AUTOPAY_RETRY_DAYS", "soon"),
        ("BILLFOLD_AUTOPAY_INTERVAL_SECONDS", "0"),
    ):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()
        monkeypatch.delenv(name)


@pytest.mark.parametrize("retry_days", [[1.0, 3.0, 5.0], [2.0, 0.5]], ids=["default", "set"])
async def test_autopay_backs_off_and_stops_after_the_last_retry(
    alice: Billing, billing_app: Any, clock: FrozenClock, retry_days: list[float]
) -> None:
    await alice.card("pm_card_chargeCustomerFail")
    await alice.call("POST", "/autopay", json={"enabled": True})
    await alice.charge(1000)
    container: Container = billing_app.state.container
    container.settings = container.settings.model_copy(update={"autopay_retry_days": retry_days})
    delays = retry_delays(container.settings)
    account_id = await _account_id(container.db, "alice")
    for n, delay in enumerate(delays, start=1):
        assert await autopay(container, account_id, "usd") == "failed"
        settings = await alice.call("GET", "/settings")
        assert settings["autopay"] and settings["autopay_failures"] == n
        assert await autopay(container, account_id, "usd") is None  # backing off
        clock.advance(delay - timedelta(seconds=1))
        assert await autopay(container, account_id, "usd") is None  # not a second early
        clock.advance(timedelta(seconds=1))
    assert await autopay(container, account_id, "usd") == "failed"
    settings = await alice.call("GET", "/settings")
    assert not settings["autopay"] and settings["autopay_retry_at"] is None
    assert "generic_decline" in settings["autopay_stopped_reason"]
    assert await autopay(container, account_id, "usd") is None
    payments = await alice.payments()
    assert len(payments) == len(delays) + 1
    assert {p["kind"] for p in payments} == {"autopay"}
    assert all(p["attempts"][0]["decline_code"] == "generic_decline" for p in payments)
    assert await alice.dues() == {"settled": 1000, "pending": 0}


async def test_autopay_waits_for_a_processing_bank_debit(
    alice: Billing, billing_app: Any, clock: FrozenClock
) -> None:
    await alice.bank()
    await alice.call("POST", "/autopay", json={"enabled": True})
    await alice.charge(3000)
    container: Container = billing_app.state.container
    account_id = await _account_id(container.db, "alice")
    assert await autopay(container, account_id, "usd") == "processing"
    await alice.charge(200)  # new dues while the debit of the first is processing
    assert await alice.dues() == {"settled": 200, "pending": 3000}
    assert await autopay(container, account_id, "usd") is None
    [payment] = await alice.payments()
    alice.sandbox(f"/v1/test_helpers/payment_intents/{payment['payment_intent_id']}/settle")
    await alice.events()
    assert await alice.dues() == {"settled": 200, "pending": 0}
    assert await autopay(container, account_id, "usd") == "processing"


ACCOUNTS = 12


async def test_two_workers_charge_autopay_exactly_once(
    api: object,
    billing_settings: object,
    stripe_world: SandboxStripe,
    database: Database,
    tmp_path: Path,
) -> None:
    from tests.subscriptions.fixtures import bearer

    customers = []
    for n in range(ACCOUNTS):
        user = Billing(api, stripe_world, bearer(billing_settings, f"user{n}"))  # type: ignore[arg-type]
        if n % 3 == 0:
            await user.card("pm_card_chargeCustomerFail")  # declines first: the fallback
        await user.card("pm_card_visa")
        await user.call("POST", "/autopay", json={"enabled": True})
        await user.charge(1000 + n)
        customers.append(await _account_id(database, f"user{n}"))
    # Beside the sweep's own job per account, two more of each: workers race on the same dues.
    async with database.transaction() as session:
        for account_id in customers:
            for copy in range(2):
                await enqueue(
                    session,
                    AUTOPAY_ACCOUNT,
                    {"account_id": account_id, "currency": "usd"},
                    key=f"test-duplicate:{account_id}:{copy}",
                )
    workers = Workers(database.url, tmp_path)
    os.environ["STRIPE_SECRET_KEY"] = stripe_world.server.api_key
    os.environ["BILLFOLD_STRIPE_API_BASE"] = stripe_world.server.url
    os.environ["STRIPE_WEBHOOK_SECRET"] = "whsec_autopay_workers"
    try:
        workers.start("billfold.payments.jobs")
        workers.start("billfold.payments.jobs")
        deadline = time.monotonic() + 180
        while True:
            async with database.read() as session:
                settled = (
                    await session.execute(
                        select(func.count())
                        .select_from(Payment)
                        .where(Payment.status == "succeeded")
                    )
                ).scalar_one()
                waiting = (
                    await session.execute(
                        select(func.count())
                        .select_from(Job)
                        .where(Job.kind == AUTOPAY_ACCOUNT, Job.status.in_(("queued", "running")))
                    )
                ).scalar_one()
            if settled == ACCOUNTS and waiting == 0:
                break
            assert time.monotonic() < deadline, workers.output()[-4000:]
            assert all(p.poll() is None for p in workers.procs), workers.output()[-4000:]
            await asyncio.sleep(0.2)
    finally:
        workers.stop()
        for name in ("STRIPE_SECRET_KEY", "BILLFOLD_STRIPE_API_BASE", "STRIPE_WEBHOOK_SECRET"):
            os.environ.pop(name, None)
    async with database.read() as session:
        payments = list((await session.execute(select(Payment))).scalars())
        attempts = list((await session.execute(select(PaymentAttempt))).scalars())
        accounts = {
            a.id: a.stripe_customer_id
            for a in (await session.execute(select(BillingAccount))).scalars()
        }
    assert sorted(p.account_id for p in payments) == sorted(customers), [
        (p.id, p.account_id, p.status, p.kind, p.amount, p.failure_code) for p in payments
    ]
    assert all(p.status == "succeeded" and p.kind == "autopay" for p in payments)
    assert len(attempts) == ACCOUNTS + len(range(0, ACCOUNTS, 3))
    for account_id in customers:
        intents = stripe_world.client.v1.payment_intents.list(
            {"customer": accounts[account_id], "limit": 100}
        ).data
        succeeded = [i for i in intents if i.status == "succeeded"]
        assert len(succeeded) == 1, (account_id, intents)
    user = Billing(api, stripe_world, bearer(billing_settings, "user1"))  # type: ignore[arg-type]
    assert await user.dues() == {"settled": 0, "pending": 0}
