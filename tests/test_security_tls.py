"""Mutual TLS on the embedded cheroot server: no certificate from our CA, no request."""
from __future__ import annotations

import json
import socket
import ssl

import pytest
import requests

from leis_gateway.security import pki, tls


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return pki.ensure_demo_pki(tmp_path_factory.mktemp("pki"), ["ndex"])


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Another CA with a client certificate of the same name: must not get in."""
    return pki.ensure_demo_pki(tmp_path_factory.mktemp("foreign-pki"), ["ndex"])


class RecordingApp:
    """Echoes the TLS client variables of the environ and counts calls."""

    def __init__(self):
        self.calls = 0
        self.certificates = []

    def __call__(self, environ, start_response):
        self.calls += 1
        self.certificates.append(tls.client_certificate_from_environ(environ))
        body = json.dumps({k: v for k, v in environ.items() if k.startswith("SSL_CLIENT")}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def served(demo):
    app = RecordingApp()
    with tls.serving(app, cert=demo.server.certificate, key=demo.server.key, ca=demo.ca_certificate) as url:
        yield app, url


def _get(url, demo, cert=None):
    with requests.Session() as session:
        return session.get(url + "/lexs/sr/3.1", cert=cert, verify=str(demo.ca_certificate), timeout=10)


def _files(files):
    return (str(files.certificate), str(files.key))


def test_client_with_our_certificate_gets_through_and_the_app_sees_it(served, demo):
    app, url = served
    response = _get(url, demo, cert=_files(demo.agency("ndex")))
    assert response.status_code == 200
    env = response.json()
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN_CN"] == "ndex"
    assert "BEGIN CERTIFICATE" in env["SSL_CLIENT_CERT"]
    assert app.calls == 1
    [seen] = app.certificates
    assert pki.certificate_fingerprint(seen) == pki.certificate_fingerprint(
        demo.agency("ndex").certificate.read_bytes())


def test_unregistered_certificate_from_our_ca_connects(served, demo):
    """TLS only says "issued by our CA"; the agreement check is the guard's (by fingerprint)."""
    app, url = served
    assert _get(url, demo, cert=_files(demo.agency("unregistered"))).json()["SSL_CLIENT_S_DN_CN"] == "unregistered"


def test_client_without_certificate_never_reaches_the_app(served, demo):
    app, url = served
    with pytest.raises(requests.exceptions.ConnectionError):
        _get(url, demo)
    assert app.calls == 0


def test_client_certificate_from_another_ca_never_reaches_the_app(served, demo, foreign):
    app, url = served
    with pytest.raises(requests.exceptions.ConnectionError):
        _get(url, demo, cert=_files(foreign.agency("ndex")))
    assert app.calls == 0


def test_tls_below_1_2_is_refused(served, demo):
    app, url = served
    port = int(url.rsplit(":", 1)[1])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(demo.ca_certificate)
    context.load_cert_chain(demo.agency("ndex").certificate, demo.agency("ndex").key)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the *client* offer TLS 1.1, so the server must refuse
    with pytest.warns(DeprecationWarning):  # Python deprecates TLS 1.1 itself
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):  # the server's alert
            with context.wrap_socket(raw, server_hostname="localhost"):
                pass
    assert app.calls == 0


def test_server_context_requires_client_certificates(demo):
    context = tls.server_ssl_context(cert=demo.server.certificate, key=demo.server.key, ca=demo.ca_certificate)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", pki.CA_COMMON_NAME),), (("organizationName", pki.ORGANIZATION),))]


def test_port_zero_binds_an_ephemeral_port(demo):
    server = tls.make_tls_server(RecordingApp(), "127.0.0.1", 0, cert=demo.server.certificate,
                                 key=demo.server.key, ca=demo.ca_certificate)
    with tls.running(server):
        port = tls.bound_port(server)
        assert port > 0
        assert tls.base_url(server) == f"https://127.0.0.1:{port}"
        assert _get(tls.base_url(server), demo, cert=_files(demo.agency("ndex"))).status_code == 200


def test_environ_without_verified_certificate_gives_none():
    assert tls.client_certificate_from_environ({}) is None
    assert tls.client_certificate_from_environ({"SSL_CLIENT_VERIFY": "NONE", "SSL_CLIENT_CERT": "x"}) is None
    assert tls.client_certificate_from_environ({"HTTP_SSL_CLIENT_CERT": "forged"}) is None


def test_silent_client_holds_up_others_only_for_the_handshake_timeout(demo):
    """cheroot handshakes on its accepting thread; a connection that never speaks must not block it
    for the (long) request timeout."""
    server = tls.make_tls_server(RecordingApp(), "127.0.0.1", 0, cert=demo.server.certificate,
                                 key=demo.server.key, ca=demo.ca_certificate, timeout=60, handshake_timeout=0.5)
    with tls.running(server):
        with socket.create_connection(("127.0.0.1", tls.bound_port(server)), timeout=10):
            response = _get(tls.base_url(server), demo, cert=_files(demo.agency("ndex")))
    assert response.status_code == 200


def test_application_errors_are_logged_without_their_message(demo, caplog):
    def failing(environ, start_response):
        raise ValueError("JOHN QUINCY DOE 900-12-3456")  # e.g. a parser quoting the request

    with tls.serving(failing, cert=demo.server.certificate, key=demo.server.key, ca=demo.ca_certificate) as url:
        with caplog.at_level("DEBUG", logger="leis_gateway.security.tls"):
            response = _get(url, demo, cert=_files(demo.agency("ndex")))
    assert response.status_code == 500
    assert "ValueError" in caplog.text
    assert "JOHN" not in caplog.text and "900-12-3456" not in caplog.text
    assert "JOHN" not in response.text
