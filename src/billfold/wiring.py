"""What the domains declare, wired with real imports: the part of the composition root that
`create_app` and the `billfold` command share.

Each domain declares its Stripe event handlers on a `WebhookHandlers` and its job kinds on a
`JobRegistry` of its own; add yours to the lists below.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import jobs as audit_jobs
from billfold.audit.context import system_audit_context
from billfold.auth import sessions as panel_sessions
from billfold.config import Settings
from billfold.container import Container
from billfold.credits import autotopup
from billfold.credits import handlers as credit_events
from billfold.credits import jobs as credit_jobs
from billfold.customers.models import BillingAccount
from billfold.errors import ConfigurationError, NotFound
from billfold.jobs import JobRegistry
from billfold.jobs import maintenance as job_maintenance
from billfold.payments import charging
from billfold.payments import handlers as payment_events
from billfold.payments import jobs as payment_jobs
from billfold.payments import methods as payment_methods
from billfold.payments.models import (
    PROCESSING,
    RESERVED,
    SUCCEEDED,
    USABLE_STATUSES,
    Payment,
    PaymentMethod,
)
from billfold.stripe import inbox
from billfold.stripe.inbox import WebhookHandlers
from billfold.subscriptions import handlers as subscription_events


def webhook_handlers() -> WebhookHandlers:
    """Every domain's handlers of Stripe's events."""
    return WebhookHandlers.combine(
        [subscription_events.handlers, credit_events.handlers, payment_events.handlers]
    )


def job_registry(settings: Settings) -> JobRegistry:
    """Every domain's job kinds, and those of the plugins in BILLFOLD_JOB_MODULES."""
    return JobRegistry.combine(
        [
            job_maintenance.jobs,
            audit_jobs.jobs,
            inbox.jobs,
            credit_jobs.jobs,
            payment_jobs.job_registry(settings),
            panel_sessions.jobs,
            autotopup.auto_topup_jobs(PaymentsForAutoTopup()),
            *plugin_job_registries(settings.job_modules),
        ]
    )


def plugin_job_registries(modules: Iterable[str]) -> list[JobRegistry]:
    """The `jobs` registry of each plugin module (BILLFOLD_JOB_MODULES), checked on import: a
    deployment's own job kinds, or a test's, run by `billfold worker` like billfold's."""
    found = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(f"BILLFOLD_JOB_MODULES: cannot import {name}: {exc}") from exc
        registry = getattr(module, "jobs", None)
        if not isinstance(registry, JobRegistry):
            raise ConfigurationError(
                f"BILLFOLD_JOB_MODULES: {name} has no module-level `jobs` JobRegistry"
            )
        found.append(registry)
    return found


def wire(container: Container) -> Container:
    """Give a container what the domains declare (the server and every command call this)."""
    container.webhook_handlers = webhook_handlers()
    container.jobs = job_registry(container.settings)
    return container


class PaymentsForAutoTopup:
    """credits' `TopupPayments` on the payments domain (credits may not import payments): the
    default usable saved method, and an off-session charge by `charge_once`."""

    async def default_method(self, session: AsyncSession, account_id: str) -> str | None:
        settings = await payment_methods.read_settings(session, account_id)
        if settings is None or settings.default_payment_method_id is None:
            return None
        method = await session.get(PaymentMethod, settings.default_payment_method_id)
        usable = method is not None and method.status in USABLE_STATUSES
        return method.id if usable and method is not None and not method.blocked_reason else None

    async def charge(
        self,
        container: Container,
        account_id: str,
        *,
        amount: int,
        currency: str,
        payment_method_id: str,
        idempotency_key: str,
        description: str,
    ) -> autotopup.TopupCharge:
        async with container.db.read() as session:
            account = await session.get(BillingAccount, account_id)
            if account is None:
                raise NotFound(f"no account {account_id}")
            session.expunge(account)
        outcome = await charging.charge_once(
            container,
            account,
            amount=amount,
            currency=currency,
            description=description,
            payment_method_id=payment_method_id,
            audit=system_audit_context("auto_topup", container.clock),
            idempotency_key=idempotency_key,
            kind="auto_topup",
        )
        payment = outcome.payment
        status = {SUCCEEDED: "succeeded", PROCESSING: "processing"}.get(payment.status, "failed")
        return autotopup.TopupCharge(
            status=status,
            payment_intent_id=payment.stripe_payment_intent_id
            or next(
                (a.stripe_payment_intent_id for a in reversed(outcome.attempts)),
                None,
            ),
            failure_code=None if status != "failed" else (payment.failure_code or "declined"),
        )

    async def charged(
        self, session: AsyncSession, account_id: str, *, idempotency_key: str
    ) -> autotopup.TopupCharge | None:
        payment = await session.get(Payment, charging.payment_id_for(account_id, idempotency_key))
        if payment is not None and payment.status == RESERVED:
            return autotopup.TopupCharge(autotopup.UNSETTLED, payment.stripe_payment_intent_id)
        if payment is None or payment.status not in (SUCCEEDED, PROCESSING):
            return None
        status = "succeeded" if payment.status == SUCCEEDED else "processing"
        return autotopup.TopupCharge(status, payment.stripe_payment_intent_id)
