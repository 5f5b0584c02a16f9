"""create_app(): the composition root that wires settings, database, clock and adapters."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI

from billfold import __version__
from billfold.api import (
    audit,
    billing,
    credits,
    ops,
    organizations,
    panel_links,
    payments_billing,
    payments_v1,
    subscriptions,
    trpc,
    webhooks,
)
from billfold.api.body_limits import BodyLimitMiddleware
from billfold.api.cors import install_cors
from billfold.api.errors import install_error_handlers
from billfold.api.ratelimit import ApiRateLimiter, RateLimitMiddleware
from billfold.api.request_context import RequestContextMiddleware
from billfold.api.sandbox_mount import mount_sandbox
from billfold.catalog.sandbox_sync import sandbox_catalog_sync
from billfold.clock import Clock, SystemClock
from billfold.config import Settings, get_settings
from billfold.container import Container
from billfold.db.engine import Database
from billfold.jobs import Worker
from billfold.stripe.gateway import StripeClientGateway, StripeGateway
from billfold.web import credits as credit_pages
from billfold.web import customer, operator, signin
from billfold.web import payments as panel_payments
from billfold.web.assets import mount_panel_static
from billfold.wiring import wire

logger = logging.getLogger("billfold")

# Every dialect's router, imported (a misspelt or moved module fails here, and mypy sees it).
# A request is matched against the routes in this order (twice: FastAPI matches, then handles),
# so the routers of the reads apps make on every page (subscription status, credit balance)
# come first after the probes; no two routers share a path, so the order decides nothing else.
ROUTERS: tuple[APIRouter, ...] = (
    ops.router,
    payments_v1.router,
    credits.router,
    audit.router,
    organizations.router,
    trpc.router,
    subscriptions.router,
    billing.router,
    webhooks.router,
    payments_billing.router,
    panel_links.router,
)
# The billing panel at `/` and the operator's console (billfold.web): pages, not API routes.
PANEL_ROUTERS: tuple[APIRouter, ...] = (
    signin.router,
    customer.router,
    operator.router,
    credit_pages.router,
    panel_payments.router,
)


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    clock: Clock | None = None,
    stripe_gateway: StripeGateway | None = None,
) -> FastAPI:
    """Build the billfold ASGI app. Tests pass their own database, clock and Stripe gateway."""
    settings = settings or get_settings()
    settings.check()
    db = database or Database(settings.effective_database_url, pool_size=settings.db_pool_size)
    container = wire(Container(settings=settings, db=db, clock=clock or SystemClock()))
    container.stripe_gateway = stripe_gateway or StripeClientGateway(settings)
    rate_limiter = ApiRateLimiter.from_settings(settings)
    owns_db = database is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info(settings.mode_line())
        if settings.billing_table_name:
            logger.info(
                "billfold: BILLING_TABLE_NAME is set but not used: billfold keeps payment "
                "methods, dues and payments in its own database"
            )
        try:
            async with AsyncExitStack() as stack:
                # The embedded job worker (unless BILLFOLD_EMBEDDED_WORKER=off): `billfold
                # serve` alone runs every job, webhook events' included.
                if settings.embedded_worker == "on" and container.jobs is not None:
                    worker = Worker.from_settings(container, container.jobs)
                    app.state.worker = await stack.enter_async_context(worker.running())
                # In sandbox mode, the catalog sync into the sandbox, once the server listens
                # (its calls to the sandbox's address build the mounted sandbox).
                sandbox = getattr(app.state, "sandbox", None)
                await stack.enter_async_context(
                    sandbox_catalog_sync(
                        container,
                        enabled=stripe_gateway is None,
                        sandbox_state=sandbox.state if sandbox is not None else None,
                    )
                )
                yield
        finally:
            await rate_limiter.close()
            if owns_db:
                await db.dispose()

    app = FastAPI(
        title="billfold",
        version=__version__,
        description="Self-hosted billing for SaaS products that take payments through Stripe.",
        lifespan=lifespan,
        # /docs is ops.docs, on the package's own Swagger UI files; ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.container = container
    app.state.rate_limiter = rate_limiter
    install_error_handlers(app)
    ops.mount_docs_assets(app)
    mount_sandbox(app, settings)  # only in sandbox mode (no STRIPE_SECRET_KEY), never in production
    for router in ROUTERS:
        app.include_router(router)
    for router in PANEL_ROUTERS:
        app.include_router(router)
    mount_panel_static(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)  # 413/400 before a route reads
    # Inside CORS (a browser can read a 429) and the request id (a 429 carries one). It reads
    # each request's route from the app's route list to find its declared rate-limit class.
    app.add_middleware(RateLimitMiddleware, limiter=rate_limiter, routes=app.router.routes)
    install_cors(app, settings)  # the app's own frontends (FRONTEND_URL's host and the like)
    app.add_middleware(RequestContextMiddleware)
    return app
