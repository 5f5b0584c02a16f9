"""Rate limits on billfold's API, per caller.

Every route says its own rate-limit class, next to its path (`@rate_limit(...)` under the route
decorator; a tRPC procedure in `ProcedureRouter.mutation(..., rate_limit=...)`):
- `API` (the default of every API route): counts against `BILLFOLD_RATE_LIMIT` (default
  120/minute) for its caller;
- `CHECKOUT`: a route that creates Stripe objects (a checkout or portal session, a plan change)
  also counts against the tighter `BILLFOLD_RATE_LIMIT_CHECKOUT` (default 10/minute);
- `WEBHOOK`: Stripe's webhooks, counted per client address against the generous
  `BILLFOLD_RATE_LIMIT_WEBHOOK` (default 1200/minute) only;
- `EXEMPT`: never counted (the ops probes).
The middleware finds the route a request will reach the way the router does, before anything
runs; mounted apps (the embedded sandbox) and framework pages (`/docs`) are not counted, and a
path no route matches counts as `API`. Each call of a tRPC batch counts (a route may declare a
function giving the class of each call).

Every counted request first costs its client address's ceiling (`BILLFOLD_RATE_LIMIT_ADDRESS`,
default 600/minute). The address is the peer's, or, when the peer is one of
`BILLFOLD_TRUSTED_PROXIES`, the right-most `X-Forwarded-For` address that is not. A request
without a header credential is then counted against its address's budgets. One with a credential
is counted against its authenticated subject (a user, or an API key's id: every token of a user
shares one budget) when authentication succeeds (`charge_subject`, from `auth_deps`); a 401
costs the address's failed-attempt budget (`BILLFOLD_RATE_LIMIT_AUTH_FAILURES`, default
20/minute), and once that is used up, credentials from the address are refused before they are
looked up. A request whose credential never authenticates (a public route, or input refused
before its caller is looked at) is not let off with the ceiling alone: refused (4xx), it costs
the failed-attempt budget; served, it costs the address's budgets, as a request without a
credential does. A route that takes its credential in the body (tRPC's `token` input:
`rate_limit(..., credential_in_body=True)`) is counted as one with a credential, so its callers
are counted by subject too. The counts live in Redis when `BILLFOLD_REDIS_URL` is set, so every
instance shares one budget, and in the process otherwise (one machine); no credential or subject
is stored as it is. A refused request is a 429 in its dialect's error shape, with `Retry-After`;
every limited response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` (the Unix time at
which a request is free again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.routing import APIRoute, iter_route_contexts
from limits import RateLimitItem, WindowStats, parse
from limits.errors import StorageError
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.api.errors import ErrorBody, render, status_for
from billfold.config import Settings
from billfold.errors import RateLimited

if TYPE_CHECKING:  # Redis and limits' storages are imported only when BILLFOLD_REDIS_URL is set
    from limits.aio.strategies import MovingWindowRateLimiter
    from redis.asyncio import ConnectionPool

log = logging.getLogger("billfold.api.ratelimit")


class RateLimitClass(StrEnum):
    """Which of the caller's budgets a route's requests count against."""

    EXEMPT = "exempt"  # never counted
    API = "api"  # the general budget
    CHECKOUT = "checkout"  # the general budget and the tighter one: it creates Stripe objects
    WEBHOOK = "webhook"  # Stripe's webhooks: a generous budget of their own, per address


# A route whose class depends on the call (a tRPC batch names its procedures in the path) gives
# a function of the matched scope (with its `path_params`) instead of a class: the class of each
# call the request makes (a batch of n calls counts n times).
Classifier = Callable[[Scope], RateLimitClass | Sequence[RateLimitClass]]


@dataclass(frozen=True)
class RateLimitCost:
    """What one request costs: calls against the general budget, against the checkout one, and
    (a webhook) against the webhook budget of its address."""

    general: int
    checkout: int
    webhook: int = 0
    # The route may carry its caller's credential in the body, where the middleware cannot see
    # it: counted as a credentialed request, by subject once authenticated.
    body_credential: bool = False

    @classmethod
    def of(cls, classes: Sequence[RateLimitClass]) -> RateLimitCost:
        counted = [c for c in classes if c in (RateLimitClass.API, RateLimitClass.CHECKOUT)]
        return cls(
            len(counted),
            sum(c is RateLimitClass.CHECKOUT for c in counted),
            sum(c is RateLimitClass.WEBHOOK for c in classes),
        )

    @property
    def tightest(self) -> RateLimitClass:
        if self.checkout:
            return RateLimitClass.CHECKOUT
        if self.general:
            return RateLimitClass.API
        return RateLimitClass.WEBHOOK if self.webhook else RateLimitClass.EXEMPT


E = TypeVar("E", bound=Callable[..., Any])
_DECLARED = "__billfold_rate_limit__"
_BODY_CREDENTIAL = "__billfold_body_credential__"

# After Redis fails, the process counts on its own for this long before trying Redis again, so
# an outage costs one failed round trip per interval, not one per request.
REDIS_RETRY_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.5


def rate_limit(
    declared: RateLimitClass | Classifier, *, credential_in_body: bool = False
) -> Callable[[E], E]:
    """Declare the rate-limit class of a route's endpoint (written under `@router.post(...)`);
    `credential_in_body` when the route may read its caller's credential from the body."""

    def declare(endpoint: E) -> E:
        vars(endpoint)[_DECLARED] = declared
        vars(endpoint)[_BODY_CREDENTIAL] = credential_in_body
        return endpoint

    return declare


def _declared_cost(route: BaseRoute, scope: Scope) -> RateLimitCost:
    if not isinstance(route, APIRoute):
        return RateLimitCost(0, 0)  # a mount (the sandbox) or the framework's own pages
    attributes: dict[str, Any] = getattr(route.endpoint, "__dict__", {})
    declared: RateLimitClass | Classifier = attributes.get(_DECLARED, RateLimitClass.API)
    classes = declared if isinstance(declared, RateLimitClass) else declared(scope)
    cost = RateLimitCost.of([classes] if isinstance(classes, RateLimitClass) else classes)
    if attributes.get(_BODY_CREDENTIAL, False):
        cost = dataclasses.replace(cost, body_credential=True)
    return cost


def rate_limit_class(routes: Sequence[BaseRoute], scope: Scope) -> RateLimitClass:
    """The tightest class the request `scope` counts against (see `rate_limit_cost`)."""
    return rate_limit_cost(routes, scope).tightest


def rate_limit_cost(routes: Sequence[BaseRoute], scope: Scope) -> RateLimitCost:
    """The class declared by the route `scope` reaches, matched as the router matches it (a
    route matching all but the method answers 405 and counts as that route). `routes` is an
    app's route tree; FastAPI's `iter_route_contexts` flattens its included routers."""
    partial: tuple[BaseRoute, Scope] | None = None
    for context in iter_route_contexts(routes):
        match, child_scope = context.matches(scope)
        if match is Match.FULL:
            return _declared_cost(context.original_route, {**scope, **child_scope})
        if match is Match.PARTIAL and partial is None:
            partial = (context.original_route, {**scope, **child_scope})
    if partial is not None:
        return _declared_cost(*partial)
    return RateLimitCost(1, 0)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(proxies: Sequence[str]) -> tuple[Network, ...]:
    """`BILLFOLD_TRUSTED_PROXIES` (checked by `Settings.check()`) as networks."""
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(scope: Scope, trusted: Sequence[Network] = ()) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    right-most address of `X-Forwarded-For` that is not a trusted proxy (what is left of it was
    written by the client and proves nothing)."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    chain: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            chain += [hop.strip() for hop in value.decode("latin-1").split(",") if hop.strip()]
    for hop in reversed(chain):
        if not _trusted(hop, trusted):
            return hop
    return chain[0] if chain else peer


def header_credential(scope: Scope) -> str:
    """The credential the headers carry (`Authorization: Bearer` or `X-API-Key`), else ""."""
    credential = ""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                credential = token.strip()
                break
        elif name == b"x-api-key" and value.strip():
            credential = value.decode("latin-1").strip()
    return credential


def caller_key(scope: Scope, trusted: Sequence[Network] = ()) -> str:
    """Who an unauthenticated request comes from: its client address."""
    return "addr:" + client_address(scope, trusted)


def subject_key(kind: str, subject: str) -> str:
    """Who an authenticated request comes from: the principal (a user, an API key's id), so
    every token of one user shares one budget. Digested: no id is stored as it is."""
    found = _SUBJECT_KEYS.get((kind, subject))
    if found is None:
        if len(_SUBJECT_KEYS) >= SUBJECT_KEYS_KEPT:
            _SUBJECT_KEYS.clear()
        digest = hashlib.sha256(f"{kind}:{subject}".encode()).hexdigest()
        found = _SUBJECT_KEYS[(kind, subject)] = "subj:" + digest
    return found


# The digests of the callers seen lately (a digest per request is most of what counting costs).
SUBJECT_KEYS_KEPT = 4096
_SUBJECT_KEYS: dict[tuple[str, str], str] = {}


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


class LocalMovingWindow:
    """The moving window counted in this process, answering as limits' `MovingWindowRateLimiter`
    does (`hit`, `get_window_stats`): each caller's request times in a deque, oldest first.

    limits' own in-memory storage hands a bisect to a worker thread for every key on every
    request (its expiry task), a thread hop per request for what is a few list operations."""

    PRUNE_EVERY = 10_000  # hits between sweeps of the callers gone quiet

    def __init__(self) -> None:
        self._events: dict[tuple[Any, ...], tuple[float, deque[float]]] = {}
        self._hits = 0

    def _window(
        self, item: RateLimitItem, identifiers: tuple[str, ...], now: float
    ) -> deque[float]:
        # What limits' `key_for` says (the item's amount, multiples and granularity, and the
        # identifiers), as a tuple: its string is built by a slow path of limits per call.
        key = (item.amount, item.multiples, item.GRANULARITY.seconds, identifiers)
        expiry = item.get_expiry()
        found = self._events.get(key)
        if found is None:
            found = self._events[key] = (expiry, deque())
        events = found[1]
        while events and events[0] <= now - expiry:
            events.popleft()
        return events

    async def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        now = time.time()
        self._hits += 1
        if self._hits % self.PRUNE_EVERY == 0:
            self._prune(now)
        events = self._window(item, identifiers, now)
        if len(events) + cost > item.amount:
            return False
        events.extend([now] * cost)
        return True

    def hit_now(
        self, item: RateLimitItem, identifiers: tuple[str, ...], cost: int
    ) -> tuple[bool, WindowStats]:
        """`hit` (a cost of 0 only looks), and the window's stats after it, at once."""
        now = time.time()
        if cost:
            self._hits += 1
            if self._hits % self.PRUNE_EVERY == 0:
                self._prune(now)
        events = self._window(item, identifiers, now)
        allowed = len(events) + cost <= item.amount if cost else len(events) < item.amount
        if cost and allowed:
            events.extend([now] * cost)
        start = events[0] if events else now
        return allowed, WindowStats(start + item.get_expiry(), item.amount - len(events))

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        return self.hit_now(item, identifiers, 0)[1]

    def _prune(self, now: float) -> None:
        quiet = [k for k, (expiry, ev) in self._events.items() if not ev or ev[-1] <= now - expiry]
        for key in quiet:
            del self._events[key]


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
        address: RateLimitItem | None = None,
        auth_failures: RateLimitItem | None = None,
        webhook: RateLimitItem | None = None,
        trusted_proxies: Sequence[str] = (),
        redis_url: str | None = None,
        key_prefix: str = "billfold",
    ) -> None:
        self.general = general
        self.checkout = checkout
        self.address = address or parse("600/minute")
        self.auth_failures = auth_failures or parse("20/minute")
        self.webhook = webhook or parse("1200/minute")
        self.trusted = trusted_networks(trusted_proxies)
        self._local = LocalMovingWindow()
        self._pool: ConnectionPool | None = None
        self._shared: MovingWindowRateLimiter | None = None
        self._redis_down_until = 0.0
        if redis_url:
            from limits.aio.storage import RedisStorage, Storage
            from limits.aio.strategies import MovingWindowRateLimiter
            from redis.asyncio import ConnectionPool

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
            address=parse(settings.rate_limit_address),
            auth_failures=parse(settings.rate_limit_auth_failures),
            webhook=parse(settings.rate_limit_webhook),
            trusted_proxies=settings.trusted_proxies,
            redis_url=settings.redis_url,
            key_prefix=settings.redis_prefix,
        )

    @property
    def shared(self) -> bool:
        """Whether the counts live in Redis (shared by every instance)."""
        return self._shared is not None

    async def hit(
        self, caller: str, cost: RateLimitCost = RateLimitCost(1, 0)
    ) -> RateLimitDecision:
        """Count the calls of one request of `caller`; refused when any of its limits cannot
        take them all."""
        items = [("api", self.general, cost.general)]
        if cost.checkout:
            items.append(("checkout", self.checkout, cost.checkout))
        return await self.count(caller, items)

    async def count(
        self, caller: str, items: list[tuple[str, RateLimitItem, int]]
    ) -> RateLimitDecision:
        """Count `caller`'s calls against each `(scope, item, cost)`; a cost of 0 only looks."""
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
        limiter: MovingWindowRateLimiter | LocalMovingWindow,
        items: list[tuple[str, RateLimitItem, int]],
        caller: str,
    ) -> RateLimitDecision:
        decisions = []
        # A request refused by the checkout limit has still used one of the general budget: the
        # caller did send it.
        for scope, item, cost in items:
            if isinstance(limiter, LocalMovingWindow):
                allowed, stats = limiter.hit_now(item, (scope, caller), cost)
            elif cost:
                allowed = await limiter.hit(item, scope, caller, cost=cost)
                stats = await limiter.get_window_stats(item, scope, caller)
            else:
                stats = await limiter.get_window_stats(item, scope, caller)
                allowed = stats.remaining > 0
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
    """Applies the caller's limits, by the class its route declares, before anything else runs.

    A pure ASGI middleware: a refusal never opens a transaction or reads the body. It renders
    through `billfold.api.errors.render`, so each dialect keeps its own error shape. `routes` is
    the app's route list (the same list object, so routes included later are seen).
    """

    CLASS_CACHE_SIZE = 1024

    def __init__(self, app: ASGIApp, limiter: ApiRateLimiter, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.limiter = limiter
        self.routes = routes
        # The class of a method and path (and so of its path parameters) never changes while
        # the route list does not: matching walks every route, once per distinct request line.
        self._classes: dict[tuple[int, str, str, str], RateLimitCost] = {}

    def _cost_of(self, scope: Scope) -> RateLimitCost:
        key = (len(self.routes), scope.get("method", ""), scope.get("root_path", ""), scope["path"])
        found = self._classes.get(key)
        if found is None:
            if len(self._classes) >= self.CLASS_CACHE_SIZE:
                self._classes.clear()
            found = self._classes[key] = rate_limit_cost(self.routes, scope)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cost = self._cost_of(scope)
        if not cost.general and not cost.webhook:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        address = caller_key(scope, limiter.trusted)
        if cost.webhook:
            decision = await limiter.count(address, [("webhook", limiter.webhook, cost.webhook)])
            await self._answer(decision, scope, receive, send)
            return
        # The address's ceiling comes first, whoever the request says it is from.
        ceiling = await limiter.count(address, [("address", limiter.address, cost.general)])
        if not ceiling.allowed or not (cost.body_credential or header_credential(scope)):
            # No credential: the address is the caller.
            decision = ceiling if not ceiling.allowed else await limiter.hit(address, cost)
            await self._answer(decision, scope, receive, send)
            return
        # A credential: refused before it is looked up when the address's failed attempts are
        # used up; else counted against its subject once authenticated (`charge_subject`).
        failures = await limiter.count(address, [("authfail", limiter.auth_failures, 0)])
        if not failures.allowed:
            await _refuse(failures, scope, receive, send)
            return
        pending = PendingLimit(limiter, cost)
        scope.setdefault("state", {})[PENDING_STATE] = pending

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                decision = pending.decision or ceiling
                if status == 401 or (pending.decision is None and status >= 400):
                    # A failed attempt, or a credential refused before it was ever looked at
                    # (never authenticated): either costs the address's failed attempts.
                    item = ("authfail", limiter.auth_failures, 1)
                    decision = await limiter.count(address, [item])
                elif pending.decision is None:
                    # Served without authenticating (a public route): the credential bought
                    # nothing, so the request costs the address as an anonymous one does.
                    decision = await limiter.hit(address, cost)
                message["headers"] = [*message.get("headers", []), *decision.headers()]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _answer(
        self, decision: RateLimitDecision, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if not decision.allowed:
            await _refuse(decision, scope, receive, send)
            return
        headers = decision.headers()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _refusal(decision: RateLimitDecision) -> RateLimited:
    return RateLimited(
        f"too many requests: the limit is {decision.limit.amount} per "
        f"{decision.limit.get_expiry()} s; retry in {decision.retry_after()} s"
    )


async def _refuse(decision: RateLimitDecision, scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope)
    error = _refusal(decision)
    rid = str(getattr(request.state, "request_id", ""))
    response = render(ErrorBody(status_for(error), error.code, error.message, None, rid), request)
    response.raw_headers.extend(decision.headers())
    await response(scope, receive, send)


PENDING_STATE = "billfold_rate_limit"


class PendingLimit:
    """A request's per-caller limits, waiting for its caller to be authenticated."""

    def __init__(self, limiter: ApiRateLimiter, cost: RateLimitCost) -> None:
        self.limiter = limiter
        self.cost = cost
        self.decision: RateLimitDecision | None = None
        self._charged: set[str] = set()

    async def charge(self, caller: str) -> None:
        """Count the request against `caller` (once per request); RateLimited when refused."""
        if caller not in self._charged:
            self._charged.add(caller)
            decision = await self.limiter.hit(caller, self.cost)
            if self.decision is None or self.decision.allowed:
                self.decision = decision
        if self.decision is not None and not self.decision.allowed:
            raise _refusal(self.decision)


async def charge_subject(request: Request, kind: str, subject: str) -> None:
    """Count the request against its authenticated subject (called by authentication): every
    token of a user, and each API key, has one budget; RateLimited (429) when it is used up."""
    pending = getattr(request.state, PENDING_STATE, None)
    if isinstance(pending, PendingLimit):
        await pending.charge(subject_key(kind, subject))
