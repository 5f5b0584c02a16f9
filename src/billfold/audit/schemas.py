"""What the audit read API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from billfold.audit.models import AuditEntry


class AuditEntryRead(BaseModel):
    id: str
    seq: int
    occurred_at: datetime
    action: str
    actor: str
    account_id: str | None
    target: str | None
    details: dict[str, Any]
    ip: str | None
    request_id: str | None
    prev_hash: str
    entry_hash: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryRead:
        return cls.model_validate(entry, from_attributes=True)


class AuditPage(BaseModel):
    """Newest first; pass `next_cursor` as `cursor` for the next (older) page."""

    data: list[AuditEntryRead]
    has_more: bool
    next_cursor: str | None
