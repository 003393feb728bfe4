"""Fewer indexes: only those a search, the report, purge or verify use (see audit/models.py).

Every audit row paid a B-tree insert (SQLite: a WAL page write, later a database page write)
for each of 10 indexes on audit_message, 4 on audit_disclosure and 2 on audit_replay; now 7
(two of them partial, written only for the rows they cover), 1 and none.

- audit_message: drop the indexes on direction, operation and message_id, and the unique
  constraint on row_hash (the hash chain vouches for each hash; nothing looks a row up by it);
  result_code becomes a partial index (rows that have one: outbound); a partial index on
  (direction, operation) covers the log's own rows (review, admin).
- audit_disclosure: only message_row_id stays (loading a row's disclosures, purge).
- audit_replay: no index on expires (the purge about once a minute reads the table); SQLite:
  WITHOUT ROWID, so the table is its key's B-tree instead of a table plus an index.

SQLite cannot drop a constraint or change a table to WITHOUT ROWID in place: both tables are
copied into new ones (rows, ids and hashes unchanged). This needs foreign keys off on the
migration's connection (`store.migrate` does it; dropping the old audit_message would otherwise
delete every disclosure through ON DELETE CASCADE), and is checked here before anything is changed.
The copy takes about 20 s per GB of log (measured: 4.4 s for 230 MB, 14,400 rows), in the first
process that starts; others starting meanwhile wait for it up to the busy timeout. It needs as much
free disk as the log; the old table's pages stay in the file as free pages that new rows reuse
(`VACUUM` would give them back). PostgreSQL: drops only, no copy.

Revision ID: 0002_audit_fewer_indexes
Revises: 0001_audit_initial
Create Date: 2025-06-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leis_gateway.audit.models import UTCDateTime

revision = "0002_audit_fewer_indexes"
down_revision = "0001_audit_initial"
branch_labels = None
depends_on = None

LOG_ROWS = "direction IN ('review', 'admin')"
RESULT_SET = "result_code IS NOT NULL"

_MESSAGE_INDEXES_DROPPED = ("direction", "operation", "message_id", "result_code")  # 0001's single-column ones
_DISCLOSURE_INDEXES_DROPPED = ("agreement_id", "user_id", "source_record_id")
# 0002's own, recreated after a copy of the table (SQLite)
_MESSAGE_INDEXES_KEPT = {
    "ix_audit_message_at": ["at"],
    "ix_audit_message_correlation_id": ["correlation_id"],
    "ix_audit_message_agreement_at": ["agreement_id", "at"],
    "ix_audit_message_user_at": ["user_id", "at"],
    "ix_audit_message_ori_at": ["ori", "at"],
}


def _message_columns() -> list[sa.Column]:
    """audit_message's columns, as 0001 created them."""
    return [
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(256), nullable=True),
        sa.Column("correlation_id", sa.String(256), nullable=True),
        sa.Column("agreement_id", sa.String(128), nullable=True),
        sa.Column("ori", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("query_categories", sa.String(256), nullable=True),
        sa.Column("result_code", sa.String(32), nullable=True),
        sa.Column("advisory_categories", sa.String(512), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
    ]


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _require_foreign_keys_off() -> None:
    if op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("audit migration 0002 copies audit_message: run it through "
                           "leis_gateway.audit.store.migrate() (foreign keys off, or the copy would "
                           "delete every disclosure)")


def _check_foreign_keys() -> None:
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"audit migration: {len(broken)} disclosure row(s) lost their message")


def _copy(table: str, columns: list[sa.Column], *constraints: sa.Constraint, **kw: object) -> None:
    """SQLite: replace `table` by a new one with the same rows (ids and hashes unchanged)."""
    names = ", ".join(c.name for c in columns)
    new = f"_{table}_copy"
    op.create_table(new, *columns, *constraints, **kw)
    op.execute(f"INSERT INTO {new} ({names}) SELECT {names} FROM {table}")
    op.drop_table(table)
    op.rename_table(new, table)


def _copy_message(*, unique_row_hash: bool) -> None:
    constraints: list[sa.Constraint] = [sa.PrimaryKeyConstraint("id", name="pk_audit_message")]
    if unique_row_hash:
        constraints.append(sa.UniqueConstraint("row_hash", name="uq_audit_message_row_hash"))
    _copy("audit_message", _message_columns(), *constraints)
    for name, columns in _MESSAGE_INDEXES_KEPT.items():
        op.create_index(name, "audit_message", columns)


def _copy_replay(*, with_rowid: bool) -> None:
    _copy("audit_replay", [sa.Column("key_hash", sa.String(64), nullable=False),
                           sa.Column("expires", UTCDateTime(), nullable=False)],
          sa.PrimaryKeyConstraint("key_hash", name="pk_audit_replay"), sqlite_with_rowid=with_rowid)


def _partial_indexes() -> None:
    op.create_index("ix_audit_message_result_code", "audit_message", ["result_code"],
                    sqlite_where=sa.text(RESULT_SET), postgresql_where=sa.text(RESULT_SET))
    op.create_index("ix_audit_message_log_rows", "audit_message", ["direction", "operation"],
                    sqlite_where=sa.text(LOG_ROWS), postgresql_where=sa.text(LOG_ROWS))


def upgrade() -> None:
    if _sqlite():
        _require_foreign_keys_off()
    for column in _MESSAGE_INDEXES_DROPPED:
        op.drop_index(f"ix_audit_message_{column}", table_name="audit_message")
    for column in _DISCLOSURE_INDEXES_DROPPED:
        op.drop_index(f"ix_audit_disclosure_{column}", table_name="audit_disclosure")
    op.drop_index("ix_audit_replay_expires", table_name="audit_replay")
    if _sqlite():
        _copy_message(unique_row_hash=False)
        _copy_replay(with_rowid=False)
        _check_foreign_keys()
    else:
        op.drop_constraint("uq_audit_message_row_hash", "audit_message", type_="unique")
    _partial_indexes()


def downgrade() -> None:
    if _sqlite():
        _require_foreign_keys_off()
    op.drop_index("ix_audit_message_log_rows", table_name="audit_message")
    op.drop_index("ix_audit_message_result_code", table_name="audit_message")
    if _sqlite():
        _copy_message(unique_row_hash=True)
        _copy_replay(with_rowid=True)
        _check_foreign_keys()
    else:
        op.create_unique_constraint("uq_audit_message_row_hash", "audit_message", ["row_hash"])
    for column in _MESSAGE_INDEXES_DROPPED:
        op.create_index(f"ix_audit_message_{column}", "audit_message", [column])
    for column in _DISCLOSURE_INDEXES_DROPPED:
        op.create_index(f"ix_audit_disclosure_{column}", "audit_disclosure", [column])
    op.create_index("ix_audit_replay_expires", "audit_replay", ["expires"])
