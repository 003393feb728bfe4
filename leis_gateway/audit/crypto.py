"""Key handling and AES-GCM sealing of stored messages."""
from __future__ import annotations

import hashlib
import logging
import os
import ssl
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .types import AuditIntegrityError

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12


def key_id_of(key: bytes) -> str:
    """Stored with every row so old rows stay readable after a key rotation."""
    return hashlib.sha256(key).hexdigest()[:8]


def load_or_create_key(path: Path) -> tuple[bytes, str]:
    """Return (key, key id); create 32 random bytes (mode 0600) if the file does not exist.

    Creation is atomic (write a temp file, then hard-link it into place), so gateway
    processes starting together agree on one key.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race: use its key
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is accessible to group/others (mode %o)", path, mode & 0o777)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"key file {path} must hold exactly {KEY_BYTES} bytes, found {len(key)}")
    return key, key_id_of(key)


class Sealer:
    """AES-256-GCM with a fresh nonce per row and the row's canonical metadata as associated data."""

    def __init__(self, key: bytes, key_id: str, old_keys: dict[str, bytes] | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"audit key must be {KEY_BYTES} bytes")
        self.key_id = key_id
        self._aead = {key_id: AESGCM(key)}
        for kid, k in (old_keys or {}).items():
            self._aead.setdefault(kid, AESGCM(k))

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        nonce = ssl.RAND_bytes(NONCE_BYTES)  # OpenSSL's CSPRNG: unlike os.urandom, keeps the GIL
        return nonce, self._aead[self.key_id].encrypt(nonce, plaintext, aad)

    def open(self, key_id: str, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        aead = self._aead.get(key_id)
        if aead is None:
            raise AuditIntegrityError(f"no key configured for key id {key_id!r}")
        try:
            return aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise AuditIntegrityError("stored message failed authentication (altered row or wrong key)") from None
