"""A default changed without a request to push it (a webhook detaching the default, a decline
blocking it) reaches the Stripe customer's `invoice_settings.default_payment_method` through the
job runner, against the sandbox on SQLite and PostgreSQL; a change made while the job pushes
the previous one is pushed too."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from billfold.audit.context import system_audit_context
from billfold.container import Container
from billfold.jobs import Job, JobRunner
from billfold.payments import jobs as payment_jobs
from billfold.payments.methods import SYNC_DEFAULT, set_default
from tests.payments.conftest import Billing
from tests.payments.test_payment_methods import _stripe_default


async def _run_jobs(container: Container) -> None:
    assert container.jobs is not None
    report = await JobRunner(container, container.jobs).drain()
    assert (report.failed, report.dead, report.lost) == (0, 0, 0), report


async def _sync_jobs(container: Container) -> list[tuple[str, str]]:
    async with container.db.read() as session:
        rows = await session.execute(select(Job.key, Job.status).where(Job.kind == SYNC_DEFAULT))
        return [(str(key), str(status)) for key, status in rows]


async def _two_cards(alice: Billing, container: Container) -> tuple[str, str]:
    """A visa (the default, at Stripe too) and a mastercard, the jobs of saving them run."""
    visa = await alice.card("pm_card_visa")
    mastercard = await alice.card("pm_card_mastercard")
    await _run_jobs(container)
    assert _stripe_default(alice, mastercard) == visa
    return visa, mastercard


async def test_a_detached_default_promotes_the_next_at_stripe_too(
    alice: Billing, billing_app: Any
) -> None:
    container: Container = billing_app.state.container
    visa, mastercard = await _two_cards(alice, container)
    # Detached at Stripe (the dashboard, another integration): only the webhook tells billfold.
    alice.world.client.v1.payment_methods.detach(visa)
    await alice.events()
    assert [(m["id"], m["is_default"]) for m in await alice.methods()] == [(mastercard, True)]
    assert _stripe_default(alice, mastercard) != mastercard  # not pushed by the webhook itself
    await _run_jobs(container)
    assert _stripe_default(alice, mastercard) == mastercard
    [(_key, status)] = await _sync_jobs(container)
    assert status == "done"
    # Running the jobs again pushes nothing new and changes nothing.
    await _run_jobs(container)
    assert _stripe_default(alice, mastercard) == mastercard


async def test_a_default_blocked_by_a_lost_card_decline_moves_at_stripe_too(
    alice: Billing, billing_app: Any
) -> None:
    container: Container = billing_app.state.container
    visa, mastercard = await _two_cards(alice, container)
    alice.card_reported_lost(visa)
    await alice.charge(2500)
    paid = await alice.call("POST", "/pay-balance", json={})
    assert paid["status"] == "succeeded"
    methods = {m["id"]: m for m in await alice.methods()}
    assert methods[visa]["blocked_reason"] == "lost_card"
    assert methods[mastercard]["is_default"]
    assert _stripe_default(alice, visa) == visa  # the Stripe customer's is still the lost card
    await _run_jobs(container)
    assert _stripe_default(alice, visa) == mastercard


async def test_a_default_changed_while_the_job_pushes_is_pushed_too(
    alice: Billing, billing_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    container: Container = billing_app.state.container
    visa, mastercard = await _two_cards(alice, container)
    amex = await alice.card("pm_card_amex")
    await _run_jobs(container)
    alice.world.client.v1.payment_methods.detach(visa)
    await alice.events()  # the default is now the mastercard: a job is queued
    pushed: list[str | None] = []
    real_push = payment_jobs.push_default

    async def push_then_change(container: Container, account_id: str, **kwargs: Any) -> Any:
        default = await real_push(container, account_id, **kwargs)
        pushed.append(default)
        if len(pushed) == 1:  # the customer picks the amex while the job is at Stripe
            async with container.db.transaction() as session:
                await set_default(
                    session,
                    account_id,
                    amex,
                    audit=system_audit_context("test", container.clock),
                    now=container.clock.now(),
                )
        return default

    monkeypatch.setattr(payment_jobs, "push_default", push_then_change)
    await _run_jobs(container)
    assert pushed == [mastercard, amex]
    assert _stripe_default(alice, amex) == amex
    [(_key, status)] = await _sync_jobs(container)
    assert status == "done"
