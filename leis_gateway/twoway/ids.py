"""Opaque ids for partner items: the analyst gets a sealed (partner, partner's id) pair.

The gateway keeps no copy and no table of what it handed out: the id itself says which
partner issued the item and what the partner called it, sealed with AES-256-GCM under a key
derived from the gateway secret (another label than `release.tokens`), bound to the internal
agreement and to an expiry. So getDataItem/getAttachment go back to the issuing partner only,
and an analyst cannot aim a forged id at another partner.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_FORMAT = 1
_LABEL = b"leis-gateway partner item id v1"
_NONCE = 12
ITEM_PREFIX = "urn:leis:partner-item:"
ATTACHMENT_PREFIX = "urn:leis:partner-attachment:"


@dataclass(frozen=True)
class PartnerRef:
    partner_id: str
    partner_value: str  # the partner's own DataItemID or AttachmentURI
    kind: str  # "item" | "attachment"


class PartnerIds:
    def __init__(self, secret: bytes, ttl_seconds: float) -> None:
        if len(secret) < 16:
            raise ValueError("the id secret must be at least 16 bytes")
        self._aead = AESGCM(hmac.new(secret, _LABEL, hashlib.sha256).digest())
        self.ttl = timedelta(seconds=ttl_seconds)

    def seal(self, kind: str, partner_id: str, value: str, audience: str, now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        expiry = int((now + self.ttl).timestamp())
        payload = json.dumps([_FORMAT, kind, partner_id, value, expiry], separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, payload, _aad(audience))
        token = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        return (ITEM_PREFIX if kind == "item" else ATTACHMENT_PREFIX) + token

    def open(self, text: str, audience: str, kind: str, now: datetime | None = None) -> PartnerRef | None:
        """The reference, or None when the id is not ours, altered, expired or of another kind."""
        prefix = ITEM_PREFIX if kind == "item" else ATTACHMENT_PREFIX
        if not text.startswith(prefix):
            return None
        token = text[len(prefix):]
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _aad(audience))
            version, sealed_kind, partner_id, value, expiry = json.loads(payload)
        except (binascii.Error, ValueError, TypeError, InvalidTag):
            return None
        now = now or datetime.now(timezone.utc)
        if version != _FORMAT or sealed_kind != kind or now.timestamp() >= expiry:
            return None
        return PartnerRef(partner_id, value, kind)


def _aad(audience: str) -> bytes:
    return b"leis-partner-id|" + audience.encode()
