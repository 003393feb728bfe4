"""SQLAlchemy 2 models of the audit store (the Alembic migrations create the same tables).

Names carry an `audit_` prefix so the store can share a database with other modules.

Indexes: every audit row pays, on the request path, a B-tree insert for each index of its table,
and in SQLite a page written to the WAL and later to the database (about 10 us of CPU per page
here). So a table has only the indexes that a search, the weekly report, purge or verify use
(migration 0002; `tests/test_audit.py` checks the query plans):

- `at`: `--since/--until`, the weekly report's weeks, purge's cut, and any filter within a window;
- `(agreement_id, at)`, `(user_id, at)`, `(ori, at)`: `--agreement`, `--user`, `--ori` (with or
  without a window);
- `correlation_id`: `--correlation` (the two rows of one exchange);
- `result_code`, only where it is set (outbound rows): `--result`;
- `(direction, operation)`, only on the log's own rows (review/admin): `--direction review|admin`
  and verify's look-up of the latest purge checkpoint; no message row is written to it.

`--direction inbound|outbound` and `--operation` are answered by reading the table in chain order
up to the limit (quick for the common values, which most rows have), or within a window by `at`; a
rare operation without a window reads the whole table.
No index on `message_id` (not a search filter of the CLI; `AuditFilter.message_id` still works,
by reading the table), none on `row_hash` (the chain, not a constraint, vouches for each hash).
"""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

VERSION_TABLE = "audit_alembic_version"
GENESIS_HASH = "0" * 64

# The rows the log writes about itself (audit.show, audit.report, audit.purge): the partial index's
# condition, which a query repeats word for word to use it (SQLite proves no other implication).
LOG_ROWS = "direction IN ('review', 'admin')"
RESULT_SET = "result_code IS NOT NULL"


class UTCDateTime(TypeDecorator[datetime]):
    """Always aware UTC in Python; SQLite has no time zones, so store naive UTC there."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("audit times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if getattr(dialect, "name", "") == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
        }
    )


class AuditMessage(Base):
    """One chained row per message (or per review/admin action on the log itself)."""

    __tablename__ = "audit_message"

    # Assigned under the chain lock (head.last_id + 1), so ids are the chain order.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    direction: Mapped[str] = mapped_column(String(16))
    operation: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(256))
    correlation_id: Mapped[str | None] = mapped_column(String(256), index=True)
    agreement_id: Mapped[str | None] = mapped_column(String(128))
    ori: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(256))
    purpose: Mapped[str | None] = mapped_column(String(64))
    query_categories: Mapped[str | None] = mapped_column(String(256))
    result_code: Mapped[str | None] = mapped_column(String(32))
    advisory_categories: Mapped[str | None] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))

    disclosures: Mapped[list[AuditDisclosure]] = relationship(
        back_populates="message", order_by="AuditDisclosure.id", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_audit_message_agreement_at", "agreement_id", "at"),
        Index("ix_audit_message_user_at", "user_id", "at"),
        Index("ix_audit_message_ori_at", "ori", "at"),
        Index("ix_audit_message_result_code", "result_code",
              sqlite_where=text(RESULT_SET), postgresql_where=text(RESULT_SET)),
        Index("ix_audit_message_log_rows", "direction", "operation",
              sqlite_where=text(LOG_ROWS), postgresql_where=text(LOG_ROWS)),
    )


class AuditDisclosure(Base):
    """What DHS information left, and to whom: one row per released source record."""

    __tablename__ = "audit_disclosure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_row_id: Mapped[int] = mapped_column(
        ForeignKey("audit_message.id", ondelete="CASCADE", name="fk_audit_disclosure_message"), index=True
    )
    agreement_id: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(256))
    source_system: Mapped[str] = mapped_column(String(32))
    source_record_id: Mapped[str] = mapped_column(String(256))
    elements: Mapped[str] = mapped_column(Text)  # comma-separated element names, never values

    message: Mapped[AuditMessage] = relationship(back_populates="disclosures")


class AuditChainHead(Base):
    """The single row (id 1) every append locks: serialises writers and catches tail truncation."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditReplay(Base):
    """WS-Security replay cache shared by all gateway processes (keys stored hashed).

    SQLite: one B-tree (WITHOUT ROWID, keyed by the hash). No index on `expires`: the purge of
    expired keys, about once a minute, reads the table (only keys still in their window).
    """

    __tablename__ = "audit_replay"
    __table_args__ = {"sqlite_with_rowid": False}

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires: Mapped[datetime] = mapped_column(UTCDateTime())
