"""Release profiles on the demo subjects of DESIGN.md, getDataItem and getAttachment."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from leis_gateway.domain import (
    Address,
    Criterion,
    Incident,
    PersonDetails,
    PersonRole,
    ProtectedClass,
    Query,
    QueryField,
    RecordStatus,
    RestrictionCategory,
    SourceRecord,
    SourceSystem,
)
from leis_gateway.policy.agreements import load_registry
from leis_gateway.release.profiles import ProfileError, ReleaseProfile
from leis_gateway.release.release import authorise_attachment, release, release_single
from leis_gateway.release.tokens import ItemTokens, TokenKind

DEMO_REGISTRY = Path(__file__).resolve().parent.parent / "fixtures" / "agreements.json"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
ACTIVE = ("ndex", "azlink", "tdex", "linx-nw", "linx-hr", "linx-ncr", "linx-socal", "arjis", "lasd", "nlets")
BY_SURNAME = Query((Criterion(QueryField.SURNAME, "DOE"),))

S1 = SourceRecord(
    source=SourceSystem.TECS, record_id="TS-DEMO-S1", owner="CBP", kind="subject",
    status=RecordStatus.CLOSED, role=PersonRole.SUSPECT,
    person=PersonDetails(
        given_name="JOHN", middle_name="QUINCY", surname="DOE", birth_date=date(1975, 4, 12),
        height_inches=70, weight_pounds=180, eye_color="BRO", hair_color="BLK",
        birthplace_country="MX", ssn="900123456", sex="M", race="W",
    ),
    address=Address("100", "Main St", None, "Tucson", "AZ", "85701", "US", "5205550100"),
    incident=Incident("TC201900000101", "Undeclared currency", date(2019, 3, 2)),
    narrative="Subject declared travel for work.",
)
S2 = replace(S1, record_id="TS-DEMO-S2", status=RecordStatus.OPEN,
             person=PersonDetails(given_name="JOHN", surname="DOE", birth_date=date(1980, 1, 1)), address=None)
S3 = replace(S1, record_id="TS-DEMO-S3", role=PersonRole.VICTIM,
             person=PersonDetails(given_name="JANE", surname="ROE", birth_date=date(1979, 7, 7)),
             protected_classes=frozenset({ProtectedClass.VICTIM_OR_WITNESS}))
S4 = SourceRecord(
    source=SourceSystem.EID, record_id="EA-DEMO-S4", owner="ICE", kind="arrest",
    status=RecordStatus.CLOSED, role=PersonRole.ARRESTEE,
    person=PersonDetails(given_name="MARIA", middle_name="ELENA", surname="GARCIA", birth_date=date(1988, 9, 30),
                         a_number="A099000004", encounter_id="EN2021000000004"),
    photo_id="OB-DEMO-S4",
)
S5 = SourceRecord(
    source=SourceSystem.EID, record_id="EP-DEMO-S5", owner="ICE", kind="person",
    status=RecordStatus.CLOSED, role=PersonRole.SUBJECT,
    person=PersonDetails(given_name="AHMED", surname="KARIMI", birth_date=date(1990, 1, 15)),
    protected_classes=frozenset({ProtectedClass.ASYLUM_SEEKER}),
)
S6 = replace(S1, record_id="TS-DEMO-S6",
             person=PersonDetails(given_name="VICTOR", surname="SLATE", birth_date=date(1969, 3, 3)),
             restrictions=frozenset({RestrictionCategory.UNDERCOVER_OPERATION}))
S7 = SourceRecord(
    source=SourceSystem.EID, record_id="EA-DEMO-S7", owner="ICE", kind="arrest",
    status=RecordStatus.CLOSED, role=PersonRole.ARRESTEE,
    person=PersonDetails(given_name="LI", middle_name="WEI", surname="CHEN", birth_date=date(1992, 11, 11)),
    incident=Incident("EV202200000007", "Fugitive operations CANARY-NARRATIVE"),
    narrative="Arrest narrative CANARY-NARRATIVE: subject encountered at residence.",
)
DEMO = (S1, S2, S3, S4, S5, S6, S7)


@pytest.fixture(scope="module")
def registry():
    return load_registry(DEMO_REGISTRY)


@pytest.fixture(scope="module")
def tokens():
    return ItemTokens(b"k" * 32, timedelta(hours=1))


def released_ids(result) -> set[str]:
    return {d.record_id for d in result.disclosures}


def run(registry, tokens, agreement_id, records=DEMO, query=BY_SURNAME, now=NOW):
    agreement = registry.get(agreement_id)
    return release(records, query, agreement, registry.profile_for(agreement), tokens, now)


@pytest.mark.parametrize("agreement_id", ACTIVE)
def test_demo_subjects_per_agreement(registry, tokens, agreement_id) -> None:
    result = run(registry, tokens, agreement_id)
    expected = {"TS-DEMO-S1", "EA-DEMO-S4", "EA-DEMO-S7"} | ({"EP-DEMO-S5"} if agreement_id != "nlets" else set())
    assert released_ids(result) == expected
    assert result.withheld == len(DEMO) - len(expected)
    assert "CANARY" not in repr(result.records)


def test_s1_is_released_with_exactly_the_allowlisted_elements(registry, tokens) -> None:
    record = run(registry, tokens, "ndex", (S1,)).records[0]
    person = record.person
    assert (person.given_name, person.middle_name, person.surname, person.birth_date) == ("JOHN", "QUINCY", "DOE", date(1975, 4, 12))
    assert (person.height_inches, person.weight_pounds, person.eye_color, person.hair_color, person.birthplace_country) == (70, 180, "BRO", "BLK", "MX")
    assert person.identifiers == ()  # SSN not asked: not released
    assert record.address == Address("100", "Main St", None, "Tucson", "AZ", "85701", "US", None)  # no phone unless asked
    assert record.attachment_uri is None and record.owner == "CBP" and record.source is SourceSystem.TECS
    assert "TS-DEMO-S1" not in record.item_id and "900123456" not in repr(record)
    assert set(record.disclosed_elements) == {
        "person.given_name", "person.middle_name", "person.surname", "person.birth_date", "person.height_inches",
        "person.weight_pounds", "person.eye_color", "person.hair_color", "person.birthplace_country",
        "address.street_number", "address.street_name", "address.city", "address.state", "address.postal_code",
        "address.country"}


def test_only_queried_identifiers_and_phone_leave(registry, tokens) -> None:
    query = Query((Criterion(QueryField.SSN, "900123456"), Criterion(QueryField.PHONE, "5205550100")))
    record = run(registry, tokens, "ndex", (S1,), query).records[0]
    assert record.person.identifiers == ((QueryField.SSN, "900123456"),)
    assert record.address.phone == "5205550100"
    s4 = run(registry, tokens, "ndex", (S4,), Query((Criterion(QueryField.A_NUMBER, "A099000004"),))).records[0]
    assert s4.person.identifiers == ((QueryField.A_NUMBER, "A099000004"),)  # not the encounter id


def test_s4_carries_an_attachment_link_bound_to_its_agreement(registry, tokens) -> None:
    record = run(registry, tokens, "ndex", (S4,)).records[0]
    assert record.attachment_uri.startswith("urn:leis:attachment:") and "OB-DEMO-S4" not in record.attachment_uri
    ref = tokens.open_attachment_uri(record.attachment_uri, "ndex", NOW)
    assert (ref.kind, ref.photo_id, ref.record_key) == (TokenKind.ATTACHMENT, "OB-DEMO-S4", "EID:EA-DEMO-S4")
    assert tokens.open_attachment_uri(record.attachment_uri, "azlink", NOW) is None
    assert tokens.open_attachment_uri(record.attachment_uri, "ndex", NOW + timedelta(hours=2)) is None
    assert tokens.open(record.item_id, "ndex", NOW, TokenKind.ATTACHMENT) is None  # an item id is no attachment

    ndex = registry.get("ndex")
    disclosure = authorise_attachment(ref, S4, ndex, registry.profile_for(ndex), NOW)
    assert (disclosure.agreement_id, disclosure.record_id, disclosure.elements) == ("ndex", "EA-DEMO-S4", ("attachment.photo",))
    # the same profile applies again: a record that became unreleasable takes its photo with it
    assert authorise_attachment(ref, replace(S4, status=RecordStatus.OPEN), ndex, registry.profile_for(ndex), NOW) is None
    assert authorise_attachment(ref, replace(S4, photo_id="OB-OTHER"), ndex, registry.profile_for(ndex), NOW) is None
    lasd = registry.get("lasd")
    assert authorise_attachment(ref, S4, lasd, registry.profile_for(lasd), NOW) is None


def test_get_data_item_applies_the_same_profile_and_identifiers(registry, tokens) -> None:
    query = Query((Criterion(QueryField.SSN, "900123456"),))
    searched = run(registry, tokens, "ndex", (S1,), query).records[0]
    ndex = registry.get("ndex")
    ref = tokens.open(searched.item_id, "ndex", NOW, TokenKind.ITEM)
    assert ref.record_key == "TECS:TS-DEMO-S1" and ref.fields == ("SSN",)

    later = NOW + timedelta(minutes=5)
    again = release_single(S1, ref, ndex, registry.profile_for(ndex), tokens, later)
    assert len(again.records) == 1 and again.records[0].person.identifiers == searched.person.identifiers
    assert again.disclosures[0].elements == searched.disclosed_elements
    assert tokens.open(again.records[0].item_id, "ndex", later).expires_at == ref.expires_at  # deadline kept

    assert tokens.open(searched.item_id, "azlink", NOW) is None  # another agreement's id
    assert release_single(replace(S1, status=RecordStatus.OPEN), ref, ndex, registry.profile_for(ndex), tokens, later).records == ()
    assert release_single(S2, ref, ndex, registry.profile_for(ndex), tokens, later).records == ()  # not the named record
    azlink = registry.get("azlink")
    assert release_single(S1, ref, azlink, registry.profile_for(azlink), tokens, later).records == ()


def test_nothing_leaves_to_an_agreement_that_may_not_receive(registry, tokens) -> None:
    for agreement_id in ("suspended-demo", "expired-demo", "afi"):
        assert run(registry, tokens, agreement_id).records == ()
    ndex = registry.get("ndex")
    wrong_profile = registry.profiles["no-protected-classes"]
    assert release(DEMO, BY_SURNAME, ndex, wrong_profile, tokens, NOW).records == ()
    assert release(DEMO, BY_SURNAME, ndex, None, tokens, NOW).records == ()


def test_a_narrowed_profile_releases_less(registry, tokens) -> None:
    narrow = ReleaseProfile("names-only", elements=frozenset({"person.surname", "person.given_name"}),
                            sources=frozenset({SourceSystem.EID}))
    agreement = replace(registry.get("ndex"), release_profile="names-only")
    result = release(DEMO, BY_SURNAME, agreement, narrow, tokens, NOW)
    assert released_ids(result) == {"EA-DEMO-S4", "EP-DEMO-S5", "EA-DEMO-S7"}
    for record in result.records:
        assert set(record.disclosed_elements) == {"person.surname", "person.given_name"} and record.attachment_uri is None


def test_a_profile_can_never_widen_the_allowlist() -> None:
    with pytest.raises(ProfileError):
        ReleaseProfile("wide", elements=frozenset({"person.surname", "narrative"}))
    with pytest.raises(ProfileError):
        ReleaseProfile("wide", sources=frozenset({SourceSystem.OBIM}))


def test_values_that_are_not_shaped_like_their_element_are_withheld(registry, tokens) -> None:
    smuggled = replace(S1, person=replace(S1.person, surname="DOE. Informant says: meet at 5pm\nCANARY", eye_color="brown eyes"))
    record = run(registry, tokens, "ndex", (smuggled,)).records[0]
    assert record.person.surname is None and record.person.eye_color is None
    assert "person.surname" not in record.disclosed_elements and "CANARY" not in repr(record)


def test_duplicates_are_released_once(registry, tokens) -> None:
    assert len(run(registry, tokens, "ndex", (S1, S1)).records) == 1
