"""Audit store: messages (encrypted, hash-chained), disclosures, chain head, replay cache.

Revision ID: 0001_audit_initial
Revises:
Create Date: 2025-01-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leis_gateway.audit.models import UTCDateTime

revision = "0001_audit_initial"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_message",
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
        sa.PrimaryKeyConstraint("id", name="pk_audit_message"),
        sa.UniqueConstraint("row_hash", name="uq_audit_message_row_hash"),
    )
    for column in ("at", "direction", "operation", "message_id", "correlation_id", "result_code"):
        op.create_index(f"ix_audit_message_{column}", "audit_message", [column])
    op.create_index("ix_audit_message_agreement_at", "audit_message", ["agreement_id", "at"])
    op.create_index("ix_audit_message_user_at", "audit_message", ["user_id", "at"])
    op.create_index("ix_audit_message_ori_at", "audit_message", ["ori", "at"])

    op.create_table(
        "audit_disclosure",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_row_id", sa.Integer(), nullable=False),
        sa.Column("agreement_id", sa.String(128), nullable=True),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("source_system", sa.String(32), nullable=False),
        sa.Column("source_record_id", sa.String(256), nullable=False),
        sa.Column("elements", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_disclosure"),
        sa.ForeignKeyConstraint(
            ["message_row_id"], ["audit_message.id"], name="fk_audit_disclosure_message", ondelete="CASCADE"
        ),
    )
    for column in ("message_row_id", "agreement_id", "user_id", "source_record_id"):
        op.create_index(f"ix_audit_disclosure_{column}", "audit_disclosure", [column])

    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain_head"),
    )
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": GENESIS_HASH}])

    op.create_table(
        "audit_replay",
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("expires", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name="pk_audit_replay"),
    )
    op.create_index("ix_audit_replay_expires", "audit_replay", ["expires"])


def downgrade() -> None:
    op.drop_table("audit_replay")
    op.drop_table("audit_chain_head")
    op.drop_table("audit_disclosure")
    op.drop_table("audit_message")
