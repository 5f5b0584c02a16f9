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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
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
)
from billfold_sandbox.faults import Fault
from billfold_sandbox.params import validate
from billfold_sandbox.resources import RESOURCE_MODULES
from billfold_sandbox.routing import Call, Route, SandboxRouter
from billfold_sandbox.state import RequestInfo, SandboxState, current_request, random_id
from billfold_sandbox.wire import decode_form

log = logging.getLogger("billfold_sandbox")


def load_routers(modules: list[str] | None = None) -> list[SandboxRouter]:
    """The `router` of every resource module (RESOURCE_MODULES by default)."""
    routers = []
    for name in modules or RESOURCE_MODULES:
        router = getattr(importlib.import_module(name), "router", None)
        if not isinstance(router, SandboxRouter):
            raise TypeError(f"{name} has no `router = SandboxRouter()`")
        routers.append(router)
    return routers


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


class _Dispatcher:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.in_flight: set[str] = set()

    def endpoint(self, route: Route) -> Any:
        async def serve(request: Request) -> Response:
            return await self.serve(route, request)

        return serve

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
        store_key: str | None = None
        owns_key = False  # this call runs under its idempotency key (not a replay/conflict)
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
            if idem_key and not route.page:
                if len(idem_key) > 255:
                    raise invalid_request(
                        "Invalid Idempotency-Key: must be at most 255 characters."
                    )
                store_key = f"{api_key}:{idem_key}"
                fingerprint = hashlib.sha256(
                    json.dumps([request.method, path, sorted(pairs)]).encode()
                ).hexdigest()
                replay = self._replay(store_key, fingerprint, path, headers)
                if replay is not None:
                    return replay
                owns_key = True
            response = await self._run(route, request, raw, api_key, request_id, idem_key, headers)
            status = response.status_code
            body_bytes = bytes(response.body)
        except StripeError as exc:
            headers.update(exc.headers)
            status, body_bytes = exc.status, json.dumps(exc.body(), indent=2).encode()
            response = Response(body_bytes, status, media_type="application/json", headers=headers)
        except Exception:
            log.exception("sandbox handler failed on %s %s", request.method, request.url.path)
            error = api_error()
            status, body_bytes = 500, json.dumps(error.body(), indent=2).encode()
            response = Response(body_bytes, status, media_type="application/json", headers=headers)
        if store_key is not None and owns_key:
            self.in_flight.discard(store_key)
            retryable = status >= 500 or status == 429 or status == 409
            if not retryable:
                state.remember_response(
                    store_key,
                    {
                        "fingerprint": fingerprint,
                        "path": path,
                        "status": status,
                        "body": body_bytes.decode(),
                        "request_id": request_id,
                    },
                )
                state.commit()
        if fault is not None and fault.after:
            if fault.timeout:
                await asyncio.sleep(fault.timeout)
            lost = _fault_error(fault)
            headers.update(lost.headers)
            return _json(lost.body(), lost.status, headers)
        return response

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

    async def _run(
        self,
        route: Route,
        request: Request,
        raw: dict[str, Any],
        api_key: str | None,
        request_id: str,
        idem_key: str | None,
        headers: dict[str, str],
    ) -> Response:
        state = self.state
        token = current_request.set(RequestInfo(request_id, idem_key))
        try:
            params = raw if route.page else validate(route.params, raw)
            if inspect.iscoroutinefunction(route.handler):
                # Async handlers (waiting for deliveries) run without the lock.
                call = Call(
                    state,
                    params,
                    dict(request.path_params),
                    request,
                    request_id,
                    idem_key,
                    api_key,
                    raw,
                )
                try:
                    result = await route.handler(call)
                finally:
                    state.commit()
                return _json(state.render(result, params.get("expand")), 200, headers)
            with state.lock:
                state.run_due_sandbox_timers()
                call = Call(
                    state=state,
                    params=params,
                    path=dict(request.path_params),
                    request=request,
                    request_id=request_id,
                    idempotency_key=idem_key,
                    api_key=api_key,
                    raw=raw,
                )
                try:
                    result = route.handler(call)
                finally:
                    state.commit()
                if isinstance(result, Response):
                    for name, value in headers.items():
                        result.headers.setdefault(name, value)
                    return result
                body = state.render(result, params.get("expand"))
        finally:
            current_request.reset(token)
        return _json(body, 200, headers)


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
    )
    app.state.sandbox = state
    return app
