"""What a running billfold server does besides answering requests: it retries webhook events
that failed (and applies any a crash left pending). (The sandbox catalog sync is the catalog's:
`billfold.catalog.sandbox_sync`.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from billfold.container import Container
from billfold.stripe.inbox import process_due

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


@contextlib.asynccontextmanager
async def background_work(container: Container) -> AsyncIterator[None]:
    """Run the retry loop for the lifetime of the server."""
    tasks: list[asyncio.Task[object]] = []
    interval = container.settings.webhook_retry_seconds
    if interval > 0:
        tasks.append(asyncio.create_task(retry_loop(container, interval)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
