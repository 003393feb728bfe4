"""What TECS and EID person records have in common: columns, search and conversion.

Each source declares its own table (its own database) from these mixins; the adapter asks it
on one pooled connection per call, so the adapters are safe to share between threads.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache
from operator import attrgetter
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
    birth_date: Mapped[date | None] = mapped_column(Date)  # indexed with the names: see __table_args__
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
        # Birth date, surname, given name: a name + birth date search (the commonest) finds its
        # rows in the index alone, already in pk order, however many people share the date or the
        # surname; a date (+ surname) or a date range alone uses a prefix.
        return (
            Index(f"ix_{cls.__tablename__}_birth_date_names", "birth_date", "surname_norm", "given_norm"),
        )


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


# Columns derived from a row's display values (`with_match_keys`): searched, never part of a record.
MATCH_KEY_COLUMNS = frozenset({
    "given_norm", "middle_norm", "surname_norm", "given_key", "surname_key",
    "street_name_norm", "secondary_unit_norm", "city_norm",
})
_MEMBERS_KEPT = 1024  # distinct column values remembered per enum (a source holds few)


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


class _Members(dict):  # type: ignore[type-arg]
    """value -> `kind(value)`, or the frozenset of the members a comma-separated value names.

    A plain dict lookup per row (converting each row's values was a sizable cost); unknown
    values raise as `kind(value)` does.
    """

    def __init__(self, kind: type[StrEnum], *, several: bool) -> None:
        super().__init__()
        self.kind, self.several = kind, several

    def __missing__(self, value: str | None) -> Any:
        found = frozenset(self.kind(v) for v in _split(value)) if self.several else self.kind(value)
        if len(self) < _MEMBERS_KEPT:
            self[value] = found
        return found


_STATUSES = _Members(RecordStatus, several=False)
_ROLES = _Members(PersonRole, several=False)
_RESTRICTIONS = _Members(RestrictionCategory, several=True)
_PROTECTED_CLASSES = _Members(ProtectedClass, several=True)


_BY_SCORE = attrgetter("score")
# SourceRecord's parts: each field and the column that holds it.
_PERSON_COLUMNS = tuple((f.name, f.name) for f in fields(PersonDetails))
_ADDRESS_COLUMNS = tuple((f.name, f.name) for f in fields(Address))
_INCIDENT_COLUMNS = (
    ("activity_number", "activity_number"), ("description", "activity_description"), ("activity_date", "activity_date"),
)
_ADDRESS_TEST = frozenset(name for name, _ in _ADDRESS_COLUMNS) - {"secondary_unit"}  # a unit alone is no address


def _fills_its_dict(cls: type) -> bool:
    """True when `cls(**values)` does nothing but set each field (a plain frozen dataclass).

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`; filling a new
    instance's `__dict__` at once gives the very same object at a fraction of the cost. A class
    with an `__init__` of its own, a `__post_init__` or slots is made by calling it instead.
    """
    init = vars(cls).get("__init__")
    return (
        is_dataclass(cls) and cls.__dataclass_params__.init  # type: ignore[attr-defined]
        and init is not None and init.__code__.co_filename.startswith("<")  # written by `dataclasses`
        and not hasattr(cls, "__post_init__") and "__slots__" not in vars(cls)
        and all(f.init for f in fields(cls))
    )


@lru_cache(maxsize=64)
def record_converter(columns: frozenset[str]) -> Callable[[Any, SourceSystem, str, str, int], SourceRecord]:
    """`convert(row, source, owner, kind, score)`: a row holding `columns` (by attribute) -> SourceRecord.

    A column the row does not hold (EID's A-number in TECS) reads as None. The function is
    written out for these columns and compiled once (as `dataclasses` and `namedtuple` make
    theirs): converting each row field by field through generic code was a search's largest
    cost after the database's own work.
    """
    def value(column: str) -> str:
        return f"row.{column}" if column in columns else "None"

    lines = ["def convert(row, source, owner, kind, score):"]

    def make(target: str, cls: type, values: list[tuple[str, str]], indent: str = "    ") -> None:
        if _fills_its_dict(cls):
            items = ", ".join(f"{name!r}: {expression}" for name, expression in values)
            lines.append(f"{indent}{target} = new({cls.__name__})")
            lines.append(f"{indent}{target}.__dict__.update({{{items}}})")
        else:
            arguments = ", ".join(f"{name}={expression}" for name, expression in values)
            lines.append(f"{indent}{target} = {cls.__name__}({arguments})")

    make("person", PersonDetails, [(name, value(column)) for name, column in _PERSON_COLUMNS])
    address = [(name, f"_{name}") for name, _ in _ADDRESS_COLUMNS]
    lines += [f"    _{name} = {value(column)}" for name, column in _ADDRESS_COLUMNS]
    lines.append(f"    if {' and '.join(f'_{name} is None' for name, _ in _ADDRESS_COLUMNS if name in _ADDRESS_TEST)}:")
    lines.append("        address = None")
    lines.append("    else:")
    make("address", Address, address, indent="        ")
    lines.append(f"    if {value('activity_number')}:")
    make("incident", Incident, [(name, value(column)) for name, column in _INCIDENT_COLUMNS], indent="        ")
    lines.append("    else:")
    lines.append("        incident = None")
    make("record", SourceRecord, [
        ("source", "source"), ("record_id", value("record_id")), ("owner", "owner"), ("kind", "kind"),
        ("status", f"STATUSES[{value('status')}]"), ("role", f"ROLES[{value('role')}]"),
        ("person", "person"), ("address", "address"), ("incident", "incident"),
        ("restrictions", f"RESTRICTIONS[{value('restrictions')}]"),
        ("protected_classes", f"PROTECTED_CLASSES[{value('protected_classes')}]"),
        ("narrative", value("narrative")), ("photo_id", value("photo_id")), ("score", "score"),
    ])
    lines.append("    return record")
    names = {
        "new": object.__new__, "PersonDetails": PersonDetails, "Address": Address, "Incident": Incident,
        "SourceRecord": SourceRecord, "STATUSES": _STATUSES, "ROLES": _ROLES, "RESTRICTIONS": _RESTRICTIONS,
        "PROTECTED_CLASSES": _PROTECTED_CLASSES,
    }
    exec("\n".join(lines), names)  # noqa: S102 - our own text, from field and column names only
    return names["convert"]  # type: ignore[no-any-return]


def _columns_of(row: Any) -> frozenset[str]:
    held = getattr(row, "_fields", None)  # a named tuple; else a mapped instance
    return frozenset(held if held is not None else row.__table__.columns.keys())


def to_source_record(row: Any, *, source: SourceSystem, owner: str, kind: str, score: int) -> SourceRecord:
    """A row (columns by name: ORM instance or named tuple) -> the domain's SourceRecord (all the source holds)."""
    return record_converter(_columns_of(row))(row, source, owner, kind, score)


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
        # What a search reads of a row: the record's columns (+ those its criteria check).
        table = self.schema.model.__table__  # type: ignore[attr-defined]
        self._columns = tuple(c.key for c in table.columns if c.key not in MATCH_KEY_COLUMNS and not c.primary_key)
        self._convert = record_converter(frozenset(self._columns))

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
            rows = read_matches(read, self.schema, predicates, limit, self._columns)
        found = []
        convert, system, owner, kind_of = self._convert, self.system, self.owner, self.kind_of
        for row in rows:
            score = combined_score(predicates, row)
            if score is None:  # SQL and Python disagree: trust the stricter
                log.warning("%s: a row the database matched failed the row check", self.system)
                continue
            found.append(convert(row, system, owner, kind_of(row), score))
        if len(found) > 1:
            found.sort(key=_BY_SCORE, reverse=True)  # stable, also reversed: ties keep the database's row order
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

    def close(self) -> None:
        """Give back the connections kept between searches (the hub does, before disposing the engine)."""
        self._statements.close()

    def _record(self, row: Any, score: int) -> SourceRecord:
        return to_source_record(row, source=self.system, owner=self.owner, kind=self.kind_of(row), score=score)
