"""The `/trpc` HTTP endpoint: reads calls off the wire, runs them, answers in tRPC's shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import Scope

from billfold.api.deps import get_container
from billfold.api.errors import ErrorBody, error_responses, register_error_shape
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.api.trpc.procedures import ProcedureContext, ProcedureRouter, encode_output
from billfold.api.trpc.wire import (
    TRPCError,
    batch_status,
    error_envelope,
    parse_request,
    result_envelope,
    trpc_code_for_status,
    trpc_error_for,
)

log = logging.getLogger("billfold.api.trpc")

# Inputs are small JSON objects; refuse anything far larger before parsing it.
MAX_BODY_BYTES = 1024 * 1024


async def _read_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise TRPCError("PAYLOAD_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes")
    return bytes(body)


async def _run_call(
    request: Request, procedures: ProcedureRouter, path: str, raw_input: Any
) -> dict[str, Any]:
    """One call, in its own transaction, as a result or an error envelope."""
    try:
        procedure = procedures.get(path)
        if procedure is None:
            raise TRPCError("NOT_FOUND", f'No procedure found on path "{path}"')
        if request.method == "GET" and procedure.kind == "mutation":
            raise TRPCError(
                "METHOD_NOT_SUPPORTED",
                f'Unsupported GET-request to mutation procedure at path "{path}"',
            )
        payload = procedure.parse_input(raw_input)
        container = get_container(request)
        async with container.db.transaction() as session:
            context = ProcedureContext(
                request=request, container=container, session=session, path=path
            )
            data = encode_output(await procedure.handler(context, payload))
        return result_envelope(data)
    except Exception as exc:  # every failure becomes this call's error, never the batch's
        error = trpc_error_for(exc)
        if error.http_status >= 500:
            log.error("tRPC procedure %s failed", path, exc_info=exc)
        return error_envelope(error, path)


class TRPCErrorData(BaseModel):
    code: str
    httpStatus: int  # tRPC's name
    path: str | None = None
    field: str | None = None


class TRPCErrorObject(BaseModel):
    message: str
    code: int
    data: TRPCErrorData


class TRPCErrorResponse(BaseModel):
    """tRPC's error envelope (`error_envelope`)."""

    error: TRPCErrorObject


def build_router(procedures: ProcedureRouter, prefix: str = "/trpc") -> APIRouter:
    """The FastAPI router serving `procedures` under `prefix` in tRPC's wire format.

    The calls of a batch run one after the other, each in its own transaction, in the order the
    client sent them; one failing call does not undo the others.
    """
    router = APIRouter(tags=["trpc"])

    def rate_limit_of_call(scope: Scope) -> list[RateLimitClass]:
        # One class per call of a batch: each call counts.
        return procedures.rate_limits_of(str(scope.get("path_params", {}).get("path", "")))

    # Document 000's callers send their token in the input: counted by subject, not address.
    @rate_limit(rate_limit_of_call, credential_in_body=True)
    async def trpc_endpoint(request: Request, path: str = "") -> JSONResponse:
        try:
            wire = parse_request(
                method=request.method,
                path=path,
                query_string=request.url.query,
                body=await _read_body(request) if request.method != "GET" else b"",
                content_type=request.headers.get("content-type"),
            )
        except TRPCError as error:
            return JSONResponse(error_envelope(error, path or None), status_code=error.http_status)
        items = [await _run_call(request, procedures, c.path, c.input) for c in wire.calls]
        if wire.batched:
            return JSONResponse(items, status_code=batch_status(items))
        item = items[0]
        status = item["error"]["data"]["httpStatus"] if "error" in item else 200
        return JSONResponse(item, status_code=status)

    # One route serves both methods (so a 405 names both in Allow); the schema shows one per
    # method, each with an operation id of its own.
    router.add_api_route(
        prefix + "/{path:path}",
        trpc_endpoint,
        methods=["GET", "POST"],
        response_class=JSONResponse,
        include_in_schema=False,
    )
    for method in ("GET", "POST"):
        router.add_api_route(
            prefix + "/{path:path}",
            trpc_endpoint,
            methods=[method],
            operation_id=f"trpc_{method.lower()}",
            summary=f"tRPC procedures, {method} (for @trpc/client's httpLink and httpBatchLink)",
            response_class=JSONResponse,
            responses={
                207: {"description": "A batch whose calls answered differently"},
                **error_responses(
                    400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 502, model=TRPCErrorResponse
                ),
            },
        )
    # The bare prefix names no procedure: a tRPC NOT_FOUND, not a redirect to `prefix/`.
    router.add_api_route(
        prefix,
        trpc_endpoint,
        methods=["GET", "POST"],
        response_class=JSONResponse,
        include_in_schema=False,
    )

    def error_shape(body: ErrorBody, request: Request) -> JSONResponse:
        # Errors raised before a procedure runs (unknown method, no path): tRPC's shape too.
        path = request.url.path[len(prefix) :].lstrip("/") or None
        error = TRPCError(
            trpc_code_for_status(body.status),
            body.message if body.status < 500 else "internal server error",
        )
        return JSONResponse(error_envelope(error, path), status_code=error.http_status)

    register_error_shape(prefix, error_shape)
    return router
