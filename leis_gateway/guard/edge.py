"""The edge steps of every exchange: audit in, verify the signature, sign out, audit out.

Fail closed: when the audit log cannot be written, the request is refused before anything
reads it, and an answer that cannot be audited is never sent.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

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
    def record(self, entry: AuditEntry, raw: bytes, disclosures=(), *, durable: bool = True) -> int: ...

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
        # Not fsynced on its own: every answer is recorded durably before it is sent (`respond`), and
        # that commit makes this row durable too (audit/log.py `record`).
        self._record(entry, exchange.raw_request, durable=False)

    def admit(self, exchange: Exchange) -> None:
        if not self.require_signature:
            return
        agreement = self.registry.get(exchange.caller.agreement_id)
        try:
            verified = verify_agreement_signature(exchange.envelope.root, agreement, self.registry,
                                                  self.certificates, self.signatures)
            if not self.audit.remember_once(verified.replay_key, verified.replay_window_ends):
                raise WsSecurityError(ErrorCode.REPLAY)
        except SoapFault as certificate_fault:  # the signer's certificate is revoked (or unknowable)
            exchange.notes["fault"] = certificate_fault.code
            raise
        except WsSecurityError as refused:
            exchange.notes["fault"] = SIGNATURE_FAULTS[refused.code].code
            raise SIGNATURE_FAULTS[refused.code] from None
        except AuditUnavailable:
            raise faults.AUDIT_UNAVAILABLE from None

    # --- outbound --------------------------------------------------------------------------
    def respond(self, exchange: Exchange, body: bytes, is_fault: bool) -> bytes:
        signed = self._sign(body)
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
        self._record(entry, signed, disclosures)
        return signed

    def _sign(self, body: bytes) -> bytes:
        envelope = etree.fromstring(body)
        sign_envelope(envelope, self.credentials.key, self.credentials.certificate)
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

    def _record(self, entry: AuditEntry, raw: bytes, disclosures=(), *, durable: bool = True) -> None:
        started = time.perf_counter()
        try:
            self.audit.record(entry, raw, disclosures, durable=durable)
        except AuditUnavailable:
            metrics.observe_audit_write(_direction(entry), time.perf_counter() - started, ok=False)
            log.error("audit log unavailable: refusing service")
            raise faults.AUDIT_UNAVAILABLE from None
        metrics.observe_audit_write(_direction(entry), time.perf_counter() - started, ok=True)


def _direction(entry: AuditEntry) -> str:
    return str(getattr(entry.direction, "value", entry.direction))


def _operation(exchange: Exchange) -> str:
    return exchange.operation or "unparsed"


def _purpose(user) -> str | None:
    """The stated purpose for the audit's searchable column: only a known value, never free text."""
    values = user.attribute("SearchPurpose") if user is not None else ()
    return values[0] if len(values) == 1 and values[0] in _PURPOSES else None


_PURPOSES = frozenset(p.value for p in Purpose)
