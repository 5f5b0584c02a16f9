"""Procedures: named queries and mutations, their input schema and their handler.

A `ProcedureRouter` is what tRPC calls a router: procedures by dotted path, nested with
`include` (`root.include(billing, prefix="billing")` serves `billing.createCheckoutSession`).
Handlers receive a `ProcedureContext` (the request, the container and the call's own
transaction) and the validated input, and return a pydantic model or plain JSON data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.api.auth_deps import principal_from_token_or_header
from billfold.api.ratelimit import RateLimitClass
from billfold.api.trpc.wire import MAX_BATCH_CALLS, UNDEFINED, TRPCError
from billfold.auth.principal import Principal
from billfold.container import Container

ProcedureKind = Literal["query", "mutation"]
Handler = Callable[["ProcedureContext", Any], Awaitable[Any]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class ProcedureContext:
    """What a procedure runs with. `session` is this call's own transaction: it commits when the
    handler returns and rolls back when it raises, independently of the other calls of a batch."""

    request: Request
    container: Container
    session: AsyncSession
    path: str

    async def principal(self, body_token: str | None = None) -> Principal:
        """The caller, from the input's `token` (document 000) or the Authorization header."""
        return await principal_from_token_or_header(self.request, body_token, self.session)


@dataclass(frozen=True, slots=True)
class Procedure:
    path: str
    kind: ProcedureKind
    input_model: type[BaseModel] | None
    handler: Handler
    rate_limit: RateLimitClass = RateLimitClass.API

    def parse_input(self, raw: Any) -> Any:
        """The validated input; a clear BAD_REQUEST naming the first wrong field otherwise."""
        if self.input_model is None:
            return None
        if raw is UNDEFINED or raw is None:
            raise TRPCError("BAD_REQUEST", "input is required")
        try:
            return self.input_model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first.get("loc", ())) or "input"
            message = str(first.get("msg", "invalid value"))
            raise TRPCError("BAD_REQUEST", f"{field}: {message}", field=field) from exc


def encode_output(data: Any) -> Any:
    """A handler's return value as the JSON tRPC sends (camelCase aliases for models)."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True, exclude_none=False)
    return jsonable_encoder(data, by_alias=True)


class ProcedureRouter:
    """Procedures by dotted path."""

    def __init__(self) -> None:
        self._procedures: dict[str, Procedure] = {}

    def _add(self, procedure: Procedure) -> None:
        if procedure.path in self._procedures:
            raise ValueError(f"procedure {procedure.path!r} is defined twice")
        self._procedures[procedure.path] = procedure

    def _register(
        self,
        kind: ProcedureKind,
        path: str,
        input_model: type[BaseModel] | None,
        rate_limit: RateLimitClass,
    ) -> Callable[[H], H]:
        def decorate(handler: H) -> H:
            self._add(Procedure(path, kind, input_model, handler, rate_limit))
            return handler

        return decorate

    def query(
        self,
        path: str,
        input_model: type[BaseModel] | None = None,
        *,
        rate_limit: RateLimitClass = RateLimitClass.API,
    ) -> Callable[[H], H]:
        """Register a query (`GET ?input=`; also accepted as POST for `methodOverride`)."""
        return self._register("query", path, input_model, rate_limit)

    def mutation(
        self,
        path: str,
        input_model: type[BaseModel] | None = None,
        *,
        rate_limit: RateLimitClass = RateLimitClass.API,
    ) -> Callable[[H], H]:
        """Register a mutation (POST with a JSON body). A mutation that creates Stripe objects
        says `rate_limit=RateLimitClass.CHECKOUT`."""
        return self._register("mutation", path, input_model, rate_limit)

    def include(self, other: ProcedureRouter, *, prefix: str) -> None:
        """Serve every procedure of `other` under `prefix.` (tRPC's nested routers)."""
        for procedure in other:
            self._add(
                Procedure(
                    path=f"{prefix}.{procedure.path}",
                    kind=procedure.kind,
                    input_model=procedure.input_model,
                    handler=procedure.handler,
                    rate_limit=procedure.rate_limit,
                )
            )

    def get(self, path: str) -> Procedure | None:
        return self._procedures.get(path)

    def rate_limit_of(self, paths: str) -> RateLimitClass:
        """The class of a call or a batch (`a.b,c.d`): the tightest of its procedures'."""
        declared = set(self.rate_limits_of(paths))
        for tightest in (RateLimitClass.CHECKOUT, RateLimitClass.API):
            if tightest in declared:
                return tightest
        return RateLimitClass.API

    def rate_limits_of(self, paths: str) -> list[RateLimitClass]:
        """The class of each call of a call or a batch (`a.b,c.d`): every call is counted. An
        unknown procedure (NOT_FOUND) still costs a call; a batch over `MAX_BATCH_CALLS` is
        refused whole before any call runs, and costs one."""
        names = paths.split(",")
        if len(names) > MAX_BATCH_CALLS:
            return [RateLimitClass.API]
        return [
            p.rate_limit if (p := self.get(n)) is not None else RateLimitClass.API for n in names
        ]

    def __iter__(self) -> Iterator[Procedure]:
        return iter(self._procedures.values())
