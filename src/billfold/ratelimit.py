"""Rate limits on billfold's API, per caller.

Every request under `/api/` and `/trpc` counts against `BILLFOLD_RATE_LIMIT` (default 120/minute)
for its caller; a request that creates Stripe objects (a checkout or portal session, a plan change)
also counts against the tighter `BILLFOLD_RATE_LIMIT_CHECKOUT` (default 10/minute). Stripe's
webhooks, the embedded sandbox and the ops routes are never limited.

The caller is the SHA-256 of the credential the headers carry (`Authorization: Bearer` or
`X-API-Key`; the raw token is never stored), else the client address. The counts live in Redis
when `BILLFOLD_REDIS_URL` is set, so every instance shares one budget, and in the process
otherwise (one machine). A refused request is a 429 in its dialect's error shape, with
`Retry-After`; every limited response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset`
(the Unix time at which a request is free again).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.api.errors import ErrorBody, render, status_for
from billfold.config import SANDBOX_MOUNT_PATH, Settings
from billfold.errors import RateLimited

log = logging.getLogger("billfold.ratelimit")

# Stripe retries its own deliveries and signs them: limiting them would only lose events.
EXEMPT_PATHS = frozenset({"/api/v1/payments/webhook", "/api/stripe/webhook"})
EXEMPT_PREFIXES = (SANDBOX_MOUNT_PATH, "/healthz", "/readyz", "/metrics")

# Routes that create Stripe objects (checkout and portal sessions, a plan change's invoice).
STRIPE_OBJECT_ROUTES = (
    re.compile(r"/api/v1/payments/create-checkout-session"),
    re.compile(r"/api/v1/organizations/[^/]+/billing/(checkout|portal)"),
    re.compile(r"/api/subscriptions/(subscribe|update|portal)"),
    re.compile(r"/api/billing/checkout_session"),
)
STRIPE_OBJECT_PROCEDURES = frozenset(
    {"billing.createCheckoutSession", "billing.createCustomerPortalSession"}
)
TRPC_PREFIX = "/trpc"

# After Redis fails, the process counts on its own for this long before trying Redis again, so
# an outage costs one failed round trip per interval, not one per request.
REDIS_RETRY_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.5


def is_limited_path(path: str) -> bool:
    """Whether requests to `path` count against the caller's limits."""
    if path in EXEMPT_PATHS or path.rstrip("/") in EXEMPT_PATHS:
        return False
    if path.startswith(EXEMPT_PREFIXES):
        return False
    return path.startswith("/api/") or path == TRPC_PREFIX or path.startswith(TRPC_PREFIX + "/")


def creates_stripe_objects(path: str) -> bool:
    """Whether `path` is a route (or a tRPC call, batched or not) that creates Stripe objects."""
    if path.startswith(TRPC_PREFIX + "/"):
        calls = path[len(TRPC_PREFIX) + 1 :].split(",")
        return any(call in STRIPE_OBJECT_PROCEDURES for call in calls)
    path = path.rstrip("/")
    return any(pattern.fullmatch(path) for pattern in STRIPE_OBJECT_ROUTES)


def caller_key(scope: Scope) -> str:
    """Who is calling: a digest of the header credential, else the client address."""
    credential = ""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                credential = token.strip()
                break
        elif name == b"x-api-key" and value.strip():
            credential = value.decode("latin-1").strip()
    if credential:
        return "key:" + hashlib.sha256(credential.encode()).hexdigest()
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


@dataclass(frozen=True)
class RateLimitDecision:
    """The outcome of counting one request: allowed or not, and the headers that say so."""

    allowed: bool
    limit: RateLimitItem
    remaining: int
    reset_at: float  # Unix time at which one more request is allowed

    def retry_after(self, now: float | None = None) -> int:
        return max(1, math.ceil(self.reset_at - (time.time() if now is None else now)))

    def headers(self) -> list[tuple[bytes, bytes]]:
        values = {
            b"x-ratelimit-limit": str(self.limit.amount),
            b"x-ratelimit-remaining": str(max(0, self.remaining)),
            b"x-ratelimit-reset": str(math.ceil(self.reset_at)),
        }
        if not self.allowed:
            values[b"retry-after"] = str(self.retry_after())
        return [(name, value.encode()) for name, value in values.items()]


class ApiRateLimiter:
    """Counts callers' requests in a moving window (exact: no burst at a window's edge).

    With Redis configured, the counts are shared by every instance. When Redis cannot be
    reached, the limiter falls back to counting in this process and logs a warning, instead of
    failing open (no limit at all during an outage, exactly when a flood would hurt) or failing
    closed (every API call a 429 because a cache is down, while billing itself works). The
    budget is then per instance until Redis answers again.
    """

    def __init__(
        self,
        *,
        general: RateLimitItem,
        checkout: RateLimitItem,
        redis_url: str | None = None,
        key_prefix: str = "billfold",
    ) -> None:
        self.general = general
        self.checkout = checkout
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._pool: ConnectionPool | None = None
        self._shared: MovingWindowRateLimiter | None = None
        self._redis_down_until = 0.0
        if redis_url:
            self._pool = ConnectionPool.from_url(
                redis_url,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            )
            storage: Storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",  # redis-py, already a dependency (not coredis)
                wrap_exceptions=True,
                key_prefix=f"{key_prefix}:ratelimit",
                # Our own pool, so close() can release it; limits types options narrowly.
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
            self._shared = MovingWindowRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiRateLimiter:
        """The limiter `settings` describe (limits checked by `Settings.check()`)."""
        return cls(
            general=parse(settings.rate_limit),
            checkout=parse(settings.rate_limit_checkout),
            redis_url=settings.redis_url,
            key_prefix=settings.redis_prefix,
        )

    @property
    def shared(self) -> bool:
        """Whether the counts live in Redis (shared by every instance)."""
        return self._shared is not None

    async def hit(self, caller: str, *, creates_stripe_objects: bool = False) -> RateLimitDecision:
        """Count one request of `caller`; refused when any of its limits is used up."""
        items = [("api", self.general)]
        if creates_stripe_objects:
            items.append(("checkout", self.checkout))
        if self._shared is not None and time.monotonic() >= self._redis_down_until:
            try:
                return await self._hit(self._shared, items, caller)
            except StorageError as exc:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                log.warning(
                    "rate limits: Redis unreachable (%s); counting in this process for %.0f s",
                    exc.storage_error,
                    REDIS_RETRY_SECONDS,
                )
        return await self._hit(self._local, items, caller)

    @staticmethod
    async def _hit(
        limiter: MovingWindowRateLimiter, items: list[tuple[str, RateLimitItem]], caller: str
    ) -> RateLimitDecision:
        decisions = []
        # A request refused by the checkout limit has still used one of the general budget: the
        # caller did send it.
        for scope, item in items:
            allowed = await limiter.hit(item, scope, caller)
            stats = await limiter.get_window_stats(item, scope, caller)
            decision = RateLimitDecision(allowed, item, stats.remaining, stats.reset_time)
            if not allowed:
                return decision
            decisions.append(decision)
        return min(decisions, key=lambda d: d.remaining)

    async def close(self) -> None:
        """Close the Redis connections (at shutdown)."""
        if self._pool is not None:
            await self._pool.disconnect()


class RateLimitMiddleware:
    """Applies the caller's limits to `/api/` and `/trpc` before anything else runs.

    A pure ASGI middleware: a refusal never opens a transaction or reads the body. It renders
    through `billfold.api.errors.render`, so each dialect keeps its own error shape.
    """

    def __init__(self, app: ASGIApp, limiter: ApiRateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_limited_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        decision = await self.limiter.hit(
            caller_key(scope), creates_stripe_objects=creates_stripe_objects(path)
        )
        headers = decision.headers()
        if not decision.allowed:
            request = Request(scope)
            error = RateLimited(
                f"too many requests: the limit is {decision.limit.amount} per "
                f"{decision.limit.get_expiry()} s; retry in {decision.retry_after()} s"
            )
            rid = str(getattr(request.state, "request_id", ""))
            response = render(
                ErrorBody(status_for(error), error.code, error.message, None, rid), request
            )
            response.raw_headers.extend(headers)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
