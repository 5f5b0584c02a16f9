"""In sandbox mode the server syncs the catalog into its embedded sandbox (through billfold's
real adapter), and keeps the sync only if it landed in its own sandbox."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from billfold.catalog.models import CatalogPriceLink
from billfold.catalog.sandbox_sync import sync_catalog_when_ready
from billfold.config import Settings
from billfold.container import Container
from billfold.stripe.gateway import StripeClientGateway
from billfold_sandbox.state import SandboxState
from tests.sandbox_fixtures import SandboxServer
from tests.sandbox_stripe import sandbox_gateway
from tests.subscriptions.fixtures import *  # noqa: F403


@pytest.fixture
def gateway(billing_settings: Settings, sandbox_server: SandboxServer) -> StripeClientGateway:
    return sandbox_gateway(billing_settings, sandbox_server)


async def _links(container: Container) -> int:
    async with container.db.transaction() as session:
        return int(
            (await session.execute(select(func.count()).select_from(CatalogPriceLink))).scalar_one()
        )


async def test_the_sync_is_kept_only_if_it_landed_in_our_sandbox(
    container: Container, sandbox_server: SandboxServer
) -> None:
    assert container.settings.sandbox_mode
    # The configured address reached another sandbox than the one this server mounts.
    elsewhere = SandboxState()
    assert await sync_catalog_when_ready(container, sandbox_state=elsewhere) is False
    assert await _links(container) == 0

    assert await sync_catalog_when_ready(container, sandbox_state=sandbox_server.state) is True
    assert await _links(container) == 4
    assert sandbox_server.state.get("product", "billfold_premium") is not None
