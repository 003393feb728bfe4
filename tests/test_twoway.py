"""Two-way sharing (issue 7): the internal analysts' endpoint queries simulated partners.

Real servers on loopback: the gateway's internal endpoint and partner simulators, each with
mutual TLS and WS-Security signatures, as in production.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import random
import string
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from lxml import etree

from leis_gateway.app import InternalGateway, Gateway, create_gateway, create_internal_endpoint
from leis_gateway.audit.types import AuditFilter
from leis_gateway.config import GATEWAY_CLIENT_ID, INTERNAL_SR_PATH, PROJECT_ROOT, Settings
from leis_gateway.domain import Criterion, Purpose, QueryField, QueryMatch
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.security.pki import ensure_demo_pki, load_signing_credentials
from leis_gateway.security.tls import base_url, make_tls_server
from leis_gateway.security.wssec import sign_envelope
from leis_gateway.twoway.simulator import PartnerSimulator, SimPerson, default_people
from support import NS, Answer, assert_officially_valid, build_demo_home

CANARY = "QX" + "".join(random.choices(string.ascii_uppercase, k=10))  # a surname only the partner holds
SIMULATED = ("azlink", "tdex", "arjis", "nlets", "suspended-demo", "expired-demo")
QUERIED = ("azlink", "tdex", "arjis")  # the active two-way agreements with an endpoint
NS = {**NS, "s": "http://niem.gov/niem/structures/2.0"}


@dataclass
class World:
    home: Path
    gateway: Gateway
    internal: InternalGateway
    url: str
    sims: dict[str, PartnerSimulator]
    started: float

    def reset(self) -> None:
        for sim in self.sims.values():
            sim.reset()
            sim.misbehave = "ok"

    def calls(self, partner: str) -> list:
        return list(self.sims[partner].received)

    def ask(self, operation: str, message: etree._Element, *, cert: str = "afi",
            correlation_id: str | None = None) -> Answer:
        pki = self.home / "pki" / "agencies"
        envelope = etree.fromstring(lexs_requests.soap_envelope(lexs_requests.wrap_request(operation, message)))
        signer = load_signing_credentials(pki / f"{cert}.key", pki / f"{cert}.crt")
        sign_envelope(envelope, signer.key, signer.certificate)
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        with requests.Session() as session:
            session.trust_env = False
            session.verify = str(self.home / "pki" / "ca.crt")
            session.cert = (str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
            response = session.post(self.url, data=etree.tostring(envelope), headers=headers, timeout=30)
        answer = Answer.of(response)
        if answer.fault_cause is None:
            assert_officially_valid(answer.message)
        return answer


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    started = time.time()
    home = build_demo_home(tmp_path_factory.mktemp("twoway-home"), people=30)
    ensure_demo_pki(home / "pki", [GATEWAY_CLIENT_ID])
    canary_person = SimPerson("AZ-9001", "ROSALIND", CANARY, dt.date(1984, 5, 6), city="Yuma", state="AZ", photo=True)
    sims = {pid: PartnerSimulator(pid, home, hang_seconds=8) for pid in SIMULATED}
    sims["azlink"] = PartnerSimulator("azlink", home, people=default_people("azlink") + (canary_person,), hang_seconds=8)
    with ExitStack() as stack:
        urls = {pid: stack.enter_context(sim.running()) for pid, sim in sims.items()}
        document = json.loads((PROJECT_ROOT / "fixtures" / "agreements.json").read_text())
        for agreement in document["agreements"]:
            agreement["endpoint"] = urls.get(agreement["id"]) if agreement["direction"] == "two-way" else None
        registry = home / "agreements.json"
        registry.write_text(json.dumps(document))
        settings = Settings(home=home, port=0, registry_path=registry, internal_port=0,
                            default_timeout_seconds=5, partner_timeout_seconds=5)
        gateway = create_gateway(settings)
        stack.callback(gateway.close)
        internal = create_internal_endpoint(gateway)
        stack.callback(internal.close)
        pki = home / "pki"
        server = make_tls_server(internal.wsgi, "127.0.0.1", 0, cert=pki / "server.crt", key=pki / "server.key",
                                 ca=pki / "ca.crt", numthreads=8)
        server.prepare()
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        stack.callback(thread.join, 10)
        stack.callback(server.stop)
        yield World(home, gateway, internal, base_url(server) + INTERNAL_SR_PATH, sims, started)


@pytest.fixture
def w(world):
    world.reset()
    yield world
    world.reset()


ANALYST = lexs_requests.Requester("ICE Homeland Security Investigations", "AFI", "DCICEAFI0", "analyst.jones",
                                  Purpose.CRIMINAL_LAW_ENFORCEMENT)


def search(*criteria, owners: tuple[str, ...] = (), timeout: float | None = None,
           purpose: Purpose = Purpose.CRIMINAL_LAW_ENFORCEMENT, max_items: int = 25) -> etree._Element:
    requester = lexs_requests.Requester(ANALYST.organization, ANALYST.system_id, ANALYST.ori, ANALYST.user_id, purpose)
    return lexs_requests.structured_search_request(
        requester, [Criterion(f, v, QueryMatch.EXACT) for f, v in criteria], max_items=max_items,
        timeout=dt.timedelta(seconds=timeout) if timeout else None,
        data_owners=tuple(("Partner", o) for o in owners))


JOHN_DOE = ((QueryField.GIVEN_NAME, "JOHN"), (QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12"))


def partner_of(package: etree._Element) -> str:
    for attribute in package.iterfind("lexs:PackageMetadata/lexs:DomainAttribute", NS):
        if attribute.findtext("lexs:AttributeName", namespaces=NS) == "LEISPartner":
            return attribute.findtext("lexs:AttributeValue", namespaces=NS)
    raise AssertionError("a package without its partner")


def owner_ori(package: etree._Element) -> str:
    return package.findtext("lexs:PackageMetadata/lexs:DataOwnerMetadata/lexs:DataOwnerIdentifier/lexs:ORI",
                            namespaces=NS)


# --- fan-out and merge --------------------------------------------------------------------------


def test_fan_out_to_every_two_way_partner_and_merge(w):
    answer = w.ask("doStructuredSearch", search(*JOHN_DOE))
    assert answer.result_code == "Success", answer.advisories
    assert answer.advisories == []
    assert sorted(partner_of(p) for p in answer.packages) == sorted(QUERIED)
    registry = w.gateway.registry
    for package in answer.packages:  # the partner stays the data owner
        assert owner_ori(package) == registry.get(partner_of(package)).ori
        assert package.findtext("lexs:PackageMetadata/lexs:DataItemID", namespaces=NS).startswith("urn:leis:partner-item:")
    ids = [n.get(f"{{{NS['s']}}}id") for n in answer.message.iter() if n.get(f"{{{NS['s']}}}id")]
    assert len(ids) == len(set(ids))
    assert answer.message.findtext("lexs:SearchResponseMetadata/lexs:NumberItemMatches", namespaces=NS) == "3"
    gateway_fp = w.sims["azlink"].gateway_fingerprint
    for partner in QUERIED:
        (call,) = w.calls(partner)
        assert call.operation == "doStructuredSearch"
        assert call.client_fingerprint == gateway_fp  # mutual TLS with the gateway's certificate
        assert (call.user_id, call.organization, call.purpose) == (
            "analyst.jones", "ICE Homeland Security Investigations", "CriminalLawEnforcement")
    for never in ("nlets", "suspended-demo", "expired-demo"):
        assert w.calls(never) == []


def test_partner_requests_are_fresh_dhs_messages(w):
    w.ask("doStructuredSearch", search(*JOHN_DOE, owners=("tdex",)))
    (call,) = w.calls("tdex")
    rows = w.gateway.audit.search(AuditFilter(correlation_id=call.correlation_id, agreement_id="tdex",
                                              direction="outbound"))
    (row,) = rows
    sent = etree.fromstring(w.gateway.audit.show(row.id, "test", "two-way test"))
    message = sent.find("soap:Body/sr:doStructuredSearchRequest/lexs:StructuredSearchRequestMessage", NS)
    origin = message.find("lexs:SRMessageMetadata/lexs:MessageOriginMetadata/lexs:SystemIdentifier", NS)
    assert origin.findtext("lexs:ORI", namespaces=NS) == "DHS000000"
    assert origin.findtext("lexs:SystemID", namespaces=NS) == "LEIS"
    assert message.findtext("lexs:SRMessageMetadata/lexs:MessageSequenceNumber", namespaces=NS) == call.message_id
    assert sent.find("soap:Header/{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Security", NS) is not None
    assert_officially_valid(message)


def test_named_partners_only_and_never_one_way_suspended_or_expired(w):
    answer = w.ask("doStructuredSearch", search(*JOHN_DOE, owners=("azlink", "nlets", "suspended-demo", "expired-demo", "nosuch")))
    assert answer.result_code == "Warning"
    assert [partner_of(p) for p in answer.packages] == ["azlink"]
    texts = " | ".join(t for _, t in answer.advisories)
    assert len(answer.advisories) == 4 and {c for c, _ in answer.advisories} == {"BusinessRuleNotMet"}
    assert "nlets" in texts and "one-way" in texts
    assert "suspended-demo" in texts and "suspended" in texts
    assert "expired-demo" in texts and "expired" in texts
    assert [c.operation for c in w.calls("azlink")] == ["doStructuredSearch"]
    for never in ("tdex", "arjis", "nlets", "suspended-demo", "expired-demo"):
        assert w.calls(never) == []


def test_naming_only_refused_partners_is_an_error_and_contacts_nobody(w):
    answer = w.ask("doStructuredSearch", search(*JOHN_DOE, owners=("nlets",)))
    assert answer.result_code == "Error"
    assert answer.advisories[0][0] == "BusinessRuleNotMet" and "nlets" in answer.advisories[0][1]
    assert all(w.calls(p) == [] for p in SIMULATED)


def test_purpose_the_internal_agreement_does_not_permit_contacts_nobody(w):
    answer = w.ask("doStructuredSearch", search(*JOHN_DOE, purpose=Purpose.EMPLOYMENT_BACKGROUND_CHECK))
    assert answer.result_code == "Error"
    assert answer.advisories[0][0] == "BusinessRuleNotMet"
    assert all(w.calls(p) == [] for p in SIMULATED)


# --- partners that answer badly ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bad-signature", "wrong-signer", "invalid", "fault"])
def test_a_partner_answering_badly_becomes_an_advisory(w, mode):
    w.sims["arjis"].misbehave = mode
    answer = w.ask("doStructuredSearch", search(*JOHN_DOE))
    assert answer.result_code == "Warning"
    assert sorted(partner_of(p) for p in answer.packages) == ["azlink", "tdex"]
    (advisory,) = answer.advisories
    assert advisory[0] == "InvalidResponse" and "arjis" in advisory[1], advisory
    assert len(w.calls("arjis")) == 1


def test_a_hanging_partner_becomes_a_timeout_within_the_deadline(w):
    w.sims["arjis"].misbehave = "hang"
    started = time.monotonic()
    answer = w.ask("doStructuredSearch", search(*JOHN_DOE, timeout=2), correlation_id="hang-test-1")
    elapsed = time.monotonic() - started
    assert elapsed < 4.5, elapsed
    assert answer.result_code == "Warning"
    assert sorted(partner_of(p) for p in answer.packages) == ["azlink", "tdex"]
    (advisory,) = answer.advisories
    assert advisory[0] == "Timeout" and "arjis" in advisory[1]
    rows = w.gateway.audit.search(AuditFilter(correlation_id="hang-test-1", agreement_id="arjis"))
    assert [r.direction for r in rows] == ["outbound"]  # asked, never answered


def test_every_partner_failing_is_an_error(w):
    for partner in QUERIED:
        w.sims[partner].misbehave = "invalid"
    answer = w.ask("doStructuredSearch", search(*JOHN_DOE))
    assert answer.result_code == "Error"
    assert answer.packages == []
    assert sorted(c for c, _ in answer.advisories) == ["InvalidResponse"] * 3


# --- audit ----------------------------------------------------------------------------------------


def test_every_message_in_both_directions_is_audited_and_linked(w):
    w.ask("doStructuredSearch", search(*JOHN_DOE), correlation_id="twoway-audit-1")
    rows = w.gateway.audit.search(AuditFilter(correlation_id="twoway-audit-1"))
    seen = sorted((r.agreement_id, r.direction) for r in rows)
    expected = [("afi", "inbound"), ("afi", "outbound")] + [(p, d) for p in QUERIED for d in ("inbound", "outbound")]
    assert seen == sorted(expected)
    analyst_out = next(r for r in rows if r.agreement_id == "afi" and r.direction == "outbound")
    assert analyst_out.result_code == "Success" and analyst_out.purpose == "CriminalLawEnforcement"
    for row in rows:
        assert row.user_id == "analyst.jones"
        assert row.size_bytes > 0
    partner_in = [r for r in rows if r.agreement_id in QUERIED and r.direction == "inbound"]
    assert {r.result_code for r in partner_in} == {"Success"}


# --- retrieval goes back to the issuing partner ----------------------------------------------------


def _canary_package(w) -> etree._Element:
    answer = w.ask("doStructuredSearch", search((QueryField.SURNAME, CANARY), (QueryField.GIVEN_NAME, "ROSALIND")))
    assert answer.result_code == "Success", answer.advisories
    (package,) = answer.packages
    assert partner_of(package) == "azlink"
    return package


def test_get_data_item_and_attachment_are_routed_to_the_issuing_partner(w):
    package = _canary_package(w)
    item_id = package.findtext("lexs:PackageMetadata/lexs:DataItemID", namespaces=NS)
    uri = package.findtext("lexs:AttachmentLink/lexs:AttachmentURI", namespaces=NS)
    assert "AZ-9001" not in item_id and uri.startswith("urn:leis:partner-attachment:")
    w.reset()

    requester = lexs_requests.Requester(ANALYST.organization, ANALYST.system_id, ANALYST.ori, ANALYST.user_id)
    item = w.ask("getDataItem", lexs_requests.data_item_request(requester, item_id))
    assert item.result_code == "Success", item.advisories
    (got,) = item.message.findall("lexs:DataItemPackage", NS)
    assert got.findtext(".//lexsdigest:Person/nc:PersonName/nc:PersonSurName", namespaces=NS) == CANARY
    assert owner_ori(got) == w.gateway.registry.get("azlink").ori

    photo = w.ask("getAttachment", lexs_requests.attachment_request(requester, uri))
    assert photo.result_code == "Success", photo.advisories
    assert photo.message.findtext("lexs:Attachment/lexs:AttachmentURI", namespaces=NS) == uri
    data = base64.b64decode(photo.message.findtext("lexs:Attachment/nc:Binary/nc:BinaryBase64Object", namespaces=NS))
    assert data[:3] == b"\xff\xd8\xff"

    assert [c.operation for c in w.calls("azlink")] == ["getDataItem", "getAttachment"]
    assert all(w.calls(p) == [] for p in SIMULATED if p != "azlink")


def test_an_altered_or_foreign_item_id_contacts_nobody(w):
    package = _canary_package(w)
    item_id = package.findtext("lexs:PackageMetadata/lexs:DataItemID", namespaces=NS)
    w.reset()
    requester = lexs_requests.Requester(ANALYST.organization, ANALYST.system_id, ANALYST.ori, ANALYST.user_id)
    for bad in (item_id[:-3] + ("AAA" if not item_id.endswith("AAA") else "BBB"), "AZ-9001"):
        answer = w.ask("getDataItem", lexs_requests.data_item_request(requester, bad))
        assert answer.result_code == "Error"
        assert answer.advisories[0][0] == "BusinessRuleNotMet"
    assert all(w.calls(p) == [] for p in SIMULATED)


# --- who may use the internal endpoint --------------------------------------------------------------


@pytest.mark.parametrize("cert,cause", [("ndex", "NotInternalSystem"), ("nlets", "NotInternalSystem"),
                                        ("unregistered", "UnknownAgreement")])
def test_only_the_internal_system_certificate_is_served(w, cert, cause):
    answer = w.ask("doStructuredSearch", search(*JOHN_DOE), cert=cert)
    assert answer.fault_cause == cause
    assert all(w.calls(p) == [] for p in SIMULATED)


def test_wsdl_of_the_internal_endpoint_names_its_own_address(w):
    pki = w.home / "pki"
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(w.url + "?wsdl", verify=str(pki / "ca.crt"),
                               cert=(str(pki / "agencies" / "afi.crt"), str(pki / "agencies" / "afi.key")), timeout=10)
    assert response.status_code == 200
    assert b"/internal/lexs/sr/3.1" in response.content


# --- nothing of a partner's answer is kept ---------------------------------------------------------


def test_no_partner_data_lands_on_disk_outside_the_encrypted_audit(w):
    package = _canary_package(w)
    requester = lexs_requests.Requester(ANALYST.organization, ANALYST.system_id, ANALYST.ori, ANALYST.user_id)
    w.ask("getDataItem", lexs_requests.data_item_request(
        requester, package.findtext("lexs:PackageMetadata/lexs:DataItemID", namespaces=NS)))
    needles = (CANARY.encode(), CANARY.lower().encode(), CANARY.encode("utf-16-le"))
    roots = {w.home, Path(tempfile.gettempdir())}
    hits = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                if not path.is_file() or path.is_symlink():
                    continue
                stat = path.stat()
                if root != w.home and stat.st_mtime < w.started - 1:
                    continue
                if stat.st_size > 200_000_000:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(str(path))
    assert hits == []
    # ... while the audit log holds the partner's answer, encrypted
    rows = w.gateway.audit.search(AuditFilter(agreement_id="azlink", direction="inbound", operation="getDataItem"))
    assert CANARY.encode() in w.gateway.audit.show(rows[-1].id, "test", "two-way canary check")


# --- the simulator as a program, and the settings -------------------------------------------------


def test_partner_sim_program_serves_records_and_stops_on_sigterm(world):
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "leis_gateway.twoway.simulator", "--partner", "tdex", "--port", "0",
         "--home", str(world.home)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("partner-sim tdex serving https://127.0.0.1:"), line
        base = line.split()[3].rsplit("/lexs/", 1)[0]
        pki = world.home / "pki"
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(base + "/_sim/requests", verify=str(pki / "ca.crt"), timeout=10,
                                   cert=(str(pki / "agencies" / "gateway.crt"), str(pki / "agencies" / "gateway.key")))
        assert response.status_code == 200 and response.json() == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_internal_endpoint_settings_from_the_environment():
    settings = Settings.from_env({"LEIS_INTERNAL_PORT": "8444", "LEIS_PARTNER_TIMEOUT": "3"})
    assert settings.internal_port == 8444 and settings.partner_timeout_seconds == 3.0
    assert settings.internal_endpoint_url == "https://127.0.0.1:8444/internal/lexs/sr/3.1"
    assert Settings.from_env({}).internal_port is None  # not served unless configured
