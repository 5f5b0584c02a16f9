"""In sandbox mode the server syncs the catalog into its embedded sandbox, and keeps the sync
only if it landed in its own sandbox."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select

from billfold.catalog.models import CatalogPriceLink
from billfold.catalog.sandbox_sync import sync_catalog_when_ready
from billfold.container import Container
from tests.fakes.stripe_gateway import FakeStripeGateway
from tests.subscriptions.fixtures import *  # noqa: F403


class StateLike:
    """What the worker reads of the mounted sandbox's state: `lock` and `get`."""

    def __init__(self, objects: dict[tuple[str, str], Any]) -> None:
        self.lock = threading.RLock()
        self.objects = objects

    def get(self, kind: str, object_id: str) -> Any:
        return self.objects.get((kind, object_id))


async def _links(container: Container) -> int:
    async with container.db.transaction() as session:
        return int(
            (await session.execute(select(func.count()).select_from(CatalogPriceLink))).scalar_one()
        )


async def test_the_sync_is_kept_only_if_it_landed_in_our_sandbox(
    container: Container, gateway: FakeStripeGateway
) -> None:
    assert container.settings.sandbox_mode
    elsewhere = StateLike({})
    assert await sync_catalog_when_ready(container, sandbox_state=elsewhere) is False
    assert await _links(container) == 0

    ours = StateLike({("product", "billfold_premium"): {"id": "billfold_premium"}})
    assert await sync_catalog_when_ready(container, sandbox_state=ours) is True
    assert await _links(container) == 4
