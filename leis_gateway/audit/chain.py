"""Canonical serialisation of a row's metadata, and the hash chain over it.

The same canonical bytes are the AES-GCM associated data (so ciphertext cannot be moved
to another row) and, with the nonce, ciphertext digest and previous hash, the input of the
row hash. Bump CANON_VERSION if the serialisation ever changes.
"""
from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Iterable, Sequence

from .models import AuditMessage

CANON_VERSION = 1

# What json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True) does, without
# building an encoder per call (the same bytes: tests/test_audit.py checks it).
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode

# Python 3.11's hashlib lets go of the GIL to look the algorithm up for every new hash object, and
# to hash 2 KB or more at once: in a loaded server each is a hand-over of the GIL between threads,
# dearer than the hashing (docs/performance.md, the sixth round). So new objects are copies of
# this one, and a message's ciphertext is hashed in pieces below that size.
_SHA256 = hashlib.sha256()
_PIECE = 2047


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _latency(value: float | None) -> str | None:
    return None if value is None else f"{value:.3f}"


def canonical_metadata(
    *,
    row_id: int,
    at: datetime,
    direction: str,
    operation: str,
    message_id: str | None,
    correlation_id: str | None,
    agreement_id: str | None,
    ori: str | None,
    user_id: str | None,
    purpose: str | None,
    query_categories: str | None,
    result_code: str | None,
    advisory_categories: str | None,
    size_bytes: int,
    latency_ms: float | None,
    detail: str | None,
    key_id: str,
    disclosures: Iterable[Sequence[str]],
) -> bytes:
    doc: dict[str, Any] = {
        "v": CANON_VERSION,
        "id": row_id,
        "at": _time(at),
        "direction": direction,
        "operation": operation,
        "message_id": message_id,
        "correlation_id": correlation_id,
        "agreement_id": agreement_id,
        "ori": ori,
        "user_id": user_id,
        "purpose": purpose,
        "query_categories": query_categories,
        "result_code": result_code,
        "advisory_categories": advisory_categories,
        "size_bytes": size_bytes,
        "latency_ms": _latency(latency_ms),
        "detail": detail,
        "key_id": key_id,
        "disclosures": sorted([list(d) for d in disclosures]),
    }
    return _encode(doc).encode("ascii")


def metadata_of(row: AuditMessage, disclosures: Iterable[Sequence[str]]) -> bytes:
    """Canonical metadata of a stored row; disclosures as (system, record id, elements) triples."""
    return canonical_metadata(
        row_id=row.id,
        at=row.at,
        direction=row.direction,
        operation=row.operation,
        message_id=row.message_id,
        correlation_id=row.correlation_id,
        agreement_id=row.agreement_id,
        ori=row.ori,
        user_id=row.user_id,
        purpose=row.purpose,
        query_categories=row.query_categories,
        result_code=row.result_code,
        advisory_categories=row.advisory_categories,
        size_bytes=row.size_bytes,
        latency_ms=row.latency_ms,
        detail=row.detail,
        key_id=row.key_id,
        disclosures=disclosures,
    )


def row_hash(metadata: bytes, nonce: bytes, ciphertext: bytes, prev_hash: str) -> str:
    h = _SHA256.copy()
    for part in (metadata, nonce, sha256_digest(ciphertext), prev_hash.encode("ascii")):
        h.update(len(part).to_bytes(8, "big"))  # length-prefixed: no ambiguity between parts
        h.update(part)
    return h.hexdigest()


def sha256_digest(data: bytes) -> bytes:
    """hashlib.sha256(data).digest(), keeping the GIL (see _SHA256)."""
    h = _SHA256.copy()
    view = memoryview(data)
    for start in range(0, len(view), _PIECE):
        h.update(view[start : start + _PIECE])
    return h.digest()
