"""Who writes an audit entry, from where and in which request: `AuditContext`.

Endpoints write `await audit.record(session, "checkout.created", account_id=account.id,
details={...})` and the actor, address and request id are filled in. The context of an HTTP
request is built in `billfold.api.audit_deps`; outside HTTP (CLI, jobs, webhook processing)
`system_audit_context` gives one for a fixed actor. Nothing here knows the web framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import AuditEntry
from billfold.audit.service import record_event
from billfold.clock import Clock, SystemClock


@dataclass
class AuditContext:
    """Who, from where and in which request. `actor_of` is asked when an entry is written, so
    the context of a request also works for routes that authenticate later (a token in the
    body); `fixed_actor` wins over it."""

    ip: str | None
    request_id: str | None
    clock: Clock
    # Outside HTTP (CLI, jobs, webhook processing) the actor is fixed: `stripe`, `cli:root`.
    fixed_actor: str | None = None
    # The request's current actor (its principal once authenticated), for HTTP contexts.
    actor_of: Callable[[], str] | None = None

    @property
    def actor(self) -> str:
        if self.fixed_actor:
            return self.fixed_actor
        return self.actor_of() if self.actor_of is not None else "system"

    async def record(
        self,
        session: AsyncSession,
        action: str,
        *,
        account_id: str | None,
        target: str | None = None,
        details: dict[str, Any] | None = None,
        actor: str | None = None,
        deferred: bool = False,
    ) -> AuditEntry:
        """Append an audit entry for this request (see `billfold.audit.service.record_event`;
        `deferred`: chained later by the `audit.chain_deferred` job, for hot paths)."""
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
            deferred=deferred,
        )


def system_audit_context(actor: str = "system", clock: Clock | None = None) -> AuditContext:
    """An audit context outside HTTP (CLI, jobs, webhook processing), for a fixed actor."""
    return AuditContext(ip=None, request_id=None, clock=clock or SystemClock(), fixed_actor=actor)
