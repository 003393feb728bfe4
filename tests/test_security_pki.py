"""Demo PKI: idempotent, complete, keys private, certificates fit for their purpose."""
from __future__ import annotations

import datetime as dt
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from leis_gateway.security import pki

AGENCIES = ["ndex", "linx-nw", "nlets"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return pki.ensure_demo_pki(tmp_path_factory.mktemp("pki"), AGENCIES)


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_creates_every_file_with_private_keys(demo):
    d = demo.directory
    expected = ["ca.crt", "ca.key", "server.crt", "server.key"] + [
        f"agencies/{a}.{ext}" for a in [*AGENCIES, "unregistered"] for ext in ("crt", "key")]
    for name in expected:
        assert (d / name).is_file(), name
    for key in d.rglob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert sorted(demo.agencies) == sorted([*AGENCIES, "unregistered"])
    assert set(demo.created) == {d / n for n in expected}


def test_certificates_chain_to_the_ca_and_have_the_right_purpose(demo):
    ca = pki.load_certificate(demo.ca_certificate)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server = pki.load_certificate(demo.server.certificate)
    server.verify_directly_issued_by(ca)
    assert _cn(server) == "localhost"
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    for agency_id, files in demo.agencies.items():
        cert = pki.load_certificate(files.certificate)
        cert.verify_directly_issued_by(ca)
        assert _cn(cert) == agency_id
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage).value
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        assert cert.public_key().key_size == 2048
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=2 * 365 + 1)


def test_openssl_accepts_the_chain(demo):
    """The same files work as an SSLContext's client and server credentials (what tls.py relies on)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(demo.server.certificate, demo.server.key)
    server.load_verify_locations(demo.ca_certificate)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_cert_chain(demo.agency("ndex").certificate, demo.agency("ndex").key)
    client.load_verify_locations(demo.ca_certificate)


def test_second_call_creates_nothing_and_new_agency_adds_only_its_files(demo):
    before = {p: p.read_bytes() for p in demo.directory.rglob("*") if p.is_file()}
    again = pki.ensure_demo_pki(demo.directory, AGENCIES)
    assert again.created == ()
    more = pki.ensure_demo_pki(demo.directory, [*AGENCIES, "afi"])
    d = demo.directory
    assert set(more.created) == {d / "agencies/afi.crt", d / "agencies/afi.key"}
    for path, content in before.items():
        assert path.read_bytes() == content, path


def test_broken_or_foreign_files_are_reissued(tmp_path):
    first = pki.ensure_demo_pki(tmp_path, ["ndex"])
    other = pki.ensure_demo_pki(tmp_path / "other", ["ndex"])
    # a certificate from another CA, and a key that does not match its certificate
    first.agency("ndex").certificate.write_bytes(other.agency("ndex").certificate.read_bytes())
    first.agency("unregistered").key.write_bytes(other.agency("unregistered").key.read_bytes())
    again = pki.ensure_demo_pki(tmp_path, ["ndex"])
    assert set(again.created) == {
        first.agency("ndex").certificate, first.agency("ndex").key,
        first.agency("unregistered").certificate, first.agency("unregistered").key}
    ca = pki.load_certificate(first.ca_certificate)
    pki.load_certificate(first.agency("ndex").certificate).verify_directly_issued_by(ca)


def test_a_new_ca_reissues_everything(tmp_path):
    first = pki.ensure_demo_pki(tmp_path, ["ndex"])
    first.ca_key.unlink()
    again = pki.ensure_demo_pki(tmp_path, ["ndex"])
    assert len(again.created) == 2 * 4  # ca, server, ndex, unregistered


def test_loosened_key_permissions_are_tightened(tmp_path):
    first = pki.ensure_demo_pki(tmp_path, ["ndex"])
    first.agency("ndex").key.chmod(0o644)
    assert pki.ensure_demo_pki(tmp_path, ["ndex"]).created == ()
    assert stat.S_IMODE(first.agency("ndex").key.stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 80])
def test_unusable_agency_ids_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        pki.ensure_demo_pki(tmp_path, [bad])


def test_fingerprint_is_sha256_of_der_for_any_input_form(demo):
    pem = demo.agency("ndex").certificate.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    expected = cert.fingerprint(hashes.SHA256()).hex()
    assert len(expected) == 64
    assert pki.certificate_fingerprint(pem) == expected
    assert pki.certificate_fingerprint(pem.decode()) == expected
    assert pki.certificate_fingerprint(der) == expected
    assert pki.certificate_fingerprint(cert) == expected


def test_signing_credentials_load_once_and_must_match(demo):
    creds = pki.load_signing_credentials(demo.agency("ndex").key, demo.agency("ndex").certificate)
    assert _cn(creds.certificate) == "ndex"
    assert creds.fingerprint == pki.certificate_fingerprint(creds.certificate)
    with pytest.raises(ValueError):
        pki.load_signing_credentials(demo.agency("nlets").key, demo.agency("ndex").certificate)
