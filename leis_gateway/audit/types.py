"""Boundary types of the audit log: frozen dataclasses, no ORM objects leak out.

`AuditRow` carries metadata only; the decrypted message exists solely as the return
value of `AuditLog.show()`, which is itself audited.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from ..domain import Query, ReleasedRecord


class AuditUnavailable(RuntimeError):
    """The audit store cannot be written (or read): the gateway must refuse service."""


class AuditNotFound(LookupError):
    """No audit row has the given id (it never existed or was purged)."""


class AuditIntegrityError(RuntimeError):
    """A stored message cannot be decrypted: ciphertext, metadata or key id were altered."""


class Direction(StrEnum):
    INBOUND = "inbound"  # a message received by the gateway
    OUTBOUND = "outbound"  # a message sent by the gateway
    REVIEW = "review"  # a reviewer looked at the log (audit.show, audit.report)
    ADMIN = "admin"  # the log itself was changed (audit.purge)


@dataclass(frozen=True)
class Disclosure:
    """One source record (and which of its elements) released in an outbound response."""

    source_system: str
    source_record_id: str
    elements: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: ReleasedRecord, source_record_id: str | None = None) -> Disclosure:
        """From a released record; `ReleasedRecord` holds no source id, so the caller may pass it."""
        return cls(str(record.source), source_record_id or record.item_id, tuple(record.disclosed_elements))


@dataclass(frozen=True)
class AuditEntry:
    """Metadata of one message. Never put queried values or record content here."""

    direction: Direction | str
    operation: str
    message_id: str | None = None
    correlation_id: str | None = None  # links the inbound and outbound of one exchange
    agreement_id: str | None = None
    ori: str | None = None
    user_id: str | None = None
    purpose: str | None = None
    query_categories: tuple[str, ...] = ()  # e.g. ("Name", "IdentifyingNumber"), never values
    result_code: str | None = None
    advisory_categories: tuple[str, ...] = ()
    latency_ms: float | None = None
    disclosures: tuple[Disclosure, ...] = ()  # outbound responses: what left, to whom
    at: datetime | None = None  # default: now (UTC), taken when the row is appended


@dataclass(frozen=True)
class AuditFilter:
    """Metadata-only search: deliberately no parameter that could match message content."""

    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    agreement_id: str | None = None
    ori: str | None = None
    user_id: str | None = None
    operation: str | None = None
    direction: Direction | str | None = None
    result_code: str | None = None
    correlation_id: str | None = None
    message_id: str | None = None
    limit: int | None = 1000
    newest_first: bool = False


@dataclass(frozen=True)
class AuditRow:
    """A stored row as seen by a reviewer: metadata, sizes and chain hashes, no content."""

    id: int
    at: datetime
    direction: str
    operation: str
    message_id: str | None
    correlation_id: str | None
    agreement_id: str | None
    ori: str | None
    user_id: str | None
    purpose: str | None
    query_categories: tuple[str, ...]
    result_code: str | None
    advisory_categories: tuple[str, ...]
    size_bytes: int
    latency_ms: float | None
    key_id: str
    detail: str | None  # JSON, only on review/admin rows (e.g. the reason given for audit.show)
    prev_hash: str
    row_hash: str
    disclosures: tuple[Disclosure, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "direction": self.direction,
            "operation": self.operation,
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
            "agreement_id": self.agreement_id,
            "ori": self.ori,
            "user_id": self.user_id,
            "purpose": self.purpose,
            "query_categories": list(self.query_categories),
            "result_code": self.result_code,
            "advisory_categories": list(self.advisory_categories),
            "size_bytes": self.size_bytes,
            "latency_ms": self.latency_ms,
            "key_id": self.key_id,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "row_hash": self.row_hash,
            "disclosures": [
                {"source_system": d.source_system, "source_record_id": d.source_record_id, "elements": list(d.elements)}
                for d in self.disclosures
            ],
        }


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows_checked: int
    first_bad_id: int | None = None
    problem: str | None = None
    head_id: int = 0
    head_hash: str = ""
    anchor_id: int | None = None  # first row id vouched for by the latest purge checkpoint

    def __str__(self) -> str:
        if self.ok:
            anchor = f", anchored at row {self.anchor_id} by a purge checkpoint" if self.anchor_id else ""
            return f"OK: {self.rows_checked} rows, head {self.head_id} {self.head_hash}{anchor}"
        return f"BROKEN at row {self.first_bad_id}: {self.problem} ({self.rows_checked} rows checked)"


# LEIS query rules (issue 3) group the queryable fields into four categories.
_CATEGORY_OF_FIELD = {
    "FullName": "Name", "GivenName": "Name", "MiddleName": "Name", "SurName": "Name", "BirthDate": "Name",
    "SSN": "IdentifyingNumber", "Passport": "IdentifyingNumber", "ANumber": "IdentifyingNumber",
    "EncounterID": "IdentifyingNumber", "DriverLicense": "IdentifyingNumber",
    "FullAddress": "Address", "StreetNumber": "Address", "StreetName": "Address", "SecondaryUnit": "Address",
    "City": "Address", "State": "Address", "Country": "Address", "PostalCode": "Address", "Phone": "Address",
    "ActivityNumber": "Incident", "ActivityDescription": "Incident",
}


def query_categories(queries: Query | Iterable[Query]) -> tuple[str, ...]:
    """Categories used by authorised queries, in a stable order; values are never looked at."""
    from ..domain import Query as _Query

    items = [queries] if isinstance(queries, _Query) else list(queries)
    seen = {_CATEGORY_OF_FIELD.get(str(c.field), "Other") for q in items for c in q.criteria}
    order = ["Name", "IdentifyingNumber", "Address", "Incident", "Other"]
    return tuple(c for c in order if c in seen)
