"""The audit log: who did what to which billing account, tamper-evident by a hash chain.

HTTP routes get their context from `billfold.api.audit_deps.AuditContextDep`.
"""

from billfold.audit.context import AuditContext, system_audit_context
from billfold.audit.models import AuditEntry
from billfold.audit.service import record_event

__all__ = ["AuditContext", "AuditEntry", "record_event", "system_audit_context"]
