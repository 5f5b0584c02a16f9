"""The request's audit context (`AuditContextDep`): actor, address and request id of the call."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from billfold.api.deps import client_address, get_container, request_id
from billfold.audit.context import AuditContext
from billfold.auth.principal import Principal


def actor_of_request(request: Request) -> str:
    """Who the request acts as: the authenticated principal when there is one."""
    principal = getattr(request.state, "principal", None)
    actor = getattr(principal, "actor", None)
    return str(actor) if actor else "anonymous"


async def _audit_context(request: Request) -> AuditContext:
    return audit_context(request)


def audit_context(request: Request) -> AuditContext:
    """The audit context of `request`; its actor is read when an entry is written."""
    container = get_container(request)
    return AuditContext(
        ip=client_address(request),
        request_id=request_id(request) or None,
        clock=container.clock,
        actor_of=lambda: actor_of_request(request),
    )


def audit_context_for(request: Request, principal: Principal) -> AuditContext:
    """The audit context of a call that authenticated itself (a tRPC call's body `token`):
    the actor is fixed to `principal`, so calls of one batch never borrow each other's."""
    context = audit_context(request)
    context.fixed_actor = principal.actor
    return context


AuditContextDep = Annotated[AuditContext, Depends(_audit_context)]
