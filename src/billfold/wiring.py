"""What the domains declare, wired with real imports: the part of the composition root that
`create_app` and the `billfold` command share.

Each domain declares its Stripe event handlers on a `WebhookHandlers` and its job kinds on a
`JobRegistry` of its own; add yours to the lists below.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from billfold.auth import sessions as panel_sessions
from billfold.config import Settings
from billfold.container import Container
from billfold.credits import handlers as credit_events
from billfold.credits import jobs as credit_jobs
from billfold.errors import ConfigurationError
from billfold.jobs import JobRegistry
from billfold.jobs import maintenance as job_maintenance
from billfold.payments import handlers as payment_events
from billfold.payments import jobs as payment_jobs
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
            inbox.jobs,
            credit_jobs.jobs,
            payment_jobs.job_registry(settings),
            panel_sessions.jobs,
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
