"""EID: ICE ENFORCE arrest and person records (A-number, booking photo, protected classes)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..domain import SourceSystem
from .records import (
    AddressColumns,
    IncidentColumns,
    PersonColumns,
    PersonRecordAdapter,
    PersonRecordSchema,
    activity_words_table,
    name_vocabulary_table,
)


class EidBase(DeclarativeBase):
    """Tables of the EID database (its own database: `<home>/sources/eid.db`)."""


class EidPersonRecord(PersonColumns, AddressColumns, IncidentColumns, EidBase):
    """An ENFORCE arrest (kind "arrest", with its event as the incident) or person record."""

    __tablename__ = "eid_person_record"

    kind: Mapped[str] = mapped_column(String(8))  # "arrest" | "person"
    a_number: Mapped[str | None] = mapped_column(String(10), index=True)
    encounter_id: Mapped[str | None] = mapped_column(String(20), index=True)
    photo_id: Mapped[str | None] = mapped_column(String(32))  # OBIM booking photograph


eid_name_vocabulary = name_vocabulary_table(EidBase.metadata, "eid")
eid_activity_words = activity_words_table(EidBase.metadata, "eid")
EID_SCHEMA = PersonRecordSchema(EidPersonRecord, eid_name_vocabulary, eid_activity_words)


class EidAdapter(PersonRecordAdapter):
    system = SourceSystem.EID
    owner = "ICE"
    schema = EID_SCHEMA

    def kind_of(self, row: Any) -> str:
        return row.kind
