"""The request's audit context: endpoints write `await audit.record(session, "checkout.created",
account_id=account.id, details={...})` and the actor, address and request id are filled in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.api.deps import client_address, get_container, request_id
from billfold.audit.models import AuditEntry
from billfold.audit.service import record_event
from billfold.auth.principal import Principal
from billfold.clock import Clock, SystemClock


def actor_of_request(request: Request) -> str:
    """Who the request acts as: the authenticated principal when there is one."""
    principal = getattr(request.state, "principal", None)
    actor = getattr(principal, "actor", None)
    return str(actor) if actor else "anonymous"


@dataclass
class AuditContext:
    """Who, from where and in which request; the principal is read when an entry is written,
    so the context also works for routes that authenticate later (a token in the body)."""

    request: Request | None
    ip: str | None
    request_id: str | None
    clock: Clock
    # Outside HTTP (CLI, jobs, webhook processing) the actor is fixed: `stripe`, `cli:root`.
    fixed_actor: str | None = None

    @property
    def actor(self) -> str:
        if self.fixed_actor:
            return self.fixed_actor
        return actor_of_request(self.request) if self.request is not None else "system"

    async def record(
        self,
        session: AsyncSession,
        action: str,
        *,
        account_id: str | None,
        target: str | None = None,
        details: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> AuditEntry:
        """Append an audit entry for this request (see `billfold.audit.service.record_event`)."""
        return await record_event(
            session,
            action=action,
            actor=actor or self.actor,
            account_id=account_id,
            target=target,
            details=details,
            ip=self.ip,
            request_id=self.request_id,
            at=self.clock.now(),
        )


def audit_context(request: Request) -> AuditContext:
    container = get_container(request)
    return AuditContext(
        request=request,
        ip=client_address(request),
        request_id=request_id(request) or None,
        clock=container.clock,
    )


def audit_context_for(request: Request, principal: Principal) -> AuditContext:
    """The audit context of a call that authenticated itself (a tRPC call's body `token`):
    the actor is fixed to `principal`, so calls of one batch never borrow each other's."""
    context = audit_context(request)
    context.fixed_actor = principal.actor
    return context


def system_audit_context(actor: str = "system", clock: Clock | None = None) -> AuditContext:
    """An audit context outside HTTP (CLI, jobs, webhook processing), for a fixed actor."""
    return AuditContext(
        request=None, ip=None, request_id=None, clock=clock or SystemClock(), fixed_actor=actor
    )


AuditContextDep = Annotated[AuditContext, Depends(audit_context)]
