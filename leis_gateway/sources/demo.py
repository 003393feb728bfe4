"""The demo source databases: the DESIGN.md demo subjects S1-S7 plus a generated crowd.

`build_demo_sources` is idempotent and atomic: it does nothing when the databases under
`<home>/sources/` already hold the same build, and otherwise writes new files next to them and
renames them into place, so a reader never sees half a database. Rows go in with Core
executemany in batches and indexes are made after the load, which keeps a million people per
source to a few minutes.
"""
from __future__ import annotations

import io
import logging
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, event, insert, select, text
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateTable

from ..domain import PersonRole, ProtectedClass, RecordStatus, RestrictionCategory, SourceSystem
from .base import SourceUrls, source_paths, sqlite_url
from .crowd import eid_record, identity, record_rng, tecs_record
from .eid import EidBase, EidPersonRecord, eid_activity_words, eid_name_vocabulary
from .matching import GIVEN_PART, SURNAME_PART, description_words
from .names import phonetic_key
from .obim import ObimBase, ObimPhoto
from .records import with_match_keys
from .tecs import TecsBase, TecsSubjectRecord, tecs_activity_words, tecs_name_vocabulary

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

BUILD_VERSION = 3  # bump when the schema or the generator changes: forces a rebuild
# (2: birth date + surname index; 3: birth date + surname + given name index)
BATCH_ROWS = 10_000
CROWD_PHOTOS = 300  # booking photos for the first crowd arrestees only
PHOTO_SIZE = (120, 160)


@dataclass(frozen=True)
class DemoSubject:
    """Where a DESIGN.md demo subject lives, for tests and documentation."""

    key: str
    source: SourceSystem
    record_id: str
    photo_id: str | None = None


DEMO_SUBJECTS: dict[str, DemoSubject] = {
    "S1": DemoSubject("S1", SourceSystem.TECS, "TS-DEMO-S1"),
    "S2": DemoSubject("S2", SourceSystem.TECS, "TS-DEMO-S2"),
    "S3": DemoSubject("S3", SourceSystem.TECS, "TS-DEMO-S3"),
    "S4": DemoSubject("S4", SourceSystem.EID, "EA-DEMO-S4", photo_id="OB-DEMO-S4"),
    "S5": DemoSubject("S5", SourceSystem.EID, "EP-DEMO-S5"),
    "S6": DemoSubject("S6", SourceSystem.TECS, "TS-DEMO-S6"),
    "S7": DemoSubject("S7", SourceSystem.EID, "EA-DEMO-S7"),
}

_BLANK_PERSON: dict[str, Any] = {
    "given_name": None, "middle_name": None, "surname": None, "birth_date": None,
    "height_inches": None, "weight_pounds": None, "eye_color": None, "hair_color": None,
    "birthplace_country": None, "sex": None, "race": None, "ssn": None, "passport": None,
    "driver_license": None, "driver_license_state": None, "street_number": None,
    "street_name": None, "secondary_unit": None, "city": None, "state": None,
    "postal_code": None, "country": None, "phone": None, "restrictions": None,
    "protected_classes": None, "activity_number": None, "activity_description": None,
    "activity_date": None, "narrative": None,
}


def _subject(**values: Any) -> dict[str, Any]:
    return {**_BLANK_PERSON, **values}


_TECS_SUBJECTS = (
    _subject(
        record_id="TS-DEMO-S1", status=RecordStatus.CLOSED.value, role=PersonRole.SUSPECT.value,
        given_name="JOHN", middle_name="QUINCY", surname="DOE", birth_date=date(1975, 4, 12),
        height_inches=70, weight_pounds=180, eye_color="BRO", hair_color="BLK",
        birthplace_country="MX", sex="M", race="W", ssn="900123456",
        street_number="100", street_name="Main St", city="Tucson", state="AZ",
        postal_code="85701", country="US", phone="5205550100",
        activity_number="TC201900000101", activity_description="Undeclared currency above reporting threshold",
        activity_date=date(2019, 3, 2),
        narrative="Subject declared travel for work; officer found undeclared currency in a bag.",
    ),
    _subject(
        record_id="TS-DEMO-S2", status=RecordStatus.OPEN.value, role=PersonRole.SUSPECT.value,
        given_name="JOHN", surname="DOE", birth_date=date(1980, 1, 1), sex="M",
        activity_number="TC202300000102", activity_description="Narcotics seizure from vehicle compartment",
        activity_date=date(2023, 6, 14), narrative="Investigation open; do not disclose.",
    ),
    _subject(
        record_id="TS-DEMO-S3", status=RecordStatus.CLOSED.value, role=PersonRole.VICTIM.value,
        given_name="JANE", surname="ROE", birth_date=date(1979, 7, 7), sex="F",
        protected_classes=ProtectedClass.VICTIM_OR_WITNESS.value,
        activity_number="TC201800000103", activity_description="Alien smuggling load vehicle interdiction",
        activity_date=date(2018, 8, 21),
    ),
    _subject(
        record_id="TS-DEMO-S6", status=RecordStatus.CLOSED.value, role=PersonRole.SUSPECT.value,
        given_name="VICTOR", surname="SLATE", birth_date=date(1969, 3, 3), sex="M",
        restrictions=RestrictionCategory.UNDERCOVER_OPERATION.value,
        activity_number="TC201700000106", activity_description="Counterfeit goods seizure in express consignment",
        activity_date=date(2017, 11, 9),
    ),
)
_EID_SUBJECTS = (
    _subject(
        record_id="EA-DEMO-S4", kind="arrest", status=RecordStatus.CLOSED.value, role=PersonRole.ARRESTEE.value,
        given_name="MARIA", middle_name="ELENA", surname="GARCIA", birth_date=date(1988, 9, 30),
        height_inches=63, weight_pounds=130, eye_color="BRO", hair_color="BRO", birthplace_country="MX",
        sex="F", a_number="A099000004", encounter_id="EN2021000000004",
        street_number="2200", street_name="Alamo Ave", city="El Paso", state="TX", postal_code="79901", country="US",
        activity_number="EV202100000004", activity_description="Visa overstay administrative arrest",
        activity_date=date(2021, 5, 17), photo_id="OB-DEMO-S4",
    ),
    _subject(
        record_id="EP-DEMO-S5", kind="person", status=RecordStatus.CLOSED.value, role=PersonRole.SUBJECT.value,
        given_name="AHMED", surname="KARIMI", birth_date=date(1990, 1, 15), birthplace_country="AF",
        sex="M", a_number="A099000005", protected_classes=ProtectedClass.ASYLUM_SEEKER.value,
    ),
    _subject(
        record_id="EA-DEMO-S7", kind="arrest", status=RecordStatus.CLOSED.value, role=PersonRole.ARRESTEE.value,
        given_name="LI", middle_name="WEI", surname="CHEN", birth_date=date(1992, 11, 11), birthplace_country="CN",
        sex="M", a_number="A099000007",
        activity_number="EV202200000007", activity_description="Fugitive operations team arrest",
        activity_date=date(2022, 2, 8),
        narrative="Arrest narrative CANARY-NARRATIVE: subject encountered at residence; no incident.",
    ),
)
_DEMO_NAMES = frozenset(
    (s["given_name"], s["surname"], s["birth_date"]) for s in _TECS_SUBJECTS + _EID_SUBJECTS
)

_build_info_metadata = MetaData()
_BUILD_INFO = {
    prefix: Table(
        f"{prefix}_demo_build",
        _build_info_metadata,
        Column("version", Integer, nullable=False),
        Column("people", Integer, nullable=False),
        Column("note", String(80)),
    )
    for prefix in ("tecs", "eid", "obim")
}


# --- public ------------------------------------------------------------------------------


def build_demo_sources(home: Path, people: int = 3000, progress: Progress | None = None) -> bool:
    """Make `<home>/sources/{tecs,eid,obim}.db` hold the demo subjects and `people` crowd records
    per source. Returns False (having done nothing) when they already do."""
    paths = source_paths(home)
    if _is_current(paths, people):
        return False
    directory = next(iter(paths.values())).parent
    directory.mkdir(parents=True, exist_ok=True)
    temporary = {system: path.with_name(f".{path.name}.{os.getpid()}.building") for system, path in paths.items()}
    try:
        for path in temporary.values():
            path.unlink(missing_ok=True)
        urls = SourceUrls(*(sqlite_url(temporary[s]) for s in (SourceSystem.TECS, SourceSystem.EID, SourceSystem.OBIM)))
        load_demo_sources(urls, people, progress)
        # OBIM first, TECS last: a half-renamed set fails `_is_current` and is rebuilt.
        for system in (SourceSystem.OBIM, SourceSystem.EID, SourceSystem.TECS):
            os.replace(temporary[system], paths[system])
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
            path.with_name(path.name + "-journal").unlink(missing_ok=True)
    return True


def load_demo_sources(urls: SourceUrls, people: int = 3000, progress: Progress | None = None) -> None:
    """(Re)create the demo tables at `urls` (SQLite or PostgreSQL) and load them."""
    if people < 0:
        raise ValueError("people must be >= 0")
    engines = {system: _loading_engine(url) for system, url in zip(
        (SourceSystem.TECS, SourceSystem.EID, SourceSystem.OBIM), (urls.tecs, urls.eid, urls.obim))}
    total = 2 * people + len(_TECS_SUBJECTS) + len(_EID_SUBJECTS)
    counter = _Counter(total, progress)
    try:
        for system, base, prefix in (
            (SourceSystem.TECS, TecsBase, "tecs"),
            (SourceSystem.EID, EidBase, "eid"),
            (SourceSystem.OBIM, ObimBase, "obim"),
        ):
            engine = engines[system]
            with engine.begin() as connection:
                _BUILD_INFO[prefix].drop(connection, checkfirst=True)
                base.metadata.drop_all(connection)
                for table in base.metadata.sorted_tables:
                    connection.execute(CreateTable(table))  # indexes come after the load
        photos: list[dict[str, Any]] = []
        _load_tecs(engines[SourceSystem.TECS], people, counter)
        _load_eid(engines[SourceSystem.EID], people, counter, photos)
        with engines[SourceSystem.OBIM].begin() as connection:
            connection.execute(insert(ObimPhoto.__table__), photos)
        for system, base, prefix in (
            (SourceSystem.TECS, TecsBase, "tecs"),
            (SourceSystem.EID, EidBase, "eid"),
            (SourceSystem.OBIM, ObimBase, "obim"),
        ):
            with engines[system].begin() as connection:
                for table in base.metadata.sorted_tables:
                    for index in sorted(table.indexes, key=lambda i: i.name or ""):
                        index.create(connection)
                connection.execute(text("ANALYZE"))
                _BUILD_INFO[prefix].create(connection)
                connection.execute(insert(_BUILD_INFO[prefix]), [{"version": BUILD_VERSION, "people": people, "note": "demo"}])
        counter.finish()
    finally:
        for engine in engines.values():
            engine.dispose()


def render_booking_photo(photo_id: str) -> bytes:
    """A small placeholder booking photograph (JPEG): a drawn face and the photo id. Deterministic."""
    shade = random.Random(photo_id)
    width, height = PHOTO_SIZE
    background = (200 + shade.randrange(40), 205 + shade.randrange(40), 215 + shade.randrange(40))
    skin = (150 + shade.randrange(90), 110 + shade.randrange(80), 80 + shade.randrange(70))
    image = Image.new("RGB", PHOTO_SIZE, background)
    draw = ImageDraw.Draw(image)
    for y in range(0, height, 16):  # height chart
        draw.line([(0, y), (6, y)], fill=(90, 90, 90))
    draw.ellipse([30, 120, 90, 190], fill=(40 + shade.randrange(60),) * 3)  # shoulders
    draw.ellipse([35, 28, 85, 98], fill=skin)  # face
    draw.ellipse([47, 52, 55, 58], fill=(30, 30, 30))
    draw.ellipse([65, 52, 73, 58], fill=(30, 30, 30))
    draw.line([(60, 60), (58, 72)], fill=(90, 60, 50))
    draw.arc([50, 72, 70, 86], 20, 160, fill=(120, 40, 40))
    draw.rectangle([0, height - 16, width, height], fill=(20, 20, 20))
    draw.text((3, height - 14), photo_id, fill=(255, 255, 255), font=ImageFont.load_default())
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


# --- loading -----------------------------------------------------------------------------


class _Counter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self._progress = total, 0, progress

    def add(self, count: int) -> None:
        self.done += count
        if self._progress is not None:
            self._progress(min(self.done, self.total), self.total)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress(self.total, self.total)


def _loading_engine(url: str) -> Engine:
    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _fast_load(dbapi_connection, _record):
            # Safe only because the file is renamed into place after a complete load.
            cursor = dbapi_connection.cursor()
            for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -200000", "temp_store = MEMORY"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

    return engine


def _batches(rows: Iterator[dict[str, Any]], size: int = BATCH_ROWS) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _tecs_rows(people: int) -> Iterator[dict[str, Any]]:
    pk = 0
    for subject in _TECS_SUBJECTS:
        pk += 1
        yield with_match_keys({"pk": pk, **subject})
    rng = record_rng("TECS")
    for index in range(people):
        pk += 1
        record = tecs_record(index, identity(index, _DEMO_NAMES), rng)
        yield with_match_keys({"pk": pk, "record_id": f"TS-{index + 1:010d}", **record})


def _eid_identity_number(index: int, people: int) -> int:
    """Every fifth EID crowd member is the TECS crowd member of the same number."""
    return index if index % 5 == 0 else people + index


def _eid_rows(people: int) -> Iterator[dict[str, Any]]:
    pk = 0
    for subject in _EID_SUBJECTS:
        pk += 1
        yield with_match_keys({"pk": pk, "encounter_id": None, "photo_id": None, **subject})
    rng = record_rng("EID")
    photographed = 0
    for index in range(people):
        pk += 1
        record = eid_record(index, identity(_eid_identity_number(index, people), _DEMO_NAMES), rng)
        prefix = "EA" if record["kind"] == "arrest" else "EP"
        photo_id = None
        if record["kind"] == "arrest" and photographed < CROWD_PHOTOS:
            photographed += 1
            photo_id = f"OB-{index + 1:010d}"
        yield with_match_keys({"pk": pk, "record_id": f"{prefix}-{index + 1:010d}", "photo_id": photo_id, **record})


def _load_person_records(
    engine: Engine, rows: Iterator[dict[str, Any]], table: Table, vocabulary: Table, words: Table,
    counter: _Counter, on_row: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    names: set[tuple[str, str]] = set()
    with engine.begin() as connection:
        for batch in _batches(rows):
            word_rows = []
            for row in batch:
                for part, column in ((GIVEN_PART, "given_norm"), (GIVEN_PART, "middle_norm"), (SURNAME_PART, "surname_norm")):
                    if row[column]:
                        names.add((part, row[column]))
                for word in description_words(row["activity_description"]):
                    word_rows.append({"word": word[:40], "record_pk": row["pk"]})
                if on_row is not None:
                    on_row(row)
            connection.execute(insert(table), batch)
            if word_rows:
                connection.execute(insert(words), word_rows)
            counter.add(len(batch))
        connection.execute(
            insert(vocabulary),
            [{"part": part, "name_norm": name, "name_key": phonetic_key(name)} for part, name in sorted(names)],
        )


def _load_tecs(engine: Engine, people: int, counter: _Counter) -> None:
    _load_person_records(
        engine, _tecs_rows(people), TecsSubjectRecord.__table__, tecs_name_vocabulary, tecs_activity_words, counter
    )


def _load_eid(engine: Engine, people: int, counter: _Counter, photos: list[dict[str, Any]]) -> None:
    def take_photo(row: dict[str, Any]) -> None:
        if row["photo_id"]:
            photos.append({"photo_id": row["photo_id"], "content_type": "image/jpeg", "data": render_booking_photo(row["photo_id"])})

    _load_person_records(
        engine, _eid_rows(people), EidPersonRecord.__table__, eid_name_vocabulary, eid_activity_words, counter, take_photo
    )


def _is_current(paths: dict[SourceSystem, Path], people: int) -> bool:
    """True when all three databases exist and were completely built for this version and size."""
    for system, prefix in ((SourceSystem.TECS, "tecs"), (SourceSystem.EID, "eid"), (SourceSystem.OBIM, "obim")):
        path = paths[system]
        if not path.is_file():
            return False
        engine = create_engine(sqlite_url(path, read_only=True), poolclass=NullPool)
        try:
            with engine.connect() as connection:
                info = connection.execute(select(_BUILD_INFO[prefix].c.version, _BUILD_INFO[prefix].c.people)).first()
        except Exception:  # missing table, not a database: rebuild
            return False
        finally:
            engine.dispose()
        if info is None or tuple(info) != (BUILD_VERSION, people):
            return False
    return True
