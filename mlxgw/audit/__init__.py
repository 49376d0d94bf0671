"""The audit log (RELI-04): a queue the request path appends to, a background writer that inserts
batches into the `requests` table, and the queries behind `mlxgw logs`."""

from mlxgw.audit.writer import AuditWriter

__all__ = ["AuditWriter"]
