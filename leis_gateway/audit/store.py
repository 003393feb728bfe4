"""Engines and migrations: SQLite (embedded default, WAL) or PostgreSQL (by URL).

SQLite specifics, all for the fail-closed promise:
- the file is opened `mode=rw` after the first migration, so a vanished database is an
  error instead of a silently re-created empty file;
- every pool checkout checks that the path still names the inode the connection opened
  (an unlinked SQLite file keeps accepting writes that nobody will ever read);
- writers use `BEGIN IMMEDIATE` so that the chain append is serialised across processes;
- a commit is `synchronous=FULL` (the WAL is fsynced), except the audit's per-message writes that
  a later FULL commit covers (`begin_sqlite_write(durable=False)`).
"""
from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import QueuePool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PG_MIGRATION_LOCK = 0x4C454953_41554454 & 0x7FFFFFFFFFFFFFFF  # "LEIS" "AUDT"

WRITE = {"audit_write": True}  # execution option: begin with a write lock (SQLite: IMMEDIATE)


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    if not u.database or u.database == ":memory:":
        raise ValueError("the audit store needs a file: an in-memory SQLite database would lose the log")
    return Path(u.database).resolve()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    return cfg


def create_audit_engine(url: str, schema: str | None = None) -> Engine:
    """One engine per AuditLog; thread-safe, pooled, never logs bound parameters."""
    path = sqlite_path(url)
    if path is not None:
        return _sqlite_engine(path)
    connect_args: dict[str, Any] = {}
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = 5
        if schema is not None:
            if not _SCHEMA_RE.match(schema):
                raise ValueError(f"invalid schema name {schema!r}")
            connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)
    return engine


def _sqlite_engine(path: Path) -> Engine:
    uri = f"file:{quote(str(path))}?mode=rw"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(
            uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )

    engine = create_engine(
        "sqlite+pysqlite://", creator=connect, poolclass=QueuePool, pool_size=5, max_overflow=10,
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, record: Any) -> None:
        st = os.stat(path)
        record.info["audit_inode"] = (st.st_dev, st.st_ino)
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()
        record.info["audit_synchronous"] = "FULL"

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DisconnectionError("audit database file is gone") from exc
        if record.info.get("audit_inode") != (st.st_dev, st.st_ino):
            raise DisconnectionError("audit database file was replaced")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # pysqlite's own transaction handling is off (isolation_level=None): we issue BEGIN.
        if conn.get_execution_options().get("audit_write", False):
            begin_sqlite_write(conn.exec_driver_sql, conn.connection.info, durable=True)
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def begin_sqlite_write(execute: Callable[[str], Any], info: dict[str, Any], *, durable: bool) -> None:
    """BEGIN IMMEDIATE on a connection of the audit's SQLite engine, through `execute` (a Core
    connection's `exec_driver_sql`, or the DBAPI cursor of the audit's per-message writes).

    `durable`: the commit fsyncs the WAL (synchronous=FULL). Otherwise NORMAL: the commit does not
    wait for the disk; only for rows that a later durable commit of the same exchange covers (an
    fsync of the WAL file makes every frame before it durable, whichever connection or process
    wrote them; see AuditLog.record). The pragma is issued outside the transaction and only when
    this connection's level changes (`info` is its pool record's).
    """
    level = "FULL" if durable else "NORMAL"
    if info.get("audit_synchronous") != level:
        execute(f"PRAGMA synchronous={level}")
        info["audit_synchronous"] = level
    execute("BEGIN IMMEDIATE")


def prepare_sqlite_file(path: Path) -> None:
    """Create the database file (and WAL mode) once; afterwards it is only opened, never created."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass


def migrate(engine: Engine, schema: str | None = None, revision: str = "head") -> None:
    """Upgrade to head (or `revision`); concurrent starters wait on one lock (SQLite write lock /
    PG advisory lock)."""
    _run_migrations(engine, schema, "upgrade", revision)


def _run_migrations(engine: Engine, schema: str | None, direction: str, revision: str) -> None:
    """`alembic upgrade|downgrade revision` in one transaction under the migration lock.

    SQLite: with foreign keys off on that connection (set before the transaction: SQLite ignores
    the pragma inside one), since a migration that copies audit_message (0002) drops the old table,
    which would delete every disclosure through ON DELETE CASCADE. Such a migration checks the keys
    itself (`PRAGMA foreign_key_check`) before it commits; the connection is discarded afterwards.
    """
    cfg = alembic_config()
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.execution_options(**WRITE).begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                    if schema is not None:
                        conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                cfg.attributes["connection"] = conn
                getattr(command, direction)(cfg, revision)
        finally:
            if sqlite:  # never handed out again with foreign keys off
                conn.invalidate()


def downgrade(engine: Engine, revision: str, schema: str | None = None) -> None:
    """Downgrade the audit schema to `revision` (operators' way back; also tested)."""
    _run_migrations(engine, schema, "downgrade", revision)
