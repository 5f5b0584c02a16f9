"""What a running billfold is made of, wired once by `create_app` (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from billfold.clock import Clock
from billfold.config import Settings
from billfold.db.engine import Database

if TYPE_CHECKING:
    from billfold.jobs.registry import JobRegistry
    from billfold.stripe.gateway import StripeGateway
    from billfold.stripe.inbox import WebhookHandlers


@dataclass
class Container:
    settings: Settings
    db: Database
    clock: Clock
    # The Stripe gateway (`StripeClientGateway` unless a test injects one); set by create_app.
    stripe_gateway: StripeGateway | None = None
    # What the domains declare, wired by the composition root (billfold.wiring.wire): the
    # handlers of Stripe's events and the job kinds the server's worker runs.
    webhook_handlers: WebhookHandlers | None = None
    jobs: JobRegistry | None = None
