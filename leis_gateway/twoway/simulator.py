"""A partner simulator: a small LEXS 3.1 SR service standing in for a member agency's own system.

It holds a few people of its own, serves the SR operations (spyne, through the project's
`soap_application` and `Guard`), accepts only the gateway's client certificate and signature,
signs its answers with its agreement's demo certificate (`pki/agencies/<id>.key`), and records
every request it receives (`received`, and `GET /_sim/requests` as JSON, metadata only) so tests
can prove who was never contacted. It can misbehave on purpose:

    ok             a correct, signed answer
    bad-signature  the answer is altered after signing (the signature no longer verifies)
    wrong-signer   signed with the `unregistered` demo certificate instead of its own
    invalid        signed, but not schema-valid LEXS (an element the schema does not know)
    hang           answers only after `hang_seconds` (or when stopped)
    fault          a SOAP fault (HTTP 500)

Run one with `scripts/partner-sim --partner azlink --port 9441` (see `main`).
"""
from __future__ import annotations

import argparse
import fnmatch
import io
import json
import logging
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Iterator

from lxml import etree

from ..config import GATEWAY_CLIENT_ID, PROJECT_ROOT, SR_PATH
from ..domain import (
    Address,
    Advisory,
    AdvisoryCategory,
    AttachmentRequest,
    DataItemRequest,
    Photo,
    QueryField,
    QueryMatch,
    ReleasedPerson,
    ReleasedRecord,
    ResultCode,
    SearchOutcome,
    ServiceProviderRequest,
    ServiceQuestion,
    StructuredSearchRequest,
)
from ..guard.middleware import Caller, Exchange, Guard
from ..lexs import build, parse, schema
from ..lexs.namespaces import LEXS, qname
from ..policy.agreements import AgreementRegistry
from ..security.pki import certificate_fingerprint, load_certificate, load_signing_credentials
from ..security.tls import base_url, client_certificate_from_environ, make_tls_server
from ..security.wssec import WsSecurityError, sign_envelope, verify_envelope
from ..soap import faults
from ..soap.application import OPERATION_BY_WRAPPER_TAG, soap_application
from ..soap.faults import SoapFault

log = logging.getLogger(__name__)

MODES = ("ok", "bad-signature", "wrong-signer", "invalid", "hang", "fault")


class _System(StrEnum):  # what `build` reads as a record's source system
    RMS = "RMS"


@dataclass(frozen=True)
class SimPerson:
    record_id: str
    given: str
    surname: str
    birth_date: date
    middle: str | None = None
    ssn: str | None = None
    city: str | None = None
    state: str | None = None
    photo: bool = False


DEMO_PEOPLE: dict[str, tuple[SimPerson, ...]] = {
    "azlink": (
        SimPerson("AZ-1001", "JOHN", "DOE", date(1975, 4, 12), middle="QUINCY", city="Tucson", state="AZ", photo=True),
        SimPerson("AZ-1002", "MARIA", "GARCIA", date(1988, 9, 30), middle="ELENA", city="Phoenix", state="AZ"),
        SimPerson("AZ-1003", "ROSA", "CANARYWOOD", date(1983, 2, 14), city="Flagstaff", state="AZ"),
    ),
    "tdex": (
        SimPerson("TX-2001", "JOHN", "DOE", date(1975, 4, 12), middle="Q", city="El Paso", state="TX"),
        SimPerson("TX-2002", "CARLOS", "RIVERA", date(1991, 6, 21), city="Houston", state="TX", photo=True),
    ),
}


def default_people(partner_id: str) -> tuple[SimPerson, ...]:
    prefix = partner_id.upper()
    return DEMO_PEOPLE.get(partner_id, (
        SimPerson(f"{prefix}-1", "JOHN", "DOE", date(1975, 4, 12)),
        SimPerson(f"{prefix}-2", "JANE", "SMITH", date(1970, 1, 1)),
    ))


@dataclass(frozen=True)
class ReceivedRequest:
    """What the simulator saw of one request (metadata only)."""

    operation: str | None
    correlation_id: str
    client_fingerprint: str | None
    message_id: str | None
    user_id: str | None
    organization: str | None
    purpose: str | None


def _photo() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 90, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


class PartnerSimulator:
    def __init__(self, partner_id: str, home: Path | str, *, registry_path: Path | str | None = None,
                 people: tuple[SimPerson, ...] | None = None, misbehave: str = "ok",
                 hang_seconds: float = 30.0) -> None:
        if misbehave not in MODES:
            raise ValueError(f"misbehave must be one of {', '.join(MODES)}")
        pki = Path(home) / "pki"
        registry = AgreementRegistry(registry_path or PROJECT_ROOT / "fixtures" / "agreements.json")
        agreement = registry.get(partner_id)
        name = agreement.agency_name if agreement else partner_id
        ori = agreement.ori if agreement else "ZZSIM0000"
        self.partner_id = partner_id
        self.pki = pki
        self.people = people if people is not None else default_people(partner_id)
        self.misbehave = misbehave
        self.hang_seconds = hang_seconds
        self.signing = load_signing_credentials(pki / "agencies" / f"{partner_id}.key",
                                                pki / "agencies" / f"{partner_id}.crt")
        self.impostor = load_signing_credentials(pki / "agencies" / "unregistered.key",
                                                 pki / "agencies" / "unregistered.crt")
        self.gateway_certificate = load_certificate(pki / "agencies" / f"{GATEWAY_CLIENT_ID}.crt")
        self.gateway_fingerprint = certificate_fingerprint(self.gateway_certificate)
        self.identity = build.GatewayIdentity(
            organization=name, system_id=partner_id.upper(), ori=ori,
            contact_name="Help Desk", contact_organization=name, contact_phone="555-010-0100",
            owners=(build.DataOwner(partner_id, name, ori),), sources=((partner_id, _System.RMS.value),),
        )
        self.received: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._photo = _photo()
        self.wsgi = Guard(
            soap_application(self._handle),
            path=SR_PATH,
            operations={tag: op.name for tag, op in OPERATION_BY_WRAPPER_TAG.items()},
            max_body_bytes=1_000_000,
            identify=self._identify,
            hooks=_Hooks(self),
            get_handler=self._get,
        )

    # --- serving ------------------------------------------------------------------------------
    def server(self, host: str = "127.0.0.1", port: int = 0):
        """A TLS server (the demo's `server.crt`, mutual TLS against the demo CA); not started."""
        return make_tls_server(self.wsgi, host, port, cert=self.pki / "server.crt", key=self.pki / "server.key",
                               ca=self.pki / "ca.crt", numthreads=8)

    @contextmanager
    def running(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve on a background thread; yields the SR endpoint URL."""
        server = self.server(host, port)
        server.prepare()
        thread = threading.Thread(target=server.serve, name=f"partner-sim-{self.partner_id}", daemon=True)
        thread.start()
        try:
            yield base_url(server) + SR_PATH
        finally:
            self._stopping.set()
            server.stop()
            thread.join(timeout=10)

    def reset(self) -> None:
        with self._lock:
            self.received.clear()

    # --- the guard's callbacks ----------------------------------------------------------------
    def _identify(self, environ: dict) -> Caller | SoapFault:
        certificate = client_certificate_from_environ(environ)
        if certificate is None:
            return faults.NO_CLIENT_CERT
        fingerprint = certificate_fingerprint(certificate)
        if fingerprint != self.gateway_fingerprint:
            return faults.UNKNOWN_AGREEMENT
        return Caller("dhs-gateway", fingerprint)

    def _get(self, environ: dict):
        if environ.get("PATH_INFO") == "/_sim/requests":
            with self._lock:
                rows = [r.__dict__ for r in self.received]
            body = json.dumps(rows, indent=1).encode()
            return "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body
        if environ.get("PATH_INFO") == "/healthz":
            return "200 OK", [("Content-Type", "text/plain")], b"ok\n"
        return None

    def _record(self, exchange: Exchange) -> None:
        header, user = (None, None)
        if exchange.envelope is not None:
            header, user = parse.lenient_metadata(exchange.envelope.request)
        purpose = user.attribute("SearchPurpose") if user else ()
        with self._lock:
            self.received.append(ReceivedRequest(
                operation=exchange.operation,
                correlation_id=exchange.correlation_id,
                client_fingerprint=exchange.caller.certificate_fingerprint if exchange.caller else None,
                message_id=header.message_id if header else None,
                user_id=user.user_id if user else None,
                organization=user.organization if user else None,
                purpose=purpose[0] if purpose else None,
            ))

    # --- the operations -----------------------------------------------------------------------
    def _handle(self, operation, wrapper: etree._Element, exchange: Exchange) -> etree._Element:
        if self.misbehave == "fault":
            raise RuntimeError("simulated failure")
        if schema.validate_message(wrapper):
            advisory = Advisory(AdvisoryCategory.INVALID_REQUEST, "The request is not valid LEXS.")
            return build.error_response(operation.name, (advisory,), parse.lenient_header(wrapper), self.identity)
        request = parse.parse_request(operation.name, wrapper)
        header = request.header
        if isinstance(request, StructuredSearchRequest):
            found = [p for p in self.people if _matches(p, request)][: request.max_items]
            outcome = SearchOutcome(ResultCode.SUCCESS, tuple(self._record_of(p) for p in found),
                                    matches_found=len(found), max_items_requested=request.max_items)
            return self._localise(build.search_response(outcome, header, self.identity))
        if isinstance(request, DataItemRequest):
            person = next((p for p in self.people if p.record_id == request.item_id), None)
            if person is None:
                advisory = Advisory(AdvisoryCategory.BUSINESS_RULE_NOT_MET, "No such data item.")
                return build.data_item_response(None, header, self.identity, advisories=(advisory,))
            return self._localise(build.data_item_response(self._record_of(person), header, self.identity))
        if isinstance(request, AttachmentRequest):
            items = []
            for uri in request.uris:
                person = next((p for p in self.people if p.photo and self._photo_uri(p) == uri), None)
                if person is not None:
                    items.append(build.AttachmentItem(uri, Photo(person.record_id, "image/jpeg", self._photo),
                                                      owner=self.partner_id, source=_System.RMS.value))
            advisories = () if items else (Advisory(AdvisoryCategory.BUSINESS_RULE_NOT_MET, "No such attachment."),)
            return build.attachment_response(items, header, self.identity, advisories=advisories)
        if isinstance(request, ServiceProviderRequest):
            if request.question is ServiceQuestion.CAPABILITIES:
                return build.capabilities_response(header, self.identity)
            if request.question is ServiceQuestion.DATA_OWNERS:
                return build.data_owners_response(None, header, self.identity)
            return build.availability_response(True, header, self.identity)
        advisory = Advisory(AdvisoryCategory.UNSTRUCTURED_SEARCH_NOT_SUPPORTED, "Structured search only.")
        return build.error_response(operation.name, (advisory,), header, self.identity)

    def _photo_uri(self, person: SimPerson) -> str:
        return f"urn:{self.partner_id}:photo:{person.record_id}"

    def _record_of(self, person: SimPerson) -> ReleasedRecord:
        return ReleasedRecord(
            item_id=person.record_id,
            source=_System.RMS,  # type: ignore[arg-type]  (build reads `.value` only)
            owner=self.partner_id,
            person=ReleasedPerson(person.given, person.middle, person.surname, person.birth_date,
                                  None, None, None, None, None),
            address=Address(city=person.city, state=person.state, country="US") if person.city else None,
            attachment_uri=self._photo_uri(person) if person.photo else None,
        )

    def _localise(self, message: etree._Element) -> etree._Element:
        """`build` speaks for DHS in two places; a partner speaks for itself."""
        for attribute in message.iter(qname(LEXS, "DomainAttribute")):
            if attribute.findtext(qname(LEXS, "AttributeName")) == "Deconfliction":
                attribute.getparent().remove(attribute)
        for node in message.iter(qname(LEXS, "DisseminationCriteriaDomainText")):
            node.text = self.partner_id.upper()
        for node in message.iter(qname(LEXS, "DisseminationCriteriaText")):
            node.text = f"Law enforcement use only; no further release without the consent of {self.identity.organization}."
        return message

    def _sign(self, envelope: bytes | etree._Element, is_fault: bool) -> bytes:
        if self.misbehave == "hang":
            self._stopping.wait(self.hang_seconds)
        if isinstance(envelope, bytes):
            envelope = etree.fromstring(envelope)
        message = envelope.find(".//{http://usdoj.gov/leisp/lexs/3.1}SRMessageMetadata")
        if self.misbehave == "invalid" and message is not None:
            message.getparent().insert(0, etree.Element(qname(LEXS, "NotInTheSchema")))
        credentials = self.impostor if self.misbehave == "wrong-signer" else self.signing
        sign_envelope(envelope, credentials.key, credentials.certificate)
        if self.misbehave == "bad-signature":
            version = envelope.find(".//{http://usdoj.gov/leisp/lexs/3.1}LEXSVersion")
            if version is not None:
                version.text = (version.text or "") + ".1"
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


class _Hooks:
    def __init__(self, simulator: PartnerSimulator) -> None:
        self.simulator = simulator

    def received(self, exchange: Exchange) -> None:
        self.simulator._record(exchange)

    def admit(self, exchange: Exchange) -> None:
        try:
            verify_envelope(exchange.envelope.root, expected_certs=[self.simulator.gateway_certificate])
        except WsSecurityError:
            raise SoapFault("BadSignature", "The message is not signed by the DHS gateway.") from None

    def respond(self, exchange: Exchange, envelope: bytes | etree._Element, is_fault: bool) -> bytes:
        return self.simulator._sign(envelope, is_fault)


# --- matching ------------------------------------------------------------------------------------


def _matches(person: SimPerson, request: StructuredSearchRequest) -> bool:
    statements = [s for block in request.queries for s in block.statements]
    if not statements:
        return False
    for statement in statements:
        query_field = parse.query_field(statement)
        if query_field is None or not _field_matches(person, query_field, statement.value, statement.match):
            return False
    return True


def _text_matches(held: str | None, wanted: str, match: QueryMatch) -> bool:
    if held is None:
        return False
    held, wanted = held.upper().strip(), wanted.upper().strip()
    if match is QueryMatch.WILDCARD or "*" in wanted or "?" in wanted:
        return fnmatch.fnmatchcase(held, wanted)
    return held == wanted


def _field_matches(person: SimPerson, query_field: QueryField, value: str, match: QueryMatch) -> bool:
    if query_field is QueryField.SURNAME:
        return _text_matches(person.surname, value, match)
    if query_field is QueryField.GIVEN_NAME:
        return _text_matches(person.given, value, match)
    if query_field is QueryField.MIDDLE_NAME:
        return _text_matches(person.middle, value, match)
    if query_field is QueryField.FULL_NAME:
        names = {" ".join(filter(None, (person.given, person.middle, person.surname))), f"{person.given} {person.surname}"}
        return any(_text_matches(n, value, match) for n in names)
    if query_field is QueryField.SSN:
        return person.ssn is not None and person.ssn == "".join(c for c in value if c.isdigit())
    if query_field is QueryField.BIRTH_DATE:
        held, wanted = person.birth_date.isoformat(), value.strip()[:10]
        return {QueryMatch.GE: held >= wanted, QueryMatch.GT: held > wanted, QueryMatch.LE: held <= wanted,
                QueryMatch.LT: held < wanted}.get(match, held == wanted)
    if query_field is QueryField.CITY:
        return _text_matches(person.city, value, match)
    if query_field is QueryField.STATE:
        return _text_matches(person.state, value, match)
    return False


# --- command line --------------------------------------------------------------------------------


def _interrupt(*_):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="partner-sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--partner", required=True, help="the partner's agreement id (its demo certificate signs)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--home", default=None, help="state directory holding pki/ (default $LEIS_HOME or ./var)")
    parser.add_argument("--registry", default=None, help="agreements registry (default: the demo fixture)")
    parser.add_argument("--misbehave", choices=MODES, default="ok")
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s partner-sim %(message)s")
    for noisy in ("spyne", "zeep"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("spyne.protocol.soap.soap11.invalid").disabled = True
    import os

    home = Path(args.home or os.environ.get("LEIS_HOME") or "var")
    simulator = PartnerSimulator(args.partner, home, registry_path=args.registry, misbehave=args.misbehave,
                                 hang_seconds=args.hang_seconds)
    server = simulator.server(args.host, args.port)
    signal.signal(signal.SIGTERM, _interrupt)  # stop() from the handler would wait for this very thread
    server.prepare()
    print(f"partner-sim {args.partner} serving {base_url(server)}{SR_PATH} ({args.misbehave})", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        simulator._stopping.set()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
