"""HTTPS with mutual TLS for the embedded cheroot server.

A client that does not present a certificate issued by the configured CA fails the TLS handshake:
cheroot never parses its request and the WSGI app is never called. cheroot's builtin adapter then puts
the verified client certificate into the WSGI environ (`SSL_CLIENT_CERT`, `SSL_CLIENT_VERIFY`,
`SSL_CLIENT_S_DN_CN`, ...); `client_certificate_from_environ` reads it back.

The CA decides who may *connect*; which agreement a certificate belongs to (if any, think of
`agencies/unregistered`) is decided later by the guard, by certificate fingerprint.
"""
from __future__ import annotations

import logging
import ssl
import sys
import threading
import traceback as _traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from cryptography import x509

# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are OpenSSL's (all AEAD).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM"
DEFAULT_MAX_REQUEST_BODY = 64 * 1024 * 1024  # the guard enforces the real limit with a SOAP fault

log = logging.getLogger(__name__)


def server_ssl_context(*, cert: Path | str, key: Path | str, ca: Path | str) -> ssl.SSLContext:
    """TLS 1.2+ server context that requires a client certificate chaining to `ca` (and only `ca`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(str(cert), str(key))
    context.load_verify_locations(cafile=str(ca))  # no system CAs: only our CA may issue clients
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class MutualTLSAdapter(BuiltinSSLAdapter):
    """cheroot's builtin adapter with a context that *requires* a client certificate.

    The stock adapter builds a `Purpose.CLIENT_AUTH` default context whose verify_mode is CERT_NONE
    (client certificates are not even requested); we replace that context.
    """

    def __init__(self, *, cert: Path | str, key: Path | str, ca: Path | str, handshake_timeout: float = 3.0):
        super().__init__(str(cert), str(key), None)
        self.context = server_ssl_context(cert=cert, key=key, ca=ca)
        self.handshake_timeout = handshake_timeout

    def wrap(self, sock):
        """Handshake with a short timeout: cheroot does it on its single accepting thread, so a client
        that connects and stays silent holds up every new connection for this long."""
        timeout = sock.gettimeout()
        sock.settimeout(self.handshake_timeout)
        wrapped, environ = super().wrap(sock)
        wrapped.settimeout(timeout)
        return wrapped, environ


class TLSServer(wsgi.Server):
    """cheroot's WSGI server, logging through `logging` instead of writing to stderr.

    Tracebacks are logged with the exception's type and frames only, not its message: an exception
    raised while handling a request may quote the request (PII), and bodies are never logged.
    """

    def error_log(self, msg="", level=logging.INFO, traceback=False):  # noqa: D102 (cheroot API)
        detail = ""
        exc_type, exc, tb = sys.exc_info()
        if exc is not None and str(exc) and str(exc) in msg:
            msg = msg.replace(repr(exc), exc_type.__qualname__).replace(str(exc), "...")
        if traceback and exc_type is not None:
            detail = "\n" + _frames(tb) + exc_type.__qualname__
        log.log(level, "%s%s", msg, detail)


def _frames(tb) -> str:
    """Where it happened, without source lines or exception message (either may quote data)."""
    return "".join(f"  {f.filename}:{f.lineno} in {f.name}\n" for f in _traceback.extract_tb(tb))


def make_tls_server(wsgi_app: Callable, host: str, port: int, *, cert: Path | str, key: Path | str,
                    ca: Path | str, numthreads: int = 10, timeout: int = 10,
                    max_request_body_size: int = DEFAULT_MAX_REQUEST_BODY,
                    handshake_timeout: float = 3.0) -> TLSServer:
    """A cheroot WSGI server on (host, port) speaking HTTPS with mutual TLS.

    Port 0 binds an ephemeral port; after `server.prepare()` read it with `bound_port(server)`.
    `timeout` bounds each socket operation of a request; `handshake_timeout` bounds the TLS handshake,
    which cheroot performs on its single accepting thread (keep it short; see MutualTLSAdapter.wrap).
    """
    server = TLSServer((host, port), wsgi_app, numthreads=numthreads, timeout=timeout)
    server.ssl_adapter = MutualTLSAdapter(cert=cert, key=key, ca=ca, handshake_timeout=handshake_timeout)
    server.max_request_body_size = max_request_body_size
    return server


def bound_port(server: wsgi.Server) -> int:
    """The port actually bound (meaningful after `prepare()`, e.g. when port 0 was asked for)."""
    return server.bind_addr[1]


def base_url(server: wsgi.Server) -> str:
    host = server.bind_addr[0]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{bound_port(server)}"


@contextmanager
def running(server: wsgi.Server) -> Iterator[wsgi.Server]:
    """Prepare (bind) `server`, serve it on a background thread, and stop it cleanly on exit."""
    server.prepare()
    thread = threading.Thread(target=server.serve, name=f"tls-server-{bound_port(server)}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=10)


@contextmanager
def serving(wsgi_app: Callable, *, cert: Path | str, key: Path | str, ca: Path | str,
            host: str = "127.0.0.1", port: int = 0, numthreads: int = 4) -> Iterator[str]:
    """Serve `wsgi_app` with mutual TLS on a background thread; yields the base URL (tests, demos)."""
    server = make_tls_server(wsgi_app, host, port, cert=cert, key=key, ca=ca, numthreads=numthreads)
    with running(server):
        yield base_url(server)


def client_certificate_from_environ(environ: dict) -> x509.Certificate | None:
    """The client certificate that the TLS layer verified for this request, or None.

    Reads only what cheroot's TLS adapter put there (`SSL_CLIENT_VERIFY` == SUCCESS and
    `SSL_CLIENT_CERT`); HTTP headers arrive as `HTTP_*` keys and cannot forge these. A certificate
    forwarded by a reverse proxy is a different, explicitly configured path (guard's business).
    """
    if environ.get("SSL_CLIENT_VERIFY") != "SUCCESS":
        return None
    pem = environ.get("SSL_CLIENT_CERT")
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii") if isinstance(pem, str) else pem)
    except ValueError:
        return None


def client_session(ca: Path | str, cert: Path | str | None = None, key: Path | str | None = None):
    """A `requests.Session` for mutual TLS that trusts only `ca` and presents `cert`/`key`.

    `trust_env` is off: REQUESTS_CA_BUNDLE (set on many machines) would otherwise silently replace
    the pinned CA, and a proxy from the environment must never see this traffic.
    """
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca)
    if cert is not None:
        session.cert = (str(cert), str(key))
    return session
