"""SOAP 1.1 faults: only for what is not a LEXS request at all (DESIGN.md, "Contracts").

Fault strings are fixed texts per cause, never an echo of what the client sent.
"""
from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
LEIS_FAULT_NS = "urn:leis-gateway:fault"


@dataclass(frozen=True)
class SoapFault(Exception):
    """A refusal at the SOAP level; `code` is stable and documented, `reason` is fixed text."""

    code: str  # e.g. "NotXml", "DtdForbidden", "UnknownOperation"
    reason: str
    client_error: bool = True
    http_status: int = 500

    @property
    def faultcode(self) -> str:
        return f"soap:{'Client' if self.client_error else 'Server'}.{self.code}"


def fault_envelope(fault: SoapFault) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soap:Envelope xmlns:soap="{SOAP11_ENV}"><soap:Header/><soap:Body><soap:Fault>'
        f"<faultcode>{escape(fault.faultcode)}</faultcode>"
        f"<faultstring>{escape(fault.reason)}</faultstring>"
        f'<detail><leis:FaultCause xmlns:leis="{LEIS_FAULT_NS}">{escape(fault.code)}'
        f"</leis:FaultCause></detail>"
        f"</soap:Fault></soap:Body></soap:Envelope>"
    ).encode("utf-8")


# The causes the guard and the SOAP layer refuse with, one place so codes stay stable.
NOT_POST = SoapFault("MethodNotAllowed", "Only HTTP POST carries SOAP requests.", http_status=405)
TOO_LARGE = SoapFault("MessageTooLarge", "The message exceeds the size limit.", http_status=413)
BAD_CONTENT_TYPE = SoapFault("ContentType", "SOAP 1.1 requests must be sent as text/xml.")
SOAP12 = SoapFault("VersionMismatch", "Only SOAP 1.1 is supported.")
EMPTY = SoapFault("EmptyMessage", "The request has no body.")
NOT_UTF8 = SoapFault("Encoding", "Messages must be encoded in UTF-8.")
NOT_XML = SoapFault("NotXml", "The request is not well-formed XML.")
DTD = SoapFault("DtdForbidden", "Document type declarations are not accepted.")
PI = SoapFault("ProcessingInstructionForbidden", "Processing instructions are not accepted.")
TOO_DEEP = SoapFault("TooDeep", "The message is nested too deeply.")
NOT_SOAP = SoapFault("NotSoap", "The request is not a SOAP 1.1 envelope.")
BAD_BODY = SoapFault("BadBody", "The SOAP envelope must hold exactly one Body with one request.")
UNKNOWN_OPERATION = SoapFault("UnknownOperation", "The request names no LEXS SR operation.")
NO_CLIENT_CERT = SoapFault("NoClientCertificate", "A client certificate is required.")
UNKNOWN_AGREEMENT = SoapFault("UnknownAgreement", "The client certificate is in no agreement.")
AUDIT_UNAVAILABLE = SoapFault(
    "AuditUnavailable",
    "The service cannot audit and so cannot serve; try again later.",
    client_error=False,
    http_status=503,
)
INTERNAL = SoapFault("Internal", "The request could not be processed.", client_error=False)

# Identity of the caller (guard/identity.py): one code per cause, fixed texts.
CERTIFICATE_UNTRUSTED = SoapFault("CertificateUntrusted", "The client certificate is not issued by a trusted CA.")
CERTIFICATE_EXPIRED = SoapFault("CertificateExpired", "The client certificate is outside its validity period.")
CERTIFICATE_REVOKED = SoapFault("CertificateRevoked", "The client certificate has been revoked.")
UNTRUSTED_PROXY = SoapFault("UntrustedProxy", "A forwarded client certificate is accepted only from a trusted proxy.")
REVOCATION_UNAVAILABLE = SoapFault(
    "RevocationUnavailable",
    "Certificate revocation cannot be checked; try again later.",
    client_error=False,
    http_status=503,
)
