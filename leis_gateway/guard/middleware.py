"""The guard: WSGI middleware that decides whether a message may reach the SOAP layer at all.

In order: method and path, size limit, content type, hardened parse and SOAP shape, caller
identity from the client certificate, then the exchange hooks (audit, signatures) around the
inner application. Every refusal is a SOAP fault with a stable code; nothing the client sent
is logged.
"""
from __future__ import annotations

import io
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol

from ..observability import exchange_scope
from ..soap import faults
from ..soap.faults import SoapFault, fault_envelope
from lxml import etree

from .xmlsafety import InboundEnvelope, parse_envelope

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


@dataclass(frozen=True)
class Caller:
    """Who is on the other end of the connection, as the client certificate says."""

    agreement_id: str
    certificate_fingerprint: str


@dataclass
class Exchange:
    """One request/response pair travelling through the guard (mutable: filled as it goes)."""

    correlation_id: str
    received_at: float
    raw_request: bytes
    caller: Caller | None = None
    envelope: InboundEnvelope | None = None
    operation: str | None = None
    notes: dict[str, object] = field(default_factory=dict)  # facts for the audit, never values
    received: bool = False  # the inbound message has been handed to `hooks.received`
    # The answer envelope as the inner application built it, when it leaves one here: the edge
    # signs it as it is instead of parsing the serialised bytes again.
    response: etree._Element | None = None


class ExchangeHooks(Protocol):
    """Edge steps around the inner application, in the order the guard calls them.

    `received`: the raw message was read (audit it: fail closed); `admit`: the envelope parsed and
    the caller is known (verify the signature, refuse replays); `respond`: returns the bytes to
    send for the answer envelope, serialised or as an element (sign it, audit it: fail closed).
    Each may raise `SoapFault` to refuse.
    """

    def received(self, exchange: Exchange) -> None: ...

    def admit(self, exchange: Exchange) -> None: ...

    def respond(self, exchange: Exchange, envelope: bytes | etree._Element, is_fault: bool) -> bytes: ...


class NoHooks:
    def received(self, exchange: Exchange) -> None:
        return None

    def admit(self, exchange: Exchange) -> None:
        return None

    def respond(self, exchange: Exchange, envelope: bytes | etree._Element, is_fault: bool) -> bytes:
        return envelope if isinstance(envelope, bytes) else etree.tostring(envelope, xml_declaration=True,
                                                                            encoding="UTF-8")


ENVIRON_EXCHANGE = "leis.exchange"


class Guard:
    def __init__(
        self,
        inner: WsgiApp,
        *,
        path: str,
        operations: Mapping[str, str],  # request wrapper tag -> operation name
        max_body_bytes: int,
        identify: Callable[[dict], Caller | SoapFault],
        hooks: ExchangeHooks | None = None,
        get_handler: Callable[[dict], tuple[str, list[tuple[str, str]], bytes] | None] = lambda e: None,
    ) -> None:
        self.inner = inner
        self.path = path.rstrip("/")
        self.operations = operations
        self.max_body_bytes = max_body_bytes
        self.identify = identify
        self.hooks = hooks or NoHooks()
        self.get_handler = get_handler

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/") != self.path:
            other = self.get_handler(environ)
            if other is not None:
                status, headers, body = other
                start_response(status, headers)
                return [body]
            return _plain(start_response, "404 Not Found", b"not found\n")
        method = environ.get("REQUEST_METHOD", "GET")
        if method in ("GET", "HEAD"):
            served = self.get_handler(environ)
            if served is not None:
                status, headers, body = served
                start_response(status, headers)
                return [b"" if method == "HEAD" else body]
            return self._fault(start_response, faults.NOT_POST, None)
        if method != "POST":
            return self._fault(start_response, faults.NOT_POST, None)

        exchange = Exchange(
            correlation_id=_correlation_id(environ.get("HTTP_X_CORRELATION_ID", "")),
            received_at=time.monotonic(),
            raw_request=b"",
        )
        with exchange_scope(exchange):  # log context; at the end, request metrics and an access-log line
            return self._exchange(environ, start_response, exchange)

    def _exchange(self, environ: dict, start_response: Callable, exchange: Exchange) -> Iterable[bytes]:
        try:
            exchange.raw_request = self._read_body(environ)
            identity = self.identify(environ)
            exchange.caller = identity if isinstance(identity, Caller) else None
            refusal: SoapFault | None = identity if isinstance(identity, SoapFault) else None
            try:
                self._check_content_type(environ)
                exchange.envelope = parse_envelope(exchange.raw_request)
                exchange.operation = self.operations.get(exchange.envelope.request.tag)
            except SoapFault as fault:
                refusal = refusal or fault
            exchange.received = True
            self.hooks.received(exchange)  # every message that arrives is audited, refused or not
            if refusal is not None:
                raise refusal
            if exchange.envelope.request.tag not in self.operations:
                raise faults.UNKNOWN_OPERATION
            self.hooks.admit(exchange)
        except SoapFault as fault:
            return self._fault(start_response, fault, exchange)

        environ = dict(environ)
        environ["wsgi.input"] = io.BytesIO(exchange.raw_request)
        environ["CONTENT_LENGTH"] = str(len(exchange.raw_request))
        environ[ENVIRON_EXCHANGE] = exchange
        captured: dict[str, object] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        try:
            body = b"".join(self.inner(environ, capture))
        except Exception as exc:  # the type only: a message could quote the request
            log.error("inner application failed: %s (correlation %s)", type(exc).__name__, exchange.correlation_id)
            return self._fault(start_response, faults.INTERNAL, exchange)
        status = str(captured.get("status", "500 Internal Server Error"))
        is_fault = not status.startswith("200")
        try:
            body = self.hooks.respond(exchange, body if exchange.response is None else exchange.response, is_fault)
        except SoapFault as fault:
            exchange.notes["fault"] = fault.code  # what was answered instead (metrics)
            return self._fault(start_response, fault, exchange, audit=False)
        start_response(
            status,
            [
                ("Content-Type", "text/xml; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("X-Correlation-ID", exchange.correlation_id),
            ],
        )
        return [body]

    # --- helpers ---------------------------------------------------------------------------
    def _read_body(self, environ: dict) -> bytes:
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise faults.NOT_XML from None
        stream = environ["wsgi.input"]
        if declared > self.max_body_bytes:
            _drain(stream, declared)
            raise faults.TOO_LARGE
        data = stream.read(declared if declared else self.max_body_bytes + 1)
        if len(data) > self.max_body_bytes:
            _drain(stream, DRAIN_LIMIT)
            raise faults.TOO_LARGE
        if not data:
            raise faults.EMPTY
        return data

    @staticmethod
    def _check_content_type(environ: dict) -> None:
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type == "application/soap+xml":
            raise faults.SOAP12
        if content_type not in ("text/xml", "application/xml"):
            raise faults.BAD_CONTENT_TYPE

    def _fault(self, start_response: Callable, fault: SoapFault, exchange: Exchange | None, audit: bool = True):
        """Answer `fault`; audited and signed by the hooks unless the audit itself is what failed."""
        log.info("refused: %s", fault.code)
        body = fault_envelope(fault)
        if exchange is not None and audit:
            exchange.notes["fault"] = fault.code
            try:
                if not exchange.received:  # refused while reading: still audit what arrived
                    exchange.received = True
                    self.hooks.received(exchange)
                body = self.hooks.respond(exchange, body, True)
            except SoapFault as outer:
                body, fault = fault_envelope(outer), outer
                exchange.notes["fault"] = outer.code  # what was answered instead (metrics)
        headers = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))]
        if exchange is not None:
            headers.append(("X-Correlation-ID", exchange.correlation_id))
        start_response(_status_line(fault.http_status), headers)
        return [body]


DRAIN_LIMIT = 64 * 1024 * 1024  # the TLS server refuses larger bodies itself


def _drain(stream, declared: int) -> None:
    """Read and drop an oversized body so the client gets our fault, not a reset connection."""
    remaining = min(declared, DRAIN_LIMIT)
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            return
        remaining -= len(chunk)


_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _correlation_id(offered: str) -> str:
    """The client's correlation id if it is a plain token (it is logged and echoed), else a new one."""
    return offered if _CORRELATION_ID.fullmatch(offered) else uuid.uuid4().hex


def _status_line(code: int) -> str:
    return {
        405: "405 Method Not Allowed",
        413: "413 Payload Too Large",
        503: "503 Service Unavailable",
    }.get(code, "500 Internal Server Error")


def _plain(start_response: Callable, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
