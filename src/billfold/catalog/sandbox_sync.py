"""In sandbox mode, `billfold serve` syncs the catalog into its embedded Stripe sandbox once the
server is up, so the plans show real price ids at once (wired by `create_app`'s lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from billfold.catalog.service import Catalog, load_catalog, sync_catalog
from billfold.container import Container
from billfold.stripe.gateway import gateway_of

log = logging.getLogger("billfold.catalog")


class NotOurSandbox(Exception):
    """The Stripe API at the configured address is not this server's embedded sandbox."""


def _landed_in(state: Any, catalog: Catalog) -> bool:
    if callable(state):  # the mounted sandbox's `state()`, which builds it if no call did
        state = state()
    with state.lock:
        return all(state.get("product", plan.product_id) is not None for plan in catalog.plans)


async def sync_catalog_when_ready(
    container: Container, *, sandbox_state: Any | None = None, attempts: int = 60
) -> bool:
    """Sync the catalog into Stripe (the sandbox mounted in this very server), retrying while
    the server is still starting. With `sandbox_state` (the mounted sandbox's state, or the
    function returning it), the sync is kept
    only if the products landed there: the configured address (host and port) might reach
    another server. True when it succeeded."""
    gateway = gateway_of(container)
    for attempt in range(attempts):
        try:
            async with container.db.transaction() as session:
                catalog = await load_catalog(session, container.settings)
                report = await sync_catalog(session, gateway, catalog, clock=container.clock)
                if sandbox_state is not None and not await asyncio.to_thread(
                    _landed_in, sandbox_state, catalog
                ):
                    raise NotOurSandbox(container.settings.stripe_api_base)
            log.info(
                "catalog synced into the sandbox: %d prices created, %d unchanged",
                report.prices_created,
                report.prices_unchanged,
            )
            return True
        except NotOurSandbox as exc:
            log.warning(
                "not syncing the catalog: %s is not this server's sandbox "
                "(set BILLFOLD_PORT / BILLFOLD_PUBLIC_URL to where billfold listens)",
                exc,
            )
            return False
        except Exception as exc:
            if attempt == attempts - 1:
                log.warning("catalog sync into the sandbox failed: %s", exc)
            await asyncio.sleep(min(0.25 * (attempt + 1), 2.0))
    return False


@contextlib.asynccontextmanager
async def sandbox_catalog_sync(
    container: Container, *, enabled: bool, sandbox_state: Any | None = None
) -> AsyncIterator[None]:
    """While the server runs: sync the catalog into the embedded sandbox (sandbox mode only)."""
    task: asyncio.Task[bool] | None = None
    if enabled and container.settings.sandbox_mode:
        task = asyncio.create_task(sync_catalog_when_ready(container, sandbox_state=sandbox_state))
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
