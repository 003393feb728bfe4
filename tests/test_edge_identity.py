"""Who is calling: the client certificate's chain, validity, revocation and agreement.

Direct TLS (the real cheroot server) and behind a proxy (the gateway's WSGI app behind a plain-HTTP
cheroot on loopback, configured as a trusted proxy; the certificate forwarded as nginx's
`$ssl_client_escaped_cert`). The forwarded header is refused from an untrusted address and never read
in direct-TLS mode.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from cheroot import wsgi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from leis_gateway.app import create_gateway
from leis_gateway.config import SR_PATH, Settings
from leis_gateway.guard.identity import CertificateIdentity, issue_crl, issue_demo_crl, write_crl
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.security.pki import load_certificate, load_private_key
from leis_gateway.security.wssec import sign_envelope, verify_envelope
from leis_gateway.soap import faults
from leis_gateway.domain import QueryField
from support import Answer, RunningGateway, requester, search

HEADER = "X-SSL-Client-Cert"


# --- certificates for the tests -----------------------------------------------------------------


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _issue(cn: str, issuer_cert: x509.Certificate | None, issuer_key, *, key=None,
           not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
           ca: bool = False) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = key or _key()
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - dt.timedelta(hours=1))
               .not_valid_after(not_after or now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def demo_ca(demo_home):
    pki = demo_home / "pki"
    return load_certificate(pki / "ca.crt"), load_private_key(pki / "ca.key")


@pytest.fixture(scope="module")
def agency(demo_home):
    def certificate(agreement: str) -> x509.Certificate:
        return load_certificate(demo_home / "pki" / "agencies" / f"{agreement}.crt")
    return certificate


@pytest.fixture(scope="module")
def other_ca():
    key, cert = _issue("Some Other CA", None, None, ca=True)
    return cert, key


def _forwarded(cert: x509.Certificate) -> str:
    """What nginx sends for `$ssl_client_escaped_cert`: the PEM, URL-encoded."""
    return quote(cert.public_bytes(serialization.Encoding.PEM).decode(), safe="")


def _tls_environ(cert: x509.Certificate) -> dict:
    return {"SSL_CLIENT_VERIFY": "SUCCESS", "SSL_CLIENT_CERT": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "REMOTE_ADDR": "127.0.0.1"}


# --- CertificateIdentity on its own ---------------------------------------------------------------


def test_chain_validity_and_usage(demo_home, demo_ca, other_ca, agency):
    identity = CertificateIdentity(demo_home / "pki" / "ca.crt")
    ndex = agency("ndex")
    assert identity.certificate(_tls_environ(ndex)) == ndex
    _, foreign = _issue("ndex", *other_ca)  # same name, another CA
    assert identity.check(foreign) is faults.CERTIFICATE_UNTRUSTED
    _, self_signed = _issue("ndex", None, None)
    assert identity.check(self_signed) is faults.CERTIFICATE_UNTRUSTED
    now = dt.datetime.now(dt.timezone.utc)
    _, expired = _issue("ndex", *demo_ca, not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    assert identity.check(expired) is faults.CERTIFICATE_EXPIRED
    _, early = _issue("ndex", *demo_ca, not_before=now + dt.timedelta(days=1), not_after=now + dt.timedelta(days=9))
    assert identity.check(early) is faults.CERTIFICATE_EXPIRED
    server = load_certificate(demo_home / "pki" / "server.crt")  # our CA's, but a server certificate
    assert identity.check(server) is faults.CERTIFICATE_UNTRUSTED
    assert identity.certificate({"REMOTE_ADDR": "127.0.0.1"}) is faults.NO_CLIENT_CERT


def test_the_crl_is_checked_and_reloaded_when_it_changes(demo_home, demo_ca, agency, tmp_path):
    crl = tmp_path / "ca.crl"
    issue_demo_crl(demo_home, [agency("linx-hr")], path=crl)
    identity = CertificateIdentity(demo_home / "pki" / "ca.crt", crl=crl)
    assert identity.check(agency("linx-hr")) is faults.CERTIFICATE_REVOKED
    assert identity.check(agency("ndex")) == agency("ndex")
    issue_demo_crl(demo_home, [agency("ndex")], path=crl, der=True)  # DER this time
    assert identity.check(agency("linx-hr")) == agency("linx-hr")
    assert identity.check(agency("ndex")) is faults.CERTIFICATE_REVOKED


def test_an_unusable_crl_fails_closed(demo_home, demo_ca, other_ca, agency, tmp_path):
    crl = tmp_path / "ca.crl"
    identity = CertificateIdentity(demo_home / "pki" / "ca.crt", crl=crl)  # missing file
    assert identity.check(agency("ndex")) is faults.REVOCATION_UNAVAILABLE
    foreign_cert, foreign_key = other_ca  # a CRL with the right issuer name, signed by another key
    forged = (x509.CertificateRevocationListBuilder().issuer_name(demo_ca[0].subject)
              .last_update(dt.datetime.now(dt.timezone.utc))
              .next_update(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).sign(foreign_key, hashes.SHA256()))
    write_crl(crl, forged)
    assert identity.check(agency("ndex")) is faults.REVOCATION_UNAVAILABLE
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    write_crl(crl, issue_crl(*demo_ca, last_update=past, next_update=dt.timedelta(days=1)))  # outdated
    assert identity.check(agency("ndex")) is faults.REVOCATION_UNAVAILABLE
    crl.write_bytes(b"garbage")
    assert identity.check(agency("ndex")) is faults.REVOCATION_UNAVAILABLE
    issue_demo_crl(demo_home, [], path=crl)
    assert identity.check(agency("ndex")) == agency("ndex")
    assert faults.REVOCATION_UNAVAILABLE.http_status == 503


def test_the_forwarded_header_is_read_only_from_trusted_proxies(demo_home, agency):
    ca = demo_home / "pki" / "ca.crt"
    ndex, azlink = agency("ndex"), agency("azlink")
    proxied = CertificateIdentity(ca, trusted_proxies="127.0.0.1, 10.0.0.0/8", header=HEADER)
    header = {"HTTP_X_SSL_CLIENT_CERT": _forwarded(ndex)}
    assert proxied.certificate({**header, "REMOTE_ADDR": "127.0.0.1"}) == ndex
    assert proxied.certificate({**header, "REMOTE_ADDR": "::ffff:10.1.2.3"}) == ndex
    assert proxied.certificate({**header, "REMOTE_ADDR": "192.0.2.7"}) is faults.UNTRUSTED_PROXY
    assert proxied.certificate({**header, **_tls_environ(azlink), "REMOTE_ADDR": "192.0.2.7"}) is faults.UNTRUSTED_PROXY
    # from the proxy, the header alone identifies the caller (not the proxy's own TLS certificate)
    assert proxied.certificate({**_tls_environ(azlink), **header}) == ndex
    assert proxied.certificate({**_tls_environ(azlink)}) is faults.NO_CLIENT_CERT
    assert proxied.certificate({"HTTP_X_SSL_CLIENT_CERT": "", "REMOTE_ADDR": "127.0.0.1"}) is faults.NO_CLIENT_CERT
    garbage = {"HTTP_X_SSL_CLIENT_CERT": "-----BEGIN%20CERTIFICATE-----%0AAAAA", "REMOTE_ADDR": "127.0.0.1"}
    assert proxied.certificate(garbage) is faults.CERTIFICATE_UNTRUSTED
    # direct-TLS mode: the header is never read, whatever the address
    direct = CertificateIdentity(ca, header=HEADER)
    assert direct.certificate({**header, "REMOTE_ADDR": "127.0.0.1"}) is faults.NO_CLIENT_CERT
    assert direct.certificate({**header, **_tls_environ(azlink)}) == azlink


def test_settings_from_the_environment(tmp_path):
    settings = Settings.from_env({"LEIS_HOME": str(tmp_path), "LEIS_CRL": "/etc/leis/ca.crl",
                                  "LEIS_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/24,",
                                  "LEIS_CLIENT_CERT_HEADER": "X-Client-Cert"})
    assert settings.crl_path == Path("/etc/leis/ca.crl")
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/24")
    assert settings.client_cert_header == "X-Client-Cert"
    assert settings.client_ca_file == tmp_path / "pki" / "ca.crt"
    defaults = Settings.from_env({})
    assert defaults.crl_path is None and defaults.trusted_proxies == () and defaults.client_cert_header == HEADER


# --- through the servers ----------------------------------------------------------------------------


def _envelope() -> bytes:
    return lexs_requests.soap_envelope(
        lexs_requests.wrap_request("getCapabilities", lexs_requests.service_provider_request(requester())))


def _signed(home: Path, agreement: str, data: bytes | None = None) -> bytes:
    pki = home / "pki" / "agencies"
    root = etree.fromstring(data or _envelope())
    sign_envelope(root, load_private_key(pki / f"{agreement}.key"), load_certificate(pki / f"{agreement}.crt"))
    return etree.tostring(root)


def _answer(home: Path, response: requests.Response) -> Answer:
    verify_envelope(response.content, expected_certs=[load_certificate(home / "pki" / "server.crt")])
    return Answer.of(response)


@contextlib.contextmanager
def _behind_plain_http(home: Path, **changes):
    """The gateway's WSGI app behind a plain-HTTP cheroot on loopback (the place of nginx's upstream)."""
    server = wsgi.Server(("127.0.0.1", 0), None, numthreads=4)
    server.prepare()
    url = f"http://127.0.0.1:{server.bind_addr[1]}{SR_PATH}"
    gateway = create_gateway(Settings(home=home, port=0, public_url=url, **changes))
    server.wsgi_app = gateway.wsgi
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.stop()
        thread.join(timeout=10)
        gateway.close()


def _tls_post(running: RunningGateway, body: bytes, agreement: str, headers: dict | None = None) -> requests.Response:
    with running.session(agreement) as session:
        return session.post(running.url, data=body, timeout=10,
                            headers={"Content-Type": "text/xml; charset=utf-8", **(headers or {})})


def _post(url: str, body: bytes, headers: dict | None = None) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8", **(headers or {})},
                            timeout=10)


@pytest.fixture(scope="module")
def crl_file(demo_home, tmp_path_factory, agency):
    path = tmp_path_factory.mktemp("crl") / "ca.crl"
    issue_demo_crl(demo_home, [agency("linx-hr")], path=path)
    return path


@pytest.fixture(scope="module")
def proxied_url(demo_home, crl_file):
    with _behind_plain_http(demo_home, trusted_proxies=("127.0.0.1",), crl_path=crl_file) as url:
        yield url


def test_behind_a_trusted_proxy_the_forwarded_certificate_identifies_the_caller(demo_home, proxied_url, agency):
    response = _post(proxied_url, _signed(demo_home, "ndex"), {HEADER: _forwarded(agency("ndex"))})
    answer = _answer(demo_home, response)
    assert response.status_code == 200 and answer.result_code == "Success"
    # the agreement is the forwarded certificate's: signed by another agreement's key is refused
    wrong = _post(proxied_url, _signed(demo_home, "azlink"), {HEADER: _forwarded(agency("ndex"))})
    assert _answer(demo_home, wrong).fault_cause == "WrongSigner"


@pytest.mark.parametrize("case", ["missing", "garbage", "other CA", "expired", "revoked", "unregistered", "suspended"])
def test_behind_a_trusted_proxy_each_bad_certificate_has_its_cause(demo_home, proxied_url, agency, demo_ca,
                                                                    other_ca, case):
    now = dt.datetime.now(dt.timezone.utc)
    ndex_key = load_private_key(demo_home / "pki" / "agencies" / "ndex.key")
    header: dict[str, str] = {}
    body = _signed(demo_home, "ndex")
    if case == "garbage":
        header = {HEADER: "not%20a%20certificate%3Cx%3E"}
    elif case == "other CA":
        header = {HEADER: _forwarded(_issue("ndex", *other_ca, key=ndex_key)[1])}
    elif case == "expired":
        header = {HEADER: _forwarded(_issue("ndex", *demo_ca, key=ndex_key, not_before=now - dt.timedelta(days=9),
                                            not_after=now - dt.timedelta(days=1))[1])}
    elif case == "revoked":
        header, body = {HEADER: _forwarded(agency("linx-hr"))}, _signed(demo_home, "linx-hr")
    elif case == "unregistered":
        header, body = {HEADER: _forwarded(agency("unregistered"))}, _signed(demo_home, "unregistered")
    elif case == "suspended":
        search_s1 = lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", search(
            (QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12"))))
        header = {HEADER: _forwarded(agency("suspended-demo"))}
        body = _signed(demo_home, "suspended-demo", search_s1)
    answer = _answer(demo_home, _post(proxied_url, body, header))
    if case == "suspended":  # identified, then refused by policy as a LEXS business outcome (DESIGN.md)
        assert answer.result_code == "Error" and answer.packages == []
        assert "suspended" in " ".join(text for _, text in answer.advisories)
        return
    expected = {"missing": "NoClientCertificate", "garbage": "CertificateUntrusted", "other CA": "CertificateUntrusted",
                "expired": "CertificateExpired", "revoked": "CertificateRevoked", "unregistered": "UnknownAgreement"}
    assert answer.fault_cause == expected[case]
    assert "not a certificate" not in answer.root.findtext(".//faultstring")


def test_from_an_address_that_is_no_trusted_proxy_the_header_is_refused(demo_home, agency):
    with _behind_plain_http(demo_home, trusted_proxies=("192.0.2.10",)) as url:
        refused = _answer(demo_home, _post(url, _signed(demo_home, "ndex"), {HEADER: _forwarded(agency("ndex"))}))
        missing = _answer(demo_home, _post(url, _signed(demo_home, "ndex")))
    assert refused.fault_cause == "UntrustedProxy"
    assert missing.fault_cause == "NoClientCertificate"


def test_without_trusted_proxies_a_plain_http_request_has_no_identity(demo_home, agency):
    with _behind_plain_http(demo_home) as url:
        answer = _answer(demo_home, _post(url, _signed(demo_home, "ndex"), {HEADER: _forwarded(agency("ndex"))}))
    assert answer.fault_cause == "NoClientCertificate"


# --- direct TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_gateway(demo_home, crl_file):
    with RunningGateway.start(demo_home, crl_path=crl_file) as running:
        yield running


def test_direct_tls_a_revoked_certificate_is_refused_until_the_crl_changes(tls_gateway, demo_home, crl_file, agency):
    revoked = tls_gateway.post(_envelope(), agreement="linx-hr", sign=True)  # the handshake succeeds
    assert _answer(demo_home, revoked).fault_cause == "CertificateRevoked"
    ok = tls_gateway.post(_envelope(), agreement="ndex", sign=True)
    assert _answer(demo_home, ok).result_code == "Success"
    try:
        issue_demo_crl(demo_home, [], path=crl_file)  # reinstated: the gateway reloads the CRL
        again = tls_gateway.post(_envelope(), agreement="linx-hr", sign=True)
        assert _answer(demo_home, again).result_code == "Success"
    finally:
        issue_demo_crl(demo_home, [agency("linx-hr")], path=crl_file)


def test_direct_tls_a_forwarded_header_is_never_trusted(tls_gateway, demo_home, agency):
    # the unregistered certificate connects; a header claiming ndex changes nothing
    forged = _tls_post(tls_gateway, _signed(demo_home, "ndex"), "unregistered", {HEADER: _forwarded(agency("ndex"))})
    assert _answer(demo_home, forged).fault_cause == "UnknownAgreement"
    # ndex connects, claims azlink in the header and signs as azlink: still ndex, so the wrong signer
    claimed = _tls_post(tls_gateway, _signed(demo_home, "azlink"), "ndex", {HEADER: _forwarded(agency("azlink"))})
    assert _answer(demo_home, claimed).fault_cause == "WrongSigner"


def test_direct_tls_from_loopback_even_a_configured_proxy_is_the_header_only(demo_home, agency):
    """The docs/nginx.md topology: nginx connects with its own (unregistered) certificate over TLS."""
    with RunningGateway.start(demo_home, trusted_proxies=("127.0.0.1",)) as running:
        as_proxy = _tls_post(running, _signed(demo_home, "ndex"), "unregistered", {HEADER: _forwarded(agency("ndex"))})
        proxy_itself = _tls_post(running, _signed(demo_home, "unregistered"), "unregistered")
    assert _answer(demo_home, as_proxy).result_code == "Success"
    assert _answer(demo_home, proxy_itself).fault_cause == "NoClientCertificate"
