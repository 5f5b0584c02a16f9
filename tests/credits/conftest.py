"""The credits route tests use, like tests/api, the subscription fixtures (`api`, `synced`,
...) with billfold's real Stripe adapter on the sandbox in place of the fake (`gateway`, and
`stripe_world` from tests/sandbox_stripe.py), and the end-to-end fixtures."""

from importlib import resources
from pathlib import Path

import pytest

from billfold.config import Settings
from billfold.stripe.gateway import StripeClientGateway
from tests.e2e_fixtures import *  # noqa: F403
from tests.sandbox_fixtures import SandboxServer
from tests.sandbox_stripe import sandbox_gateway, stripe_world  # noqa: F401
from tests.subscriptions.fixtures import *  # noqa: F403
from tests.subscriptions.fixtures import WEBHOOK_SECRET


@pytest.fixture
def gateway(billing_settings: Settings, sandbox_server: SandboxServer) -> StripeClientGateway:
    """Overrides the fake: the app and `synced` use billfold's real adapter on the sandbox."""
    return sandbox_gateway(billing_settings, sandbox_server)


@pytest.fixture
def billing_settings(tmp_path: Path) -> Settings:
    """The subscription tests' settings, with a catalog that also takes ACH in usd."""
    default = resources.files("billfold.catalog").joinpath("default_catalog.toml").read_text()
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        default + '\n[credits.payment_method_types]\nusd = ["card", "us_bank_account"]\n'
    )
    return Settings(
        jwt_secret="test-secret-that-is-long-enough-for-hs256-0123456789",
        data_dir=tmp_path / "data",
        frontend_url="https://app.example.com",
        allowed_redirect_hosts=["billing.example.com"],
        stripe_webhook_secret=[WEBHOOK_SECRET],
        environment="test",
        catalog_file=catalog,
    )
