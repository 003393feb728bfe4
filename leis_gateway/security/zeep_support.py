"""A zeep `wsse` plugin whose signatures the gateway accepts (for test clients and conformance scripts).

zeep's `BinarySignature` signs the Body, and also the `wsu:Timestamp` if one is already present in the
Security header when it signs; it never adds a Timestamp itself, and its default algorithms are RSA-SHA1
and SHA-1 (refused by the gateway). `zeep_wsse` therefore adds a Timestamp first and asks for RSA-SHA256
with SHA-256 digests. Needs python-xmlsec (a test extra, not a runtime dependency of the gateway).

Responses: zeep calls `wsse.verify(envelope)` on every reply. With `server_cert` given, replies are
verified with our own `verify_envelope` pinned to that certificate (zeep's own check accepts wrapped
messages); without it, replies are not verified at all (say so where that matters).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from lxml import etree

from leis_gateway.security import wssec


class TimestampedBinarySignature:
    """zeep wsse plugin: Timestamp + BinarySecurityToken + RSA-SHA256 signature over Body and Timestamp."""

    def __init__(self, key_file: Path | str, cert_file: Path | str, *, expires_in: int = 300,
                 server_cert: x509.Certificate | None = None,
                 config: wssec.SignatureConfiguration = wssec.DEFAULT_CONFIGURATION,
                 signature_method=None, digest_method=None):
        try:
            import xmlsec
            from zeep.wsse.signature import BinarySignature
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("zeep_wsse needs python-xmlsec: pip install 'leis-gateway[test]'") from exc
        self._signature = BinarySignature(
            str(key_file), str(cert_file),
            signature_method=signature_method or xmlsec.constants.TransformRsaSha256,
            digest_method=digest_method or xmlsec.constants.TransformSha256,
        )
        self.expires_in = expires_in
        self.server_cert = server_cert
        self.config = config
        self.last_verified: wssec.VerifiedEnvelope | None = None

    def apply(self, envelope: etree._Element, headers: dict):
        from zeep.wsse.utils import WSU, get_security_header

        security = get_security_header(envelope)
        soap_ns = etree.QName(envelope).namespace
        security.set(f"{{{soap_ns}}}mustUnderstand", "1")
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        expires = now + dt.timedelta(seconds=self.expires_in)
        timestamp = WSU.Timestamp(
            WSU.Created(now.strftime("%Y-%m-%dT%H:%M:%SZ")),
            WSU.Expires(expires.strftime("%Y-%m-%dT%H:%M:%SZ")),
        )
        security.insert(0, timestamp)
        return self._signature.apply(envelope, headers)

    def verify(self, envelope: etree._Element) -> etree._Element:
        if self.server_cert is not None:
            self.last_verified = wssec.verify_envelope(envelope, expected_certs=[self.server_cert],
                                                       config=self.config)
        return envelope


def zeep_wsse(key_file: Path | str, cert_file: Path | str, *, expires_in: int = 300,
              server_cert: x509.Certificate | None = None) -> TimestampedBinarySignature:
    """A zeep `wsse=` object producing signatures that `wssec.verify_envelope` accepts.

    Usage: `zeep.Client(wsdl, transport=..., wsse=zeep_wsse(agency.key, agency.crt, server_cert=...))`.
    """
    return TimestampedBinarySignature(key_file, cert_file, expires_in=expires_in, server_cert=server_cert)
