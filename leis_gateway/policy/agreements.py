"""The registry of member agreements: a versioned JSON file, reloaded when it changes.

File shape (see fixtures/agreements.json):

    {"version": "...",
     "release_profiles": {"<name>": {"exclude_protected_classes": bool,
                                      "elements": [...], "sources": [...]}},   # may only narrow
     "agreements": [{"id", "agency_name", "ori", "certificate": {"sha256": ... | [...],
                     "subject_cn": ...}, "status", "direction", "purposes", "release_profile",
                     "expires", "endpoint", "allow_sha1" (optional, default false)}]}

A certificate is bound by SHA-256 fingerprint (preferred) or, for the demo whose PKI is made
at `init`, by the subject CN of a certificate the configured CA issued (the TLS layer checks
the issuer). An agreement that pins a fingerprint is never matched by CN alone.

A file that cannot be read or is invalid never replaces the last good registry; the reason
is kept in `last_error`. Nothing here raises into the request path.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..domain import Agreement, Purpose
from ..release.profiles import BUILTIN_PROFILES, ProfileError, ReleaseProfile

log = logging.getLogger(__name__)

STATUSES = frozenset({"active", "suspended"})
DIRECTIONS = frozenset({"two-way", "one-way", "internal"})
_ID = re.compile(r"[a-z0-9][a-z0-9\-]{0,62}")
_ORI = re.compile(r"[A-Z]{2}[A-Z0-9]{7}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_AGREEMENT_KEYS = frozenset(
    {"id", "agency_name", "ori", "certificate", "status", "direction", "purposes",
     "release_profile", "expires", "endpoint", "description", "allow_sha1"}
)
_REQUIRED_KEYS = frozenset({"id", "agency_name", "ori", "certificate", "status", "direction",
                            "purposes", "release_profile"})


class RegistryError(ValueError):
    """Why a registry file is unusable."""


def normalise_fingerprint(text: str) -> str | None:
    """Lower-case hex without separators, or None if `text` is not a SHA-256 fingerprint."""
    candidate = re.sub(r"[\s:]", "", text).lower()
    if candidate.startswith("sha256"):
        candidate = candidate[len("sha256"):].lstrip("=")
    return candidate if _FINGERPRINT.fullmatch(candidate) else None


@dataclass(frozen=True)
class RegistrySnapshot:
    """One consistent, immutable state of the registry (a request uses one snapshot)."""

    version: str
    agreements: Mapping[str, Agreement]
    profiles: Mapping[str, ReleaseProfile]
    subject_cns: Mapping[str, str] = field(default_factory=dict)  # agreement id -> bound CN
    source: str = ""

    def get(self, agreement_id: str) -> Agreement | None:
        return self.agreements.get(agreement_id)

    def all(self) -> tuple[Agreement, ...]:
        return tuple(self.agreements.values())

    def profile_for(self, agreement: Agreement) -> ReleaseProfile | None:
        return self.profiles.get(agreement.release_profile)

    def by_fingerprint(self, fingerprint: str) -> Agreement | None:
        wanted = normalise_fingerprint(fingerprint)
        if wanted is None:
            return None
        for agreement in self.agreements.values():
            if wanted in agreement.certificate_fingerprints:
                return agreement
        return None

    def by_subject_cn(self, subject_cn: str) -> Agreement | None:
        """Only agreements bound by CN (none that pin a fingerprint)."""
        for agreement_id, cn in self.subject_cns.items():
            agreement = self.agreements[agreement_id]
            if cn == subject_cn and not agreement.certificate_fingerprints:
                return agreement
        return None


EMPTY = RegistrySnapshot(version="", agreements=MappingProxyType({}), profiles=BUILTIN_PROFILES)


# --- parsing ------------------------------------------------------------------------------


def parse_registry(document: Any, source: str = "") -> RegistrySnapshot:
    """Validate a decoded registry document; raise RegistryError naming the first problem."""
    if not isinstance(document, dict):
        raise RegistryError("the registry must be a JSON object")
    unknown = set(document) - {"version", "description", "release_profiles", "agreements"}
    if unknown:
        raise RegistryError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    version = document.get("version")
    if not isinstance(version, (str, int)) or isinstance(version, bool) or str(version) == "":
        raise RegistryError("'version' is required (a string or an integer)")

    profiles: dict[str, ReleaseProfile] = dict(BUILTIN_PROFILES)
    declared = document.get("release_profiles", {})
    if not isinstance(declared, dict):
        raise RegistryError("'release_profiles' must be an object")
    for name, spec in declared.items():
        try:
            profiles[name] = ReleaseProfile.from_config(name, spec)
        except ProfileError as exc:
            raise RegistryError(str(exc)) from None

    entries = document.get("agreements")
    if not isinstance(entries, list) or not entries:
        raise RegistryError("'agreements' must be a non-empty list")
    agreements: dict[str, Agreement] = {}
    subject_cns: dict[str, str] = {}
    fingerprint_owner: dict[str, str] = {}
    for index, entry in enumerate(entries):
        agreement, cn = _parse_agreement(entry, index, profiles)
        if agreement.id in agreements:
            raise RegistryError(f"agreement '{agreement.id}' is listed twice")
        for fingerprint in agreement.certificate_fingerprints:
            if fingerprint in fingerprint_owner:
                raise RegistryError(
                    f"agreements '{fingerprint_owner[fingerprint]}' and '{agreement.id}' "
                    "pin the same certificate"
                )
            fingerprint_owner[fingerprint] = agreement.id
        if cn is not None:
            if cn in subject_cns.values():
                raise RegistryError(f"two agreements are bound to subject CN '{cn}'")
            subject_cns[agreement.id] = cn
        agreements[agreement.id] = agreement
    return RegistrySnapshot(
        version=str(version),
        agreements=MappingProxyType(agreements),
        profiles=MappingProxyType(profiles),
        subject_cns=MappingProxyType(subject_cns),
        source=source,
    )


def _parse_agreement(
    entry: Any, index: int, profiles: Mapping[str, ReleaseProfile]
) -> tuple[Agreement, str | None]:
    where = f"agreements[{index}]"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where} must be an object")
    if isinstance(entry.get("id"), str):
        where = f"agreement '{entry['id']}'"
    missing = _REQUIRED_KEYS - set(entry)
    if missing:
        raise RegistryError(f"{where} lacks {', '.join(sorted(missing))}")
    unknown = set(entry) - _AGREEMENT_KEYS
    if unknown:
        raise RegistryError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")

    def text(key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = entry[key]
        if not isinstance(value, str) or not value.strip():
            raise RegistryError(f"{where}: '{key}' must be a non-empty string")
        if pattern is not None and not pattern.fullmatch(value):
            raise RegistryError(f"{where}: '{key}' is malformed")
        return value

    def one_of(key: str, allowed: frozenset[str]) -> str:
        value = text(key)
        if value not in allowed:
            raise RegistryError(f"{where}: '{key}' must be one of {', '.join(sorted(allowed))}")
        return value

    purposes_raw = entry["purposes"]
    if not isinstance(purposes_raw, list) or not all(isinstance(p, str) for p in purposes_raw):
        raise RegistryError(f"{where}: 'purposes' must be a list of strings")
    try:
        purposes = frozenset(Purpose(p) for p in purposes_raw)
    except ValueError:
        raise RegistryError(
            f"{where}: 'purposes' must be drawn from {', '.join(p.value for p in Purpose)}"
        ) from None

    profile = text("release_profile")
    if profile not in profiles:
        raise RegistryError(f"{where}: release profile '{profile}' is not defined")

    expires = entry.get("expires")
    if expires is not None:
        try:
            expires = date.fromisoformat(expires) if isinstance(expires, str) else None
        except ValueError:
            expires = None
        if expires is None:
            raise RegistryError(f"{where}: 'expires' must be an ISO date (YYYY-MM-DD) or null")

    endpoint = entry.get("endpoint")
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.startswith("https://")):
        raise RegistryError(f"{where}: 'endpoint' must be an https:// URL or null")
    direction = one_of("direction", DIRECTIONS)
    if endpoint is not None and direction != "two-way":
        raise RegistryError(f"{where}: only two-way agreements are queried, so only they have an endpoint")

    fingerprints, cn = _parse_certificate(entry["certificate"], where)
    allow_sha1 = entry.get("allow_sha1", False)
    if not isinstance(allow_sha1, bool):
        raise RegistryError(f"{where}: 'allow_sha1' must be true or false")
    agreement = Agreement(
        id=text("id", _ID),
        agency_name=text("agency_name"),
        ori=text("ori", _ORI),
        direction=direction,
        status=one_of("status", STATUSES),
        purposes=purposes,
        release_profile=profile,
        expires=expires,
        certificate_fingerprints=fingerprints,
        endpoint=endpoint,
        allow_sha1=allow_sha1,
    )
    return agreement, cn


def _parse_certificate(spec: Any, where: str) -> tuple[frozenset[str], str | None]:
    if not isinstance(spec, dict) or set(spec) - {"sha256", "subject_cn"} or not spec:
        raise RegistryError(f"{where}: 'certificate' must hold 'sha256' and/or 'subject_cn'")
    raw = spec.get("sha256", [])
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list):
        raise RegistryError(f"{where}: 'certificate.sha256' must be a fingerprint or a list of them")
    fingerprints = set()
    for text in raw:
        fingerprint = normalise_fingerprint(text) if isinstance(text, str) else None
        if fingerprint is None:
            raise RegistryError(f"{where}: 'certificate.sha256' holds a malformed fingerprint")
        fingerprints.add(fingerprint)
    cn = spec.get("subject_cn")
    if cn is not None and (not isinstance(cn, str) or not cn.strip()):
        raise RegistryError(f"{where}: 'certificate.subject_cn' must be a non-empty string")
    if not fingerprints and cn is None:
        raise RegistryError(f"{where}: 'certificate' binds no certificate")
    return frozenset(fingerprints), cn


def load_registry(path: str | os.PathLike[str]) -> RegistrySnapshot:
    """Read and validate a registry file (raises RegistryError; for the CLI and tests)."""
    return decode_registry(_read(Path(path)), source=str(path))


def decode_registry(raw: bytes, source: str = "") -> RegistrySnapshot:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{source or 'the registry'} is not valid JSON: {exc}") from None
    return parse_registry(document, source=source)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None


# --- the live registry ----------------------------------------------------------------------


class AgreementRegistry:
    """The current agreements, reloaded when the file's content changes (read at most every
    `check_interval` seconds, on access: a few kilobytes). Thread-safe; never raises."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: RegistrySnapshot = EMPTY
        self._digest: bytes | None = None  # of the file last read, good or broken
        self._checked_at: float | None = None
        self._last_error: str | None = None
        self.refresh(force=True)

    # --- state ----------------------------------------------------------------------------

    @property
    def last_error(self) -> str | None:
        """Why the newest file was not taken (None once a good file is loaded)."""
        return self._last_error

    @property
    def version(self) -> str:
        return self.snapshot().version

    def snapshot(self) -> RegistrySnapshot:
        """The current registry, after a cheap change check; use one per request."""
        self.refresh()
        return self._snapshot

    def refresh(self, force: bool = False) -> bool:
        """Reload if the file changed; True when a new registry was taken."""
        now = self._clock()
        if not force and self._checked_at is not None and now - self._checked_at < self.check_interval:
            return False
        with self._lock:
            if not force and self._checked_at is not None and now - self._checked_at < self.check_interval:
                return False
            self._checked_at = now
            digest = None
            try:
                raw = _read(self.path)
                digest = hashlib.sha256(raw).digest()
                if not force and digest == self._digest:
                    return False
                snapshot = decode_registry(raw, source=str(self.path))
            except RegistryError as exc:
                return self._reject(str(exc), digest)
            except Exception as exc:  # never into the request path
                return self._reject(f"unexpected error reading {self.path}: {exc!r}", digest)
            if self._snapshot.version and snapshot.version == self._snapshot.version:
                log.warning("agreement registry %s changed but kept version %s", self.path, snapshot.version)
            self._digest = digest
            self._snapshot = snapshot
            self._last_error = None
            log.info("agreement registry version %s loaded from %s", snapshot.version, self.path)
            return True

    def _reject(self, reason: str, digest: bytes | None) -> bool:
        if reason != self._last_error:
            kept = self._snapshot.version or "none"
            log.error("agreement registry not reloaded (keeping version %s): %s", kept, reason)
        self._digest = digest  # a broken file is not parsed again until it changes
        self._last_error = reason
        return False

    # --- look-ups -------------------------------------------------------------------------

    def get(self, agreement_id: str) -> Agreement | None:
        return self.snapshot().get(agreement_id)

    def all(self) -> tuple[Agreement, ...]:
        return self.snapshot().all()

    def profile(self, name_or_agreement: str | Agreement) -> ReleaseProfile | None:
        """A release profile by name, or the one an agreement names."""
        name = (
            name_or_agreement.release_profile
            if isinstance(name_or_agreement, Agreement)
            else name_or_agreement
        )
        return self.snapshot().profiles.get(name)

    def profile_for(self, agreement: Agreement) -> ReleaseProfile | None:
        return self.snapshot().profile_for(agreement)

    def subject_cn(self, agreement_id: str) -> str | None:
        return self.snapshot().subject_cns.get(agreement_id)

    def by_certificate(self, certificate: Any) -> Agreement | None:
        """The agreement a client certificate is bound to.

        `certificate` is a SHA-256 fingerprint (hex, colons allowed), a subject CN, or a
        `cryptography.x509.Certificate` (fingerprint first, then CN).
        """
        snapshot = self.snapshot()
        if isinstance(certificate, str):
            if normalise_fingerprint(certificate) is not None:
                return snapshot.by_fingerprint(certificate)
            return snapshot.by_subject_cn(certificate)
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes

            if not isinstance(certificate, x509.Certificate):
                return None
            found = snapshot.by_fingerprint(certificate.fingerprint(hashes.SHA256()).hex())
            if found is not None:
                return found
            names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            return snapshot.by_subject_cn(str(names[0].value)) if len(names) == 1 else None
        except Exception:  # a malformed certificate binds nothing
            log.warning("could not read a client certificate for agreement binding")
            return None
