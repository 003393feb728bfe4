"""Opaque item and attachment ids, bound to the agreement that received them and to a deadline.

A token is sealed with AES-256-GCM under a key derived from the gateway secret with
HMAC-SHA256; the agreement id is the associated data. So a token cannot be read (source
record ids are not on the release allowlist and must not leak through an id), cannot be
altered, and opens only for the agreement it was issued to and only until it expires.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from ..security.sealing import Sealer

_KEY_LABEL = b"leis-gateway item token v1"
ATTACHMENT_URI_PREFIX = "urn:leis:attachment:"


class TokenKind(StrEnum):
    ITEM = "item"  # a ReleasedRecord.item_id, for getDataItem
    ATTACHMENT = "attachment"  # a ReleasedRecord.attachment_uri, for getAttachment


@dataclass(frozen=True)
class Ref:
    """What an opened token stands for.

    `fields` are the query-gated elements' query fields (e.g. SSN) that the search released,
    so a later getDataItem discloses exactly the same identifiers and no more.
    """

    kind: TokenKind
    source: str  # the source system of the record (e.g. "EID")
    record_id: str
    agreement_id: str
    expires_at: datetime
    photo_id: str | None = None  # attachments: the OBIM photograph
    fields: tuple[str, ...] = ()

    @property
    def record_key(self) -> str:
        return f"{self.source}:{self.record_id}"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("token times must be timezone-aware")
    return moment.astimezone(timezone.utc)


class ItemTokens:
    """Issue and open tokens; safe to share between threads (no mutable state)."""

    def __init__(self, secret: bytes, ttl: timedelta | float | int) -> None:
        self._sealer = Sealer(secret, _KEY_LABEL)
        self.ttl = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
        if self.ttl <= timedelta(0):
            raise ValueError("the token lifetime must be positive")

    def issue(
        self,
        kind: TokenKind,
        source: str,
        record_id: str,
        agreement_id: str,
        now: datetime,
        *,
        photo_id: str | None = None,
        fields: tuple[str, ...] = (),
        expires_at: datetime | None = None,
    ) -> str:
        """A URL-safe token; `expires_at` (never later than now + ttl) keeps a search's deadline."""
        latest = _utc(now) + self.ttl
        expiry = latest if expires_at is None else min(_utc(expires_at), latest)
        return self._sealer.seal([str(kind), str(source), record_id, photo_id, list(fields)], agreement_id, expiry)

    def open(
        self, token: str, agreement_id: str, now: datetime, kind: TokenKind | None = None
    ) -> Ref | None:
        """The reference, or None when the token is foreign, altered, expired or of another kind."""
        opened = self._sealer.open(token, agreement_id, now)
        if opened is None:
            return None
        expires_at, sealed = opened
        try:
            kind_text, source, record_id, photo_id, fields = sealed
            ref = Ref(TokenKind(kind_text), source, record_id, agreement_id, expires_at, photo_id, tuple(fields))
        except (ValueError, TypeError):
            return None
        if kind is not None and ref.kind != kind:
            return None
        return ref

    # --- attachment URIs ------------------------------------------------------------------

    def attachment_uri(self, token: str) -> str:
        return ATTACHMENT_URI_PREFIX + token

    def open_attachment_uri(self, uri: str, agreement_id: str, now: datetime) -> Ref | None:
        if not uri.startswith(ATTACHMENT_URI_PREFIX):
            return None
        return self.open(uri[len(ATTACHMENT_URI_PREFIX) :], agreement_id, now, TokenKind.ATTACHMENT)

