"""One partner call: sign, audit, send over mutual TLS, read (bounded), audit, verify, validate.

Nothing of an answer is used before it has been audited (fail closed), its signature checked
against the partner's registered certificate (the agreement binds it by fingerprint or by
subject CN of a certificate our CA issued), and its SR wrapper validated against the LEXS
schemas. Every failure becomes one advisory naming the partner; none raises.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import requests
from lxml import etree

from ..audit.types import AuditEntry, AuditUnavailable, Direction
from ..domain import Advisory, AdvisoryCategory, Agreement
from ..guard.identity import CertificateIdentity
from ..guard.xmlsafety import parse_envelope
from ..lexs import requests as lexs_requests
from ..security.tls import client_session
from ..lexs import schema
from ..lexs.namespaces import OPERATIONS
from ..policy.agreements import AgreementRegistry
from ..security.pki import SigningCredentials
from ..guard.identity import verify_agreement_signature
from ..security.wssec import DEFAULT_CONFIGURATION, ErrorCode, SignatureConfiguration, WsSecurityError, sign_envelope
from ..soap.faults import SoapFault
from .messages import PartnerMessage, UnusableAnswer, read_answer, sequence_number
from .partners import describe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallContext:
    """What the audit rows of the partner messages share with the analyst's exchange."""

    correlation_id: str
    user_id: str | None
    purpose: str | None
    query_categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class PartnerCall:
    partner: Agreement
    answer: PartnerMessage | None = None
    advisory: Advisory | None = None
    elapsed_ms: float = 0.0


class _Refused(Exception):
    def __init__(self, category: AdvisoryCategory, reason: str, result: str) -> None:
        super().__init__(reason)
        self.category, self.reason, self.result = category, reason, result


class PartnerClient:
    def __init__(self, *, registry: AgreementRegistry, audit, credentials: SigningCredentials,
                 client_cert: str, client_key: str, ca_file: str, certificates: CertificateIdentity,
                 max_response_bytes: int, signatures: SignatureConfiguration = DEFAULT_CONFIGURATION) -> None:
        self.registry = registry
        self.audit = audit
        self.credentials = credentials
        self.client_cert = (str(client_cert), str(client_key))
        self.ca_file = str(ca_file)
        self.certificates = certificates
        self.max_response_bytes = max_response_bytes
        self.signatures = signatures
        self._sessions: dict[str, requests.Session] = {}
        self._lock = threading.Lock()

    def _session(self, partner_id: str) -> requests.Session:
        with self._lock:
            session = self._sessions.get(partner_id)
            if session is None:
                session = client_session(self.ca_file, *self.client_cert)
                self._sessions[partner_id] = session
            return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()

    # --- the call ----------------------------------------------------------------------------
    def call(self, partner: Agreement, operation: str, message: etree._Element, deadline: float,
             context: CallContext) -> PartnerCall:
        """`deadline` is a `time.monotonic()` instant; the call never runs past it."""
        started = time.monotonic()
        sent_sequence = sequence_number(message)
        envelope = etree.fromstring(lexs_requests.soap_envelope(lexs_requests.wrap_request(operation, message)))
        sign_envelope(envelope, self.credentials.key, self.credentials.certificate)
        body = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
        try:
            self._record(Direction.OUTBOUND, partner, operation, sent_sequence, context, body)
        except AuditUnavailable:
            return self._failed(partner, started, AdvisoryCategory.OTHER,
                                "was not queried: the gateway cannot audit, so it cannot send")
        raw = b""
        try:
            raw, status = self._send(partner, operation, body, deadline, context.correlation_id)
            answer = self._check(partner, operation, raw, status, sent_sequence)
        except _Refused as refused:
            if raw:
                try:
                    self._record(Direction.INBOUND, partner, operation, None, context, raw,
                                 result=refused.result, latency=started)
                except AuditUnavailable:
                    pass
            log.warning("partner %s: %s", partner.id, refused.result)
            return self._failed(partner, started, refused.category, refused.reason)
        try:
            self._record(Direction.INBOUND, partner, operation, sequence_number(answer.message), context, raw,
                         result=answer.result_code, advisories=tuple(c for c, _ in answer.advisories),
                         latency=started)
        except AuditUnavailable:
            return self._failed(partner, started, AdvisoryCategory.OTHER,
                                "answered, but the answer could not be audited and was discarded")
        return PartnerCall(partner, answer=answer, elapsed_ms=(time.monotonic() - started) * 1000)

    def _failed(self, partner: Agreement, started: float, category: AdvisoryCategory, reason: str) -> PartnerCall:
        advisory = Advisory(category, f"Partner {describe(partner)} {reason}.")
        return PartnerCall(partner, advisory=advisory, elapsed_ms=(time.monotonic() - started) * 1000)

    def _send(self, partner: Agreement, operation: str, body: bytes, deadline: float,
              correlation_id: str) -> tuple[bytes, int]:
        remaining = deadline - time.monotonic()
        budget = f"{max(remaining, 0):.1f}".rstrip("0").rstrip(".")
        late = _Refused(AdvisoryCategory.TIMEOUT, f"did not answer within {budget} s", "Timeout")
        if remaining <= 0:
            raise late
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{OPERATIONS[operation].soap_action}"',
            "X-Correlation-ID": correlation_id,
        }
        try:
            response = self._session(partner.id).post(
                partner.endpoint, data=body, headers=headers, stream=True,
                timeout=(min(remaining, 5.0), remaining),
            )
            with response:
                chunks, size = [], 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise _Refused(AdvisoryCategory.INVALID_RESPONSE,
                                       "answered with a message over the size limit", "TooLarge")
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise late
                return b"".join(chunks), response.status_code
        except requests.Timeout:
            raise late from None
        except (requests.ConnectionError, requests.RequestException) as exc:
            if isinstance(exc, requests.ConnectionError) and "timed out" in str(exc).lower():
                raise late from None
            raise _Refused(AdvisoryCategory.NETWORK_FAILURE, "could not be reached", "NetworkFailure") from None

    def _check(self, partner: Agreement, operation: str, raw: bytes, status: int,
               sent_sequence: str) -> PartnerMessage:
        def invalid(reason: str, result: str) -> _Refused:
            return _Refused(AdvisoryCategory.INVALID_RESPONSE, f"answered, but {reason}; nothing of it is used",
                            result)

        try:
            envelope = parse_envelope(raw)
        except SoapFault as fault:
            if status != 200:
                raise _Refused(AdvisoryCategory.NETWORK_FAILURE, f"is not available (HTTP {status})",
                               f"HTTP{status}") from None
            raise invalid("the answer is not a usable SOAP message", f"Invalid:{fault.code}") from None
        if status != 200:
            raise invalid(f"with a SOAP fault (HTTP {status})", f"Fault:HTTP{status}")
        try:
            verified = verify_agreement_signature(envelope.root, partner, self.registry, self.certificates,
                                                  self.signatures)
        except WsSecurityError as refused:
            if refused.code is ErrorCode.WRONG_SIGNER:
                raise invalid("it is not signed by the partner's registered certificate", "Invalid:WrongSigner") from None
            raise invalid(f"its signature was refused ({refused.code.value})", f"Invalid:{refused.code.value}") from None
        except SoapFault:
            raise invalid("it is not signed by the partner's registered certificate", "Invalid:WrongSigner") from None
        children = [c for c in verified.body if isinstance(c.tag, str)]
        if len(children) != 1:
            raise invalid("its Body does not hold one SR response", "Invalid:Body")
        errors = schema.validate_message(children[0])
        if errors:
            first = errors[0]
            raise invalid(f"it is not valid LEXS (line {first.line}: {first.element or 'element'})",
                          "Invalid:Schema")
        try:
            return read_answer(operation, children[0], sent_sequence)
        except UnusableAnswer as exc:
            raise invalid(str(exc), "Invalid:Unusable") from None

    def _record(self, direction: Direction, partner: Agreement, operation: str, message_id: str | None,
                context: CallContext, raw: bytes, *, result: str | None = None,
                advisories: tuple[str, ...] = (), latency: float | None = None) -> None:
        self.audit.record(AuditEntry(
            direction=direction,
            operation=operation,
            message_id=message_id,
            correlation_id=context.correlation_id,
            agreement_id=partner.id,
            ori=partner.ori,
            user_id=context.user_id,
            purpose=context.purpose,
            query_categories=context.query_categories if direction is Direction.OUTBOUND else (),
            result_code=result,
            advisory_categories=advisories,
            latency_ms=None if latency is None else (time.monotonic() - latency) * 1000,
        ), raw)
