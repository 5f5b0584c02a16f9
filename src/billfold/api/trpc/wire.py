"""tRPC's HTTP wire format (v10/v11, no data transformer), as `@trpc/client` speaks it.

- A query is `GET {prefix}/{path}?input=<JSON>`; a mutation is `POST {prefix}/{path}` with the
  JSON input as the body. No input at all is "undefined" (no `input` parameter, empty body).
- A batch (`httpBatchLink`) joins the paths with commas and adds `batch=1`; the inputs travel
  as one JSON object keyed by position, `{"0": ..., "1": ...}` (in `?input=` for queries, in the
  body for mutations), and the answer is a JSON array in the same order.
- A result is `{"result": {"data": ...}}`; an error is `{"error": {"message", "code": <JSON-RPC
  number>, "data": {"code": <KEY>, "httpStatus", "path"}}}`.
- The HTTP status is the call's status; for a batch it is the shared status of every call, or
  207 when they differ.

billfold's errors become tRPC codes here and nowhere else (`trpc_error_for`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs

from billfold import errors
from billfold.api.body_limits import has_bad_escape, json_depth_exceeds
from billfold.api.errors import status_for

# Every tRPC error code: its JSON-RPC number and its HTTP status (from @trpc/server v11).
TRPC_CODES: Final[dict[str, tuple[int, int]]] = {
    "PARSE_ERROR": (-32700, 400),
    "BAD_REQUEST": (-32600, 400),
    "UNAUTHORIZED": (-32001, 401),
    "PAYMENT_REQUIRED": (-32002, 402),
    "FORBIDDEN": (-32003, 403),
    "NOT_FOUND": (-32004, 404),
    "METHOD_NOT_SUPPORTED": (-32005, 405),
    "TIMEOUT": (-32008, 408),
    "CONFLICT": (-32009, 409),
    "PRECONDITION_FAILED": (-32012, 412),
    "PAYLOAD_TOO_LARGE": (-32013, 413),
    "UNSUPPORTED_MEDIA_TYPE": (-32015, 415),
    "UNPROCESSABLE_CONTENT": (-32022, 422),
    "PRECONDITION_REQUIRED": (-32028, 428),
    "TOO_MANY_REQUESTS": (-32029, 429),
    "CLIENT_CLOSED_REQUEST": (-32099, 499),
    "INTERNAL_SERVER_ERROR": (-32603, 500),
    "NOT_IMPLEMENTED": (-32603, 501),
    "BAD_GATEWAY": (-32603, 502),
    "SERVICE_UNAVAILABLE": (-32603, 503),
    "GATEWAY_TIMEOUT": (-32603, 504),
}
# Every status has one code, except 400 (PARSE_ERROR is only for unreadable JSON).
_CODE_BY_STATUS: Final[dict[int, str]] = {
    status: key for key, (_, status) in TRPC_CODES.items() if key != "PARSE_ERROR"
}

# A batch longer than this is refused whole (413): no client batches that much by accident, and
# each call of a batch counts against the caller's rate limits.
MAX_BATCH_CALLS: Final = 20
MAX_INPUT_DEPTH: Final = 32


class TRPCError(Exception):
    """An error in tRPC's terms: a code from `TRPC_CODES` and a message for the caller."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        if code not in TRPC_CODES:
            raise ValueError(f"unknown tRPC error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def http_status(self) -> int:
        return TRPC_CODES[self.code][1]


def trpc_code_for_status(status: int) -> str:
    """The tRPC code of an HTTP status (500 for anything unknown), as @trpc/server maps it."""
    return _CODE_BY_STATUS.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else "BAD_REQUEST")


def trpc_error_for(exc: BaseException) -> TRPCError:
    """billfold's error hierarchy in tRPC's terms, in one place.

    The HTTP status billfold gives an error everywhere (`billfold.api.errors`) picks the tRPC
    code, so a refusal means the same in every dialect; anything unexpected is an
    INTERNAL_SERVER_ERROR whose message gives nothing away.
    """
    if isinstance(exc, TRPCError):
        return exc
    if isinstance(exc, errors.BillfoldError):
        status = status_for(exc)
        message = exc.message if status < 500 else _upstream_message(exc)
        return TRPCError(trpc_code_for_status(status), message, field=exc.field)
    return TRPCError("INTERNAL_SERVER_ERROR", "internal server error")


def _upstream_message(exc: errors.BillfoldError) -> str:
    # A payment provider outage is worth saying; a configuration error is for the logs.
    if isinstance(exc, errors.UpstreamUnavailable):
        return exc.message
    return "internal server error"


def error_envelope(error: TRPCError, path: str | None) -> dict[str, Any]:
    """`{"error": {...}}` as @trpc/server's default error formatter shapes it."""
    number, status = TRPC_CODES[error.code]
    data: dict[str, Any] = {"code": error.code, "httpStatus": status}
    if path is not None:
        data["path"] = path
    if error.field:
        data["field"] = error.field
    return {"error": {"message": error.message, "code": number, "data": data}}


def result_envelope(data: Any) -> dict[str, Any]:
    return {"result": {"data": data}}


def batch_status(items: list[dict[str, Any]]) -> int:
    """The status of a batch answer: the calls' common status, or 207 (Multi-Status)."""
    statuses = {item["error"]["data"]["httpStatus"] if "error" in item else 200 for item in items}
    return statuses.pop() if len(statuses) == 1 else 207


class _Undefined:
    """JavaScript's `undefined`: the client sent no input at all (distinct from `null`)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()


@dataclass(frozen=True, slots=True)
class Call:
    """One procedure call read off the wire: its dotted path and its raw JSON input."""

    path: str
    input: Any


@dataclass(frozen=True, slots=True)
class WireRequest:
    """The calls of one HTTP request, and whether the client batched them."""

    calls: list[Call]
    batched: bool


def _loads(text: str | bytes, where: str) -> Any:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    # What BodyLimitMiddleware checks of a body, for the GET input too: bounded nesting (a
    # deep one is a RecursionError in the parser), no NUL or lone surrogate (PostgreSQL).
    if json_depth_exceeds(raw, MAX_INPUT_DEPTH):
        raise TRPCError("BAD_REQUEST", f"{where} nests deeper than {MAX_INPUT_DEPTH}")
    if has_bad_escape(raw):
        raise TRPCError("BAD_REQUEST", f"{where} holds a NUL character or a lone surrogate")
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TRPCError("PARSE_ERROR", f"{where} is not valid JSON") from exc


def parse_request(
    *, method: str, path: str, query_string: str, body: bytes, content_type: str | None
) -> WireRequest:
    """Read the calls out of a tRPC HTTP request (`path` is what follows the prefix)."""
    params = parse_qs(query_string, keep_blank_values=True)
    batched = params.get("batch", [""])[-1] in ("1", "true")
    paths = path.split(",") if batched else [path]
    if not all(paths):
        raise TRPCError("NOT_FOUND", "no procedure path in the URL")
    if len(paths) > MAX_BATCH_CALLS:
        raise TRPCError("PAYLOAD_TOO_LARGE", f"a batch may hold at most {MAX_BATCH_CALLS} calls")

    raw: Any = UNDEFINED
    if method == "GET":
        if "input" in params:
            raw = _loads(params["input"][-1], "the input query parameter")
    else:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in ("", "application/json"):
            raise TRPCError(
                "UNSUPPORTED_MEDIA_TYPE", f"send the input as application/json, not {media}"
            )
        if body.strip():
            raw = _loads(body, "the request body")

    if not batched:
        return WireRequest(calls=[Call(path=paths[0], input=raw)], batched=False)
    if raw is UNDEFINED:
        raw = {}
    if not isinstance(raw, dict):
        raise TRPCError("BAD_REQUEST", 'a batch input must be an object like {"0": ...}')
    calls = [Call(path=p, input=raw.get(str(i), UNDEFINED)) for i, p in enumerate(paths)]
    return WireRequest(calls=calls, batched=True)
