"""`create_sandbox_app()`: the ASGI app that speaks Stripe's REST API over the sandbox state.

Every API route goes through `_serve`: API key, injected faults, parameter decoding and
checking, idempotency, the state lock, rendering with `expand[]`, persistence, and Stripe's
error shape. Resource modules only write handlers (see FRAMEWORK.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from billfold_sandbox.errors import (
    StripeError,
    api_error,
    authentication_error,
    idempotency_error,
    invalid_request,
    rate_limit_error,
    resource_missing,
)
from billfold_sandbox.faults import Fault
from billfold_sandbox.params import validate
from billfold_sandbox.resources import RESOURCE_MODULES
from billfold_sandbox.routing import Call, Route, SandboxRouter
from billfold_sandbox.state import RequestInfo, SandboxState, current_request, random_id
from billfold_sandbox.wire import decode_form

log = logging.getLogger("billfold_sandbox")
_T = TypeVar("_T")


def load_routers(modules: list[str] | None = None) -> list[SandboxRouter]:
    """The `router` of every resource module (RESOURCE_MODULES by default)."""
    routers = []
    for name in modules or RESOURCE_MODULES:
        router = getattr(importlib.import_module(name), "router", None)
        if not isinstance(router, SandboxRouter):
            raise TypeError(f"{name} has no `router = SandboxRouter()`")
        routers.append(router)
    return routers


# What a publishable key (`pk_test_...`, Stripe.js in a customer's browser) may call, as on
# Stripe: create PaymentMethods, and read or confirm an intent it holds the client secret of.
PUBLISHABLE_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/payment_methods"),
        ("GET", "/v1/payment_intents/{id}"),
        ("POST", "/v1/payment_intents/{id}/confirm"),
        ("POST", "/v1/payment_intents/{id}/verify_microdeposits"),
        ("GET", "/v1/setup_intents/{id}"),
        ("POST", "/v1/setup_intents/{id}/confirm"),
        ("POST", "/v1/setup_intents/{id}/verify_microdeposits"),
    }
)


def _check_publishable(
    route: Route, request: Request, raw: dict[str, Any], state: SandboxState
) -> None:
    """A publishable key reaches only PUBLISHABLE_ROUTES, and an intent only with its secret."""
    if (route.method, route.path) not in PUBLISHABLE_ROUTES:
        raise StripeError(
            "This API call cannot be made with a publishable API key. Please use a secret API "
            "key. You can find a list of your API keys at https://dashboard.stripe.com/account/"
            "apikeys.",
            status=401,
            type="invalid_request_error",
            code="secret_key_required",
        )
    object_id = request.path_params.get("id")
    if object_id is None:
        return
    found = state.find(str(object_id))
    secret = raw.get("client_secret")
    if found is None or not secret or found.get("client_secret") != secret:
        kind = "setup_intent" if route.path.startswith("/v1/setup_intents") else "payment_intent"
        raise resource_missing(kind, str(object_id))


def _api_key(request: Request, state: SandboxState) -> str:
    header = request.headers.get("authorization", "")
    key = ""
    if header.lower().startswith("bearer "):
        key = header[7:].strip()
    elif header.lower().startswith("basic "):
        import base64

        try:
            key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except ValueError:
            key = ""
    if not key:
        raise authentication_error(
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth "
            "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        )
    valid = key.startswith(("sk_test_", "rk_test_"))
    if state.api_keys is not None:
        valid = key in state.api_keys
    if key.startswith("pk_test_"):
        valid = True  # limited to what Stripe.js calls (_check_publishable)
    if not valid:
        shown = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else key
        raise StripeError(
            f"Invalid API Key provided: {shown}",
            status=401,
            type="invalid_request_error",
            code="api_key_invalid" if key.startswith("sk_") else None,
        )
    return key


async def _params(request: Request) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    pairs = list(request.query_params.multi_items())
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        body = await request.body()
        if body:
            from urllib.parse import parse_qsl

            try:
                pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise invalid_request("The request body is not valid UTF-8.") from None
    return decode_form(pairs), pairs


def _fault_error(fault: Fault) -> StripeError:
    if fault.status == 429:
        return rate_limit_error()
    return api_error(
        "The sandbox injected this failure (a fault set through /v1/test_helpers/sandbox/faults).",
        status=fault.status if fault.status >= 400 else 500,
    )


def _json(body: Any, status: int, headers: dict[str, str]) -> Response:
    return Response(
        json.dumps(body, indent=2),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _error_response(exc: StripeError, headers: dict[str, str]) -> Response:
    return _json(exc.body(), exc.status, {**headers, **exc.headers})


@dataclass
class _Work:
    """One API call on its way through the dispatcher (what the worker thread needs)."""

    route: Route
    request: Request
    raw: dict[str, Any]
    pairs: list[tuple[str, str]]
    path: str
    api_key: str | None
    request_id: str
    idem_key: str | None
    headers: dict[str, str]
    fingerprint: str = ""


class _Dispatcher:
    """Serves every route. The sandbox's work (handlers, idempotency records, rendering,
    commits: everything that takes `state.lock`) runs in a worker thread, never on the event
    loop: embedded in `billfold serve`, a long test clock advance holds the sandbox's lock, not
    the loop, so the host app's own routes keep answering meanwhile. The worker threads take
    one call at a time, in arrival order (a `CapacityLimiter(1)`, first come first served), as
    when every handler ran on the loop; queued calls wait without holding a thread. A GET that
    finds the sandbox idle is served on the loop at once (`_read_now`)."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.in_flight: set[str] = set()  # idempotency keys of calls running (under the lock)
        self._limiter: anyio.CapacityLimiter | None = None
        self._limiter_loop: object = None

    def endpoint(self, route: Route) -> Any:
        async def serve(request: Request) -> Response:
            return await self.serve(route, request)

        return serve

    async def _in_worker(self, fn: Callable[..., _T], *args: Any) -> _T:
        """`fn(*args)` in a worker thread, one at a time (a limiter per event loop)."""
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter_loop is not loop:
            self._limiter, self._limiter_loop = anyio.CapacityLimiter(1), loop
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def serve(self, route: Route, request: Request) -> Response:
        state = self.state
        request_id = random_id("req", 14)
        headers = {"Request-Id": request_id}
        version = request.headers.get("stripe-version")
        headers["Stripe-Version"] = version or state.api_version
        idem_key = request.headers.get("idempotency-key") if request.method == "POST" else None
        if idem_key:
            headers["Idempotency-Key"] = idem_key
        fault: Fault | None = None
        try:
            api_key = _api_key(request, state) if route.auth else None
            path = request.url.path.removeprefix(request.scope.get("root_path", ""))
            if route.auth and not path.startswith("/v1/test_helpers/sandbox/"):
                fault = state.faults.take(request.method, path)
            if fault is not None and not fault.after:
                if fault.timeout:
                    await asyncio.sleep(fault.timeout)
                raise _fault_error(fault)
            raw, pairs = await _params(request)
            if idem_key and len(idem_key) > 255 and not route.page:
                raise invalid_request("Invalid Idempotency-Key: must be at most 255 characters.")
            work = _Work(route, request, raw, pairs, path, api_key, request_id, idem_key, headers)
            if inspect.iscoroutinefunction(route.handler):
                response = await self._serve_async(work)
            else:
                quick = self._read_now(work) if route.method == "GET" else None
                if quick is None:
                    quick = await self._in_worker(self._serve_sync, work)
                response = quick
        except StripeError as exc:
            response = _error_response(exc, headers)
        except Exception:
            log.exception("sandbox handler failed on %s %s", request.method, request.url.path)
            response = _error_response(api_error(), headers)
        if fault is not None and fault.after:
            if fault.timeout:
                await asyncio.sleep(fault.timeout)
            lost = _fault_error(fault)
            return _error_response(lost, headers)
        return response

    def _read_now(self, work: _Work) -> Response | None:
        """A read while the sandbox is idle (its lock free, no sandbox-clock timer due) is
        served on the loop at once, sparing the thread hop: reads are short. None: the
        sandbox is busy, the read goes to the worker in turn."""
        state = self.state
        if not state.lock.acquire(blocking=False):
            return None
        try:
            due = state.timers.next_at(None)
            if due is not None and due <= state.now():
                return None
            return self._serve_sync(work)
        finally:
            state.lock.release()

    def _serve_sync(self, work: _Work) -> Response:
        """A synchronous handler's whole call, in a worker thread, under the lock: the
        idempotency check, the handler, its commit and the idempotency record."""
        with self.state.lock:
            store_key: str | None = None
            try:
                claimed = self._claim(work)
                if isinstance(claimed, Response):
                    return claimed
                store_key = claimed
                response = self._run_sync(work)
            except StripeError as exc:
                response = _error_response(exc, work.headers)
            except Exception:
                log.exception("sandbox handler failed on %s %s", work.route.method, work.path)
                response = _error_response(api_error(), work.headers)
            self._finish(work, store_key, response)
            return response

    async def _serve_async(self, work: _Work) -> Response:
        """An async handler (waiting) runs on the loop without the lock; what it needs of the
        state before and after runs in the worker."""
        claimed = await self._in_worker(self._claim, work)
        if isinstance(claimed, Response):
            return claimed
        try:
            response = await self._run_async(work)
        except StripeError as exc:
            response = _error_response(exc, work.headers)
        except Exception:
            log.exception("sandbox handler failed on %s %s", work.route.method, work.path)
            response = _error_response(api_error(), work.headers)
        await self._in_worker(self._finish, work, claimed, response)
        return response

    def _claim(self, work: _Work) -> Response | str | None:
        """Publishable-key checks and the idempotency key: a stored response to replay, the
        key this call now runs under, or None (no key)."""
        with self.state.lock:
            if work.api_key is not None and work.api_key.startswith("pk_test_"):
                _check_publishable(work.route, work.request, work.raw, self.state)
            if not work.idem_key or work.route.page:
                return None
            store_key = f"{work.api_key}:{work.idem_key}"
            work.fingerprint = hashlib.sha256(
                json.dumps([work.request.method, work.path, sorted(work.pairs)]).encode()
            ).hexdigest()
            replay = self._replay(store_key, work.fingerprint, work.path, work.headers)
            return replay if replay is not None else store_key

    def _finish(self, work: _Work, store_key: str | None, response: Response) -> None:
        """Release the idempotency key; remember the response unless it may be retried."""
        if store_key is None:
            return
        with self.state.lock:
            self.in_flight.discard(store_key)
            status = response.status_code
            if status >= 500 or status == 429 or status == 409:
                return
            self.state.remember_response(
                store_key,
                {
                    "fingerprint": work.fingerprint,
                    "path": work.path,
                    "status": status,
                    "body": bytes(response.body).decode(),
                    "request_id": work.request_id,
                },
            )
            self.state.commit()

    def _replay(
        self, store_key: str, fingerprint: str, path: str, headers: dict[str, str]
    ) -> Response | None:
        record = self.state.idempotency.get(store_key)
        if record is None:
            if store_key in self.in_flight:
                raise StripeError(
                    "There is currently another in-progress request using this Idempotent Key "
                    "(that probably means you submitted twice, and the other request is still "
                    "going through): please try again later.",
                    status=409,
                    code="idempotency_key_in_use",
                )
            self.in_flight.add(store_key)
            return None
        if record["path"] != path:
            raise idempotency_error(
                "Keys for idempotent requests can only be used for the same endpoint they "
                "were first used for."
            )
        if record["fingerprint"] != fingerprint:
            raise idempotency_error(
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{store_key.split(':', 1)[1]}' "
                "if you meant to execute a different request."
            )
        replay_headers = dict(headers)
        replay_headers["Idempotent-Replayed"] = "true"
        replay_headers["Original-Request"] = record.get("request_id", "")
        return Response(
            record["body"],
            status_code=record["status"],
            media_type="application/json",
            headers=replay_headers,
        )

    def _call(self, work: _Work, params: dict[str, Any]) -> Call:
        return Call(
            state=self.state,
            params=params,
            path=dict(work.request.path_params),
            request=work.request,
            request_id=work.request_id,
            idempotency_key=work.idem_key,
            api_key=work.api_key,
            raw=work.raw,
        )

    def _run_sync(self, work: _Work) -> Response:
        state, route = self.state, work.route
        token = current_request.set(RequestInfo(work.request_id, work.idem_key))
        try:
            params = work.raw if route.page else validate(route.params, work.raw)
            with state.lock:
                state.run_due_sandbox_timers()
                try:
                    result = route.handler(self._call(work, params))
                finally:
                    state.commit()
                if isinstance(result, Response):
                    for name, value in work.headers.items():
                        result.headers.setdefault(name, value)
                    return result
                body = state.render(result, params.get("expand"))
        finally:
            current_request.reset(token)
        return _json(body, 200, work.headers)

    async def _run_async(self, work: _Work) -> Response:
        state, route = self.state, work.route
        token = current_request.set(RequestInfo(work.request_id, work.idem_key))
        try:
            params = work.raw if route.page else validate(route.params, work.raw)
            try:
                result = await route.handler(self._call(work, params))  # type: ignore[misc]
            finally:
                await self._in_worker(state.commit)
            body = await self._in_worker(state.render, result, params.get("expand"))
        finally:
            current_request.reset(token)
        return _json(body, 200, work.headers)


def create_sandbox_app(
    state: SandboxState | None = None,
    *,
    state_file: Path | str | None = None,
    api_keys: set[str] | None = None,
    modules: list[str] | None = None,
) -> Starlette:
    """Build the sandbox ASGI app over `state` (a fresh one, or loaded from `state_file`).

    `api_keys` limits the accepted secret keys (default: any `sk_test_...`). The state is at
    `app.state.sandbox`.
    """
    state = state or SandboxState(state_file, api_keys=api_keys)
    if api_keys is not None:
        state.api_keys = api_keys
    routers = load_routers(modules)
    for router in routers:
        router.install(state)
    dispatcher = _Dispatcher(state)
    routes = [r for router in routers for r in router.routes]
    # Literal segments before parameters: /v1/customers/search before /v1/customers/{id}.
    routes.sort(key=lambda r: r.path.count("{"))
    starlette_routes = [
        StarletteRoute(r.path, dispatcher.endpoint(r), methods=[r.method]) for r in routes
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        path = request.url.path.removeprefix(request.scope.get("root_path", ""))
        error = invalid_request(
            f"Unrecognized request URL ({request.method}: {path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            status=404,
        )
        return _json(error.body(), 404, {"Request-Id": random_id("req", 14)})

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("sandbox handler failed", exc_info=exc)
        error = api_error()
        return _json(error.body(), 500, {"Request-Id": random_id("req", 14)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.save()  # a fresh snapshot; every change is in the journal already

    app = Starlette(
        routes=starlette_routes,
        exception_handlers={404: not_found, 405: not_found, 500: server_error},
        lifespan=lifespan,
        # Stripe.js (js/v3) calls the API from the merchant's pages, another origin.
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Stripe-Version"],
            )
        ],
    )
    app.state.sandbox = state
    return app
