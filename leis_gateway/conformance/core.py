"""The pieces every conformance check uses: the target, the exchanges made with it, the check table.

A check is a small function `check(ctx) -> str` registered with `@check(name, description)`; it
returns its one-line reason for passing or raises `CheckFailed(reason, details)`. Any other
exception also fails the check (with the exception as its reason), so a broken endpoint can
never crash the suite. Checks run in registration order and share one `Context`, which
remembers every exchange (request sent, answer received, its signature verdict) so that later
checks can judge all the answers seen so far.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from lxml import etree

from leis_gateway.lexs.namespaces import LEXS, OPERATIONS, SR
from leis_gateway.lexs.requests import Requester
from leis_gateway.lexs.validate_cli import SchemaSet

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS = {"soap": SOAP11, "lexs": LEXS, "sr": SR}

__all__ = [
    "CHECKS",
    "Check",
    "CheckFailed",
    "CheckResult",
    "Context",
    "Exchange",
    "LexsAnswer",
    "Target",
    "check",
]


class CheckFailed(Exception):
    """A check's verdict: failed, with a one-line reason and optional detail lines."""

    def __init__(self, reason: str, details: list[str] | tuple[str, ...] = ()):
        super().__init__(reason)
        self.reason = reason
        self.details = list(details)


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    run: Callable[["Context"], str]


#: The suite, in the order it runs.
CHECKS: list[Check] = []


def check(name: str, description: str) -> Callable[[Callable[["Context"], str]], Callable[["Context"], str]]:
    """Register a check function under `name` (appended: registration order is run order)."""

    def register(function: Callable[["Context"], str]) -> Callable[["Context"], str]:
        if any(c.name == name for c in CHECKS):
            raise ValueError(f"duplicate conformance check {name!r}")
        CHECKS.append(Check(name, description, function))
        return function

    return register


@dataclass(frozen=True)
class CheckResult:
    name: str
    description: str
    passed: bool
    reason: str
    details: list[str]
    seconds: float


@dataclass(frozen=True)
class Target:
    """What to test and as whom."""

    endpoint: str  # the SR endpoint; its WSDL is at endpoint + "?wsdl"
    certificate: Path  # client certificate (mutual TLS and WS-Security signer)
    key: Path
    ca: Path  # the CA that issued the endpoint's TLS certificate
    schemas: SchemaSet  # what answers must validate against
    schemas_description: str  # which schemas those are, in words (reported)
    server_cert: x509.Certificate | None = None  # pin answers' signer; None: any valid signer
    server_cert_path: Path | None = None
    agreement: str | None = None
    requester: Requester = field(default_factory=lambda: Requester(
        "LEIS conformance suite", "CONFORMANCE", "XX0000000", "conformance.suite"))
    timeout: float = 30.0

    @property
    def wsdl_url(self) -> str:
        return self.endpoint + "?wsdl"


@dataclass(frozen=True)
class LexsAnswer:
    """A LEXS-shaped answer: the SR response wrapper and the one LEXS message in it."""

    wrapper: etree._Element
    message: etree._Element

    @property
    def result_code(self) -> str | None:
        return self.message.findtext("lexs:ResponseMetadata/lexs:ResultCode", namespaces=NS)

    @property
    def advisories(self) -> list[tuple[str, str]]:
        return [(a.findtext("lexs:AdvisoryCategory", default="", namespaces=NS),
                 a.findtext("lexs:AdvisoryText", default="", namespaces=NS))
                for a in self.message.iterfind("lexs:ResponseMetadata/lexs:Advisory", NS)]

    @property
    def categories(self) -> list[str]:
        return [category for category, _ in self.advisories]

    def describe(self) -> str:
        text = f"ResultCode {self.result_code}"
        if self.advisories:
            text += ", advisories " + ", ".join(self.categories)
        return text


@dataclass
class Exchange:
    """One request sent to the endpoint and what came back."""

    label: str  # e.g. "doStructuredSearch (no purpose)"
    operation: str
    request: etree._Element
    status: int | None = None
    content_type: str = ""
    content: bytes = b""
    received_at: dt.datetime | None = None
    transport_error: str | None = None  # no HTTP answer at all (TLS, connection, timeout, zeep)
    envelope: etree._Element | None = None
    parse_error: str | None = None
    signer: x509.Certificate | None = None  # set when the signature verified
    signature_error: str | None = None

    def fault(self) -> tuple[str, str] | None:
        if self.envelope is None:
            return None
        fault = self.envelope.find("soap:Body/soap:Fault", NS)
        if fault is None:
            return None
        detail = fault.find("detail")
        cause = "".join(detail.itertext()).strip() if detail is not None else ""
        text = (fault.findtext("faultstring") or "").strip()
        return (fault.findtext("faultcode") or "?").strip(), (f"{text} ({cause})" if cause else text)

    def problem(self) -> str | None:
        """Why this exchange has no SOAP answer to look at, in one line (None: it has one)."""
        if self.transport_error:
            return self.transport_error
        if self.envelope is None:
            snippet = " ".join(self.content[:120].decode("utf-8", "replace").split())
            return (f"HTTP {self.status} {self.content_type or 'no content type'}: not a SOAP envelope "
                    f"({self.parse_error}); body starts {snippet!r}")
        return None

    def lexs_answer(self) -> LexsAnswer:
        """The answer as LEXS, or `CheckFailed` saying in one line why it is not one."""
        problem = self.problem()
        if problem:
            raise CheckFailed(f"{self.label}: {problem}")
        fault = self.fault()
        if fault:
            raise CheckFailed(f"{self.label}: HTTP {self.status}, SOAP Fault {fault[0]}: {fault[1]}"[:300])
        operation = OPERATIONS[self.operation]
        body = self.envelope.find("soap:Body", NS)
        content = [c for c in body if isinstance(c.tag, str)] if body is not None else []
        if len(content) != 1 or content[0].tag != operation.response_wrapper_qname:
            found = ", ".join(etree.QName(c).text for c in content) or "nothing"
            raise CheckFailed(f"{self.label}: HTTP {self.status}, the Body holds {found}, "
                              f"not one sr:{operation.response_wrapper}")
        wrapper = content[0]
        inner = [c for c in wrapper if isinstance(c.tag, str)]
        if len(inner) != 1 or inner[0].tag != operation.response_message_qname:
            found = ", ".join(etree.QName(c).text for c in inner) or "nothing"
            raise CheckFailed(f"{self.label}: sr:{operation.response_wrapper} holds {found}, "
                              f"not one lexs:{operation.response_message}")
        answer = LexsAnswer(wrapper, inner[0])
        if self.status != 200:
            raise CheckFailed(f"{self.label}: a LEXS answer with HTTP status {self.status} (expected 200)")
        if answer.result_code not in ("Success", "Warning", "Error"):
            raise CheckFailed(f"{self.label}: lexs:ResultCode is {answer.result_code!r}, "
                              f"not Success, Warning or Error")
        return answer


class Context:
    """Shared state of one suite run: the target, the zeep client, every exchange made."""

    def __init__(self, target: Target):
        self.target = target
        self.client = None  # leis_gateway.client.LexsSoapClient once the WSDL loaded
        self.client_error: str | None = "the WSDL was not loaded yet"
        self.exchanges: list[Exchange] = []
        self._by_key: dict[str, Exchange] = {}
        self.notes: dict[str, str] = {}

    def call(self, key: str, label: str, operation: str, build: Callable[[], etree._Element]) -> Exchange:
        """Send one request (once per key: later checks reuse the exchange)."""
        if key in self._by_key:
            return self._by_key[key]
        if self.client is None:
            raise CheckFailed(f"{label}: not sent: {self.client_error}")
        exchange = Exchange(label=label, operation=operation, request=build())
        try:
            response = self.client.call(operation, exchange.request)
        except Exception as exc:  # noqa: BLE001 - any failure to get an answer is the endpoint's verdict
            exchange.transport_error = f"no answer: {type(exc).__name__}: {exc}"[:300]
        else:
            exchange.received_at = dt.datetime.now(dt.timezone.utc)
            exchange.status = response.status_code
            exchange.content_type = response.headers.get("Content-Type", "")
            exchange.content = response.content
            self._read(exchange)
        self.exchanges.append(exchange)
        self._by_key[key] = exchange
        return exchange

    def _read(self, exchange: Exchange) -> None:
        from leis_gateway.lexs.validate_cli import Unusable, parse_document
        from leis_gateway.security.wssec import WsSecurityError, verify_envelope

        try:
            exchange.envelope = parse_document(exchange.content)
        except Unusable as exc:
            exchange.parse_error = exc.reason
            return
        if etree.QName(exchange.envelope).text != f"{{{SOAP11}}}Envelope":
            exchange.parse_error = f"the root element is {etree.QName(exchange.envelope).text}"
            exchange.envelope = None
            return
        try:
            pinned = [self.target.server_cert] if self.target.server_cert is not None else None
            verified = verify_envelope(exchange.content, expected_certs=pinned, now=exchange.received_at)
        except WsSecurityError as exc:
            exchange.signature_error = str(exc)
        else:
            exchange.signer = verified.signer_certificate
