"""TECS: CBP subject records (status, role, restriction categories, person, address, incident)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import DeclarativeBase

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


class TecsBase(DeclarativeBase):
    """Tables of the TECS database (its own database: `<home>/sources/tecs.db`)."""


class TecsSubjectRecord(PersonColumns, AddressColumns, IncidentColumns, TecsBase):
    """A TECS subject record: one person in one role on one incident."""

    __tablename__ = "tecs_subject_record"


tecs_name_vocabulary = name_vocabulary_table(TecsBase.metadata, "tecs")
tecs_activity_words = activity_words_table(TecsBase.metadata, "tecs")
TECS_SCHEMA = PersonRecordSchema(TecsSubjectRecord, tecs_name_vocabulary, tecs_activity_words)


class TecsAdapter(PersonRecordAdapter):
    system = SourceSystem.TECS
    owner = "CBP"
    schema = TECS_SCHEMA

    def kind_of(self, row: Any) -> str:
        return "subject"
