"""The signed-echo floor: the gateway's server stack doing nothing but the crypto of an exchange.

`python -m leis_gateway.bench.echo --home DIR --port P` serves, on `SR_PATH`, what
`leis-gateway serve` serves there *minus the product*: the same cheroot server with the same
mutual TLS context and thread count, the same `Guard` (size limit, content type, hardened parse,
client certificate -> agreement), the same `Edge.admit` (WS-Security verify of the request
signature, signer bound to the caller's agreement and checked against the CA, replay refused) and
the same response signing (`Edge._sign`). Nothing else: no schema validation, no LEXS parse, no
policy, no sources, no release, no audit. The answer is the request's SR wrapper element echoed in
a fresh envelope, signed.

The replay check is the one deliberate difference: an in-process set (with the same expiry
window) instead of the audit store's table, because the floor has no audit store. The full path
pays its replay check as a SQLite write; that is part of what the floor leaves out.

It is the denominator of `scripts/bench --throughput` (leis_gateway/bench/throughput.py).
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import signal
import sys
import threading
from pathlib import Path

from lxml import etree

from ..app import certificate_identity
from ..config import SR_PATH, Settings
from ..guard.edge import Edge
from ..guard.middleware import ENVIRON_EXCHANGE, Caller, Exchange, Guard
from ..policy.agreements import AgreementRegistry
from ..security.pki import certificate_fingerprint, load_signing_credentials
from ..security.tls import make_tls_server
from ..soap import faults
from ..soap.application import OPERATION_BY_WRAPPER_TAG
from ..soap.faults import SoapFault

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


class MemoryReplays:
    """`remember_once` of the audit log, in memory (one process: the floor never forks)."""

    def __init__(self) -> None:
        self._seen: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()

    def remember_once(self, key: str, expires: dt.datetime) -> bool:
        now = dt.datetime.now(dt.timezone.utc)
        with self._lock:
            if len(self._seen) > 100_000:
                self._seen = {k: e for k, e in self._seen.items() if e > now}
            seen = self._seen.get(key)
            if seen is not None and seen > now:
                return False
            self._seen[key] = expires
            return True


class EchoEdge(Edge):
    """`Edge` without the audit: verify (+ replay) in, sign out."""

    def received(self, exchange: Exchange) -> None:
        return None

    def respond(self, exchange: Exchange, envelope: bytes | etree._Element, is_fault: bool) -> bytes:
        return self._sign(envelope)


def echo_app(environ: dict, start_response):
    """The request's SR wrapper (already parsed by the guard), echoed in an unsigned envelope left
    on the exchange for the edge to sign, as the SOAP layer leaves its answers (soap/application.py)."""
    exchange: Exchange = environ[ENVIRON_EXCHANGE]
    envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP})
    body = etree.SubElement(envelope, f"{{{SOAP}}}Body")
    body.append(exchange.envelope.request)  # moved, not copied: the request tree is not used again
    exchange.response = envelope
    start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
    return [b""]


def create_echo(settings: Settings) -> Guard:
    registry = AgreementRegistry(settings.registry_path)
    identity = certificate_identity(settings)

    def identify(environ: dict) -> Caller | SoapFault:  # what Gateway.identify does
        certificate = identity.certificate(environ)
        if isinstance(certificate, SoapFault):
            return certificate
        agreement = registry.by_certificate(certificate)
        if agreement is None:
            return faults.UNKNOWN_AGREEMENT
        return Caller(agreement.id, certificate_fingerprint(certificate))

    credentials = load_signing_credentials(settings.pki_dir / "server.key", settings.pki_dir / "server.crt")
    return Guard(
        echo_app,
        path=SR_PATH,
        operations={tag: op.name for tag, op in OPERATION_BY_WRAPPER_TAG.items()},
        max_body_bytes=settings.max_body_bytes,
        identify=identify,
        hooks=EchoEdge(MemoryReplays(), registry, credentials, require_signature=True,  # type: ignore[arg-type]
                       certificates=identity),
    )


def _interrupt(*_):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leis_gateway.bench.echo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    settings = Settings.from_env().with_(home=args.home)  # LEIS_THREADS etc. as for `serve`
    pki = settings.pki_dir
    server = make_tls_server(create_echo(settings), args.host, args.port, cert=pki / "server.crt",
                             key=pki / "server.key", ca=pki / "ca.crt", numthreads=settings.server_threads)
    server.prepare()
    gc.freeze()  # as serve_process does
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"signed echo at https://{args.host}:{server.bind_addr[1]}", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
