"""The edge steps of every exchange: verify the signature, audit in, sign out, audit out.

The order, and why: `received` prepares the inbound row; `admit` verifies the signature (it
touches no data), then writes the inbound row *and* the replay key in one transaction (one audit
write instead of two); `respond` signs the answer and writes the outbound row. A message refused
before that transaction (no or a bad signature, a revoked signer, refused by the guard) has its
inbound row written by `respond`, just before the outbound row, in the same transaction; a replay's
inbound row is written with its (refused) key. An inbound write that fails refuses the request; only
the refusal is then written (the inbound row is not tried again).

Fail closed: every message that arrives is audited before any data is read for it and before any
answer; when the audit log cannot be written the request is refused (AuditUnavailable), and an
answer that cannot be audited is never sent.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from lxml import etree

from ..audit.types import AuditEntry, AuditUnavailable, Direction, Disclosure as AuditDisclosure
from ..domain import Purpose
from ..lexs import parse
from ..observability import metrics
from ..policy.agreements import AgreementRegistry
from ..security.pki import SigningCredentials
from ..security.wssec import (
    DEFAULT_CONFIGURATION,
    ErrorCode,
    SignatureConfiguration,
    WsSecurityError,
    sign_envelope,
)
from ..soap import faults
from ..soap.faults import SoapFault
from .identity import CertificateIdentity
from .identity import verify_agreement_signature
from .middleware import Exchange

log = logging.getLogger(__name__)
T = TypeVar("T")
_INBOUND = "audit_inbound"  # exchange.notes: the inbound AuditEntry (metadata only) not written yet

SIGNATURE_FAULTS: dict[ErrorCode, SoapFault] = {
    ErrorCode.NO_SIGNATURE: SoapFault("NoSignature", "The message carries no WS-Security signature."),
    ErrorCode.BAD_SIGNATURE: SoapFault("BadSignature", "The message signature does not verify."),
    ErrorCode.WRONG_SIGNER: SoapFault("WrongSigner", "The message is not signed by the caller's registered key."),
    ErrorCode.STALE: SoapFault("Stale", "The message timestamp is outside the allowed window."),
    ErrorCode.REPLAY: SoapFault("Replay", "The message has been received before."),
    ErrorCode.UNSUPPORTED_ALGORITHM: SoapFault("UnsupportedAlgorithm", "The signature algorithm is not accepted."),
    ErrorCode.MALFORMED: SoapFault("BadSignature", "The message signature does not verify."),
}


class AuditLogLike:  # the part of `audit.AuditLog` the edge needs (a Protocol in spirit)
    def record(self, entry: AuditEntry, raw: bytes, disclosures=(), *, durable: bool = True,
               inbound: tuple[AuditEntry, bytes] | None = None) -> int: ...

    def record_inbound(self, entry: AuditEntry, raw: bytes, replay_key: str, expires: dt.datetime) -> bool: ...

    def remember_once(self, key: str, expires: dt.datetime) -> bool: ...


@dataclass
class Edge:
    """`ExchangeHooks` for the member endpoint."""

    audit: AuditLogLike
    registry: AgreementRegistry
    credentials: SigningCredentials
    signatures: SignatureConfiguration = DEFAULT_CONFIGURATION
    require_signature: bool = True
    certificates: CertificateIdentity | None = None  # the signer's certificate passes the caller's checks

    # --- inbound ---------------------------------------------------------------------------
    def received(self, exchange: Exchange) -> None:
        agreement = self.registry.get(exchange.caller.agreement_id) if exchange.caller else None
        header, user = (None, None)
        if exchange.envelope is not None:
            header, user = parse.lenient_metadata(exchange.envelope.request)
        exchange.notes["user_id"] = user.user_id if user else None
        exchange.notes["purpose"] = _purpose(user)
        exchange.notes["message_id"] = header.message_id if header else None
        entry = AuditEntry(
            direction=Direction.INBOUND,
            operation=_operation(exchange),
            message_id=exchange.notes["message_id"],
            correlation_id=exchange.correlation_id,
            agreement_id=agreement.id if agreement else None,
            ori=agreement.ori if agreement else None,
            user_id=exchange.notes["user_id"],
            purpose=exchange.notes["purpose"],
        )
        exchange.notes[_INBOUND] = entry  # written by `admit`, or by `respond` if admit is never reached

    def admit(self, exchange: Exchange) -> None:
        if not self.require_signature:
            self._inbound_alone(exchange)
            return
        agreement = self.registry.get(exchange.caller.agreement_id)
        try:
            verified = verify_agreement_signature(exchange.envelope.root, agreement, self.registry,
                                                  self.certificates, self.signatures)
        except SoapFault as certificate_fault:  # the signer's certificate is revoked (or unknowable)
            exchange.notes["fault"] = certificate_fault.code
            raise
        except WsSecurityError as refused:
            exchange.notes["fault"] = SIGNATURE_FAULTS[refused.code].code
            raise SIGNATURE_FAULTS[refused.code] from None
        except Exception:  # no answer follows: what arrived is audited all the same
            self._inbound_alone(exchange)
            raise
        if not self._arrived(exchange, verified.replay_key, verified.replay_window_ends):
            exchange.notes["fault"] = SIGNATURE_FAULTS[ErrorCode.REPLAY].code
            raise SIGNATURE_FAULTS[ErrorCode.REPLAY]

    def _arrived(self, exchange: Exchange, replay_key: str, expires: dt.datetime) -> bool:
        """The inbound row and the replay key, one audit write; False for a replay (its row is written too)."""
        entry = exchange.notes.pop(_INBOUND, None)
        if entry is None:  # an edge that audits no messages (bench/echo.py): the replay key alone
            try:
                return self.audit.remember_once(replay_key, expires)
            except AuditUnavailable:
                raise faults.AUDIT_UNAVAILABLE from None
        return self._audited((entry,), lambda: self.audit.record_inbound(
            entry, exchange.raw_request, replay_key, expires))

    def _inbound_alone(self, exchange: Exchange) -> None:
        """The inbound row alone, if it is still to be written. Not fsynced on its own: every answer
        is recorded durably before it is sent (`respond`), and that commit covers this row too."""
        entry = exchange.notes.pop(_INBOUND, None)
        if entry is not None:
            self._audited((entry,), lambda: self.audit.record(entry, exchange.raw_request, durable=False))

    # --- outbound --------------------------------------------------------------------------
    def respond(self, exchange: Exchange, body: bytes | etree._Element, is_fault: bool) -> bytes:
        try:
            signed = self._sign(body)
        except Exception:  # no answer follows: what arrived is audited all the same
            self._inbound_alone(exchange)
            raise
        facts = exchange.notes.get("facts")
        agreement = self.registry.get(exchange.caller.agreement_id) if exchange.caller else None
        disclosures = tuple(
            AuditDisclosure(d.source, d.record_id, tuple(d.elements)) for d in getattr(facts, "disclosures", ())
        )
        entry = AuditEntry(
            direction=Direction.OUTBOUND,
            operation=_operation(exchange),
            message_id=exchange.notes.get("response_message_id"),
            correlation_id=exchange.correlation_id,
            agreement_id=agreement.id if agreement else None,
            ori=agreement.ori if agreement else None,
            user_id=exchange.notes.get("user_id"),
            purpose=getattr(facts, "purpose", None) or exchange.notes.get("purpose"),
            query_categories=tuple(getattr(facts, "query_categories", ())),
            result_code=("Fault:" + str(exchange.notes["fault"])) if "fault" in exchange.notes
            else exchange.notes.get("result_code"),
            advisory_categories=tuple(exchange.notes.get("advisory_categories", ())),
            latency_ms=(time.monotonic() - exchange.received_at) * 1000,
        )
        inbound = exchange.notes.pop(_INBOUND, None)  # refused before `admit` wrote it: first, same transaction
        if inbound is None:
            self._audited((entry,), lambda: self.audit.record(entry, signed, disclosures))
        else:
            self._audited((inbound, entry), lambda: self.audit.record(
                entry, signed, disclosures, inbound=(inbound, exchange.raw_request)))
        return signed

    def _sign(self, envelope: bytes | etree._Element) -> bytes:
        """The envelope signed and serialised; an element (as the SOAP layer built it) is signed
        in place, bytes (faults, other inner applications) are parsed first."""
        if isinstance(envelope, bytes):
            envelope = etree.fromstring(envelope)
        sign_envelope(envelope, self.credentials.key, self.credentials.certificate)
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

    def _audited(self, entries: tuple[AuditEntry, ...], write: Callable[[], T]) -> T:
        """One audit write of `entries`' rows, timed under each row's direction; a store that fails
        it refuses service."""
        started = time.perf_counter()
        try:
            result = write()
        except AuditUnavailable:
            _observe(entries, time.perf_counter() - started, ok=False)
            log.error("audit log unavailable: refusing service")
            raise faults.AUDIT_UNAVAILABLE from None
        _observe(entries, time.perf_counter() - started, ok=True)
        return result


def _observe(entries: tuple[AuditEntry, ...], seconds: float, ok: bool) -> None:
    for entry in entries:
        metrics.observe_audit_write(_direction(entry), seconds, ok=ok)


def _direction(entry: AuditEntry) -> str:
    return str(getattr(entry.direction, "value", entry.direction))


def _operation(exchange: Exchange) -> str:
    return exchange.operation or "unparsed"


def _purpose(user) -> str | None:
    """The stated purpose for the audit's searchable column: only a known value, never free text."""
    values = user.attribute("SearchPurpose") if user is not None else ()
    return values[0] if len(values) == 1 and values[0] in _PURPOSES else None


_PURPOSES = frozenset(p.value for p in Purpose)
