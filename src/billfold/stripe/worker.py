"""What a running billfold server does besides answering requests: it retries webhook events
that failed (and applies any a crash left pending), and, in sandbox mode, syncs the catalog
into the embedded Stripe sandbox once the server is up so the plans show real price ids."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from billfold.catalog.service import load_catalog, sync_catalog
from billfold.container import Container
from billfold.stripe.inbox import process_due
from billfold.subscriptions.service import gateway_of

log = logging.getLogger("billfold.stripe.worker")


async def retry_loop(container: Container, interval_seconds: float) -> None:
    """Every `interval_seconds`, apply pending events and retry failed ones that are due."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            report = await process_due(container)
            if report.processed or report.failed:
                log.info("webhook retry: %d applied, %d failed", report.processed, report.failed)
        except Exception:
            log.exception("webhook retry loop")


async def sync_catalog_when_ready(container: Container, *, attempts: int = 60) -> bool:
    """Sync the catalog into Stripe (the sandbox mounted in this very server), retrying while
    the server is still starting. True when it succeeded."""
    gateway = gateway_of(container)
    for attempt in range(attempts):
        try:
            async with container.db.transaction() as session:
                catalog = await load_catalog(session, container.settings)
                report = await sync_catalog(session, gateway, catalog)
            log.info(
                "catalog synced into the sandbox: %d prices created, %d unchanged",
                report.prices_created,
                report.prices_unchanged,
            )
            return True
        except Exception as exc:
            if attempt == attempts - 1:
                log.warning("catalog sync into the sandbox failed: %s", exc)
            await asyncio.sleep(min(0.25 * (attempt + 1), 2.0))
    return False


@contextlib.asynccontextmanager
async def background_work(
    container: Container, *, sync_sandbox_catalog: bool
) -> AsyncIterator[None]:
    """Run the retry loop (and the sandbox catalog sync) for the lifetime of the server."""
    tasks: list[asyncio.Task[object]] = []
    interval = container.settings.webhook_retry_seconds
    if interval > 0:
        tasks.append(asyncio.create_task(retry_loop(container, interval)))
    if sync_sandbox_catalog and container.settings.sandbox_mode:
        tasks.append(asyncio.create_task(sync_catalog_when_ready(container)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
