"""Official-shaped LEXS requests parse into the domain objects the policy layer expects."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from leis_gateway.domain import (
    AttachmentRequest,
    DataItemRequest,
    DomainAttribute,
    MessageHeader,
    Purpose,
    QueryField,
    QueryMatch,
    ServiceProviderRequest,
    ServiceQuestion,
    StructuredSearchRequest,
    TextSearchRequest,
)
from leis_gateway.lexs.namespaces import LEXS, SR, qname
from leis_gateway.lexs.parse import LexsParseError, parse_duration, parse_request, query_field
from leis_gateway.lexs.testing import SAMPLES, sample

PERSON = ("EntityPerson", "Person")
ADDRESS = ("EntityLocation", "Location", "LocationAddress", "StructuredAddress")


def _statements(request, block=0):
    return [(s.path, s.value, s.match) for s in request.queries[block].statements]


def test_name_and_birth_date():
    request = parse_request("doStructuredSearch", sample("structured-name-dob.xml"))
    assert isinstance(request, StructuredSearchRequest)
    assert request.header == MessageHeader("1001", datetime(2024, 3, 5, 14, 30, tzinfo=UTC),
                                           "Arizona Department of Public Safety", "AZLINK", "AZDPS0000")
    assert request.user.user_id == "jsmith@azdps.gov"
    assert request.user.organization == "Arizona Department of Public Safety"
    assert request.user.ori == "AZ0070000"
    assert request.user.attribute("SearchPurpose") == (Purpose.CRIMINAL_LAW_ENFORCEMENT.value,)
    assert DomainAttribute("AZLINK", "CaseNumber", "AZ-2024-001234") in request.user.attributes
    assert request.max_items == 25
    assert request.timeout_seconds == 30.0
    assert request.data_owners == ("TECS",)
    assert len(request.queries) == 1
    assert _statements(request) == [
        (PERSON + ("PersonName", "PersonGivenName"), "John", QueryMatch.EXACT),
        (PERSON + ("PersonName", "PersonSurName"), "Doe", QueryMatch.FUZZY),
        (PERSON + ("PersonBirthDate", "Date"), "1975-04-12", QueryMatch.EXACT),
    ]
    assert [query_field(s) for s in request.queries[0].statements] == [
        QueryField.GIVEN_NAME, QueryField.SURNAME, QueryField.BIRTH_DATE]
    source_lines = (SAMPLES / "structured-name-dob.xml").read_text()
    leaf = request.queries[0].statements[1]
    assert leaf.line and leaf.element == "EntityPerson/Person/PersonName/PersonSurName"
    assert request.queries[0].line and request.queries[0].payload_statements == 0
    assert "Doe" in source_lines.splitlines()[leaf.line - 1]


def test_ssn():
    request = parse_request("doStructuredSearch", sample("structured-ssn.xml"))
    (statement,) = request.queries[0].statements
    assert statement.path == PERSON + ("PersonSSNIdentification", "IdentificationID")
    assert statement.value == "900123456" and query_field(statement) is QueryField.SSN
    assert request.timeout_seconds == 90.0


def test_address():
    request = parse_request("doStructuredSearch", sample("structured-address.xml"))
    assert _statements(request) == [
        (ADDRESS + ("LocationStreet", "StreetName"), "Main St", QueryMatch.EXACT),
        (ADDRESS + ("LocationCityName",), "Tucson", QueryMatch.EXACT),
        (ADDRESS + ("LocationPostalCode",), "85701", QueryMatch.EXACT),
    ]
    assert [query_field(s) for s in request.queries[0].statements] == [
        QueryField.STREET_NAME, QueryField.CITY, QueryField.POSTAL_CODE]
    assert request.timeout_seconds is None


def test_hair_colour_and_vehicle_parse_but_map_to_nothing():
    request = parse_request("doStructuredSearch", sample("structured-hair-colour.xml"))
    statements = request.queries[0].statements
    assert [s.path[-1] for s in statements] == ["PersonSurName", "PersonHairColorCode", "VehicleMakeCode"]
    assert [query_field(s) for s in statements] == [QueryField.SURNAME, None, None]


def test_two_blocks():
    request = parse_request("doStructuredSearch", sample("structured-two-blocks.xml"))
    assert len(request.queries) == 2 and request.max_items == 5
    assert _statements(request, 0)[0] == (PERSON + ("PersonName", "PersonGivenName"), "Jo*", QueryMatch.WILDCARD)
    assert [s.match for s in request.queries[1].statements] == [QueryMatch.EXACT, QueryMatch.GE, QueryMatch.LE]
    assert request.queries[0].line < request.queries[1].line


def test_one_statement_per_leaf():
    request = parse_request("doStructuredSearch", sample("structured-multi-leaf.xml"))
    statements = request.queries[0].statements
    assert [(s.path[-1], s.value) for s in statements] == [("PersonGivenName", "John"), ("PersonSurName", "Doe")]
    assert statements[0].line != statements[1].line


def test_text_search():
    request = parse_request("doTextSearch", sample("text-search.xml"))
    assert isinstance(request, TextSearchRequest) and request.max_items == 10
    assert request.header.message_id == "2001"


def test_data_item_and_attachment():
    item = parse_request("getDataItem", sample("data-item.xml"))
    assert isinstance(item, DataItemRequest) and item.item_id == "tecs-7f3a9c"
    attachment = parse_request("getAttachment", sample("attachment.xml"))
    assert isinstance(attachment, AttachmentRequest)
    assert attachment.uris == ("urn:dhs:leis:attachment:9b1f", "urn:dhs:leis:attachment:c0de")


@pytest.mark.parametrize("operation, question", [
    ("getCapabilities", ServiceQuestion.CAPABILITIES),
    ("getDataOwners", ServiceQuestion.DATA_OWNERS),
    ("getAvailability", ServiceQuestion.AVAILABILITY),
])
def test_service_provider_questions(operation, question):
    request = parse_request(operation, sample("service-provider.xml"))
    assert request == ServiceProviderRequest(parse_request("getCapabilities", sample("service-provider.xml")).header,
                                             question)


def test_wrapper_is_accepted():
    wrapper = etree.Element(qname(SR, "getDataItemRequest"))
    wrapper.append(sample("data-item.xml"))
    assert parse_request("getDataItem", wrapper).item_id == "tecs-7f3a9c"
    with pytest.raises(LexsParseError):
        parse_request("getAttachment", wrapper)


def test_message_must_fit_the_operation():
    with pytest.raises(LexsParseError) as info:
        parse_request("doStructuredSearch", sample("text-search.xml"))
    assert info.value.element == "lexs:TextSearchRequestMessage" and info.value.line
    with pytest.raises(LexsParseError):
        parse_request("doSearch", sample("text-search.xml"))


def test_empty_query_value_is_unusable():
    root = sample("structured-ssn.xml")
    root.find(f".//{{{LEXS}}}DigestQueryField").xpath(".//*[local-name()='IdentificationID']")[0].text = "  "
    with pytest.raises(LexsParseError) as info:
        parse_request("doStructuredSearch", root)
    assert info.value.element == "lexs:DigestQueryField" and info.value.line


def test_comments_and_payload_statements():
    root = sample("structured-ssn.xml")
    query = root.find(f"{{{LEXS}}}StructuredQuery")
    field = query.find(f".//{{{LEXS}}}DigestQueryField")
    field[0].insert(0, etree.Comment("a partner's comment"))
    payload = etree.fromstring(
        f'<lexs:StructuredPayloadQueryStatement xmlns:lexs="{LEXS}"><lexs:StructuredPayloadMetadata>'
        "<lexs:CommunityURI>http://example.gov/c</lexs:CommunityURI><lexs:CommunityVersion>1</lexs:CommunityVersion>"
        "</lexs:StructuredPayloadMetadata><lexs:StructuredPayloadQueryField><x/></lexs:StructuredPayloadQueryField>"
        "<lexs:QueryMatch>exact</lexs:QueryMatch></lexs:StructuredPayloadQueryStatement>")
    query.append(payload)
    request = parse_request("doStructuredSearch", root)
    assert request.queries[0].payload_statements == 1
    assert len(request.queries[0].statements) == 1


@pytest.mark.parametrize("text, seconds", [
    ("PT30S", 30), ("PT1M30S", 90), ("PT0.5S", 0.5), ("P1D", 86400), ("P1DT2H", 93600), ("-PT5S", -5),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "30S", "P1DT", ""])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_negative_timeout_is_unusable():
    root = sample("structured-ssn.xml")
    root.find(f".//{{{LEXS}}}TimeoutDuration").text = "-PT5S"
    with pytest.raises(LexsParseError) as info:
        parse_request("doStructuredSearch", root)
    assert info.value.element == "lexs:TimeoutDuration"


def test_lenient_metadata_reads_what_it_can():
    from leis_gateway.lexs.parse import lenient_header, lenient_metadata

    wrapper = etree.Element(qname(SR, "doStructuredSearchRequest"))
    wrapper.append(sample("structured-name-dob.xml"))
    header, user = lenient_metadata(wrapper)
    assert header.message_id == "1001" and user.user_id == "jsmith@azdps.gov"
    broken = sample("service-provider.xml")
    broken.remove(broken[0])
    assert lenient_metadata(broken) == (None, None)
    assert lenient_header(None) is None
    assert lenient_metadata(sample("service-provider.xml"))[1] is None
