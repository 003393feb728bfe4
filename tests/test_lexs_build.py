"""Every message build.py emits validates against our xsd/ and the official LEXS 3.1.4 schema."""
from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from leis_gateway.domain import (
    Address,
    Advisory,
    AdvisoryCategory,
    MessageHeader,
    Photo,
    QueryField,
    ReleasedPerson,
    ReleasedRecord,
    ResultCode,
    SearchOutcome,
    SourceStatus,
    SourceSystem,
)
from leis_gateway.lexs import build
from leis_gateway.lexs.namespaces import DIGEST, LEXS, NC, OPERATIONS, S, SR, qname
from leis_gateway.lexs.schema import validate_message
from leis_gateway.lexs.testing import official_errors

HEADER = MessageHeader("42", datetime(2024, 3, 5, tzinfo=UTC), "Arizona DPS", "AZLINK", "AZ0000000")
NOW = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)

S1 = ReleasedRecord(
    item_id="leis-item-s1",
    source=SourceSystem.TECS,
    owner="ICE",
    person=ReleasedPerson("JOHN", "QUINCY", "DOE", date(1975, 4, 12), 70, 180, "BRO", "BLK", "MX",
                          ((QueryField.SSN, "900123456"),)),
    address=Address("100", "Main St", None, "Tucson", "AZ", "85701", "US", None),
    score=97,
)
S4 = ReleasedRecord(
    item_id="leis-item-s4",
    source=SourceSystem.EID,
    owner="ICE",
    person=ReleasedPerson("MARIA", "ELENA", "GARCIA", date(1988, 9, 30), None, None, None, None, None,
                          ((QueryField.A_NUMBER, "A099000004"),)),
    attachment_uri="urn:dhs:leis:attachment:s4",
)
FULL = ReleasedRecord(
    item_id="leis-item-full",
    source=SourceSystem.TECS,
    owner="CBP",
    person=ReleasedPerson("A", "B", "C", date(1990, 1, 15), 66, 150, "HAZ", "RED", "AF", (
        (QueryField.SSN, "900000001"), (QueryField.PASSPORT, "X1234567"), (QueryField.A_NUMBER, "A012345678"),
        (QueryField.ENCOUNTER_ID, "ENC-1"), (QueryField.DRIVER_LICENSE, "D1234567"))),
    address=Address("12", "Oak Ave", "Apt 3", "Phoenix", "AZ", "85001", "US", "6025550100"),
    attachment_uri="urn:dhs:leis:attachment:full",
)


def _messages():
    photo = Photo("obim-1", "image/jpeg", b"\xff\xd8\xff\xe0fake-jpeg")
    yield "search", build.search_response(
        SearchOutcome(ResultCode.WARNING, (S1, S4, FULL), (Advisory(AdvisoryCategory.TIMEOUT, "EID timed out"),),
                      matches_found=3, max_items_requested=25), HEADER, now=NOW)
    yield "search-empty", build.search_response(SearchOutcome(ResultCode.SUCCESS), HEADER, now=NOW)
    yield "data-item", build.data_item_response(FULL, HEADER, now=NOW)
    yield "data-item-none", build.data_item_response(
        None, HEADER, advisories=[Advisory(AdvisoryCategory.INVALID_REQUEST, "unknown item")], now=NOW)
    yield "attachment", build.attachment_response(
        [build.AttachmentItem("urn:dhs:leis:attachment:s4", photo, "ICE", "OBIM")], HEADER, now=NOW)
    yield "capabilities", build.capabilities_response(HEADER, now=NOW)
    yield "data-owners", build.data_owners_response(None, HEADER, now=NOW)
    yield "availability", build.availability_response(False, HEADER, statuses=[SourceStatus("EID", False)], now=NOW)
    for op in OPERATIONS:
        yield f"error-{op}", build.error_response(
            op, [Advisory(AdvisoryCategory.INVALID_REQUEST, "line 7: lexs:MaxItemMatches is not valid"),
                 Advisory(AdvisoryCategory.OTHER, "and something else")], None, now=NOW)


MESSAGES = dict(_messages())


@pytest.mark.parametrize("name", MESSAGES)
def test_valid_against_ours(name):
    assert validate_message(MESSAGES[name]) == []


@pytest.mark.parametrize("name", MESSAGES)
def test_valid_against_official(name):
    assert official_errors(MESSAGES[name]) == []


@pytest.mark.parametrize("op", OPERATIONS)
def test_wrapped_responses_valid(op):
    message = build.error_response(op, [Advisory(AdvisoryCategory.BUSINESS_RULE_NOT_MET, "no")], HEADER)
    wrapper = build.wrap_response(op, message)
    assert wrapper.tag == qname(SR, OPERATIONS[op].response_wrapper)
    assert validate_message(wrapper) == []


def _x(node, path):
    ns = {"lexs": LEXS, "lexsdigest": DIGEST, "nc": NC, "s": S,
          "j": "http://niem.gov/niem/domains/jxdm/4.0", "im": "http://niem.gov/niem/domains/immigration/2.0"}
    return node.xpath(path, namespaces=ns)


def _ids(message):
    return {e.get(qname(S, "id")): e for e in message.iter() if e.get(qname(S, "id"))}


def test_s1_digest_content():
    message = build.search_response(SearchOutcome(ResultCode.SUCCESS, (S1,), matches_found=1,
                                                  max_items_requested=10), HEADER, now=NOW)
    person = _x(message, "//lexsdigest:EntityPerson/lexsdigest:Person")[0]
    assert _x(person, "string(nc:PersonName/nc:PersonFullName)") == "JOHN QUINCY DOE"
    assert _x(person, "string(nc:PersonBirthDate/nc:Date)") == "1975-04-12"
    assert _x(person, "string(nc:PersonHeightMeasure/nc:MeasurePointValue)") == "70"
    assert _x(person, "string(nc:PersonHeightMeasure/nc:LengthUnitCode)") == "INH"
    assert _x(person, "string(nc:PersonWeightMeasure/nc:MeasurePointValue)") == "180"
    assert _x(person, "string(nc:PersonWeightMeasure/nc:WeightUnitCode)") == "LBR"
    assert _x(person, "string(nc:PersonEyeColorCode)") == "BRO"
    assert _x(person, "string(nc:PersonHairColorCode)") == "BLK"
    assert _x(person, "string(nc:PersonSSNIdentification/nc:IdentificationID)") == "900123456"
    ids = _ids(message)
    # birthplace: a location with the country, tied to the person
    born = _x(message, "//lexsdigest:PersonBirthLocationAssociation")[0]
    assert ids[_x(born, "string(nc:PersonReference/@s:ref)")] is person
    place = ids[_x(born, "string(nc:LocationReference/@s:ref)")]
    assert _x(place, "string(.//nc:LocationCountryName)") == "Mexico"
    # residence
    lives = _x(message, "//nc:ResidenceAssociation")[0]
    assert ids[_x(lives, "string(nc:PersonReference/@s:ref)")] is person
    home = ids[_x(lives, "string(nc:LocationReference/@s:ref)")]
    assert _x(home, "string(.//nc:LocationCityName)") == "Tucson"
    assert _x(home, "string(.//nc:LocationStateName)") == "Arizona"
    assert _x(home, "string(.//nc:LocationPostalCode)") == "85701"
    # metadata
    assert _x(message, "string(//lexs:InResponseToMessageSequenceNumber)") == "42"
    assert _x(message, "string(//lexs:MessageDestinationIdentifier/lexs:SystemID)") == "AZLINK"
    assert _x(message, "string(//lexs:NumberItemMatches)") == "1"
    assert _x(message, "string(//lexs:DataOwnerIdentifier/lexs:SystemID)") == "TECS"
    assert "Immigration and Customs" in _x(message, "string(//lexs:DataOwnerIdentifier/nc:OrganizationName)")


def test_deconfliction_and_dissemination_on_every_package():
    message = MESSAGES["search"]
    packages = _x(message, "//lexs:SearchResultPackage")
    assert len(packages) == 3
    for package in packages:
        contact = _x(package, "lexs:PackageMetadata/lexs:DataItemContact")[0]
        assert _x(contact, "string(.//nc:TelephoneNumberFullID)") == "802-872-6020"
        assert "Law Enforcement Support Center" in _x(contact, "string(.//lexs:AttributeValue)")
        text = _x(package, "string(.//lexs:DisseminationCriteriaText)")
        assert "without the written consent" in text and "Homeland Security" in text


def test_photo_is_a_link_with_facial_image_association():
    message = build.search_response(SearchOutcome(ResultCode.SUCCESS, (S4,)), HEADER, now=NOW)
    ids = _ids(message)
    facial = _x(message, "//lexsdigest:EntityPersonFacialImageAssociation")[0]
    entity = ids[_x(facial, "string(lexsdigest:EntityReference/@s:ref)")]
    assert etree.QName(entity).localname == "EntityPerson"
    link = ids[_x(facial, "string(lexsdigest:AttachmentLinkReference/@s:ref)")]
    assert etree.QName(link).localname == "AttachmentLink"
    assert _x(link, "string(lexs:AttachmentURI)") == "urn:dhs:leis:attachment:s4"
    assert _x(link, "string(lexs:AttachmentViewableIndicator)") == "true"
    assert not _x(message, "//nc:BinaryBase64Object")  # search results never carry binaries
    assert _x(message, "string(//im:AlienNumber/nc:IdentificationID)") == "A099000004"


def test_ids_are_unique_and_references_resolve():
    message = MESSAGES["search"]
    all_ids = [e.get(qname(S, "id")) for e in message.iter() if e.get(qname(S, "id"))]
    assert len(all_ids) == len(set(all_ids))
    for node in message.iter():
        ref = node.get(qname(S, "ref"))
        if ref:
            assert ref in all_ids


def test_full_identifiers_and_phone():
    message = MESSAGES["data-item"]
    person = _x(message, "//lexsdigest:Person")[0]
    assert _x(person, "string(nc:PersonPassportIdentification/nc:IdentificationID)") == "X1234567"
    assert _x(person, "string(nc:PersonOtherIdentification/nc:IdentificationID)") == "ENC-1"
    assert _x(person, "string(j:PersonAugmentation/nc:DriverLicense//nc:IdentificationID)") == "D1234567"
    assert _x(message, "string(//lexsdigest:TelephoneNumber//nc:TelephoneNumberFullID)") == "602-555-0100"
    assert _x(message, "string(//nc:AddressSecondaryUnitText)") == "Apt 3"
    assert _x(message, "string(//lexs:DataOwnerIdentifier/lexs:ORI)") == "DHSCBP000"


def test_attachment_binary_round_trip():
    message = MESSAGES["attachment"]
    data = base64.b64decode(_x(message, "string(//nc:BinaryBase64Object)"))
    assert data == b"\xff\xd8\xff\xe0fake-jpeg"
    assert _x(message, "string(//nc:BinaryFormatID)") == "image/jpeg"
    assert _x(message, "string(//nc:BinaryFormatStandardName)") == "MIME"


def test_capabilities_say_no_text_search():
    message = MESSAGES["capabilities"]
    assert not _x(message, "//lexs:TextSearch")
    search = _x(message, "//lexs:StructuredSearch")[0]
    assert _x(search, "string(lexs:FuzzySearchIndicator)") == "true"
    assert _x(search, "string(lexs:WildcardIndicator)") == "true"
    assert _x(search, "string(lexs:DateRangeIndicator)") == "true"


def test_error_response_codes():
    message = MESSAGES["error-doTextSearch"]
    assert etree.QName(message).localname == "SearchResponseMessage"
    assert _x(message, "string(//lexs:ResultCode)") == "Error"
    assert _x(message, "//lexs:AdvisoryCategory/text()") == ["InvalidRequest", "OtherError"]
    assert _x(message, "string(//lexs:InResponseToMessageSequenceNumber)") == "0"
    unsupported = build.error_response(
        "doTextSearch", [Advisory(AdvisoryCategory.UNSTRUCTURED_SEARCH_NOT_SUPPORTED, "no text search")], HEADER)
    assert _x(unsupported, "string(//lexs:AdvisoryCategory)") == "UnstructuredSearchNotSupported"
    with pytest.raises(ValueError):
        build.error_response("doSearch", [], HEADER)


def test_unknown_colour_code_goes_out_as_text():
    person = ReleasedPerson("A", None, "B", None, None, None, "brown-ish", "blk", None)
    message = build.search_response(SearchOutcome(ResultCode.SUCCESS, (ReleasedRecord("i", SourceSystem.EID, "ICE", person),)),
                                    HEADER, now=NOW)
    assert _x(message, "string(//nc:PersonEyeColorText)") == "brown-ish"
    assert _x(message, "string(//nc:PersonHairColorCode)") == "BLK"
    assert validate_message(message) == []


# --- whatever the release layer hands over, the message stays valid ---------------------------

# XML 1.0 has no place for surrogates, control characters but tab, line feed and carriage return, or the
# noncharacters U+FFFE/U+FFFF (lxml refuses them); markup characters and the three allowed ones must come through
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff",
                              whitelist_characters="\t\n\r&<>\"'"), min_size=1, max_size=20)
_opt = st.none() | _text
_persons = st.builds(
    ReleasedPerson, _opt, _opt, _opt, st.none() | st.dates(date(1900, 1, 1), date(2030, 1, 1)),
    st.none() | st.integers(0, 120), st.none() | st.integers(0, 900), _opt, _opt,
    st.none() | st.sampled_from(["MX", "US", "ZZ"]),
    st.lists(st.tuples(st.sampled_from(list(QueryField)), _text), max_size=4).map(tuple))
_addresses = st.none() | st.builds(Address, _opt, _opt, _opt, _opt, _opt, _opt, _opt,
                                   st.none() | st.from_regex(r"\A[0-9]{7,12}\Z"))
_records = st.builds(ReleasedRecord, st.from_regex(r"\A[a-z0-9-]{1,20}\Z"), st.sampled_from(list(SourceSystem)),
                     st.sampled_from(["ICE", "CBP", "XYZ"]), _persons, _addresses,
                     st.none() | st.just("urn:dhs:leis:attachment:x"), st.integers(-5, 150))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records, max_size=3), st.integers(-1, 500), st.sampled_from(list(AdvisoryCategory)))
def test_any_released_records_give_a_valid_message(records, max_items, category):
    outcome = SearchOutcome(ResultCode.WARNING, tuple(records), (Advisory(category, "x"),),
                            matches_found=len(records), max_items_requested=max_items)
    message = build.search_response(outcome, HEADER)
    assert validate_message(message) == []
    assert official_errors(message) == []


def test_service_outcome_objects_are_accepted():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class ItemOutcome:  # the shape of service.DataItemOutcome
        result_code: ResultCode
        record: ReleasedRecord | None = None
        advisories: tuple = ()

    @dataclass(frozen=True)
    class PhotoOutcome:  # the shape of service.AttachmentOutcome
        result_code: ResultCode
        attachments: tuple = ()
        advisories: tuple = ()

    item = build.data_item_response(ItemOutcome(ResultCode.SUCCESS, S1), HEADER, now=NOW)
    assert _x(item, "string(//lexs:DataItemID)") == "leis-item-s1"
    refused = build.data_item_response(
        ItemOutcome(ResultCode.ERROR, None, (Advisory(AdvisoryCategory.BUSINESS_RULE_NOT_MET, "no"),)), HEADER)
    assert _x(refused, "string(//lexs:AdvisoryCategory)") == "BusinessRuleNotMet"
    photo = Photo("p", "image/jpeg", b"\xff\xd8")
    attachment = build.attachment_response(PhotoOutcome(ResultCode.SUCCESS, (("urn:x", photo),)), HEADER)
    assert _x(attachment, "string(//lexs:AttachmentURI)") == "urn:x"
    owners = build.data_owners_response((("ICE", SourceSystem.EID), ("CBP", SourceSystem.TECS)), HEADER)
    assert _x(owners, "//lexs:DataOwnerIdentifier/lexs:SystemID/text()") == ["EID", "TECS"]
    for message in (item, refused, attachment, owners, build.data_owners_response((), HEADER)):
        assert validate_message(message) == []
        assert official_errors(message) == []


# --- templates: the same elements as building every one of them ------------------------------


def _in_message(part: etree._Element) -> bytes:
    from leis_gateway.lexs.namespaces import NSMAP

    message = etree.Element(qname(LEXS, "SearchResponseMessage"), nsmap=NSMAP)
    message.append(part)
    return etree.tostring(message)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records, min_size=1, max_size=4), st.sampled_from(["SearchResultPackage", "DataItemPackage"]))
def test_a_package_template_writes_every_value_where_the_builder_puts_it(records, tag):
    gateway = build.GatewayIdentity()
    templates = build._package_templates(gateway)
    for index, record in enumerate(records, start=1):
        shape, ids = build._package_shape(tag, record)
        prefix = f"R{index}-"
        direct = build._build_package(shape, gateway, lambda getter: getter(record, prefix, ids))
        assert _in_message(templates.get(shape).copy(record, prefix, ids)) == _in_message(direct)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records, max_size=4), st.sampled_from(list(ResultCode)))
def test_a_search_response_written_as_markup_is_the_tree_its_templates_copy(records, result):
    gateway = build.GatewayIdentity()
    advisories = (Advisory(AdvisoryCategory.OTHER, "a <b> & \"c\"\r\n"),)
    outcome = SearchOutcome(result, tuple(records), advisories, 2, True, 7)
    tree = build._start("SearchResponseMessage", gateway, result, advisories, HEADER, 1234, NOW, search=outcome)
    templates = build._package_templates(gateway)
    for index, record in enumerate(records, start=1):
        build._append_package(tree, templates, "SearchResultPackage", record, index)
    markup = build.search_response(outcome, HEADER, gateway, sequence=1234, now=NOW)
    assert etree.tostring(markup) == etree.tostring(tree)
    assert [node.text for node in markup.iter()] == [node.text for node in tree.iter()]


_headers = st.none() | st.builds(MessageHeader, st.from_regex(r"\A[0-9]{0,5}\Z"), st.none(), _opt.map(lambda t: t or ""),
                                 _opt.map(lambda t: t or ""), _opt)
_advisories = st.lists(st.builds(Advisory, st.sampled_from(list(AdvisoryCategory)), st.sampled_from(["", "why", "a<b"])),
                       max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(_headers, _advisories, st.sampled_from(list(ResultCode)), st.none() | st.lists(_records, max_size=2),
       st.sampled_from([op.response_message for op in OPERATIONS.values()]))
def test_a_message_start_template_writes_every_value_where_the_builder_puts_it(header, advisories, result, records,
                                                                                local):
    gateway = build.GatewayIdentity()
    search = None if records is None else SearchOutcome(result, tuple(records), advisories, 2, True, 7)
    values = (result, advisories, header, 1234, NOW, search)
    shape = build._start_shape(local, advisories, header, search)
    direct = build._build_start(shape, gateway, lambda getter: getter(*values))
    assert etree.tostring(build._start(local, gateway, result, advisories, header, 1234, NOW, search)) == \
        etree.tostring(direct)
