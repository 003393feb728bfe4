"""Audit log of the LEIS gateway: every message in and out, encrypted at rest, hash-chained,
searchable by metadata only; also the cross-process WS-Security replay cache.

If the audit store is unavailable the gateway must not serve: `AuditLog.record()` raises
`AuditUnavailable` and `AuditLog.ready()` answers False.
"""
from .crypto import key_id_of, load_or_create_key
from .log import AuditLog
from .types import (
    AuditEntry,
    AuditFilter,
    AuditIntegrityError,
    AuditNotFound,
    AuditRow,
    AuditUnavailable,
    Direction,
    Disclosure,
    VerifyReport,
    query_categories,
)

__all__ = [
    "AuditEntry",
    "AuditFilter",
    "AuditIntegrityError",
    "AuditLog",
    "AuditNotFound",
    "AuditRow",
    "AuditUnavailable",
    "Direction",
    "Disclosure",
    "VerifyReport",
    "key_id_of",
    "load_or_create_key",
    "query_categories",
]
