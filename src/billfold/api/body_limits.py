"""Request bodies and the text of a request, bounded before any route sees them.

`BodyLimitMiddleware` (pure ASGI, outermost but for the request id) answers:

- 413 when a `Content-Length` announces more than the route's limit, before reading a byte,
  and as soon as the `http.request` chunks it counts pass the limit (a chunked body is never
  read whole): `max_body_bytes` (64 KiB) for every route, `max_webhook_body_bytes` (1 MiB) for
  Stripe's webhook routes;
- 400 for a JSON body nested deeper than `max_json_depth` (32), and for a NUL character or a
  lone UTF-16 surrogate in a JSON body (as a `\\u` escape), in the path or the query string,
  or in a header: PostgreSQL's text and JSONB refuse both, so they would be a 500 there.

The body it read is handed on to the app unchanged. Refusals are rendered by
`billfold.api.errors.render`, in the error shape of the route's dialect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billfold.api.errors import ErrorBody, render
from billfold.config import SANDBOX_MOUNT_PATH, Settings

# Stripe's webhook routes: larger events, the same checks.
WEBHOOK_PATHS = frozenset({"/api/stripe/webhook", "/api/v1/payments/webhook"})
# A webhook event nests deeper than a route's input (expanded objects, line items).
WEBHOOK_MIN_DEPTH = 64

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")
# A `\u0000` escape, or a `\uD800`-`\uDFFF` escape that is not half of a pair (an even run of
# backslashes before it is escaped backslashes, not an escape).
_BAD_ESCAPE = re.compile(
    rb"(?<!\\)(?:\\\\)*(?:\\u0000"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)
_PERCENT_NUL = re.compile(rb"%00")


class RequestRefused(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text `body` nests arrays and objects deeper than `limit` (strings
    removed first, so brackets in them do not count; text that is not JSON is left to the
    parser)."""
    depth = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b"", body)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def has_bad_escape(body: bytes) -> bool:
    """Whether the JSON text `body` escapes a NUL or a lone surrogate."""
    return _BAD_ESCAPE.search(body) is not None


def text_is_storable(value: str) -> bool:
    """No NUL and no lone surrogate: text PostgreSQL can store."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_json(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media in (b"", b"application/json") or media.endswith(b"+json")
    return True  # FastAPI reads a body without a Content-Type as JSON


def check_json_body(body: bytes, depth_limit: int) -> None:
    if json_depth_exceeds(body, depth_limit):
        raise RequestRefused(
            400, "validation_error", f"the JSON body nests deeper than {depth_limit}", "body"
        )
    if has_bad_escape(body):
        raise RequestRefused(
            400, "validation_error", "text may not hold NUL characters or lone surrogates", "body"
        )


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings | None = None,
        max_body_bytes: int | None = None,
        max_webhook_body_bytes: int | None = None,
        max_json_depth: int | None = None,
    ) -> None:
        self.app = app
        defaults = settings or Settings()
        self.max_body_bytes = max_body_bytes or defaults.max_body_bytes
        self.max_webhook_body_bytes = max_webhook_body_bytes or defaults.max_webhook_body_bytes
        self.max_json_depth = max_json_depth or defaults.max_json_depth

    def _limits(self, scope: Scope) -> tuple[int, int]:
        if scope.get("path", "") in WEBHOOK_PATHS:
            return self.max_webhook_body_bytes, max(self.max_json_depth, WEBHOOK_MIN_DEPTH)
        return self.max_body_bytes, self.max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(SANDBOX_MOUNT_PATH + "/"):
            # The embedded sandbox is Stripe, with Stripe's own limits.
            await self.app(scope, receive, send)
            return
        limit, depth = self._limits(scope)
        try:
            bodiless = self._check_head(scope, limit)
            if bodiless:  # nothing to count or check: the app reads what comes itself
                await self.app(scope, receive, send)
                return
            body, more = await self._read(scope, receive, limit, depth)
        except RequestRefused as refused:
            await self._refuse(scope, receive, send, refused)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await more()

        await self.app(scope, replay, send)

    def _check_head(self, scope: Scope, limit: int) -> bool:
        """Refuse what the head shows is wrong; True when the request announces no body (a
        GET or HEAD with neither Content-Length nor Transfer-Encoding: HTTP/1.1 frames a body
        by one or the other, so the server hands the app an empty one)."""
        path = scope.get("path", "")
        if not text_is_storable(path):
            raise RequestRefused(
                400, "validation_error", "the path may not hold NUL characters", "path"
            )
        query = scope.get("query_string", b"")
        if b"\x00" in query or _PERCENT_NUL.search(query):
            raise RequestRefused(
                400, "validation_error", "the query may not hold NUL characters", "query"
            )
        framed = False
        for name, value in scope.get("headers", []):
            if name == b"transfer-encoding":
                framed = True
            if b"\x00" in value:
                raise RequestRefused(
                    400,
                    "validation_error",
                    "a header may not hold NUL characters",
                    name.decode("latin-1"),
                )
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    raise RequestRefused(
                        400, "validation_error", "Content-Length is not a number", "body"
                    ) from None
                if announced > limit:
                    raise too_large(limit)
                framed = framed or announced > 0
        return not framed and scope.get("method") in ("GET", "HEAD")

    async def _read(
        self, scope: Scope, receive: Receive, limit: int, depth: int
    ) -> tuple[bytes, Receive]:
        """The whole body (at most `limit` bytes), checked; and what to receive after it."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect: the app hears it
                return bytes(body), _then(message, receive)
            body += message.get("body", b"")
            if len(body) > limit:
                raise too_large(limit)
            if not message.get("more_body", False):
                break
        if body and _is_json(scope.get("headers", [])):
            check_json_body(bytes(body), depth)
        return bytes(body), receive

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, refused: RequestRefused
    ) -> None:
        request = Request(scope)
        rid = str(getattr(request.state, "request_id", ""))
        response = render(
            ErrorBody(refused.status, refused.code, refused.message, refused.field, rid), request
        )
        if refused.status == 413:
            response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _then(first: Message, receive: Receive) -> Receive:
    pending = [first]

    async def after() -> Message:
        return pending.pop() if pending else await receive()

    return after


def too_large(limit: int) -> RequestRefused:
    return RequestRefused(
        413, "payload_too_large", f"the request body is over {limit} bytes", "body"
    )
