"""Alembic environment of the audit store, run programmatically by `leis_gateway.audit.store`."""
