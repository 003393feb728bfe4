"""Policy rules: agreement, purpose and query refusals, each naming the element, never the value."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from leis_gateway.domain import (
    Advisory,
    AdvisoryCategory,
    DomainAttribute,
    MessageHeader,
    Purpose,
    Query,
    QueryField,
    QueryMatch,
    QueryStatement,
    StructuredQueryBlock,
    StructuredSearchRequest,
    UserAssertion,
)
from leis_gateway.policy import query_fields
from leis_gateway.policy.agreements import load_registry
from leis_gateway.policy.rules import (
    Authorisation,
    authorise_query,
    authorise_search,
    check_agreement,
    check_purpose,
    query_categories,
)

DEMO_REGISTRY = Path(__file__).resolve().parent.parent / "fixtures" / "agreements.json"
TODAY = date(2025, 6, 1)
SECRET = "ZQXVALUE"  # a queried value that must never be echoed in an advisory

# Paths written out literally (not taken from the table), so a typo in the table fails here.
PERSON = ("EntityPerson", "Person")
SURNAME = PERSON + ("PersonName", "PersonSurName")
GIVEN = PERSON + ("PersonName", "PersonGivenName")
BIRTH = PERSON + ("PersonBirthDate", "Date")
SSN = PERSON + ("PersonSSNIdentification", "IdentificationID")
ADDRESS = ("EntityLocation", "Location", "LocationAddress")
FULL_ADDRESS = ADDRESS + ("AddressFullText",)
CITY = ADDRESS + ("StructuredAddress", "LocationCityName")

PERMITTED: list[tuple[tuple[str, ...], QueryField, str]] = [
    (PERSON + ("PersonName", "PersonFullName"), QueryField.FULL_NAME, "JOHN QUINCY DOE"),
    (GIVEN, QueryField.GIVEN_NAME, "JOHN"),
    (PERSON + ("PersonName", "PersonMiddleName"), QueryField.MIDDLE_NAME, "QUINCY"),
    (SURNAME, QueryField.SURNAME, "DOE"),
    (BIRTH, QueryField.BIRTH_DATE, "1975-04-12"),
    (SSN, QueryField.SSN, "900123456"),
    (PERSON + ("PersonPassportIdentification", "IdentificationID"), QueryField.PASSPORT, "X1234567"),
    (PERSON + ("PersonAugmentation", "AlienNumber", "IdentificationID"), QueryField.A_NUMBER, "A099000004"),
    (PERSON + ("PersonOtherIdentification", "IdentificationID"), QueryField.ENCOUNTER_ID, "ENC-2020-0001"),
    (
        PERSON + ("PersonAugmentation", "DriverLicense", "DriverLicenseIdentification", "IdentificationID"),
        QueryField.DRIVER_LICENSE,
        "D1234567",
    ),
    (FULL_ADDRESS, QueryField.FULL_ADDRESS, "100 Main St, Tucson AZ 85701"),
    (ADDRESS + ("StructuredAddress", "LocationStreet", "StreetNumberText"), QueryField.STREET_NUMBER, "100"),
    (ADDRESS + ("StructuredAddress", "LocationStreet", "StreetName"), QueryField.STREET_NAME, "Main St"),
    (ADDRESS + ("StructuredAddress", "AddressSecondaryUnitText"), QueryField.SECONDARY_UNIT, "APT 4"),
    (CITY, QueryField.CITY, "Tucson"),
    (ADDRESS + ("StructuredAddress", "LocationStateName"), QueryField.STATE, "AZ"),
    (ADDRESS + ("StructuredAddress", "LocationCountryName"), QueryField.COUNTRY, "US"),
    (ADDRESS + ("StructuredAddress", "LocationPostalCode"), QueryField.POSTAL_CODE, "85701"),
    (
        ("EntityTelephoneNumber", "TelephoneNumber", "FullTelephoneNumber", "TelephoneNumberFullID"),
        QueryField.PHONE,
        "5205551212",
    ),
    (("EntityActivity", "Activity", "ActivityIdentification", "IdentificationID"), QueryField.ACTIVITY_NUMBER, "TECS-0001"),
    (("EntityActivity", "Activity", "ActivityDescriptionText"), QueryField.ACTIVITY_DESCRIPTION, "smuggling"),
]


def stmt(path: tuple[str, ...], value: str, match: QueryMatch = QueryMatch.EXACT, line: int = 10) -> QueryStatement:
    return QueryStatement(path=path, value=value, match=match, line=line)


def search(*statements: QueryStatement, blocks: int = 1, payload: int = 0, max_items: int = 50,
           purposes: tuple[str, ...] = ("CriminalLawEnforcement",)) -> StructuredSearchRequest:
    block = StructuredQueryBlock(statements=statements, payload_statements=payload, line=5)
    return StructuredSearchRequest(
        header=MessageHeader("m-1", datetime(2025, 6, 1, 12, 0), "Org", "System"),
        user=UserAssertion(
            "user-1", "Org", attributes=tuple(DomainAttribute("LEIS", "SearchPurpose", p) for p in purposes)
        ),
        queries=tuple(StructuredQueryBlock(block.statements, block.payload_statements, 5 + 40 * i) for i in range(blocks)),
        max_items=max_items,
    )


def refused(outcome: object, category: AdvisoryCategory = AdvisoryCategory.BUSINESS_RULE_NOT_MET) -> str:
    assert isinstance(outcome, Advisory), outcome
    assert outcome.category == category, outcome
    assert SECRET not in outcome.text and SECRET.lower() not in outcome.text.lower()
    return outcome.text


@pytest.fixture(scope="module")
def registry():
    return load_registry(DEMO_REGISTRY)


# --- agreements ------------------------------------------------------------------------------


def test_active_two_way_and_one_way_agreements_may_search(registry) -> None:
    for agreement_id in ("ndex", "azlink", "tdex", "linx-nw", "linx-hr", "linx-ncr", "linx-socal",
                         "arjis", "lasd", "nlets"):
        assert check_agreement(registry.get(agreement_id), TODAY) is None, agreement_id


def test_unknown_agreement_is_refused() -> None:
    assert "no member agreement" in refused(check_agreement(None, TODAY))


def test_suspended_agreement_is_refused(registry) -> None:
    assert "'suspended-demo' is suspended" in refused(check_agreement(registry.get("suspended-demo"), TODAY))


def test_expired_agreement_is_refused_after_its_last_day(registry) -> None:
    expired = registry.get("expired-demo")
    assert check_agreement(expired, date(2024, 12, 31)) is None  # its last valid day
    assert "expired on 2024-12-31" in refused(check_agreement(expired, date(2025, 1, 1)))
    assert "expired" in refused(check_agreement(expired, datetime(2025, 1, 1, 0, 0)))


def test_internal_agreement_may_not_use_the_member_endpoint(registry) -> None:
    text = refused(check_agreement(registry.get("afi"), TODAY))
    assert "'afi'" in text and "internal" in text and "member endpoint" in text


def test_unknown_status_or_direction_fails_closed(registry) -> None:
    from dataclasses import replace

    ndex = registry.get("ndex")
    refused(check_agreement(replace(ndex, status="probation"), TODAY))
    refused(check_agreement(replace(ndex, direction="sideways"), TODAY))


# --- purposes --------------------------------------------------------------------------------


def user(*attributes: DomainAttribute) -> UserAssertion:
    return UserAssertion("user-1", "Org", attributes=attributes)


def purpose(value: str, domain: str = "LEIS") -> DomainAttribute:
    return DomainAttribute(domain, "SearchPurpose", value)


def test_each_known_allowed_purpose_is_accepted(registry) -> None:
    for p in Purpose:
        assert check_purpose(user(purpose(p.value)), registry.get("ndex")) is p


def test_missing_purpose_is_refused(registry) -> None:
    text = refused(check_purpose(user(), registry.get("ndex")))
    assert "SearchPurpose" in text and "LEIS" in text


def test_purpose_in_another_domain_counts_as_missing(registry) -> None:
    assert "No search purpose" in refused(
        check_purpose(user(purpose("CriminalLawEnforcement", domain="LEXS")), registry.get("ndex"))
    )


def test_unknown_purpose_is_refused_without_echoing_it(registry) -> None:
    text = refused(check_purpose(user(purpose(SECRET)), registry.get("ndex")))
    assert "not one of CriminalLawEnforcement, NationalSecurity, EmploymentBackgroundCheck" in text


def test_two_purposes_are_refused_even_if_equal(registry) -> None:
    for second in ("NationalSecurity", "CriminalLawEnforcement"):
        text = refused(check_purpose(user(purpose("CriminalLawEnforcement"), purpose(second)), registry.get("ndex")))
        assert "exactly one" in text


def test_purpose_not_allowed_by_the_agreement_is_refused(registry) -> None:
    text = refused(check_purpose(user(purpose("EmploymentBackgroundCheck")), registry.get("linx-nw")))
    assert "EmploymentBackgroundCheck is not permitted by agreement 'linx-nw'" in text
    assert "not permitted by agreement 'lasd'" in refused(check_purpose(user(purpose("NationalSecurity")), registry.get("lasd")))


def test_authorise_search_checks_agreement_then_purpose_then_query(registry) -> None:
    ok = authorise_search(registry.get("ndex"), search(stmt(SURNAME, "DOE")), TODAY)
    assert isinstance(ok, Authorisation) and ok.purpose is Purpose.CRIMINAL_LAW_ENFORCEMENT
    assert "suspended" in refused(authorise_search(registry.get("suspended-demo"), search(stmt(SURNAME, "DOE")), TODAY))
    assert "No search purpose" in refused(authorise_search(registry.get("ndex"), search(stmt(SURNAME, "DOE"), purposes=()), TODAY))


# --- query: what is permitted ------------------------------------------------------------------


def test_the_table_covers_every_query_field_once() -> None:
    fields = [rule.field for rule in query_fields.FIELD_RULES]
    assert sorted(fields) == sorted(QueryField) and len(set(fields)) == len(fields)
    assert {path for path, _, _ in PERMITTED} == set(query_fields.FIELDS_BY_PATH)


@pytest.mark.parametrize("path, field, value", PERMITTED, ids=[f.value for _, f, _ in PERMITTED])
def test_every_permitted_field_maps(path, field, value) -> None:
    anchor = () if field == QueryField.SURNAME else (stmt(SURNAME, "DOE", line=99),)
    query = authorise_query(search(stmt(path, value), *anchor))
    assert isinstance(query, Query), query
    assert query.criteria[0].field is field
    assert query.criteria[0].match is QueryMatch.EXACT


def test_values_are_normalised_for_the_sources() -> None:
    query = authorise_query(
        search(
            stmt(SSN, "900-12-3456"),
            stmt(PERSON + ("PersonAugmentation", "AlienNumber", "IdentificationID"), "a99000004"),
            stmt(SURNAME, "  DOE  "),
        )
    )
    assert isinstance(query, Query)
    assert [c.value for c in query.criteria] == ["900123456", "A099000004", "DOE"]


def test_several_categories_in_one_query_are_fine() -> None:
    query = authorise_query(
        search(stmt(SURNAME, "DOE"), stmt(GIVEN, "JOHN"), stmt(SSN, "900123456"), stmt(CITY, "Tucson"),
               stmt(("EntityActivity", "Activity", "ActivityIdentification", "IdentificationID"), "T-1"))
    )
    assert isinstance(query, Query)
    assert query_categories(query) == ("Name", "IdentifyingNumber", "Address", "Incident")
    assert query.max_items == 50


def test_match_modes_that_make_sense_are_honoured() -> None:
    query = authorise_query(
        search(
            stmt(SURNAME, "DO*", QueryMatch.WILDCARD),
            stmt(GIVEN, "JON", QueryMatch.FUZZY),
            stmt(BIRTH, "1970-01-01", QueryMatch.GE),
            stmt(BIRTH, "1979-12-31", QueryMatch.LT),
            stmt(CITY, "Tuc*", QueryMatch.WILDCARD),
        )
    )
    assert isinstance(query, Query)
    assert [c.match for c in query.criteria] == [
        QueryMatch.WILDCARD, QueryMatch.FUZZY, QueryMatch.GE, QueryMatch.LT, QueryMatch.WILDCARD]


def test_qualifiers_that_name_a_permitted_field_are_accepted() -> None:
    other = PERSON + ("PersonOtherIdentification",)
    query = authorise_query(
        search(stmt(other + ("IdentificationID",), "ENC-1"), stmt(other + ("IdentificationCategoryText",), "Encounter"))
    )
    assert isinstance(query, Query) and [c.field for c in query.criteria] == [QueryField.ENCOUNTER_ID]
    text = refused(
        authorise_query(search(stmt(other + ("IdentificationID",), "ENC-1"),
                               stmt(other + ("IdentificationCategoryText",), SECRET, line=17))),
        AdvisoryCategory.QUERY_FIELD_NOT_SUPPORTED,
    )
    assert "PersonOtherIdentification/IdentificationCategoryText (line 17)" in text


def test_wrapper_elements_above_the_digest_entity_are_ignored() -> None:
    query = authorise_query(search(stmt(("DigestQueryField",) + SURNAME, "DOE")))
    assert isinstance(query, Query) and query.criteria[0].field is QueryField.SURNAME


# --- query: refusals ---------------------------------------------------------------------------

REFUSALS = {
    "hair colour": (stmt(PERSON + ("PersonHairColorCode",), SECRET, line=21), "EntityPerson/Person/PersonHairColorCode (line 21)"),
    "vehicle": (
        stmt(("EntityVehicle", "Vehicle", "VehicleIdentification", "IdentificationID"), SECRET, line=22),
        "EntityVehicle/Vehicle/VehicleIdentification/IdentificationID (line 22)",
    ),
    "photo": (
        stmt(PERSON + ("PersonDigitalImage", "BinaryBase64Object"), SECRET, line=23),
        "EntityPerson/Person/PersonDigitalImage/BinaryBase64Object (line 23)",
    ),
    "alias": (stmt(PERSON + ("PersonAlternateName", "PersonSurName"), SECRET, line=24), "PersonAlternateName/PersonSurName (line 24)"),
    "sex": (stmt(PERSON + ("PersonSexCode",), SECRET, line=25), "PersonSexCode (line 25)"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_fields_outside_the_table_are_refused_by_name_and_line(name) -> None:
    statement, named = REFUSALS[name]
    text = refused(authorise_query(search(stmt(SURNAME, "DOE"), statement)), AdvisoryCategory.QUERY_FIELD_NOT_SUPPORTED)
    assert named in text and "not a queryable field" in text


def test_a_batch_of_structured_queries_never_runs() -> None:
    text = refused(authorise_query(search(stmt(SURNAME, SECRET), blocks=2)))
    assert "2 StructuredQuery blocks (lines 5, 45)" in text and "batch" in text


def test_structured_payload_statements_are_refused() -> None:
    text = refused(authorise_query(search(stmt(SURNAME, SECRET), payload=1)), AdvisoryCategory.QUERY_FIELD_NOT_SUPPORTED)
    assert "StructuredPayloadQueryStatement" in text and "line 5" in text


@pytest.mark.parametrize(
    "path, values, named",
    [
        (SURNAME, ("DOE", SECRET), "PersonName/PersonSurName (lines 10, 11)"),
        (SSN, ("900123456", "900123457"), "PersonSSNIdentification/IdentificationID (lines 10, 11)"),
        (FULL_ADDRESS, ("1 A St " + SECRET, "2 B St"), "LocationAddress/AddressFullText (lines 10, 11)"),
        (CITY, ("Tucson", "Phoenix"), "StructuredAddress/LocationCityName (lines 10, 11)"),
    ],
    ids=["two surnames", "two SSNs", "two addresses", "two cities"],
)
def test_two_values_of_one_field_describe_two_persons_and_are_refused(path, values, named) -> None:
    statements = [stmt(path, value, line=10 + i) for i, value in enumerate(values)]
    full_name = stmt(PERSON + ("PersonName", "PersonFullName"), "JOHN DOE", line=30)
    text = refused(authorise_query(search(*statements, full_name)))
    assert named in text and "one person" in text
    for value in values:
        assert value not in text


def test_birth_dates_only_twice_as_the_ends_of_one_range() -> None:
    assert "more than one birth date" in refused(authorise_query(search(stmt(SURNAME, "DOE"), stmt(BIRTH, "1975-04-12"), stmt(BIRTH, "1980-01-01"))))
    assert "more than one birth date" in refused(authorise_query(search(stmt(SURNAME, "DOE"), stmt(BIRTH, "1975-04-12", QueryMatch.GE), stmt(BIRTH, "1980-01-01", QueryMatch.GT))))
    assert "range is empty" in refused(authorise_query(search(stmt(SURNAME, "DOE"), stmt(BIRTH, "1980-01-01", QueryMatch.GE), stmt(BIRTH, "1975-01-01", QueryMatch.LE))))


@pytest.mark.parametrize(
    "path, value, match, category",
    [
        (SSN, "900123456", QueryMatch.FUZZY, AdvisoryCategory.FUZZY_MATCH_NOT_SUPPORTED),
        (SSN, "900*", QueryMatch.WILDCARD, AdvisoryCategory.WILDCARD_NOT_SUPPORTED),
        (BIRTH, "1975-04-12", QueryMatch.FUZZY, AdvisoryCategory.FUZZY_MATCH_NOT_SUPPORTED),
        (BIRTH, "1975*", QueryMatch.WILDCARD, AdvisoryCategory.WILDCARD_NOT_SUPPORTED),
        (SURNAME, "DOE", QueryMatch.GT, AdvisoryCategory.BUSINESS_RULE_NOT_MET),
        (CITY, "Tucson", QueryMatch.FUZZY, AdvisoryCategory.FUZZY_MATCH_NOT_SUPPORTED),
    ],
    ids=["fuzzy SSN", "wildcard SSN", "fuzzy birth date", "wildcard birth date", "range on surname", "fuzzy city"],
)
def test_match_modes_that_make_no_sense_are_refused(path, value, match, category) -> None:
    anchor = () if path == SURNAME else (stmt(SURNAME, "DOE", line=3),)
    text = refused(authorise_query(search(*anchor, stmt(path, value, match, line=12))), category)
    assert f"{'/'.join(path)} (line 12)" in text and f"'{match.value}'" in text
    assert value not in text


@pytest.mark.parametrize("value", ["*", "**", "?*", "D*", " * D", "*?"])
def test_bare_or_near_bare_wildcards_are_refused_as_batches(value) -> None:
    text = refused(authorise_query(search(stmt(SURNAME, value, QueryMatch.WILDCARD, line=14))))
    assert "PersonName/PersonSurName (line 14)" in text and "batch" in text


def test_wildcard_characters_need_the_wildcard_match() -> None:
    text = refused(authorise_query(search(stmt(SURNAME, "DO*" + SECRET, line=8))))
    assert "use 'wildcard'" in text


def test_malformed_and_empty_values_are_refused_without_echo() -> None:
    assert "not a well-formed SSN" in refused(authorise_query(search(stmt(SURNAME, "DOE"), stmt(SSN, SECRET))))
    assert "not a well-formed birth date" in refused(authorise_query(search(stmt(SURNAME, "DOE"), stmt(BIRTH, "1975-13-45" + SECRET))))
    assert "value is empty" in refused(authorise_query(search(stmt(SURNAME, "   "))))


def test_an_empty_query_is_refused() -> None:
    assert "no StructuredQuery" in refused(authorise_query(search(blocks=0)))
    assert "queries no field" in refused(authorise_query(search()))


def test_a_query_that_pins_nobody_down_is_refused_as_a_batch_in_disguise() -> None:
    for statements in (
        (stmt(CITY, "Tucson"),),
        (stmt(GIVEN, "JOHN"),),
        (stmt(BIRTH, "1975-04-12"),),
        (stmt(ADDRESS + ("StructuredAddress", "LocationStateName"), "AZ"),),
    ):
        assert "pins no person" in refused(authorise_query(search(*statements)))
    assert isinstance(authorise_query(search(stmt(GIVEN, "JOHN"), stmt(BIRTH, "1975-04-12"))), Query)


def test_max_items_must_be_positive() -> None:
    assert "MaxItemMatches" in refused(authorise_query(search(stmt(SURNAME, "DOE"), max_items=0)))
