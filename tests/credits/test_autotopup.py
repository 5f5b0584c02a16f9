"""Auto top-up on both databases, against the sandbox through billfold's real adapter: it fires
once per crossing of the threshold, charges the default saved method off session, grants when
Stripe confirms (a card at once, a bank debit when it settles), and honours every guardrail:
one in flight, the cooldown, the daily count cap, the monthly money cap, and the stop after 3
failed charges in a row (audited, in the settings) until a method is saved or it is turned on
again."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from billfold.audit.context import system_audit_context
from billfold.audit.models import AuditEntry
from billfold.auth.apikeys import create_api_key
from billfold.clock import FrozenClock
from billfold.container import Container
from billfold.credits import autotopup, service
from billfold.credits.models import CreditPurchase
from billfold.credits.threshold import AUTO_TOPUP_JOB
from billfold.customers.models import BillingAccount
from billfold.jobs import Job, JobRunner
from billfold.ledger.verify import verify_ledger
from billfold.wiring import PaymentsForAutoTopup
from tests.api.stripe_events import deliver_all
from tests.sandbox_stripe import SandboxStripe
from tests.subscriptions.fixtures import bearer

B = "/api/billing"
WEBHOOK = "/api/stripe/webhook"
SETTINGS = {
    "enabled": True,
    "threshold": 30,
    "credits": 100,
    "currency": "usd",
    "max_per_day": 3,
    "monthly_limit": 5000,
}
PRICE = 1100  # 100 credits in usd (the default catalog)


class Customer:
    def __init__(
        self, api: httpx.AsyncClient, world: SandboxStripe, container: Container, user: str
    ) -> None:
        self.api, self.world, self.container, self.user = api, world, container, user
        self.headers = bearer(container.settings, user)
        self.backend: dict[str, str] = {}
        self.account_id = ""
        self.spent = 0

    async def start(self) -> None:
        async with self.container.db.transaction() as session:
            key = await create_api_key(session, "backend", now=self.container.clock.now())
        self.backend = {"X-API-Key": key.secret, "X-Billfold-Account": f"user:{self.user}"}
        await self.get()  # the account exists from here on
        async with self.container.db.read() as session:
            found = await session.execute(
                select(BillingAccount.id).where(BillingAccount.external_id == self.user)
            )
            self.account_id = str(found.scalar_one())

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", self.headers)
        response = await self.api.request(method, B + path, headers=headers, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    async def get(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/auto-topup"))

    async def card(self, pm: str = "pm_card_visa") -> str:
        body = await self.call("POST", "/setup-intent/card", json={"payment_method_id": pm})
        return str(body["payment_method_id"])

    async def grant(self, credits: int, key: str) -> None:
        async with self.container.db.transaction() as session:
            await service.grant(
                session,
                account_id=self.account_id,
                credits=credits,
                key=f"test:{self.account_id}:{key}",
                source="promotion",
                clock=self.container.clock,
                audit=system_audit_context("test", self.container.clock),
            )

    async def spend(self, credits: int) -> int:
        self.spent += 1
        body = await self.call(
            "POST",
            "/usage",
            json={"credits": credits, "idempotencyKey": f"use-{self.spent}"},
            headers=self.backend,
        )
        return int(body["balance"])

    async def balance(self) -> int:
        return int((await self.call("GET", "/balance"))["credits"])

    async def jobs(self) -> int:
        async with self.container.db.read() as session:
            found = await session.execute(
                select(func.count()).select_from(Job).where(Job.kind == AUTO_TOPUP_JOB)
            )
            return int(found.scalar_one())

    async def run_jobs(self) -> None:
        registry = autotopup.auto_topup_jobs(PaymentsForAutoTopup())
        await JobRunner(self.container, registry, worker_id="test").drain()

    async def run(self) -> str:
        """One run now, as the job would (the guardrails decide)."""
        return await autotopup.run_auto_topup(
            self.container,
            PaymentsForAutoTopup(),
            self.account_id,
            system_audit_context("auto_topup", self.container.clock),
        )

    async def audit(self, action: str) -> list[dict[str, Any]]:
        async with self.container.db.read() as session:
            found = await session.execute(
                select(AuditEntry.details_json)
                .where(AuditEntry.account_id == self.account_id, AuditEntry.action == action)
                .order_by(AuditEntry.seq)
            )
            return [json.loads(d) for d in found.scalars()]

    async def topups(self) -> list[tuple[str, int]]:
        async with self.container.db.read() as session:
            found = await session.execute(
                select(CreditPurchase.state, CreditPurchase.amount)
                .where(
                    CreditPurchase.account_id == self.account_id,
                    CreditPurchase.kind == "auto_topup",
                )
                .order_by(CreditPurchase.created_at)
            )
            return [(str(s), int(a)) for s, a in found.all()]

    async def clean(self) -> None:
        async with self.container.db.read() as session:
            assert await verify_ledger(session) == []


@pytest.fixture
async def carol(api: httpx.AsyncClient, stripe_world: SandboxStripe, billing_app: Any) -> Customer:
    customer = Customer(api, stripe_world, billing_app.state.container, "carol")
    await customer.start()
    return customer


async def test_settings_read_write_and_bad_input(carol: Customer) -> None:
    assert await carol.get() == {
        "enabled": False,
        "threshold": None,
        "credits": None,
        "currency": None,
        "max_per_day": None,
        "monthly_limit": None,
        "status": "disabled",
        "stopped_reason": None,
        "failures_in_row": 0,
        "last_attempt_at": None,
    }
    for body, field in (
        ({"enabled": True}, "threshold"),
        ({**SETTINGS, "enabled": "yes"}, "enabled"),
        ({**SETTINGS, "threshold": -1}, "threshold"),
        ({**SETTINGS, "threshold": 1.5}, "threshold"),
        ({**SETTINGS, "credits": 0}, "credits"),
        ({**SETTINGS, "credits": 5}, "credits"),  # under the catalog's minimum top-up
        ({**SETTINGS, "credits": 2_000_000}, "credits"),
        ({**SETTINGS, "currency": "gbp"}, "currency"),
        ({**SETTINGS, "max_per_day": 0}, "max_per_day"),
        ({**SETTINGS, "monthly_limit": 500}, "monthly_limit"),  # not even one top-up
    ):
        response = await carol.api.put(f"{B}/auto-topup", json=body, headers=carol.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["field"] == field, (body, response.text)
    assert (await carol.get())["status"] == "disabled"  # nothing written
    saved = await carol.call("PUT", "/auto-topup", json=SETTINGS)
    assert {k: saved[k] for k in SETTINGS} == SETTINGS
    assert saved["status"] == "active"
    # The host app sets it too, with an API key naming the account; fields it leaves out keep
    # their values.
    changed = await carol.call("PUT", "/auto-topup", json={"threshold": 50}, headers=carol.backend)
    assert (changed["threshold"], changed["credits"], changed["enabled"]) == (50, 100, True)
    assert await carol.get() == changed
    assert len(await carol.audit("credits.auto_topup_updated")) == 2


async def test_fires_once_per_crossing_and_grants_on_a_card(
    carol: Customer, clock: FrozenClock
) -> None:
    await carol.card()
    await carol.grant(50, "start")
    await carol.call("PUT", "/auto-topup", json=SETTINGS)
    assert await carol.jobs() == 0  # 50 is not under 30
    assert await carol.spend(15) == 35
    assert await carol.jobs() == 0
    assert await carol.spend(10) == 25  # crossed
    assert await carol.spend(5) == 20  # still under: the same crossing
    assert await carol.jobs() == 1
    await carol.run_jobs()
    assert await carol.balance() == 120
    assert await carol.topups() == [("completed", PRICE)]
    history = (await carol.call("GET", "/history"))["transactions"]
    assert [(t["type"], t["credits"], t["status"], t["amount"]) for t in history] == [
        ("topup", 100, "completed", 11.0)
    ]
    # Stripe's events, delivered: nothing is granted twice.
    await deliver_all(carol.api, carol.world, path=WEBHOOK)
    assert await carol.balance() == 120
    # Back above the threshold, the next fall under it fires again (after the cooldown).
    clock.advance(autotopup.COOLDOWN)
    assert await carol.spend(100) == 20
    assert await carol.jobs() == 2
    await carol.run_jobs()
    assert await carol.balance() == 120
    settings = await carol.get()
    assert settings["last_attempt_at"] is not None and settings["failures_in_row"] == 0
    await carol.clean()


async def test_guardrails_in_flight_cooldown_daily_and_monthly_caps(
    carol: Customer, clock: FrozenClock
) -> None:
    await carol.card()
    await carol.call(
        "PUT", "/auto-topup", json={**SETTINGS, "max_per_day": 2, "monthly_limit": 3 * PRICE}
    )
    assert await carol.run() == "completed"  # 0 is under 30
    # A second run at once: the cooldown.
    await carol.spend(100)
    assert await carol.run() == "cooldown"
    clock.advance(autotopup.COOLDOWN)
    assert await carol.run() == "completed"
    clock.advance(autotopup.COOLDOWN)
    await carol.spend(100)
    assert await carol.run() == "daily_cap"  # two today already
    # The next day: one more fits the month's money, the fourth would not.
    clock.advance(autotopup.COOLDOWN * 6 * 24)
    assert await carol.run() == "completed"
    clock.advance(autotopup.COOLDOWN)
    await carol.spend(100)
    assert await carol.run() == "monthly_cap"
    skipped = [d["reason"] for d in await carol.audit("credits.auto_topup_skipped")]
    assert skipped == ["cooldown", "daily_cap", "monthly_cap"]
    assert await carol.topups() == [("completed", PRICE)] * 3
    await carol.clean()


async def test_one_top_up_in_flight_while_a_bank_debit_settles(
    carol: Customer, clock: FrozenClock
) -> None:
    from tests.payments.conftest import Billing

    bank = Billing(carol.api, carol.world, carol.headers)
    await bank.bank()
    await carol.call("PUT", "/auto-topup", json=SETTINGS)
    assert await carol.run() == "pending"  # processing: nothing granted yet
    assert await carol.balance() == 0
    (row,) = (await carol.call("GET", "/history"))["transactions"]
    assert (row["type"], row["status"]) == ("topup", "pending")
    clock.advance(autotopup.COOLDOWN)
    assert await carol.run() == "in_flight"
    await deliver_all(carol.api, carol.world, path=WEBHOOK)
    assert await carol.balance() == 0
    [payment] = await bank.payments()
    bank.sandbox(f"/v1/test_helpers/payment_intents/{payment['payment_intent_id']}/settle")
    await deliver_all(carol.api, carol.world, path=WEBHOOK)
    await deliver_all(carol.api, carol.world, path=WEBHOOK)
    assert await carol.balance() == 100
    assert await carol.topups() == [("completed", PRICE)]
    await carol.clean()


async def test_three_failed_charges_stop_it_until_a_method_is_saved_or_turned_on(
    carol: Customer, clock: FrozenClock
) -> None:
    await carol.card("pm_card_chargeCustomerFail")
    await carol.call("PUT", "/auto-topup", json=SETTINGS)
    for n in (1, 2, 3):
        assert await carol.run() == "failed"
        assert (await carol.get())["failures_in_row"] == n
        clock.advance(autotopup.COOLDOWN)
    settings = await carol.get()
    assert settings["status"] == "stopped"
    assert "3 failed charges in a row" in settings["stopped_reason"]
    assert "generic_decline" in settings["stopped_reason"]
    (stopped,) = await carol.audit("credits.auto_topup_stopped")
    assert stopped["reason"] == settings["stopped_reason"]
    assert await carol.run() == "not_active"
    # Turned on again by the customer: it resumes (and fires, the balance being under).
    jobs = await carol.jobs()
    resumed = await carol.call("PUT", "/auto-topup", json={"enabled": True})
    assert (resumed["status"], resumed["failures_in_row"], resumed["stopped_reason"]) == (
        "active",
        0,
        None,
    )
    assert await carol.jobs() == jobs + 1
    for _ in range(3):
        assert await carol.run() == "failed"
        clock.advance(autotopup.COOLDOWN)
    assert (await carol.get())["status"] == "stopped"
    # A new card saved (its events delivered): it resumes by itself; made the default, the
    # next charge works.
    visa = await carol.card("pm_card_visa")
    await deliver_all(carol.api, carol.world, path=WEBHOOK)
    assert (await carol.get())["status"] == "active"
    await carol.call("POST", "/payment-methods/default", json={"payment_method_id": visa})
    clock.advance(autotopup.COOLDOWN)
    reasons = [d["reason"] for d in await carol.audit("credits.auto_topup_resumed")]
    assert reasons == ["turned on again", "payment method changed"]
    assert await carol.run() == "completed"
    assert await carol.balance() == 100
    assert [s for s, _ in await carol.topups()] == ["failed"] * 6 + ["completed"]
    await carol.clean()


async def test_a_stopped_top_up_resumes_when_the_default_method_changes(
    carol: Customer, clock: FrozenClock
) -> None:
    await carol.card("pm_card_chargeCustomerFail")  # the default: first by priority
    visa = await carol.card("pm_card_visa")
    await deliver_all(carol.api, carol.world, path=WEBHOOK)  # nothing stopped: nothing resumes
    await carol.call("PUT", "/auto-topup", json=SETTINGS)
    for _ in range(3):
        assert await carol.run() == "failed"
        clock.advance(autotopup.COOLDOWN)
    assert (await carol.get())["status"] == "stopped"

    async def sweep() -> int:
        async with carol.container.db.transaction() as session:
            return await autotopup.resume_where_default_changed(
                session,
                PaymentsForAutoTopup(),
                clock=clock,
                audit=system_audit_context("auto_topup", clock),
            )

    assert await sweep() == 0  # the same default: still stopped
    assert (await carol.get())["status"] == "stopped"
    # Choosing another default sends no Stripe event: the recurring sweep sees it.
    await carol.call("POST", "/payment-methods/default", json={"payment_method_id": visa})
    assert await sweep() == 1
    settings = await carol.get()
    assert (settings["status"], settings["failures_in_row"]) == ("active", 0)
    (resumed,) = await carol.audit("credits.auto_topup_resumed")
    assert resumed["reason"] == "default payment method changed"
    assert await carol.run() == "completed"
    assert await carol.balance() == 100
    await carol.clean()


class Unreachable(PaymentsForAutoTopup):
    """Payments whose charge never returns an answer (every attempt raises)."""

    async def charge(self, *args: Any, **kwargs: Any) -> autotopup.TopupCharge:
        raise RuntimeError("payments unreachable")


async def test_a_dead_job_releases_its_top_up_so_later_ones_are_not_blocked(
    carol: Customer, clock: FrozenClock
) -> None:
    await carol.card()
    await carol.grant(50, "start")
    await carol.call("PUT", "/auto-topup", json=SETTINGS)
    assert await carol.spend(25) == 25  # crossed: one job
    runner = JobRunner(carol.container, autotopup.auto_topup_jobs(Unreachable()), worker_id="test")
    dead = 0
    for _ in range(autotopup.AUTO_TOPUP_MAX_ATTEMPTS):
        assert await carol.topups() in ([], [("reserved", PRICE)])
        dead += (await runner.drain()).dead
        clock.advance(autotopup.COOLDOWN)  # past every back-off
    assert dead == 1
    # Not in flight any more: failed, counted, audited with the reason.
    assert await carol.topups() == [("failed", PRICE)]
    (released,) = await carol.audit("credits.auto_topup_released")
    assert "died after 5 attempts" in released["reason"]
    assert "payments unreachable" in released["reason"]
    (failed,) = await carol.audit("credits.auto_topup_failed")
    assert failed == {"failure_code": "job_dead", "failures_in_row": 1}
    assert (await carol.get())["failures_in_row"] == 1
    # The next crossing tops up.
    await carol.grant(100, "again")
    assert await carol.spend(100) == 25
    await carol.run_jobs()
    assert await carol.balance() == 125
    assert await carol.topups() == [("failed", PRICE), ("completed", PRICE)]
    assert (await carol.get())["failures_in_row"] == 0
    await carol.clean()


class LostAfterCharging(PaymentsForAutoTopup):
    """Payments that charge, then lose the answer (the run dies after Stripe took the money)."""

    async def charge(self, *args: Any, **kwargs: Any) -> autotopup.TopupCharge:
        await super().charge(*args, **kwargs)
        raise RuntimeError("the answer was lost")


async def test_a_dead_job_whose_charge_went_through_grants_the_credits(
    carol: Customer, clock: FrozenClock
) -> None:
    await carol.card()
    await carol.grant(50, "start")
    await carol.call("PUT", "/auto-topup", json=SETTINGS)
    assert await carol.spend(25) == 25  # crossed: one job
    registry = autotopup.auto_topup_jobs(LostAfterCharging())
    runner = JobRunner(carol.container, registry, worker_id="test")
    dead = 0
    for _ in range(autotopup.AUTO_TOPUP_MAX_ATTEMPTS):
        dead += (await runner.drain()).dead
        clock.advance(autotopup.COOLDOWN)  # past every back-off
    assert dead == 1
    # Charged once (every retry replayed the same key), and the credits granted, not failed.
    assert await carol.topups() == [("completed", PRICE)]
    assert await carol.balance() == 125
    (recovered,) = await carol.audit("credits.auto_topup_recovered")
    assert recovered["charge"] == "succeeded"
    assert await carol.audit("credits.auto_topup_failed") == []
    assert (await carol.get())["failures_in_row"] == 0
    await carol.clean()


async def test_the_sweep_releases_a_reserved_top_up_no_job_will_finish(
    carol: Customer, clock: FrozenClock
) -> None:
    await carol.card()
    await carol.call("PUT", "/auto-topup", json=SETTINGS)  # 0 is under 30: a job is queued
    assert await carol.jobs() == 1
    with pytest.raises(RuntimeError):
        await autotopup.run_auto_topup(
            carol.container,
            Unreachable(),
            carol.account_id,
            system_audit_context("auto_topup", clock),
        )
    assert await carol.topups() == [("reserved", PRICE)]

    async def sweep() -> int:
        async with carol.container.db.transaction() as session:
            return await autotopup.release_all_stranded(
                session, Unreachable(), clock=clock, audit=system_audit_context("auto_topup", clock)
            )

    assert await sweep() == 0  # too recent
    clock.advance(autotopup.STRANDED_AFTER + autotopup.COOLDOWN)
    assert await sweep() == 0  # its queued job will finish it
    async with carol.container.db.transaction() as session:
        (
            await session.execute(select(Job).where(Job.kind == AUTO_TOPUP_JOB))
        ).scalar_one().status = "dead"  # died before its failure could be recorded
    assert await sweep() == 1
    assert await sweep() == 0  # once
    assert await carol.topups() == [("failed", PRICE)]
    (released,) = await carol.audit("credits.auto_topup_released")
    assert "no job left" in released["reason"]
    assert (await carol.get())["failures_in_row"] == 1
    # The sweep is a recurring job of the runner (once per slot however many workers).
    assert autotopup.AUTO_TOPUP_SWEEP_JOB in autotopup.auto_topup_jobs(Unreachable()).schedules
    clock.advance(autotopup.COOLDOWN)
    assert await carol.run() == "completed"
    await carol.clean()


class ChargeUnsettled(Unreachable):
    """Payments that do not know yet what became of the charge (its own recovery will ask)."""

    async def charged(self, *args: Any, **kwargs: Any) -> autotopup.TopupCharge | None:
        return autotopup.TopupCharge(autotopup.UNSETTLED)


async def test_a_top_up_whose_charge_payments_has_not_settled_is_not_released(
    carol: Customer, clock: FrozenClock
) -> None:
    await carol.card()
    await carol.call("PUT", "/auto-topup", json=SETTINGS)  # 0 is under 30: a job is queued
    with pytest.raises(RuntimeError):
        await autotopup.run_auto_topup(
            carol.container,
            Unreachable(),
            carol.account_id,
            system_audit_context("auto_topup", clock),
        )
    async with carol.container.db.transaction() as session:
        (
            await session.execute(select(Job).where(Job.kind == AUTO_TOPUP_JOB))
        ).scalar_one().status = "dead"
    clock.advance(autotopup.STRANDED_AFTER + autotopup.COOLDOWN)

    async def sweep(payments: autotopup.TopupPayments) -> int:
        async with carol.container.db.transaction() as session:
            return await autotopup.release_all_stranded(
                session, payments, clock=clock, audit=system_audit_context("auto_topup", clock)
            )

    # Money may have been taken: nothing is failed until payments knows.
    assert await sweep(ChargeUnsettled()) == 0
    assert await carol.topups() == [("reserved", PRICE)]
    assert await carol.audit("credits.auto_topup_released") == []
    # Once it knows there was no charge, the sweep releases it.
    assert await sweep(Unreachable()) == 1
    assert await carol.topups() == [("failed", PRICE)]
    await carol.clean()


async def test_a_clawback_under_the_threshold_fires_it_once(carol: Customer) -> None:
    await carol.card()
    await carol.call("PUT", "/auto-topup", json=SETTINGS)  # 0 is under 30: fires
    await carol.run_jobs()
    assert await carol.balance() == 100  # back above: armed again
    assert await carol.jobs() == 1
    async with carol.container.db.read() as session:
        intent = (
            await session.execute(
                select(CreditPurchase.stripe_payment_intent_id).where(
                    CreditPurchase.account_id == carol.account_id
                )
            )
        ).scalar_one()
    # A partial refund takes back 100 x 800 / 1100 = 72 credits: 28 is under 30.
    carol.world.client.v1.refunds.create({"payment_intent": intent, "amount": 800})
    await deliver_all(carol.api, carol.world, path=WEBHOOK)
    assert await carol.balance() == 28
    assert await carol.jobs() == 2
    await deliver_all(carol.api, carol.world, path=WEBHOOK)  # repeated: the same crossing
    assert await carol.jobs() == 2
    await carol.clean()
