"""What TECS and EID person records have in common: columns, search and conversion.

Each source declares its own table (its own database) from these mixins; the adapter asks it
on one pooled connection per call, so the adapters are safe to share between threads.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import Any, ClassVar

from sqlalchemy import Column, Date, Engine, Index, Integer, MetaData, String, Table, Text, select, text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, sessionmaker

from ..domain import (
    Address,
    Incident,
    PersonDetails,
    PersonRole,
    ProtectedClass,
    Query,
    RecordStatus,
    RestrictionCategory,
    SourceRecord,
    SourceSystem,
)
from .matching import combined_score, compile_query, read_matches, supported_fields
from .names import phonetic_key
from .normalise import normalise_secondary_unit, normalise_street_name, normalise_text
from .statements import Statements

log = logging.getLogger(__name__)


class PersonColumns:
    """A person as a source holds them: display values plus canonical, indexed match keys."""

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    record_id: Mapped[str] = mapped_column(String(32), index=True, unique=True)
    status: Mapped[str] = mapped_column(String(8))
    role: Mapped[str] = mapped_column(String(12))
    restrictions: Mapped[str | None] = mapped_column(String(200))  # comma-separated categories
    protected_classes: Mapped[str | None] = mapped_column(String(200))  # comma-separated classes

    given_name: Mapped[str | None] = mapped_column(String(60))
    middle_name: Mapped[str | None] = mapped_column(String(60))
    surname: Mapped[str | None] = mapped_column(String(60))
    given_norm: Mapped[str | None] = mapped_column(String(60), index=True)
    middle_norm: Mapped[str | None] = mapped_column(String(60), index=True)
    surname_norm: Mapped[str | None] = mapped_column(String(60), index=True)
    given_key: Mapped[str | None] = mapped_column(String(10), index=True)
    surname_key: Mapped[str | None] = mapped_column(String(10), index=True)
    birth_date: Mapped[date | None] = mapped_column(Date)  # indexed with the surname: see __table_args__
    height_inches: Mapped[int | None] = mapped_column(Integer)
    weight_pounds: Mapped[int | None] = mapped_column(Integer)
    eye_color: Mapped[str | None] = mapped_column(String(3))
    hair_color: Mapped[str | None] = mapped_column(String(3))
    birthplace_country: Mapped[str | None] = mapped_column(String(2))
    sex: Mapped[str | None] = mapped_column(String(1))
    race: Mapped[str | None] = mapped_column(String(1))
    ssn: Mapped[str | None] = mapped_column(String(9), index=True)
    passport: Mapped[str | None] = mapped_column(String(20), index=True)
    driver_license: Mapped[str | None] = mapped_column(String(20), index=True)
    driver_license_state: Mapped[str | None] = mapped_column(String(2))

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:
        # Birth date, then surname: a name + birth date search (the commonest) reads only its own
        # rows however many people share the date; a date or a date range alone uses the prefix.
        return (Index(f"ix_{cls.__tablename__}_birth_date_surname", "birth_date", "surname_norm"),)


class AddressColumns:
    street_number: Mapped[str | None] = mapped_column(String(12), index=True)
    street_name: Mapped[str | None] = mapped_column(String(80))
    street_name_norm: Mapped[str | None] = mapped_column(String(80), index=True)
    secondary_unit: Mapped[str | None] = mapped_column(String(20))
    secondary_unit_norm: Mapped[str | None] = mapped_column(String(20), index=True)
    city: Mapped[str | None] = mapped_column(String(60))
    city_norm: Mapped[str | None] = mapped_column(String(60), index=True)
    state: Mapped[str | None] = mapped_column(String(2), index=True)
    postal_code: Mapped[str | None] = mapped_column(String(10), index=True)
    country: Mapped[str | None] = mapped_column(String(2), index=True)
    phone: Mapped[str | None] = mapped_column(String(15), index=True)


class IncidentColumns:
    activity_number: Mapped[str | None] = mapped_column(String(20), index=True)
    activity_description: Mapped[str | None] = mapped_column(String(200))
    activity_date: Mapped[date | None] = mapped_column(Date)
    narrative: Mapped[str | None] = mapped_column(Text)  # free text: held, never searched


def name_vocabulary_table(metadata: MetaData, prefix: str) -> Table:
    """Distinct names of a source with their phonetic keys: where fuzzy search looks first."""
    return Table(
        f"{prefix}_name_vocabulary",
        metadata,
        Column("part", String(1), nullable=False),  # G: given/middle, S: surname
        Column("name_norm", String(60), nullable=False),
        Column("name_key", String(10), nullable=False),
        Index(f"ix_{prefix}_name_vocabulary_key", "part", "name_key"),
        Index(f"ix_{prefix}_name_vocabulary_name", "part", "name_norm", unique=True),
    )


def activity_words_table(metadata: MetaData, prefix: str) -> Table:
    """Inverted index of incident descriptions, so a contains-search needs no full scan."""
    return Table(
        f"{prefix}_activity_word",
        metadata,
        Column("word", String(40), nullable=False),
        Column("record_pk", Integer, nullable=False),
        Index(f"ix_{prefix}_activity_word_word", "word", "record_pk"),
    )


def with_match_keys(row: dict[str, Any]) -> dict[str, Any]:
    """Add the canonical match columns (norms, phonetic keys) derived from a row's display values."""
    def norm(name: str) -> str | None:
        value = row.get(name)
        return normalise_text(value) or None if value else None

    row["given_norm"] = norm("given_name")
    row["middle_norm"] = norm("middle_name")
    row["surname_norm"] = norm("surname")
    row["given_key"] = phonetic_key(row["given_norm"]) or None if row["given_norm"] else None
    row["surname_key"] = phonetic_key(row["surname_norm"]) or None if row["surname_norm"] else None
    row["street_name_norm"] = normalise_street_name(row["street_name"]) or None if row.get("street_name") else None
    row["secondary_unit_norm"] = (
        normalise_secondary_unit(row["secondary_unit"]) or None if row.get("secondary_unit") else None
    )
    row["city_norm"] = norm("city")
    return row


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


@lru_cache(maxsize=1024)  # a source holds few distinct values; converting each row's was a sizable cost
def _member(kind: type[StrEnum], value: str) -> Any:
    return kind(value)


@lru_cache(maxsize=1024)
def _members(kind: type[StrEnum], value: str | None) -> frozenset[Any]:
    """The members named in a comma-separated column."""
    return frozenset(kind(v) for v in _split(value))


def to_source_record(row: Any, *, source: SourceSystem, owner: str, kind: str, score: int) -> SourceRecord:
    """A row (columns by name: ORM instance or named tuple) -> the domain's SourceRecord (all the source holds)."""
    has_address = not (
        row.street_number is None and row.street_name is None and row.city is None and row.state is None
        and row.postal_code is None and row.country is None and row.phone is None
    )
    return SourceRecord(
        source=source,
        record_id=row.record_id,
        owner=owner,
        kind=kind,
        status=_member(RecordStatus, row.status),
        role=_member(PersonRole, row.role),
        person=PersonDetails(
            given_name=row.given_name,
            middle_name=row.middle_name,
            surname=row.surname,
            birth_date=row.birth_date,
            height_inches=row.height_inches,
            weight_pounds=row.weight_pounds,
            eye_color=row.eye_color,
            hair_color=row.hair_color,
            birthplace_country=row.birthplace_country,
            ssn=row.ssn,
            passport=row.passport,
            a_number=getattr(row, "a_number", None),
            driver_license=row.driver_license,
            driver_license_state=row.driver_license_state,
            encounter_id=getattr(row, "encounter_id", None),
            sex=row.sex,
            race=row.race,
        ),
        address=Address(
            street_number=row.street_number,
            street_name=row.street_name,
            secondary_unit=row.secondary_unit,
            city=row.city,
            state=row.state,
            postal_code=row.postal_code,
            country=row.country,
            phone=row.phone,
        )
        if has_address
        else None,
        incident=Incident(row.activity_number, row.activity_description, row.activity_date)
        if row.activity_number
        else None,
        restrictions=_members(RestrictionCategory, row.restrictions),
        protected_classes=_members(ProtectedClass, row.protected_classes),
        narrative=row.narrative,
        photo_id=getattr(row, "photo_id", None),
        score=score,
    )


@dataclass(frozen=True)
class PersonRecordSchema:
    """A source's record table and its two helper indexes (see `matching.RecordSchema`)."""

    model: type
    name_vocabulary: Table
    activity_words: Table | None


class PersonRecordAdapter:
    """A `SourceAdapter` over one person-record table; subclasses name the system and kinds."""

    system: SourceSystem
    owner: str
    schema: ClassVar[PersonRecordSchema]

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.ends_by_deadline = engine.dialect.name == "sqlite"  # its progress handler (sources/base.py)
        self._sessions = sessionmaker(engine, expire_on_commit=False)  # fetch(): one row, rare
        self._statements = Statements(engine)  # one table, one engine: its query shapes' SQL
        self.fields = supported_fields(self.schema)

    def kind_of(self, row: Any) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def search(self, query: Query, limit: int) -> list[SourceRecord]:
        """Records matching every criterion, best first, at most `limit`."""
        if limit <= 0:
            return []
        with self._statements.reading() as read:
            predicates = compile_query(read, self.schema, query)
            if predicates is None:
                return []
            rows = read_matches(read, self.schema, predicates, limit)
        found = []
        for row in rows:
            score = combined_score(predicates, row)
            if score is None:  # SQL and Python disagree: trust the stricter
                log.warning("%s: a row the database matched failed the row check", self.system)
                continue
            found.append(self._record(row, score))
        found.sort(key=lambda r: -r.score)  # stable: ties keep the database's row order
        return found

    def fetch(self, record_id: str) -> SourceRecord | None:
        with self._sessions() as session:
            row = session.scalars(select(self.schema.model).where(self.schema.model.record_id == record_id)).first()
            return self._record(row, 100) if row is not None else None

    def ping(self) -> bool:
        """Raises when the source cannot be reached; True otherwise."""
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def _record(self, row: Any, score: int) -> SourceRecord:
        return to_source_record(row, source=self.system, owner=self.owner, kind=self.kind_of(row), score=score)
