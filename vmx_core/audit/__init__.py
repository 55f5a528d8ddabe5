"""The audit trail: one record per client request, written off the request path."""

from vmx_core.audit.record import Attempt, AuditRecord, AuditSink

__all__ = ["Attempt", "AuditRecord", "AuditSink"]
