"""The API tests use the subscription fixtures (`api`, `synced`, ...) with billfold's real
Stripe adapter on the sandbox in place of the fake (`gateway`, and `stripe_world` from
tests/sandbox_stripe.py), and the end-to-end fixtures (`billfold_server`: billfold on a
loopback port receiving the sandbox's webhooks)."""

import pytest

from billfold.config import Settings
from billfold.stripe.gateway import StripeClientGateway
from tests.e2e_fixtures import *  # noqa: F403
from tests.sandbox_fixtures import SandboxServer
from tests.sandbox_stripe import sandbox_gateway, stripe_world  # noqa: F401
from tests.subscriptions.fixtures import *  # noqa: F403


@pytest.fixture
def gateway(billing_settings: Settings, sandbox_server: SandboxServer) -> StripeClientGateway:
    """Overrides the fake: the app and `synced` use billfold's real adapter on the sandbox."""
    return sandbox_gateway(billing_settings, sandbox_server)
