"""Sealed ids: opaque, tamper-proof, expiring values bound to the audience that received them.

The gateway keeps no table of the ids it hands out (that would be a copy); instead the id
itself carries what it stands for, sealed with AES-256-GCM under a key derived from the
gateway secret and a purpose label, with the audience (an agreement id) as associated data.
So an id cannot be read, cannot be altered, opens only for its audience and only until it
expires.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import ssl
from datetime import datetime, timezone
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_FORMAT = 1
_NONCE_BYTES = 12
_TAG_BYTES = 16


class Sealer:
    """Seal and open JSON-able field lists; safe to share between threads (no mutable state)."""

    def __init__(self, secret: bytes, label: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the sealing secret must be at least 16 bytes")
        self._aead = AESGCM(hmac.new(secret, label, hashlib.sha256).digest())
        self._label = label

    def seal(self, fields: list[Any], audience: str, expires_at: datetime) -> str:
        payload = json.dumps([int(_utc(expires_at).timestamp()), *fields], separators=(",", ":")).encode()
        nonce = ssl.RAND_bytes(_NONCE_BYTES)  # OpenSSL's CSPRNG: unlike os.urandom, keeps the GIL
        sealed = self._aead.encrypt(nonce, payload, self._associated(audience))
        return base64.urlsafe_b64encode(bytes([_FORMAT]) + nonce + sealed).rstrip(b"=").decode()

    def open(self, token: str, audience: str, now: datetime) -> tuple[datetime, list[Any]] | None:
        """(expiry, fields), or None when the token is foreign, altered or expired."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError, TypeError):
            return None
        if len(raw) < 1 + _NONCE_BYTES + _TAG_BYTES or raw[0] != _FORMAT:
            return None
        try:
            payload = self._aead.decrypt(raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :],
                                         self._associated(audience))
            expiry, *fields = json.loads(payload)
            expires_at = datetime.fromtimestamp(expiry, timezone.utc)
        except (InvalidTag, ValueError, TypeError):
            return None
        if _utc(now) >= expires_at:
            return None
        return expires_at, fields

    def _associated(self, audience: str) -> bytes:
        return self._label + b"|" + audience.encode()


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("sealing times must be timezone-aware")
    return moment.astimezone(timezone.utc)
