"""Alembic env for the audit store: always handed a live connection by `store.migrate()`.

No alembic.ini, no logging configuration: the caller owns both.
"""
from __future__ import annotations

from alembic import context

from leis_gateway.audit.models import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline mode is not supported
    raise RuntimeError("run audit migrations through leis_gateway.audit.store.migrate()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
