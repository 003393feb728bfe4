"""Opaque ids for partner items: the analyst gets a sealed (partner, partner's id) pair.

The gateway keeps no copy and no table of what it handed out: the id itself says which
partner issued the item and what the partner called it, sealed with AES-256-GCM under a key
derived from the gateway secret (another label than `release.tokens`), bound to the internal
agreement and to an expiry. So getDataItem/getAttachment go back to the issuing partner only,
and an analyst cannot aim a forged id at another partner.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..security.sealing import Sealer

_LABEL = b"leis-gateway partner item id v1"
ITEM_PREFIX = "urn:leis:partner-item:"
ATTACHMENT_PREFIX = "urn:leis:partner-attachment:"


@dataclass(frozen=True)
class PartnerRef:
    partner_id: str
    partner_value: str  # the partner's own DataItemID or AttachmentURI
    kind: str  # "item" | "attachment"


class PartnerIds:
    def __init__(self, secret: bytes, ttl_seconds: float) -> None:
        self._sealer = Sealer(secret, _LABEL)
        self.ttl = timedelta(seconds=ttl_seconds)

    def seal(self, kind: str, partner_id: str, value: str, audience: str, now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        token = self._sealer.seal([kind, partner_id, value], audience, now + self.ttl)
        return (ITEM_PREFIX if kind == "item" else ATTACHMENT_PREFIX) + token

    def open(self, text: str, audience: str, kind: str, now: datetime | None = None) -> PartnerRef | None:
        """The reference, or None when the id is not ours, altered, expired or of another kind."""
        prefix = ITEM_PREFIX if kind == "item" else ATTACHMENT_PREFIX
        if not text.startswith(prefix):
            return None
        opened = self._sealer.open(text[len(prefix):], audience, now or datetime.now(timezone.utc))
        if opened is None:
            return None
        try:
            sealed_kind, partner_id, value = opened[1]
        except (ValueError, TypeError):
            return None
        return PartnerRef(partner_id, value, kind) if sealed_kind == kind else None
