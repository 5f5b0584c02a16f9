"""The one place where billfold's errors become HTTP responses.

Each dialect may register the error shape its clients expect for a path prefix (the
`{success, message, data}` envelope, tRPC's error object, ...); everything else gets
`{"error": {"code", "message", "field"}, "request_id"}`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import Schema
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from billfold import errors

log = logging.getLogger("billfold.api")

STATUS_BY_ERROR: dict[type[errors.BillfoldError], int] = {
    errors.ValidationFailed: 400,
    errors.Unauthenticated: 401,
    errors.PaymentRequired: 402,
    errors.PaymentFailed: 402,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InsufficientBalance: 409,
    errors.RateLimited: 429,
    errors.UpstreamUnavailable: 502,
    errors.ConfigurationError: 500,
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: dict[str, Any] | None = None  # only InsufficientCredits': the shortfall


class ErrorResponse(BaseModel):
    """The default error shape (`default_shape`)."""

    error: ErrorDetail
    request_id: str


STATUS_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input (also: a NUL character or lone surrogate, JSON nested too deeply)",
    401: "Missing or invalid credential",
    402: "Payment required or failed",
    403: "The caller may not act on this account",
    404: "Not found (or not the caller's)",
    409: "Conflict with the current state",
    405: "The method is not allowed (Allow names those that are)",
    413: "The request body is over the limit",
    415: "Unsupported media type",
    422: "Invalid parameters or body",
    429: "Too many requests (with Retry-After)",
    500: "Internal error",
    502: "Stripe did not answer",
    503: "Not ready",
}
# What every route may answer whatever it does: BodyLimitMiddleware's refusals and FastAPI's
# validation (in each dialect's shape: declaring 422 keeps FastAPI's `{detail}` out of it).
ANY_ROUTE = (400, 413, 422)
# ... and a route that needs a credential and is rate limited.
AUTHENTICATED = (*ANY_ROUTE, 401, 403, 429)


# The error shapes routes document, by schema name: the OpenAPI document gets their schemas when
# it is built (`install_error_schemas`). A `model` in `responses=` would have FastAPI build a
# TypeAdapter per status and route at import, two thirds of the fields it builds at start.
_ERROR_SHAPES: dict[str, type[BaseModel]] = {}


def error_responses(
    *statuses: int, model: type[BaseModel] = ErrorResponse
) -> dict[int | str, dict[str, Any]]:
    """A route decorator's `responses=`: each status with its dialect's error shape."""
    _ERROR_SHAPES[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        status: {
            "description": STATUS_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": schema}},
        }
        for status in sorted(set(statuses))
    }


def install_error_schemas(app: FastAPI) -> None:
    """Add the documented error shapes' schemas to the app's OpenAPI document, once, when it
    is first built (on the first request for it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, model in sorted(_ERROR_SHAPES.items()):
            if name in schemas:
                continue
            schema = model.model_json_schema(
                ref_template="#/components/schemas/{model}", mode="serialization"
            )
            definitions = {**schema.pop("$defs", {}), name: schema}
            for def_name, definition in definitions.items():
                # As FastAPI writes its own schemas (which drops `"default": null`).
                encoded = jsonable_encoder(Schema(**definition), by_alias=True, exclude_none=True)
                schemas.setdefault(def_name, encoded)
        document["components"]["schemas"] = dict(sorted(schemas.items()))
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def status_for(exc: errors.BillfoldError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


class ErrorBody:
    """What a dialect formatter receives: status, code, message and the failing field."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None,
        request_id: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.details = details
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.request_id = request_id


Formatter = Callable[[ErrorBody, Request], JSONResponse]
_formatters: list[tuple[str, Formatter]] = []


def register_error_shape(path_prefix: str, formatter: Formatter) -> None:
    """Make errors under `path_prefix` use `formatter` (longest prefix wins)."""
    _formatters.append((path_prefix, formatter))
    _formatters.sort(key=lambda item: len(item[0]), reverse=True)


def default_shape(body: ErrorBody, request: Request) -> JSONResponse:
    payload: dict[str, Any] = {
        "error": {"code": body.code, "message": body.message},
        "request_id": body.request_id,
    }
    if body.field:
        payload["error"]["field"] = body.field
    if body.details:
        payload["error"]["details"] = body.details
    return JSONResponse(payload, status_code=body.status)


def render(body: ErrorBody, request: Request) -> JSONResponse:
    for prefix, formatter in _formatters:
        if request.url.path.startswith(prefix):
            response = formatter(body, request)
            break
    else:
        response = default_shape(body, request)
    response.headers["X-Request-ID"] = body.request_id
    if body.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def _field_of(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    install_error_schemas(app)

    @app.exception_handler(errors.BillfoldError)
    async def _billfold_error(request: Request, exc: errors.BillfoldError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("server error: %s", exc.message)
        shown = exc.details if isinstance(exc, errors.InsufficientCredits) else None
        return render(
            ErrorBody(status, exc.code, exc.message, exc.field, _rid(request), shown), request
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            field, message = "body", "request body is not valid JSON"
        else:
            field = _field_of(first.get("loc", ()))
            message = f"{field}: {first.get('msg', 'invalid value')}"
        return render(ErrorBody(422, "validation_error", message, field, _rid(request)), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}.get(
            exc.status_code, "http_error"
        )
        response = render(
            ErrorBody(exc.status_code, code, str(exc.detail), None, _rid(request)), request
        )
        # Starlette's own headers: `Allow` on a 405 (which methods the path takes).
        for name, value in (exc.headers or {}).items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return render(
            ErrorBody(500, "internal_error", "internal server error", None, _rid(request)), request
        )
