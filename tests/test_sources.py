"""The source adapters over a small demo build: every match mode, the demo subjects, the builder."""
from __future__ import annotations

import dataclasses
import io
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.orm import Session

from leis_gateway.domain import (
    Criterion,
    PersonRole,
    ProtectedClass,
    Query,
    QueryField,
    QueryMatch,
    RecordStatus,
    RestrictionCategory,
    SourceRecord,
    SourceSystem,
)
from leis_gateway.sources import PhotoStore, PrimeHub, SourceAdapter, open_hub, source_paths
from leis_gateway.sources.demo import DEMO_SUBJECTS, build_demo_sources
from leis_gateway.sources import base, matching, statements
from leis_gateway.sources.matching import combined_score, compile_query, select_matches
from leis_gateway.sources.records import to_source_record

F, M = QueryField, QueryMatch
PEOPLE = 200


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("leis-home")
    assert build_demo_sources(home, people=PEOPLE) is True
    return home


@pytest.fixture(scope="module")
def hub(home: Path):
    with open_hub(home) as hub:
        yield hub


def c(field: QueryField, value: str, match: QueryMatch = M.EXACT) -> Criterion:
    return Criterion(field, value, match)


def search(hub: PrimeHub, *criteria: Criterion, limit: int = 1000) -> dict[SourceSystem, list[SourceRecord]]:
    query = Query(tuple(criteria))
    return {adapter.system: adapter.search(query, limit) for adapter in hub.adapters}


def ids(records: list[SourceRecord]) -> list[str]:
    return [r.record_id for r in records]


def found(hub: PrimeHub, *criteria: Criterion, limit: int = 1000) -> set[str]:
    return {r.record_id for records in search(hub, *criteria, limit=limit).values() for r in records}


S = {key: subject.record_id for key, subject in DEMO_SUBJECTS.items()}


# --- the hub ----------------------------------------------------------------------------


def test_hub_holds_tecs_and_eid_and_photos(hub: PrimeHub) -> None:
    assert [a.system for a in hub.adapters] == [SourceSystem.TECS, SourceSystem.EID]
    assert [a.owner for a in hub.adapters] == ["CBP", "ICE"]
    assert all(isinstance(a, SourceAdapter) for a in hub.adapters)
    assert isinstance(hub.photos, PhotoStore)
    assert all(a.ping() for a in hub.adapters)
    assert hub.adapter(SourceSystem.EID) is hub.adapters[1]


def test_open_hub_without_databases_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="init"):
        open_hub(tmp_path)


def test_hub_databases_are_read_only(hub: PrimeHub) -> None:
    adapter = hub.adapter(SourceSystem.TECS)
    with pytest.raises(Exception, match="readonly"):
        with adapter._engine.begin() as connection:  # type: ignore[union-attr]
            connection.execute(text("DELETE FROM tecs_subject_record"))


# --- demo subjects, as held ---------------------------------------------------------------


def test_s1_is_held_with_everything(hub: PrimeHub) -> None:
    record = hub.adapter(SourceSystem.TECS).fetch(S["S1"])
    assert record is not None and record.score == 100
    assert (record.source, record.owner, record.kind) == (SourceSystem.TECS, "CBP", "subject")
    assert (record.status, record.role) == (RecordStatus.CLOSED, PersonRole.SUSPECT)
    p = record.person
    assert (p.given_name, p.middle_name, p.surname) == ("JOHN", "QUINCY", "DOE")
    assert p.birth_date.isoformat() == "1975-04-12"
    assert (p.ssn, p.height_inches, p.weight_pounds, p.eye_color, p.hair_color, p.birthplace_country) == (
        "900123456", 70, 180, "BRO", "BLK", "MX"
    )
    a = record.address
    assert a is not None
    assert (a.street_number, a.street_name, a.city, a.state, a.postal_code, a.country) == (
        "100", "Main St", "Tucson", "AZ", "85701", "US"
    )
    assert record.incident is not None and record.incident.activity_number
    assert not record.restrictions and not record.protected_classes


def test_every_demo_subject_is_held_as_designed(hub: PrimeHub) -> None:
    held = {key: hub.adapter(s.source).fetch(s.record_id) for key, s in DEMO_SUBJECTS.items()}
    assert all(held.values())
    s2, s3, s4, s5, s6, s7 = (held[k] for k in ("S2", "S3", "S4", "S5", "S6", "S7"))
    assert (s2.status, s2.role, s2.person.surname, str(s2.person.birth_date)) == (RecordStatus.OPEN, PersonRole.SUSPECT, "DOE", "1980-01-01")
    assert (s3.status, s3.role, s3.person.surname, str(s3.person.birth_date)) == (RecordStatus.CLOSED, PersonRole.VICTIM, "ROE", "1979-07-07")
    assert (s4.source, s4.kind, s4.status, s4.role) == (SourceSystem.EID, "arrest", RecordStatus.CLOSED, PersonRole.ARRESTEE)
    assert (s4.person.given_name, s4.person.middle_name, s4.person.surname) == ("MARIA", "ELENA", "GARCIA")
    assert (str(s4.person.birth_date), s4.person.a_number, s4.photo_id) == ("1988-09-30", "A099000004", DEMO_SUBJECTS["S4"].photo_id)
    assert s5.protected_classes == {ProtectedClass.ASYLUM_SEEKER}
    assert (s5.person.given_name, s5.person.surname, str(s5.person.birth_date)) == ("AHMED", "KARIMI", "1990-01-15")
    assert (s5.status, s5.role) == (RecordStatus.CLOSED, PersonRole.SUBJECT)
    assert s6.restrictions == {RestrictionCategory.UNDERCOVER_OPERATION}
    assert (s6.status, s6.role, s6.person.surname, str(s6.person.birth_date)) == (RecordStatus.CLOSED, PersonRole.SUSPECT, "SLATE", "1969-03-03")
    assert "CANARY-NARRATIVE" in (s7.narrative or "")
    assert (s7.person.given_name, s7.person.middle_name, s7.person.surname, str(s7.person.birth_date)) == ("LI", "WEI", "CHEN", "1992-11-11")
    assert hub.adapter(SourceSystem.TECS).fetch("no-such-record") is None


def test_adapters_return_what_release_must_withhold(hub: PrimeHub) -> None:
    """Filtering is the release layer's job: open, victim, restricted and narrative records come back."""
    assert S["S2"] in found(hub, c(F.FULL_NAME, "JOHN DOE"), c(F.BIRTH_DATE, "1980-01-01"))
    assert S["S3"] in found(hub, c(F.SURNAME, "ROE"), c(F.BIRTH_DATE, "1979-07-07"))
    assert S["S6"] in found(hub, c(F.FULL_NAME, "VICTOR SLATE"))
    [s7] = search(hub, c(F.FULL_NAME, "LI WEI CHEN"), c(F.BIRTH_DATE, "1992-11-11"))[SourceSystem.EID]
    assert "CANARY-NARRATIVE" in (s7.narrative or "")
    [s5] = search(hub, c(F.SURNAME, "KARIMI"))[SourceSystem.EID]
    assert s5.protected_classes == {ProtectedClass.ASYLUM_SEEKER}


def test_demo_identifiers_and_names_are_unique_to_the_demo_subjects(hub: PrimeHub) -> None:
    assert found(hub, c(F.SSN, "900123456")) == {S["S1"]}
    assert found(hub, c(F.A_NUMBER, "A099000004")) == {S["S4"]}
    for key, (full_name, born) in {
        "S1": ("JOHN DOE", "1975-04-12"), "S2": ("JOHN DOE", "1980-01-01"), "S3": ("JANE ROE", "1979-07-07"),
        "S4": ("MARIA GARCIA", "1988-09-30"), "S5": ("AHMED KARIMI", "1990-01-15"),
        "S6": ("VICTOR SLATE", "1969-03-03"), "S7": ("LI CHEN", "1992-11-11"),
    }.items():
        assert found(hub, c(F.FULL_NAME, full_name), c(F.BIRTH_DATE, born)) == {S[key]}, key
    # Only the demo subjects carry the demo surnames.
    assert found(hub, c(F.SURNAME, "DOE")) == {S["S1"], S["S2"]}


# --- exact --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "criteria",
    [
        [c(F.FULL_NAME, "JOHN QUINCY DOE"), c(F.BIRTH_DATE, "1975-04-12")],
        [c(F.FULL_NAME, "john  quincy doe"), c(F.BIRTH_DATE, "04/12/1975")],
        [c(F.FULL_NAME, "Doe, John Quincy")],
        [c(F.FULL_NAME, "JOHN Q DOE")],
        [c(F.GIVEN_NAME, "John"), c(F.MIDDLE_NAME, "Quincy"), c(F.SURNAME, "DOE."), c(F.BIRTH_DATE, "19750412")],
        [c(F.SSN, "900-12-3456")],
        [c(F.SSN, "900123456")],
        [c(F.SSN, " 900 12 3456 ")],
        [c(F.FULL_ADDRESS, "100 Main St, Tucson AZ 85701")],
        [c(F.FULL_ADDRESS, "100 MAIN STREET TUCSON ARIZONA 85701-0001")],
        [c(F.FULL_ADDRESS, "100 main st., tucson, az")],
        [c(F.STREET_NUMBER, "100"), c(F.STREET_NAME, "Main Street"), c(F.CITY, "tucson")],
        [c(F.POSTAL_CODE, "85701"), c(F.SURNAME, "DOE")],
        [c(F.PHONE, "(520) 555-0100")],
        [c(F.PHONE, "+1 520 555 0100")],
        [c(F.STATE, "Arizona"), c(F.COUNTRY, "USA"), c(F.SURNAME, "DOE")],
        [c(F.ACTIVITY_NUMBER, "tc-2019-00000101")],
    ],
    ids=lambda criteria: " & ".join(f"{x.field}={x.value}" for x in criteria),
)
def test_s1_found_exactly(hub: PrimeHub, criteria: list[Criterion]) -> None:
    results = search(hub, *criteria)
    assert ids(results[SourceSystem.TECS]) == [S["S1"]]
    assert results[SourceSystem.TECS][0].score in (100, 95)  # 95: middle initial
    assert results[SourceSystem.EID] == []


def test_s1_found_by_postal_code_among_others(hub: PrimeHub) -> None:
    records = search(hub, c(F.POSTAL_CODE, "85701"))[SourceSystem.TECS]
    assert S["S1"] in ids(records)
    assert all(r.address and r.address.postal_code == "85701" for r in records)
    assert all(r.score == 100 for r in records)


def test_s4_found_by_a_number_in_any_spelling(hub: PrimeHub) -> None:
    for spelling in ("A099000004", "a-099-000-004", "099000004", "A99000004", "99000004"):
        results = search(hub, c(F.A_NUMBER, spelling))
        assert ids(results[SourceSystem.EID]) == [S["S4"]], spelling
        assert results[SourceSystem.TECS] == []  # TECS holds no A-numbers


def test_s4_booking_photo_is_a_real_jpeg(hub: PrimeHub) -> None:
    [s4] = search(hub, c(F.A_NUMBER, "A099000004"))[SourceSystem.EID]
    photo = hub.photos.photo(s4.photo_id or "")
    assert photo is not None and photo.content_type == "image/jpeg"
    assert photo.photo_id == s4.photo_id
    image = Image.open(io.BytesIO(photo.data))
    assert (image.format, image.size) == ("JPEG", (120, 160))
    image.verify()
    assert hub.photos.photo("OB-NOPE") is None


def test_some_crowd_arrestees_have_photos(hub: PrimeHub) -> None:
    records = search(hub, c(F.STATE, "AZ"))[SourceSystem.EID]
    with_photo = [r for r in records if r.photo_id and not r.record_id.endswith("S4")]
    assert with_photo and all(r.kind == "arrest" for r in with_photo)
    photo = hub.photos.photo(with_photo[0].photo_id or "")
    assert photo is not None and Image.open(io.BytesIO(photo.data)).format == "JPEG"


def test_criteria_and_together(hub: PrimeHub) -> None:
    assert found(hub, c(F.FULL_NAME, "JOHN QUINCY DOE"), c(F.BIRTH_DATE, "1975-04-13")) == set()
    assert found(hub, c(F.SSN, "900123456"), c(F.SURNAME, "ROE")) == set()
    assert found(hub, c(F.FULL_NAME, "JOHN QUINCY DOE")) == {S["S1"]}  # S2 has no middle name
    assert found(hub, c(F.FULL_NAME, "JOHN DOE")) == {S["S1"], S["S2"]}


def test_a_field_a_source_does_not_hold_empties_that_source_only(hub: PrimeHub) -> None:
    results = search(hub, c(F.ENCOUNTER_ID, "EN2021000000004"))
    assert results[SourceSystem.TECS] == []
    assert ids(results[SourceSystem.EID]) == [S["S4"]]
    assert search(hub, c(F.SURNAME, "GARCIA"), c(F.A_NUMBER, "A099000004"))[SourceSystem.TECS] == []


def test_meaningless_criteria_match_nothing_without_error(hub: PrimeHub) -> None:
    for criteria in (
        [c(F.SSN, "900123456", M.GT)],
        [c(F.SURNAME, "DOE", M.LT)],
        [c(F.BIRTH_DATE, "not a date")],
        [c(F.BIRTH_DATE, "19*5", M.WILDCARD)],
        [c(F.SURNAME, "***", M.WILDCARD)],
        [c(F.FULL_NAME, " ,")],
        [c(F.FULL_ADDRESS, "")],
        [],
    ):
        assert found(hub, *criteria) == set(), criteria
    assert all(r == [] for r in search(hub, c(F.SURNAME, "DOE"), limit=0).values())


def test_activity_description_is_a_contains_match_on_words(hub: PrimeHub) -> None:
    records = search(hub, c(F.ACTIVITY_DESCRIPTION, "undeclared CURRENCY"))[SourceSystem.TECS]
    assert S["S1"] in ids(records)
    assert all("CURRENCY" in (r.incident.description or "").upper() for r in records if r.incident)
    assert S["S1"] in found(hub, c(F.ACTIVITY_DESCRIPTION, "undecl curr"), c(F.SURNAME, "DOE"))
    assert S["S4"] in found(hub, c(F.ACTIVITY_DESCRIPTION, "overstay"), c(F.SURNAME, "GARCIA"))
    # The narrative is never searched.
    assert found(hub, c(F.ACTIVITY_DESCRIPTION, "CANARY-NARRATIVE")) == set()


# --- fuzzy --------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["DOH", "DOUGH", "DOE"])
def test_fuzzy_surname_finds_doe(hub: PrimeHub, spelling: str) -> None:
    records = search(hub, c(F.SURNAME, spelling, M.FUZZY))[SourceSystem.TECS]
    top = records[:2]
    assert {r.record_id for r in top} == {S["S1"], S["S2"]}
    expected = 100 if spelling == "DOE" else None
    for record in top:
        assert record.person.surname == "DOE"
        assert record.score == expected if expected else 80 <= record.score < 100
    assert [r.score for r in records] == sorted((r.score for r in records), reverse=True)
    assert all(r.score < top[-1].score for r in records[2:])


def test_nickname_finds_formal_name(hub: PrimeHub) -> None:
    records = search(hub, c(F.GIVEN_NAME, "JOHNNY", M.FUZZY), c(F.SURNAME, "DOE"))[SourceSystem.TECS]
    assert {r.record_id for r in records} == {S["S1"], S["S2"]}
    assert all(80 <= r.score < 100 for r in records)
    assert S["S1"] in found(hub, c(F.FULL_NAME, "JACK DOE", M.FUZZY), c(F.BIRTH_DATE, "1975-04-12"))
    assert S["S4"] in found(hub, c(F.FULL_NAME, "MARY GARSIA", M.FUZZY), c(F.BIRTH_DATE, "1988-09-30"))


def test_fuzzy_scores_below_exact(hub: PrimeHub) -> None:
    everything = hub.adapter(SourceSystem.EID).search(Query((c(F.SURNAME, "GARSIA", M.FUZZY),)), 1000)
    assert everything and all(80 <= r.score < 100 for r in everything)


@pytest.mark.parametrize(
    "criteria",
    [
        [c(F.SURNAME, "GARSIA", M.FUZZY)],
        [c(F.FULL_NAME, "MARY ELENA GARSIA", M.FUZZY)],
        [c(F.FULL_NAME, "JON SMYTH", M.FUZZY)],
        [c(F.GIVEN_NAME, "MARIA", M.FUZZY), c(F.BIRTH_DATE, "1988-09-30", M.FUZZY)],
        [c(F.SURNAME, "GARC*", M.WILDCARD), c(F.GIVEN_NAME, "MARY", M.FUZZY)],
    ],
)
@pytest.mark.parametrize("system", [SourceSystem.TECS, SourceSystem.EID])
def test_the_database_orders_as_the_scores_do(hub: PrimeHub, system: SourceSystem, criteria: list[Criterion]) -> None:
    """SQL picks the best rows before the limit: a smaller limit is a prefix of a larger one."""
    adapter = hub.adapter(system)
    query = Query(tuple(criteria))
    everything = adapter.search(query, 1000)
    assert [r.score for r in everything] == sorted((r.score for r in everything), reverse=True)
    for limit in (1, 3, 7):
        assert [(r.record_id, r.score) for r in adapter.search(query, limit)] == [
            (r.record_id, r.score) for r in everything[:limit]
        ]


def test_fuzzy_birth_date_allows_common_slips(hub: PrimeHub) -> None:
    for slip in ("1975-12-04", "1974-04-12", "1976-04-12"):
        [record] = search(hub, c(F.SURNAME, "DOE"), c(F.BIRTH_DATE, slip, M.FUZZY))[SourceSystem.TECS]
        assert record.record_id == S["S1"] and record.score == 80
    [record] = search(hub, c(F.SURNAME, "DOE"), c(F.BIRTH_DATE, "1975-04-12", M.FUZZY))[SourceSystem.TECS]
    assert record.score == 100


def test_fuzzy_on_a_number_is_the_same_number_however_written(hub: PrimeHub) -> None:
    assert found(hub, c(F.SSN, "900 12 3456", M.FUZZY)) == {S["S1"]}


# --- wildcard -----------------------------------------------------------------------------


def test_wildcard_surname(hub: PrimeHub) -> None:
    results = search(hub, c(F.SURNAME, "GARC*", M.WILDCARD))
    eid = results[SourceSystem.EID]
    assert S["S4"] in ids(eid)
    everyone = eid + results[SourceSystem.TECS]
    assert all((r.person.surname or "").startswith("GARC") for r in everyone)
    assert all(r.score == 90 for r in everyone)
    assert {r.person.surname for r in everyone} > {"GARCIA"}  # GARCES, GARCIAS too
    assert {r.person.surname for r in search(hub, c(F.SURNAME, "garci?", M.WILDCARD))[SourceSystem.EID]} == {"GARCIA"}
    assert S["S4"] in found(hub, c(F.FULL_NAME, "MAR* GARC*", M.WILDCARD), c(F.BIRTH_DATE, "1988-09-30"))


def test_wildcard_on_numbers_and_dates(hub: PrimeHub) -> None:
    assert found(hub, c(F.SSN, "900-12-34*", M.WILDCARD)) == {S["S1"]}
    assert found(hub, c(F.A_NUMBER, "A0990000?4", M.WILDCARD)) == {S["S4"]}
    assert found(hub, c(F.SURNAME, "DOE"), c(F.BIRTH_DATE, "1975*", M.WILDCARD)) == {S["S1"]}
    assert found(hub, c(F.SURNAME, "DOE"), c(F.BIRTH_DATE, "1980-01*", M.WILDCARD)) == {S["S2"]}


# --- birth-date ranges --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bounds, expected",
    [
        ([("1975-04-12", M.GE)], {"S1", "S2"}),
        ([("1975-04-12", M.GT)], {"S2"}),
        ([("1980-01-01", M.LT)], {"S1"}),
        ([("1980-01-01", M.LE)], {"S1", "S2"}),
        ([("1975-01-01", M.GE), ("1975-12-31", M.LE)], {"S1"}),
        ([("1975-04-12", M.GT), ("1980-01-01", M.LT)], set()),
    ],
)
def test_birth_date_ranges(hub: PrimeHub, bounds: list[tuple[str, QueryMatch]], expected: set[str]) -> None:
    criteria = [c(F.BIRTH_DATE, day, match) for day, match in bounds]
    assert found(hub, c(F.SURNAME, "DOE"), *criteria) == {S[k] for k in expected}


def test_birth_date_range_alone_spans_both_sources(hub: PrimeHub) -> None:
    results = search(hub, c(F.BIRTH_DATE, "1988-09-01", M.GE), c(F.BIRTH_DATE, "1988-10-31", M.LE))
    assert S["S4"] in ids(results[SourceSystem.EID])
    for record in results[SourceSystem.TECS] + results[SourceSystem.EID]:
        assert "1988-09-01" <= str(record.person.birth_date) <= "1988-10-31"


# --- the database does the work -----------------------------------------------------------

_PLANNED_QUERIES = [
    [c(F.FULL_NAME, "JOHN QUINCY DOE"), c(F.BIRTH_DATE, "1975-04-12")],
    [c(F.GIVEN_NAME, "JOHN")],
    [c(F.MIDDLE_NAME, "QUINCY")],
    [c(F.SURNAME, "DOH", M.FUZZY)],
    [c(F.GIVEN_NAME, "JOHNNY", M.FUZZY)],
    [c(F.SURNAME, "GARC*", M.WILDCARD)],
    [c(F.SURNAME, "GARZ?", M.WILDCARD)],
    [c(F.SSN, "9001299*", M.WILDCARD)],
    [c(F.BIRTH_DATE, "1975-01-01", M.GE), c(F.BIRTH_DATE, "1975-12-31", M.LE)],
    [c(F.BIRTH_DATE, "1975-04-12", M.FUZZY)],
    [c(F.SSN, "900123456")],
    [c(F.PASSPORT, "123456789")],
    [c(F.DRIVER_LICENSE, "D12345678")],
    [c(F.FULL_ADDRESS, "100 Main St, Tucson AZ 85701")],
    [c(F.STREET_NAME, "MAIN ST")],
    [c(F.STREET_NUMBER, "100")],
    [c(F.SECONDARY_UNIT, "APT 4B")],
    [c(F.CITY, "TUCSON")],
    [c(F.STATE, "AZ")],
    [c(F.COUNTRY, "US")],
    [c(F.POSTAL_CODE, "85701")],
    [c(F.PHONE, "5205550100")],
    [c(F.ACTIVITY_NUMBER, "TC201900000101")],
    [c(F.ACTIVITY_DESCRIPTION, "undeclared currency")],
]


@pytest.mark.parametrize("system", [SourceSystem.TECS, SourceSystem.EID])
@pytest.mark.parametrize("criteria", _PLANNED_QUERIES, ids=lambda cs: "&".join(f"{x.field}:{x.match}" for x in cs))
def test_every_query_kind_uses_an_index(hub: PrimeHub, system: SourceSystem, criteria: list[Criterion]) -> None:
    adapter = hub.adapter(system)
    table = adapter.schema.model.__tablename__  # type: ignore[union-attr]
    with Session(adapter._engine) as session:  # type: ignore[union-attr]
        predicates = compile_query(session, adapter.schema, Query(tuple(criteria)))  # type: ignore[union-attr]
        assert predicates is not None
        statement = select_matches(adapter.schema, predicates, 100)  # type: ignore[union-attr]
        sql = str(statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in session.execute(text("EXPLAIN QUERY PLAN " + sql))]
    assert not [step for step in plan if step.startswith(f"SCAN {table}")], plan


@pytest.mark.parametrize("system", [SourceSystem.EID])
def test_a_number_and_encounter_use_an_index(hub: PrimeHub, system: SourceSystem) -> None:
    for criteria in ([c(F.A_NUMBER, "A099000004")], [c(F.ENCOUNTER_ID, "EN1")]):
        test_every_query_kind_uses_an_index(hub, system, criteria)


def test_adapters_are_safe_to_share_between_threads(hub: PrimeHub) -> None:
    queries = [
        Query((c(F.SURNAME, "DOH", M.FUZZY),)),
        Query((c(F.SSN, "900-12-3456"),)),
        Query((c(F.SURNAME, "GARC*", M.WILDCARD),)),
        Query((c(F.A_NUMBER, "A099000004"),)),
    ]
    expected = [[ids(a.search(q, 50)) for a in hub.adapters] for q in queries]
    with ThreadPoolExecutor(max_workers=16) as pool:
        runs = list(pool.map(lambda i: [ids(a.search(queries[i % 4], 50)) for a in hub.adapters], range(200)))
    assert all(run == expected[i % 4] for i, run in enumerate(runs))


def reference_search(adapter: SourceAdapter, query: Query, limit: int) -> list[tuple[str, int]]:
    """(record id, score) of a search the plain way: each statement built with its values, ORM rows."""
    with Session(adapter._engine) as session:  # type: ignore[attr-defined]
        predicates = compile_query(session, adapter.schema, query)  # type: ignore[attr-defined]
        if predicates is None:
            return []
        rows = session.scalars(select_matches(adapter.schema, predicates, limit)).all()  # type: ignore[attr-defined]
        found = [(row.record_id, combined_score(predicates, row)) for row in rows]
    return sorted(found, key=lambda item: -item[1])  # type: ignore[operator]


# Pairs of queries of one shape (the same SQL, other values), then shapes that differ slightly.
SAME_SHAPE_QUERIES = [
    [c(F.SURNAME, "DOE")], [c(F.SURNAME, "GARCIA")],
    [c(F.SURNAME, "DOH", M.FUZZY)], [c(F.SURNAME, "ROW", M.FUZZY)], [c(F.SURNAME, "GARSIA", M.FUZZY)],
    [c(F.GIVEN_NAME, "JOHNNY", M.FUZZY)], [c(F.GIVEN_NAME, "MARY", M.FUZZY)], [c(F.GIVEN_NAME, "ZOE", M.FUZZY)],
    [c(F.SURNAME, "SMYTH", M.FUZZY), c(F.BIRTH_DATE, "1970-01-01", M.GE)],
    [c(F.SURNAME, "JONSON", M.FUZZY), c(F.BIRTH_DATE, "1960-01-01", M.GE)],
    [c(F.SURNAME, "GARC*", M.WILDCARD)], [c(F.SURNAME, "DO*", M.WILDCARD)], [c(F.SURNAME, "Z*", M.WILDCARD)],
    [c(F.SURNAME, "GARZ?", M.WILDCARD)], [c(F.SURNAME, "?OE", M.WILDCARD)],
    [c(F.BIRTH_DATE, "1975-04-12", M.FUZZY)], [c(F.BIRTH_DATE, "1980-01-01", M.FUZZY)], [c(F.BIRTH_DATE, "1975-12-31", M.FUZZY)],
    [c(F.BIRTH_DATE, "1975*", M.WILDCARD)], [c(F.BIRTH_DATE, "1980-01*", M.WILDCARD)],
    [c(F.BIRTH_DATE, "1975-01-01", M.GE), c(F.BIRTH_DATE, "1975-12-31", M.LE)],
    [c(F.BIRTH_DATE, "1980-01-01", M.GE), c(F.BIRTH_DATE, "1990-12-31", M.LE)],
    [c(F.FULL_NAME, "John Quincy Doe"), c(F.BIRTH_DATE, "1975-04-12")],
    [c(F.FULL_NAME, "Maria Elena Garcia"), c(F.BIRTH_DATE, "1988-09-30")],
    [c(F.FULL_NAME, "JON SMYTH", M.FUZZY)], [c(F.FULL_NAME, "MARY GARSIA", M.FUZZY)], [c(F.FULL_NAME, "DOE, JOHN")],
    [c(F.MIDDLE_NAME, "Q"), c(F.SURNAME, "DOE")], [c(F.MIDDLE_NAME, "E"), c(F.SURNAME, "GARCIA")],
    [c(F.SSN, "900-12-3456")], [c(F.SSN, "9001299*", M.WILDCARD)], [c(F.SSN, "9001234*", M.WILDCARD)],
    [c(F.FULL_ADDRESS, "100 Main St, Tucson AZ 85701")], [c(F.FULL_ADDRESS, "200 Oak Ave, Phoenix AZ 85001")],
    [c(F.ACTIVITY_DESCRIPTION, "undeclared currency")], [c(F.ACTIVITY_DESCRIPTION, "narcotics seizure")],
    [c(F.STATE, "AZ"), c(F.SURNAME, "GARSIA", M.FUZZY)], [c(F.STATE, "TX"), c(F.SURNAME, "SMYTH", M.FUZZY)],
]


@pytest.mark.parametrize("system", [SourceSystem.TECS, SourceSystem.EID])
def test_sql_reused_for_a_query_shape_finds_what_building_it_would(home: Path, system: SourceSystem) -> None:
    """A search runs its shape's SQL compiled once with its own values: the same records, scores
    and order as building every statement with its values."""
    with open_hub(home) as hub:
        adapter = hub.adapter(system)
        for limit in (3, 1000):
            for criteria in SAME_SHAPE_QUERIES:
                query = Query(tuple(criteria))
                expected = reference_search(adapter, query, limit)
                assert [(r.record_id, r.score) for r in adapter.search(query, limit)] == expected, criteria


def test_a_search_past_its_deadline_is_interrupted(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Searches use the engine's pooled connections, which interrupt SQLite past the fan-out's deadline."""
    monkeypatch.setattr(base, "SQLITE_PROGRESS_STEPS", 1)
    monkeypatch.setattr(base, "deadline_passed", lambda: True)
    with open_hub(home) as hub:
        adapter = hub.adapter(SourceSystem.TECS)
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            adapter.search(Query((c(F.SURNAME, "DOE"),)), 10)  # type: ignore[union-attr]
        assert adapter._statements._kept == []  # type: ignore[union-attr]  # a failed call keeps nothing


def test_searches_keep_a_few_connections_and_the_hub_gives_them_back(home: Path) -> None:
    """Between searches a SQLite source keeps a few pooled connections (each search still uses
    one at a time); closing the hub returns them to the pool before it is disposed."""
    hub = open_hub(home)
    adapter = hub.adapter(SourceSystem.TECS)
    kept = adapter._statements._kept  # type: ignore[union-attr]
    query = Query((c(F.SURNAME, "DOE"),))
    first = ids(adapter.search(query, 10))  # type: ignore[union-attr]
    assert len(kept) == 1
    with ThreadPoolExecutor(max_workers=16) as pool:
        runs = list(pool.map(lambda _: ids(adapter.search(query, 10)), range(200)))  # type: ignore[union-attr]
    assert all(run == first for run in runs)
    assert 1 <= len(kept) <= statements.KEPT_CONNECTIONS
    engine = adapter._engine  # type: ignore[union-attr]
    assert engine.pool.checkedout() == len(kept)
    hub.close()
    assert kept == [] and engine.pool.checkedout() == 0


def test_rows_packed_as_json_are_the_rows_read_column_by_column(
    home: Path, hub: PrimeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite result comes as one JSON value (see `statements.PACK_RESULTS`): every record, every
    value, in the same order, as reading the rows and their columns one by one."""
    everyone = [Query((c(F.BIRTH_DATE, "1900-01-01", M.GE),)), Query((c(F.SURNAME, "DOH", M.FUZZY),))]
    packed = [[a.search(q, 100_000) for a in hub.adapters] for q in everyone]
    assert all(a._statements._compiled and all(  # type: ignore[attr-defined]
        x._packed for shape, x in a._statements._compiled.items() if shape[0] == "matches") for a in hub.adapters)
    monkeypatch.setattr(statements, "PACK_RESULTS", False)
    with open_hub(home) as plain_hub:
        plain = [[a.search(q, 100_000) for a in plain_hub.adapters] for q in everyone]
        assert not any(x._packed for a in plain_hub.adapters for x in a._statements._compiled.values())  # type: ignore[attr-defined]
    assert len(packed[0][0]) > PEOPLE and packed == plain
    assert [[repr(r) for r in found] for found in packed[0]] == [[repr(r) for r in found] for found in plain[0]]


def _constructed(row: object, system: SourceSystem, owner: str, kind: str) -> SourceRecord:
    """The record a row makes, through the domain's own constructors (the reference conversion)."""
    from leis_gateway.domain import Address, Incident, PersonDetails

    r = row.__dict__
    address = Address(*(r[n] for n in ("street_number", "street_name", "secondary_unit", "city", "state",
                                       "postal_code", "country", "phone")))
    return SourceRecord(
        source=system, record_id=r["record_id"], owner=owner, kind=kind,
        status=RecordStatus(r["status"]), role=PersonRole(r["role"]),
        person=PersonDetails(
            r["given_name"], r["middle_name"], r["surname"], r["birth_date"], r["height_inches"], r["weight_pounds"],
            r["eye_color"], r["hair_color"], r["birthplace_country"], r["ssn"], r["passport"], r.get("a_number"),
            r["driver_license"], r["driver_license_state"], r.get("encounter_id"), r["sex"], r["race"],
        ),
        address=None if all(getattr(address, n) is None for n in ("street_number", "street_name", "city", "state",
                                                                 "postal_code", "country", "phone")) else address,
        incident=Incident(r["activity_number"], r["activity_description"], r["activity_date"]) if r["activity_number"] else None,
        restrictions=frozenset(RestrictionCategory(v) for v in (r["restrictions"] or "").split(",") if v),
        protected_classes=frozenset(ProtectedClass(v) for v in (r["protected_classes"] or "").split(",") if v),
        narrative=r["narrative"], photo_id=r.get("photo_id"), score=77,
    )


@pytest.mark.parametrize("system", [SourceSystem.TECS, SourceSystem.EID])
def test_records_are_the_objects_their_constructors_make(hub: PrimeHub, system: SourceSystem) -> None:
    """Rows become records without the dataclasses' own __init__ (see `records.record_converter`):
    equal, with the same repr and the same attributes in the same order, row or ORM instance."""
    adapter = hub.adapter(system)
    model = adapter.schema.model  # type: ignore[union-attr]
    with Session(adapter._engine) as session:  # type: ignore[union-attr]
        rows = session.query(model).all()
        assert len(rows) > PEOPLE
        for row in rows:
            kind = adapter.kind_of(row)  # type: ignore[union-attr]
            expected = _constructed(row, system, adapter.owner, kind)
            made = to_source_record(row, source=system, owner=adapter.owner, kind=kind, score=77)
            assert made == expected and repr(made) == repr(expected)
            for part in ("person", "address", "incident", None):
                a, b = (getattr(made, part), getattr(expected, part)) if part else (made, expected)
                assert (a is None) == (b is None) and (a is None or list(vars(a).items()) == list(vars(b).items()))
    searched = adapter.search(Query((c(F.SURNAME, "G*", M.WILDCARD),)), 1000)  # type: ignore[union-attr]
    assert searched and all(dataclasses.replace(adapter.fetch(r.record_id), score=r.score) == r for r in searched)  # type: ignore[union-attr]


_PINNED_QUERIES = [
    [c(F.GIVEN_NAME, "JOHN"), c(F.SURNAME, "DOE"), c(F.BIRTH_DATE, "1975-04-12")],
    [c(F.GIVEN_NAME, "MARIA"), c(F.SURNAME, "GARCIA"), c(F.BIRTH_DATE, "1988-09-30")],
    [c(F.SURNAME, "GARCIA")], [c(F.SURNAME, "DOE"), c(F.BIRTH_DATE, "1975-04-12")], [c(F.SSN, "900-12-3456")],
    [c(F.STATE, "AZ")], [c(F.STATE, "TX"), c(F.SURNAME, "SMITH")], [c(F.FULL_ADDRESS, "100 Main St, Tucson AZ 85701")],
    [c(F.GIVEN_NAME, "JOHN"), c(F.STATE, "AZ")],
]


@pytest.mark.parametrize("system", [SourceSystem.TECS, SourceSystem.EID])
def test_rows_pinned_by_an_index_are_those_picked_by_pk_first(
    hub: PrimeHub, system: SourceSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where equalities pin an index the rows are read in pk order straight from it: the same
    rows, in the same order, as picking their pks first."""
    adapter = hub.adapter(system)

    def pks(criteria: list[Criterion], limit: int) -> tuple[list[int], str]:
        with Session(adapter._engine) as session:  # type: ignore[union-attr]
            predicates = compile_query(session, adapter.schema, Query(tuple(criteria)))  # type: ignore[union-attr]
            statement = select_matches(adapter.schema, predicates, limit)  # type: ignore[union-attr, arg-type]
            return [r.pk for r in session.scalars(statement)], str(statement)

    for criteria in _PINNED_QUERIES:
        for limit in (1, 3, 1000):
            direct, sql = pks(criteria, limit)
            with monkeypatch.context() as patch:
                patch.setattr(matching, "_pinned_by_an_index", lambda *_: False)
                picked, sql_picked = pks(criteria, limit)
            assert direct == picked, criteria
            assert " IN (SELECT" not in sql and " IN (SELECT" in sql_picked


# --- the builder --------------------------------------------------------------------------


def test_second_build_does_nothing_and_is_fast(home: Path) -> None:
    paths = source_paths(home)
    before = {p: p.stat().st_mtime_ns for p in paths.values()}
    started = time.perf_counter()
    assert build_demo_sources(home, people=PEOPLE) is False
    assert time.perf_counter() - started < 0.5
    assert {p: p.stat().st_mtime_ns for p in paths.values()} == before
    assert sorted(p.name for p in paths[SourceSystem.TECS].parent.iterdir()) == ["eid.db", "obim.db", "tecs.db"]


def _table_rows(path: Path, table: str) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        connection.close()


def test_builds_are_deterministic_and_rebuild_on_a_new_size(home: Path, tmp_path: Path) -> None:
    seen = []
    assert build_demo_sources(tmp_path, people=PEOPLE, progress=lambda done, total: seen.append((done, total))) is True
    assert seen[-1] == (2 * PEOPLE + 7, 2 * PEOPLE + 7)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    ours, theirs = source_paths(home), source_paths(tmp_path)
    for system, table in (
        (SourceSystem.TECS, "tecs_subject_record"),
        (SourceSystem.TECS, "tecs_name_vocabulary"),
        (SourceSystem.EID, "eid_person_record"),
        (SourceSystem.OBIM, "obim_photo"),
    ):
        rows = _table_rows(ours[system], table)
        assert rows and rows == _table_rows(theirs[system], table), table
    assert len(_table_rows(theirs[SourceSystem.TECS], "tecs_subject_record")) == PEOPLE + 4
    assert len(_table_rows(theirs[SourceSystem.EID], "eid_person_record")) == PEOPLE + 3

    assert build_demo_sources(tmp_path, people=PEOPLE + 10) is True
    assert len(_table_rows(theirs[SourceSystem.TECS], "tecs_subject_record")) == PEOPLE + 14
    # A damaged build is rebuilt, not trusted.
    theirs[SourceSystem.EID].write_bytes(b"not a database")
    assert build_demo_sources(tmp_path, people=PEOPLE + 10) is True
    assert build_demo_sources(tmp_path, people=PEOPLE + 10) is False


def test_some_crowd_people_are_in_both_sources(hub: PrimeHub) -> None:
    tecs = {(r.person.given_name, r.person.surname, r.person.birth_date, r.person.ssn)
            for r in search(hub, c(F.STATE, "AZ"))[SourceSystem.TECS] + search(hub, c(F.STATE, "TX"))[SourceSystem.TECS]}
    eid = {(r.person.given_name, r.person.surname, r.person.birth_date, r.person.ssn)
           for r in search(hub, c(F.STATE, "AZ"))[SourceSystem.EID] + search(hub, c(F.STATE, "TX"))[SourceSystem.EID]}
    assert tecs & eid
