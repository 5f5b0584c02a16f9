"""The audit log: who did what to which billing account, tamper-evident by a hash chain."""

from billfold.audit.dependencies import AuditContext, AuditContextDep
from billfold.audit.models import AuditEntry
from billfold.audit.service import record_event

__all__ = ["AuditContext", "AuditContextDep", "AuditEntry", "record_event"]
