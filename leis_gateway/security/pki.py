"""Demo PKI: a private CA, the server certificate and one client certificate per agreement.

Everything lives under `$LEIS_HOME/pki` (DESIGN.md, "State"). `ensure_demo_pki` is idempotent so that
`leis-gateway init` can run on every start: valid files are kept (their fingerprints may be pinned in
agreements), only missing, unreadable, mismatched or nearly expired ones are (re)issued. If the CA itself
has to be reissued, every certificate it signed is reissued too.

Keys are RSA 2048 (fast to generate; this is a demo CA) and are written 0600, atomically.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UNREGISTERED = "unregistered"
"""Agency id of the client certificate that is signed by the demo CA but belongs to no agreement."""

CA_COMMON_NAME = "LEIS Gateway Demo CA"
ORGANIZATION = "LEIS Gateway Demo"
AGENCY_ORGANIZATION = "LEIS Demo Member Agency"

KEY_SIZE = 2048
CA_VALIDITY = dt.timedelta(days=5 * 365)
LEAF_VALIDITY = dt.timedelta(days=2 * 365)
RENEW_BEFORE = dt.timedelta(days=30)
"""A certificate expiring within this margin is reissued by `ensure_demo_pki`."""

_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock differences between hosts
_AGENCY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateFiles:
    certificate: Path
    key: Path


@dataclass(frozen=True)
class DemoPki:
    """Where the demo PKI files are; `created` names the files this call (re)wrote."""

    directory: Path
    ca_certificate: Path
    ca_key: Path
    server: CertificateFiles
    agencies: Mapping[str, CertificateFiles] = field(hash=False)
    created: tuple[Path, ...] = ()

    def agency(self, agency_id: str) -> CertificateFiles:
        return self.agencies[agency_id]


@dataclass(frozen=True)
class SigningCredentials:
    """A private key and its certificate, loaded once (signing with PEM bytes each time costs ~20x)."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.certificate)


# --- public helpers ----------------------------------------------------------------------


def certificate_fingerprint(cert: bytes | str | x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lowercase hex without separators (what agreements pin)."""
    if isinstance(cert, x509.Certificate):
        der = cert.public_bytes(serialization.Encoding.DER)
    else:
        data = cert.encode("ascii") if isinstance(cert, str) else bytes(cert)
        if b"-----BEGIN" in data:
            der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
        else:
            der = x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def load_certificate(path: Path | str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_private_key(path: Path | str) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def load_signing_credentials(key_path: Path | str, cert_path: Path | str) -> SigningCredentials:
    """Load key and certificate once for repeated signing; refuse a key that does not match."""
    key = load_private_key(key_path)
    cert = load_certificate(cert_path)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("only RSA signing keys are supported")
    if not _key_matches(key, cert):
        raise ValueError(f"private key {key_path} does not match certificate {cert_path}")
    return SigningCredentials(key=key, certificate=cert)


def ensure_demo_pki(pki_dir: Path | str, agency_ids: Iterable[str]) -> DemoPki:
    """Create (or complete) the demo PKI under `pki_dir`; keep every file that is still valid."""
    directory = Path(pki_dir)
    ids = list(dict.fromkeys([*agency_ids, UNREGISTERED]))
    for agency_id in ids:
        if not _AGENCY_ID.match(agency_id):
            raise ValueError(f"agency id {agency_id!r} is not usable as a certificate file name")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agencies").mkdir(exist_ok=True)

    created: list[Path] = []
    now = dt.datetime.now(dt.timezone.utc)
    with _locked(directory / ".lock"):
        ca_files = CertificateFiles(directory / "ca.crt", directory / "ca.key")
        ca = _load_valid(ca_files, now, ca_cert=None, common_name=CA_COMMON_NAME, usage=None)
        if ca is None:
            ca = _issue_ca(now)
            _write(ca_files, *ca, created)
        ca_key, ca_cert = ca

        server = CertificateFiles(directory / "server.crt", directory / "server.key")
        _ensure_leaf(server, "localhost", ORGANIZATION, ExtendedKeyUsageOID.SERVER_AUTH,
                     ca_key, ca_cert, now, created)

        agencies: dict[str, CertificateFiles] = {}
        for agency_id in ids:
            files = CertificateFiles(directory / "agencies" / f"{agency_id}.crt",
                                     directory / "agencies" / f"{agency_id}.key")
            _ensure_leaf(files, agency_id, AGENCY_ORGANIZATION, ExtendedKeyUsageOID.CLIENT_AUTH,
                         ca_key, ca_cert, now, created)
            agencies[agency_id] = files

    return DemoPki(directory=directory, ca_certificate=ca_files.certificate, ca_key=ca_files.key,
                   server=server, agencies=MappingProxyType(agencies), created=tuple(created))


# --- issuing -----------------------------------------------------------------------------


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


def _issue_ca(now: dt.datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _new_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE).not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue_leaf(common_name: str, organization: str, usage: x509.ObjectIdentifier,
                ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate,
                now: dt.datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _new_key()
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=usage == ExtendedKeyUsageOID.SERVER_AUTH,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _ensure_leaf(files: CertificateFiles, common_name: str, organization: str,
                 usage: x509.ObjectIdentifier, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate,
                 now: dt.datetime, created: list[Path]) -> None:
    if _load_valid(files, now, ca_cert=ca_cert, common_name=common_name, usage=usage) is None:
        _write(files, *_issue_leaf(common_name, organization, usage, ca_key, ca_cert, now), created)


# --- validity of existing files -----------------------------------------------------------


def _load_valid(files: CertificateFiles, now: dt.datetime, *, ca_cert: x509.Certificate | None,
                common_name: str, usage: x509.ObjectIdentifier | None,
                ) -> tuple[rsa.RSAPrivateKey, x509.Certificate] | None:
    """The existing key and certificate if they can be kept, else None (they will be reissued)."""
    try:
        cert = load_certificate(files.certificate)
        key = load_private_key(files.key)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, rsa.RSAPrivateKey) or not _key_matches(key, cert):
        return None
    if not (cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc):
        return None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [a.value for a in cns] != [common_name]:
        return None
    if ca_cert is not None:
        if cert.issuer != ca_cert.subject:
            return None
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            return None
        try:
            if usage not in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value:
                return None
        except x509.ExtensionNotFound:
            return None
    if os.stat(files.key).st_mode & 0o077:
        os.chmod(files.key, 0o600)  # keep the key, tighten what someone loosened
    return key, cert


def _key_matches(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


# --- files -------------------------------------------------------------------------------


def _write(files: CertificateFiles, key: rsa.RSAPrivateKey, cert: x509.Certificate,
           created: list[Path]) -> None:
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _atomic_write(files.key, key_pem, 0o600)
    _atomic_write(files.certificate, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    created.extend([files.certificate, files.key])


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file created with `mode` (a key is never world-readable, even briefly)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def _locked(lock_path: Path):
    """Serialise concurrent `init`s (e.g. `serve` and the test suite) on the same directory."""
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
