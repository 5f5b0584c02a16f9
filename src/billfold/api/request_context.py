"""The request id and HTTP metrics of every request (an ASGI middleware)."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.observability import (
    HTTP_LATENCY,
    HTTP_REQUESTS,
    VALID_REQUEST_ID,
    request_id_var,
)


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestIds:
    """`req_` and 32 hex digits, unique: 16 random ones drawn once per process, then a count.
    (A uuid4 per request is a getrandom system call per request; an id names a request in the
    logs, it guards nothing.)"""

    def __init__(self) -> None:
        self._pid = 0
        self._prefix = ""
        self._count = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():  # a new process (a worker forked after the app was built)
            self._pid = os.getpid()
            self._prefix = "req_" + os.urandom(8).hex()
            self._count = itertools.count()
        return f"{self._prefix}{next(self._count):016x}"


_Labels = tuple[str, str, str]


class RequestContextMiddleware:
    """Gives every request an id (the caller's `X-Request-ID` if sane), echoes it on the
    response, and records metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.ids = RequestIds()
        # prometheus_client's `labels()` takes a lock and builds the key on every call: the
        # children of the few (method, route, status) a server sees are kept here.
        self._counters: dict[_Labels, Any] = {}
        self._latencies: dict[tuple[str, str], Any] = {}

    def _record(self, method: str, route: str, status: str, seconds: float) -> None:
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self._counters[(method, route, status)] = HTTP_REQUESTS.labels(
                method, route, status
            )
        latency = self._latencies.get((method, route))
        if latency is None:
            latency = self._latencies[(method, route)] = HTTP_LATENCY.labels(method, route)
        counter.inc()
        latency.observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if incoming and VALID_REQUEST_ID.fullmatch(incoming) else self.ids.next()
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope.get("method", "GET")
            self._record(method, _route_label(scope), str(status_holder["status"]), seconds)
            request_id_var.reset(token)
