"""Agreements, purposes, query rules and release profiles, through the real server.

Every answer here is also checked against the official lexs.xsd by `RunningGateway.call`.
"""
from __future__ import annotations

import datetime as dt
import time

import pytest
from lxml import etree

from leis_gateway.domain import Purpose, QueryField, QueryMatch
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.lexs.namespaces import LEXS
from leis_gateway.policy.agreements import AgreementRegistry
from leis_gateway.config import Settings
from support import NS, RunningGateway, requester, search

REGISTRY = AgreementRegistry(Settings().registry_path)
MEMBERS = [a for a in REGISTRY.all() if a.direction in ("two-way", "one-way")]
ACTIVE_MEMBERS = [a.id for a in MEMBERS if a.status == "active" and (a.expires is None or a.expires >= dt.date.today())]
NOT_SERVED = [a.id for a in REGISTRY.all() if a.id not in ACTIVE_MEMBERS]

SUBJECTS = {  # DESIGN.md's demo subjects: (surname, birth date)
    "S1": ("DOE", "1975-04-12"),
    "S2": ("DOE", "1980-01-01"),
    "S3": ("ROE", "1979-07-07"),
    "S4": ("GARCIA", "1988-09-30"),
    "S5": ("KARIMI", "1990-01-15"),
    "S6": ("SLATE", "1969-03-03"),
    "S7": ("CHEN", "1992-11-11"),
}


def expected_release(subject: str, agreement_id: str) -> bool:
    agreement = REGISTRY.get(agreement_id)
    profile = REGISTRY.profile(agreement)
    return {
        "S1": True, "S2": False, "S3": False, "S4": True,
        "S5": not profile.exclude_protected_classes,
        "S6": False, "S7": True,
    }[subject]


def test_the_demo_registry_holds_the_agreements_of_the_design():
    ids = {a.id for a in REGISTRY.all()}
    assert {"ndex", "azlink", "tdex", "linx-nw", "linx-hr", "linx-ncr", "linx-socal", "arjis", "lasd",
            "nlets", "afi", "suspended-demo"} <= ids
    assert REGISTRY.get("nlets").direction == "one-way"
    assert REGISTRY.get("suspended-demo").status == "suspended"


@pytest.mark.parametrize("agreement_id", ACTIVE_MEMBERS)
def test_demo_subjects_behave_as_the_design_says(gateway, agreement_id):
    for subject, (surname, born) in SUBJECTS.items():
        answer = gateway.call("doStructuredSearch", search((QueryField.SURNAME, surname), (QueryField.BIRTH_DATE, born)),
                              agreement=agreement_id)
        assert answer.result_code == "Success", (subject, answer.advisories)
        released = [p for p in answer.persons() if p["surname"] == surname and p["birth_date"] == born]
        assert bool(released) == expected_release(subject, agreement_id), (subject, agreement_id)
        text = etree.tostring(answer.message, encoding="unicode")
        assert "CANARY-NARRATIVE" not in text
        if subject == "S4" and released:
            assert answer.message.find(".//lexs:AttachmentLink", NS) is not None
        if released:
            assert "Law Enforcement Support Center" in text and "802-872-6020" in text


@pytest.mark.parametrize("agreement_id", NOT_SERVED)
def test_suspended_expired_and_internal_agreements_are_refused(gateway, agreement_id):
    answer = gateway.call("doStructuredSearch", search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12")),
                          agreement=agreement_id)
    assert answer.result_code == "Error"
    assert [c for c, _ in answer.advisories] == ["BusinessRuleNotMet"]
    assert answer.packages == []


@pytest.mark.parametrize("purpose", [None, "Curiosity", "criminallawenforcement"])
def test_a_missing_or_unknown_purpose_is_refused(gateway, purpose):
    answer = gateway.call("doStructuredSearch", search((QueryField.SSN, "900-12-3456"), purpose=purpose))
    assert answer.result_code == "Error"
    [(category, text)] = answer.advisories
    assert category == "BusinessRuleNotMet" and "purpose" in text.lower()


def test_two_purposes_are_refused(gateway):
    message = search((QueryField.SSN, "900-12-3456"))
    user = message.find(f"{{{LEXS}}}UserAssertion")
    attribute = user.find(f"{{{LEXS}}}DomainAttribute")
    second = etree.fromstring(etree.tostring(attribute))
    second.find(f"{{{LEXS}}}AttributeValue").text = Purpose.NATIONAL_SECURITY.value
    attribute.addnext(second)
    answer = gateway.call("doStructuredSearch", message)
    assert answer.result_code == "Error" and answer.advisories[0][0] == "BusinessRuleNotMet"


def test_a_purpose_the_agreement_does_not_allow_is_refused(gateway):
    agreement = next(a for a in MEMBERS if a.id in ACTIVE_MEMBERS and Purpose.EMPLOYMENT_BACKGROUND_CHECK not in a.purposes)
    query = search((QueryField.SSN, "900-12-3456"), purpose=Purpose.EMPLOYMENT_BACKGROUND_CHECK)
    refused = gateway.call("doStructuredSearch", query, agreement=agreement.id)
    assert refused.result_code == "Error" and refused.advisories[0][0] == "BusinessRuleNotMet"
    allowed = gateway.call("doStructuredSearch", query, agreement="ndex")
    assert allowed.result_code == "Success" and allowed.packages


def _refused(answer, element: str) -> None:
    assert answer.result_code == "Error", answer.advisories
    assert answer.packages == []
    [(category, text)] = answer.advisories
    assert category in ("BusinessRuleNotMet", "QueryFieldNotSupported", "FuzzyMatchNotSupported", "WildcardNotSupported")
    assert element in text, text


def test_a_batch_of_queries_never_runs(gateway):
    answer = gateway.call("doStructuredSearch", search((QueryField.SSN, "900-12-3456"), extra_blocks=1))
    _refused(answer, "StructuredQuery")


@pytest.mark.parametrize("field, first, second", [
    (QueryField.SURNAME, "DOE", "ROE"),
    (QueryField.SSN, "900-12-3456", "900-00-0001"),
    (QueryField.FULL_ADDRESS, "100 Main St, Tucson AZ 85701", "1 Elm St, Mesa AZ 85201"),
])
def test_two_values_of_a_kind_are_refused(gateway, field, first, second):
    answer = gateway.call("doStructuredSearch", search((field, first), (field, second)))
    _refused(answer, lexs_requests.FIELD_PATHS[field][-2].split(":")[1])


@pytest.mark.parametrize("path, value", [
    (("lexsdigest:EntityPerson", "lexsdigest:Person", "nc:PersonHairColorCode"), "BLK"),
    (("lexsdigest:EntityVehicle", "nc:Vehicle", "nc:VehicleIdentification", "nc:IdentificationID"), "1HGCM82633A004352"),
    (("lexsdigest:EntityPerson", "lexsdigest:Person", "nc:PersonEyeColorCode"), "BRO"),
])
def test_fields_outside_the_permitted_ones_are_refused_by_name(gateway, path, value):
    message = search((QueryField.SURNAME, "DOE"))
    lexs_requests.digest_statement(message.find(f"{{{LEXS}}}StructuredQuery"), path, value)
    answer = gateway.call("doStructuredSearch", message)
    _refused(answer, path[-1].split(":")[1])
    assert value not in answer.advisories[0][1]


@pytest.mark.parametrize("criteria, element", [
    (((QueryField.SSN, "900-12-345*", QueryMatch.WILDCARD),), "PersonSSNIdentification"),
    (((QueryField.SSN, "900-12-3456", QueryMatch.FUZZY),), "PersonSSNIdentification"),
    (((QueryField.SURNAME, "*", QueryMatch.WILDCARD),), "PersonSurName"),
    (((QueryField.SURNAME, "DOE", QueryMatch.GT),), "PersonSurName"),
])
def test_match_modes_that_make_no_sense_are_refused(gateway, criteria, element):
    _refused(gateway.call("doStructuredSearch", search(*criteria)), element)


def test_match_modes_that_make_sense_are_honoured(gateway):
    wildcard = gateway.call("doStructuredSearch", search((QueryField.SURNAME, "GARC*", QueryMatch.WILDCARD),
                                                         (QueryField.BIRTH_DATE, "1988-09-30")))
    assert "GARCIA" in [p["surname"] for p in wildcard.persons()]
    fuzzy = gateway.call("doStructuredSearch", search((QueryField.SURNAME, "DOH", QueryMatch.FUZZY),
                                                      (QueryField.BIRTH_DATE, "1975-04-12")))
    assert "DOE" in [p["surname"] for p in fuzzy.persons()]
    ranged = gateway.call("doStructuredSearch", search((QueryField.SURNAME, "DOE"),
                                                       (QueryField.BIRTH_DATE, "1975-01-01", QueryMatch.GE),
                                                       (QueryField.BIRTH_DATE, "1975-12-31", QueryMatch.LE)))
    assert [p["birth_date"] for p in ranged.persons()] == ["1975-04-12"]


def test_an_item_id_is_useless_to_another_agreement(gateway):
    found = gateway.call("doStructuredSearch", search((QueryField.SSN, "900-12-3456")))
    item_id = found.message.findtext(".//lexs:DataItemID", namespaces=NS)
    assert gateway.call("getDataItem", lexs_requests.data_item_request(requester(), item_id)).result_code == "Success"
    stolen = gateway.call("getDataItem", lexs_requests.data_item_request(requester(), item_id), agreement="azlink")
    assert stolen.result_code == "Error" and stolen.persons() == []


def test_item_and_attachment_ids_expire_with_their_search(demo_home):
    with RunningGateway.start(demo_home, item_ttl_seconds=1) as short_lived:
        found = short_lived.call("doStructuredSearch", search((QueryField.A_NUMBER, "A099000004")))
        item_id = found.message.findtext(".//lexs:DataItemID", namespaces=NS)
        uri = found.message.findtext(".//lexs:AttachmentURI", namespaces=NS)
        time.sleep(1.2)
        item = short_lived.call("getDataItem", lexs_requests.data_item_request(requester(), item_id))
        photo = short_lived.call("getAttachment", lexs_requests.attachment_request(requester(), uri))
    assert item.result_code == "Error" and photo.result_code == "Error"


def test_data_item_and_attachment_need_a_purpose_too(gateway):
    found = gateway.call("doStructuredSearch", search((QueryField.A_NUMBER, "A099000004")))
    item_id = found.message.findtext(".//lexs:DataItemID", namespaces=NS)
    no_purpose = requester(purpose=None)
    item = gateway.call("getDataItem", lexs_requests.data_item_request(no_purpose, item_id))
    assert item.result_code == "Error" and item.advisories[0][0] == "BusinessRuleNotMet"


@pytest.mark.parametrize("agreement_id", NOT_SERVED)
def test_service_provider_operations_are_refused_to_agreements_not_in_force(gateway, agreement_id):
    for operation in ("getCapabilities", "getDataOwners", "getAvailability"):
        answer = gateway.call(operation, lexs_requests.service_provider_request(requester()), agreement=agreement_id)
        assert answer.result_code == "Error" and answer.advisories[0][0] == "BusinessRuleNotMet", operation


def test_the_audit_keeps_a_stated_purpose_only_when_it_is_a_known_one(gateway):
    from leis_gateway.audit.types import AuditFilter
    from leis_gateway.lexs.requests import soap_envelope, wrap_request

    purposes = {}
    for stated in ("ZZ-free-text purpose of JOHN DOE", Purpose.NATIONAL_SECURITY.value):
        envelope = soap_envelope(wrap_request("doStructuredSearch", search((QueryField.SSN, "900-12-3456"), purpose=stated)))
        response = gateway.post(envelope, sign=True)
        rows = gateway.gateway.audit.search(AuditFilter(correlation_id=response.headers["X-Correlation-ID"]))
        purposes[stated] = {row.purpose for row in rows}
    assert purposes == {"ZZ-free-text purpose of JOHN DOE": {None}, "NationalSecurity": {"NationalSecurity"}}
