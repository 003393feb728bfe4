"""Who is on the other end: the client certificate of the request, checked by the gateway itself.

Two ways a certificate reaches the gateway:

* direct TLS (the default): cheroot's mutual-TLS adapter verified the handshake and put the
  certificate into the WSGI environ (`SSL_CLIENT_VERIFY`, `SSL_CLIENT_CERT`). HTTP headers arrive as
  `HTTP_*` keys and can never forge these; a forwarded-certificate header is *ignored* in this mode.
* behind a reverse proxy (nginx terminating mutual TLS, see docs/nginx.md): the proxy forwards the
  client certificate as URL-encoded PEM in a header (nginx's `$ssl_client_escaped_cert`). The header
  is trusted only when the connection comes from a configured proxy address (`REMOTE_ADDR`); from any
  other address a request carrying it is refused (`UntrustedProxy`). A request from a trusted proxy is
  identified by the header only (the proxy's own TLS certificate, if any, identifies the proxy).

Whatever the way, the certificate is then checked here, independently of whoever terminated TLS:
issued (signature checked) by one of the configured CA certificates, within its validity period (and
the issuer too), and not revoked according to the configured CRL file (PEM or DER, several PEM CRLs
allowed; reloaded when the file changes; a CRL that cannot be read, does not verify or is past its
nextUpdate fails closed). Which agreement the certificate belongs to is the registry's business
(`Gateway.caller_for`).

Every refusal is a `SoapFault` with a stable code and a fixed text: nothing of the certificate or the
header is ever echoed or logged.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..security.wssec import ErrorCode, SignatureConfiguration, VerifiedEnvelope, WsSecurityError, verify_envelope
from ..soap import faults
from ..soap.faults import SoapFault

log = logging.getLogger(__name__)

DEFAULT_CLIENT_CERT_HEADER = "X-SSL-Client-Cert"
MAX_HEADER_CHARS = 16 * 1024  # a URL-encoded PEM certificate is a few kilobytes

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


def environ_key(header: str) -> str:
    """The WSGI environ key of an HTTP request header (`X-SSL-Client-Cert` -> `HTTP_X_SSL_CLIENT_CERT`)."""
    return "HTTP_" + header.strip().upper().replace("-", "_")


def parse_networks(addresses: Iterable[str] | str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Proxy addresses or networks (`127.0.0.1`, `10.0.0.0/24`, `::1`), comma-separated or a list."""
    items = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    networks = []
    for item in items:
        item = item.strip()
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))  # ValueError names the bad entry
    return tuple(networks)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address((text or "").strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def load_certificates(path: Path | str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (or one DER certificate)."""
    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


# --- revocation lists ------------------------------------------------------------------------


class RevocationList:
    """The CRL file of the configuration, reloaded when it changes (one `stat` per request).

    `status(cert, issuer, now)` is None when the certificate is not revoked, else the fault to send.
    Fail closed: an unreadable, unverifiable or outdated CRL makes every check fail with
    `RevocationUnavailable` until a good file is in place.
    """

    def __init__(self, path: Path | str, issuers: Sequence[x509.Certificate]) -> None:
        self.path = Path(path)
        self.issuers = tuple(issuers)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._crls: tuple[x509.CertificateRevocationList, ...] | None = None
        self.last_error: str | None = None
        self._load()

    def _load(self) -> None:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            self._fail(f"cannot read CRL {self.path}: {exc.strerror or exc}", None)
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                crls = self._parse(self.path.read_bytes())
            except (OSError, ValueError) as exc:
                self._fail(f"CRL {self.path} not usable: {exc}", stamp)
                return
            self._crls, self._stamp, self.last_error = crls, stamp, None
            log.info("CRL loaded from %s (%d list(s))", self.path, len(crls))

    def _fail(self, reason: str, stamp: tuple[int, int, int] | None) -> None:
        if reason != self.last_error:
            log.error("%s: refusing every client certificate until it is fixed", reason)
        self._crls, self._stamp, self.last_error = None, stamp, reason

    def _parse(self, data: bytes) -> tuple[x509.CertificateRevocationList, ...]:
        if b"-----BEGIN" in data:
            blocks = _PEM_CRL.findall(data)
            if not blocks:
                raise ValueError("no PEM X509 CRL block")
            crls = [x509.load_pem_x509_crl(block) for block in blocks]
        else:
            crls = [x509.load_der_x509_crl(data)]
        for crl in crls:
            issuer = next((c for c in self.issuers if c.subject == crl.issuer), None)
            if issuer is None or not crl.is_signature_valid(issuer.public_key()):
                raise ValueError("a CRL is not signed by a configured CA")
        return tuple(crls)

    def status(self, cert: x509.Certificate, now: dt.datetime) -> SoapFault | None:
        self._load()
        crls = self._crls
        if crls is None:
            return REVOCATION_UNAVAILABLE
        crl = next((c for c in crls if c.issuer == cert.issuer), None)
        if crl is None:
            return REVOCATION_UNAVAILABLE  # a CRL is configured, but none for this issuer: fail closed
        next_update = crl.next_update_utc
        if next_update is not None and now > next_update:
            if self.last_error != "outdated":
                log.error("CRL %s is past its nextUpdate: refusing client certificates", self.path)
                self.last_error = "outdated"
            return REVOCATION_UNAVAILABLE
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return CERTIFICATE_REVOKED
        return None


# --- the check -------------------------------------------------------------------------------

CERTIFICATE_UNTRUSTED = faults.CERTIFICATE_UNTRUSTED
CERTIFICATE_EXPIRED = faults.CERTIFICATE_EXPIRED
CERTIFICATE_REVOKED = faults.CERTIFICATE_REVOKED
UNTRUSTED_PROXY = faults.UNTRUSTED_PROXY
REVOCATION_UNAVAILABLE = faults.REVOCATION_UNAVAILABLE


class CertificateIdentity:
    """The client certificate of a request, or the fault that refuses it (see the module doc)."""

    def __init__(
        self,
        ca_certs: Sequence[x509.Certificate] | Path | str,
        crl: Path | str | None = None,
        trusted_proxies: Iterable[str] | str = (),
        header: str | None = DEFAULT_CLIENT_CERT_HEADER,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        anchors = load_certificates(ca_certs) if isinstance(ca_certs, (str, Path)) else list(ca_certs)
        if not anchors:
            raise ValueError("at least one CA certificate is required")
        self.anchors = tuple(anchors)
        self.revocations = RevocationList(crl, self.anchors) if crl else None
        self.trusted_proxies = parse_networks(trusted_proxies)
        self.header = (header or DEFAULT_CLIENT_CERT_HEADER).strip()
        self.header_key = environ_key(self.header)
        self.clock = clock

    @property
    def behind_proxy(self) -> bool:
        """Proxy mode: some proxy addresses are configured (otherwise the forwarded header is ignored)."""
        return bool(self.trusted_proxies)

    def from_trusted_proxy(self, environ: dict) -> bool:
        address = _address(environ.get("REMOTE_ADDR"))
        return address is not None and any(address in network for network in self.trusted_proxies)

    # --- the request's certificate ----------------------------------------------------------
    def certificate(self, environ: dict) -> x509.Certificate | SoapFault:
        presented = self.presented(environ)
        if isinstance(presented, SoapFault):
            return presented
        return self.check(presented)

    def presented(self, environ: dict) -> x509.Certificate | SoapFault:
        """The certificate the connection presents, unchecked (or why there is none)."""
        if self.behind_proxy:
            forwarded = environ.get(self.header_key)
            if self.from_trusted_proxy(environ):
                if not forwarded or not forwarded.strip():
                    return faults.NO_CLIENT_CERT
                return _decode_forwarded(forwarded)
            if forwarded is not None:
                return UNTRUSTED_PROXY
        # direct TLS: only what the TLS layer verified; a forwarded header is never read here
        if environ.get("SSL_CLIENT_VERIFY") != "SUCCESS" or not environ.get("SSL_CLIENT_CERT"):
            return faults.NO_CLIENT_CERT
        pem = environ["SSL_CLIENT_CERT"]
        try:
            return x509.load_pem_x509_certificate(pem.encode("ascii") if isinstance(pem, str) else pem)
        except (ValueError, UnicodeEncodeError):
            return CERTIFICATE_UNTRUSTED

    # --- the checks ------------------------------------------------------------------------
    def check(self, cert: x509.Certificate) -> x509.Certificate | SoapFault:
        """Chain (by signature) to a configured CA, validity dates, revocation; the certificate or a fault."""
        issuer = self._issuer(cert)
        if issuer is None:
            return CERTIFICATE_UNTRUSTED
        now = self.clock()
        for certificate in (cert, issuer):
            if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
                return CERTIFICATE_EXPIRED
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
                return CERTIFICATE_UNTRUSTED
        except x509.ExtensionNotFound:
            pass
        except ValueError:  # a malformed extension
            return CERTIFICATE_UNTRUSTED
        if self.revocations is not None:
            revoked = self.revocations.status(cert, now)
            if revoked is not None:
                return revoked
        return cert

    def _issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        for anchor in self.anchors:
            if anchor.subject != cert.issuer or not _is_ca(anchor):
                continue
            try:
                cert.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return anchor
        return None


def verify_agreement_signature(envelope, agreement, registry, certificates: "CertificateIdentity | None",
                               config: SignatureConfiguration) -> VerifiedEnvelope:
    """The envelope's WS-Security signature, verified and made with the registered key of `agreement`.

    Raises `WsSecurityError` (WrongSigner when another key signed), or the certificate check's
    fault when the signer's certificate is revoked or revocation cannot be checked. SHA-1 is
    accepted only where the agreement says so.
    """
    if getattr(agreement, "allow_sha1", False):
        config = config.allowing_sha1()
    verified = verify_envelope(envelope, expected_certs=None, config=config)
    signer = registry.by_certificate(verified.signer_certificate)
    if signer is None or signer.id != agreement.id:
        raise WsSecurityError(ErrorCode.WRONG_SIGNER)
    if certificates is not None:  # bound by CN, a signer must be our CA's, valid, not revoked
        checked = certificates.check(verified.signer_certificate)
        if checked in (faults.CERTIFICATE_REVOKED, faults.REVOCATION_UNAVAILABLE):
            raise checked
        if isinstance(checked, SoapFault):
            raise WsSecurityError(ErrorCode.WRONG_SIGNER)
    return verified


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _decode_forwarded(value: str) -> x509.Certificate | SoapFault:
    """nginx `$ssl_client_escaped_cert` (URL-encoded PEM); also tolerates plain PEM on one line."""
    if len(value) > MAX_HEADER_CHARS:
        return CERTIFICATE_UNTRUSTED
    text = unquote(value.strip()) if "%" in value else value.strip()
    if "-----BEGIN CERTIFICATE-----" not in text:
        return CERTIFICATE_UNTRUSTED
    # a one-line PEM (some proxies replace newlines by spaces or tabs): rebuild the lines
    head, _, rest = text.partition("-----BEGIN CERTIFICATE-----")
    body, _, _tail = rest.partition("-----END CERTIFICATE-----")
    if head.strip() or not body:
        return CERTIFICATE_UNTRUSTED
    b64 = "".join(body.split())
    pem = "-----BEGIN CERTIFICATE-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) \
        + "\n-----END CERTIFICATE-----\n"
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return CERTIFICATE_UNTRUSTED


# --- a CRL for tests and demos ---------------------------------------------------------------


def issue_crl(
    ca_cert: x509.Certificate,
    ca_key,
    revoked: Iterable[x509.Certificate | int] = (),
    *,
    last_update: dt.datetime | None = None,
    next_update: dt.timedelta | dt.datetime = dt.timedelta(days=7),
) -> x509.CertificateRevocationList:
    """A CRL signed by `ca_key` revoking `revoked` (certificates or serial numbers)."""
    now = last_update or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(next_update if isinstance(next_update, dt.datetime) else now + next_update)
    )
    for item in revoked:
        serial = item.serial_number if isinstance(item, x509.Certificate) else int(item)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return builder.sign(ca_key, hashes.SHA256())


def write_crl(path: Path | str, crl: x509.CertificateRevocationList, *, der: bool = False) -> Path:
    """Write atomically (a reader sees the old or the new list, never half of one)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
    os.replace(tmp, path)
    return path


def issue_demo_crl(home: Path | str, revoked: Iterable[x509.Certificate | int] = (), *,
                   path: Path | str | None = None, der: bool = False, **kwargs) -> Path:
    """A CRL signed by the demo CA in `<home>/pki` (`ca.crt`, `ca.key`), written to `path`
    (default `<home>/pki/ca.crl`)."""
    pki = Path(home) / "pki"
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    return write_crl(path or pki / "ca.crl", issue_crl(ca_cert, ca_key, revoked, **kwargs), der=der)
