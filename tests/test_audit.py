"""Audit log: encryption at rest, metadata-only search, hash chain, fail-closed, replay cache.

Runs against SQLite always and against PostgreSQL when one answers on 127.0.0.1:5432
(each test gets its own schema, dropped afterwards, so parallel runs do not collide).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from leis_gateway.audit import (
    AuditEntry,
    AuditFilter,
    AuditLog,
    AuditNotFound,
    AuditUnavailable,
    Direction,
    Disclosure,
    key_id_of,
    load_or_create_key,
    query_categories,
)
from leis_gateway.audit.cli import add_audit_commands
from leis_gateway.domain import Criterion, Query, QueryField
from support import PG_HOST, PG_PORT, PG_USERS, postgres_url, postgres_user

CANARY = b"<lexs:PersonSurName>CANARY-SURNAME-7731</lexs:PersonSurName>"


# --- backends ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_user() -> str | None:
    """The first PostgreSQL user that can connect, or None (the PG tests then skip loudly)."""
    return postgres_user()


@dataclasses.dataclass
class Store:
    """One empty audit store for one test, plus raw access for tampering."""

    backend: str
    url: str
    schema: str | None
    key: bytes
    key_id: str
    home: Path
    raw_engine: Engine
    opened: list[AuditLog] = dataclasses.field(default_factory=list)

    def open(self, **kw: Any) -> AuditLog:
        log = AuditLog.open(self.url, self.key, self.key_id, schema=self.schema, **kw)
        self.opened.append(log)
        return log

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.raw_engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []

    def all_stored_bytes(self) -> bytes:
        """Every value of every audit table, as bytes (plus the SQLite files themselves)."""
        out = bytearray()
        for table in ("audit_message", "audit_disclosure", "audit_chain_head", "audit_replay"):
            for row in self.sql(f"SELECT * FROM {table}"):
                for value in row:
                    out += value if isinstance(value, (bytes, memoryview)) else str(value).encode()
        if self.backend == "sqlite":
            for f in self.home.glob("audit.db*"):
                out += f.read_bytes()
        return bytes(out)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, pg_user: str | None) -> Iterator[Store]:
    key = os.urandom(32)
    home = tmp_path / "home"
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'audit.db'}"
        home.mkdir()
        raw = create_engine(url, poolclass=NullPool)
        s = Store("sqlite", url, None, key, key_id_of(key), home, raw)
    else:
        if pg_user is None:
            pytest.skip(
                f"!!! PostgreSQL NOT REACHABLE at {PG_HOST}:{PG_PORT} as {'/'.join(PG_USERS)}: "
                "the PostgreSQL audit backend is NOT tested in this run !!!"
            )
        schema = f"audit_t_{uuid.uuid4().hex[:12]}"
        url = postgres_url(pg_user)
        raw = create_engine(url, poolclass=NullPool, connect_args={"options": f"-csearch_path={schema}"})
        s = Store("postgresql", url, schema, key, key_id_of(key), home, raw)
    try:
        yield s
    finally:
        for log in s.opened:
            log.close()
        if s.schema is not None:
            with s.raw_engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{s.schema}" CASCADE')
        raw.dispose()


@pytest.fixture
def audit(store: Store) -> AuditLog:
    return store.open()


def inbound(n: int = 0, **kw: Any) -> AuditEntry:
    base: dict[str, Any] = dict(
        message_id=f"msg-{n}", correlation_id=f"corr-{n}", agreement_id="ndex", ori="DCFBI0000",
        user_id="officer.a", purpose="CriminalLawEnforcement", query_categories=("Name", "IdentifyingNumber"),
    )
    base.update(kw)
    return AuditEntry(Direction.INBOUND, "doStructuredSearch", **base)


def outbound(n: int = 0, **kw: Any) -> AuditEntry:
    base: dict[str, Any] = dict(
        correlation_id=f"corr-{n}", agreement_id="ndex", ori="DCFBI0000", user_id="officer.a",
        result_code="Success", latency_ms=12.3456,
    )
    base.update(kw)
    return AuditEntry(Direction.OUTBOUND, "doStructuredSearch", **base)


# --- schema ------------------------------------------------------------------------------


def test_migrations_match_models(store: Store, audit: AuditLog) -> None:
    """The Alembic scripts and the ORM models describe the same tables."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from leis_gateway.audit.models import VERSION_TABLE, Base

    with store.raw_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": False})
        assert compare_metadata(ctx, Base.metadata) == []
        assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one() == "0002_audit_fewer_indexes"
    # opening again (another process starting) is a no-op
    store.open().close()


# --- schema: migration 0002 (fewer indexes) -----------------------------------------------

INDEXES_0001 = {
    "audit_message": {"ix_audit_message_at", "ix_audit_message_direction", "ix_audit_message_operation",
                      "ix_audit_message_message_id", "ix_audit_message_correlation_id",
                      "ix_audit_message_result_code", "ix_audit_message_agreement_at", "ix_audit_message_user_at",
                      "ix_audit_message_ori_at"},
    "audit_disclosure": {"ix_audit_disclosure_message_row_id", "ix_audit_disclosure_agreement_id",
                         "ix_audit_disclosure_user_id", "ix_audit_disclosure_source_record_id"},
    "audit_replay": {"ix_audit_replay_expires"},
}
INDEXES_0002 = {
    "audit_message": {"ix_audit_message_at", "ix_audit_message_correlation_id", "ix_audit_message_agreement_at",
                      "ix_audit_message_user_at", "ix_audit_message_ori_at", "ix_audit_message_result_code",
                      "ix_audit_message_log_rows"},
    "audit_disclosure": {"ix_audit_disclosure_message_row_id"},
    "audit_replay": set(),
}


def _schema(engine: Engine) -> tuple[dict[str, set[str]], bool]:
    """The indexes of each table (unique constraints aside), and whether row_hash is unique."""
    from sqlalchemy import inspect

    inspector = inspect(engine)
    unique = {c["name"] for c in inspector.get_unique_constraints("audit_message")}
    indexes = {t: {ix["name"] for ix in inspector.get_indexes(t)} - unique for t in INDEXES_0001}
    return indexes, unique == {"uq_audit_message_row_hash"}


def _log_at_0001(store: Store) -> tuple[Engine, AuditLog]:
    """A store migrated to 0001 only, and a log writing into it (not `AuditLog.open`: that upgrades)."""
    from leis_gateway.audit.crypto import Sealer
    from leis_gateway.audit.store import create_audit_engine, migrate, prepare_sqlite_file, sqlite_path

    path = sqlite_path(store.url)
    if path is not None:
        prepare_sqlite_file(path)
    engine = create_audit_engine(store.url, store.schema)
    migrate(engine, store.schema, "0001_audit_initial")
    log = AuditLog(engine, Sealer(store.key, store.key_id), sqlite_file=path)
    store.opened.append(log)
    return engine, log


def test_migration_0002_keeps_every_row_and_downgrades(store: Store) -> None:
    """Upgrading a store that holds rows (0001) to 0002 and back: rows, ids, hashes, disclosures and
    replay keys unchanged, the chain intact, and each schema's indexes as its migration says."""
    from leis_gateway.audit.store import downgrade, migrate

    engine, old = _log_at_0001(store)
    soon = datetime.now(UTC) + timedelta(minutes=5)
    _fill(old, 3)
    assert old.record_inbound(inbound(9), b"<request/>", "sig:before-the-upgrade", soon) is True
    old.show(2, "reviewer", "before the upgrade")
    before = [r.as_dict() for r in old.search(AuditFilter(limit=None))]
    assert _schema(engine) == (INDEXES_0001, True)
    assert len(before) == 8 and sum(len(r["disclosures"]) for r in before) == 3

    def unchanged(log: AuditLog) -> None:
        assert [r.as_dict() for r in log.search(AuditFilter(limit=None))][: len(before)] == before
        report = log.verify()
        assert report.ok and report.rows_checked >= len(before), report
        assert log.show(7, "reviewer", "after a migration") == b"<request/>"  # decrypts: the metadata is intact
        assert log.remember_once("sig:before-the-upgrade", soon) is False  # the replay cache came along

    upgraded = store.open()  # a gateway starting with the new code upgrades the store
    assert _schema(engine) == (INDEXES_0002, False)
    unchanged(upgraded)
    upgraded.close()

    downgrade(engine, "0001_audit_initial", store.schema)
    assert _schema(engine) == (INDEXES_0001, True)
    unchanged(old)
    migrate(engine, store.schema)
    assert _schema(engine) == (INDEXES_0002, False)
    unchanged(store.open())
    old.close()  # and its engine


def test_migration_0002_on_sqlite_refuses_to_run_with_foreign_keys_on(tmp_path: Path) -> None:
    """Copying audit_message with foreign keys on would delete every disclosure (ON DELETE CASCADE):
    run outside `store.migrate` (which turns them off), the migration stops before changing anything."""
    from alembic import command

    from leis_gateway.audit.store import alembic_config, create_audit_engine, migrate, prepare_sqlite_file

    path = tmp_path / "audit.db"
    prepare_sqlite_file(path)
    engine = create_audit_engine(f"sqlite:///{path}")
    migrate(engine, None, "0001_audit_initial")
    from leis_gateway.audit.crypto import Sealer

    log = AuditLog(engine, Sealer(bytes(32), "k"), sqlite_file=path)
    _fill(log, 2)
    log.close()
    engine = create_audit_engine(f"sqlite:///{path}")
    cfg = alembic_config()
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        cfg.attributes["connection"] = conn
        with pytest.raises(RuntimeError, match="foreign keys"):
            command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_disclosure").scalar() == 2
        assert conn.exec_driver_sql("SELECT version_num FROM audit_alembic_version").scalar() == "0001_audit_initial"
    engine.dispose()


def test_canonical_metadata_bytes_are_stable() -> None:
    """Rows written by earlier versions must still verify: the hashed bytes never change."""
    from leis_gateway.audit import chain

    meta = chain.canonical_metadata(
        row_id=7, at=datetime(2025, 1, 14, 10, 0, 0, 123456, tzinfo=UTC), direction="outbound",
        operation="doStructuredSearch", message_id="m-1", correlation_id="c-1", agreement_id="ndex",
        ori="WVFBINDX0", user_id="officer.\u00e9", purpose="CriminalLawEnforcement", query_categories="Name,Address",
        result_code="Success", advisory_categories=None, size_bytes=1234, latency_ms=12.3456, detail=None,
        key_id="abcd1234", disclosures=[("TECS", "T-2", "PersonSurName"), ("EID", "E-1", "PersonGivenName,PersonBirthDate")],
    )
    assert meta == (
        b'{"advisory_categories":null,"agreement_id":"ndex","at":"2025-01-14T10:00:00.123456+00:00",'
        b'"correlation_id":"c-1","detail":null,"direction":"outbound","disclosures":[["EID","E-1",'
        b'"PersonGivenName,PersonBirthDate"],["TECS","T-2","PersonSurName"]],"id":7,"key_id":"abcd1234",'
        b'"latency_ms":"12.346","message_id":"m-1","operation":"doStructuredSearch","ori":"WVFBINDX0",'
        b'"purpose":"CriminalLawEnforcement","query_categories":"Name,Address","result_code":"Success",'
        b'"size_bytes":1234,"user_id":"officer.\\u00e9","v":1}'
    )
    assert chain.row_hash(meta, bytes(12), b"ciphertext", "0" * 64) == (
        "40da22768582f02f52e075fb35df42a947d78cbc0e918261c0c35bb64d73c084")


@pytest.mark.parametrize("size", [0, 1, 2046, 2047, 2048, 4095, 19_000])
def test_row_hash_of_a_large_ciphertext_is_the_documented_sha256_chain(size: int) -> None:
    """The chain hashes a ciphertext in pieces (so that hashlib keeps the GIL): the row hash must be
    the same SHA-256 construction as a plain one-shot hashing of every part."""
    from leis_gateway.audit import chain

    meta, nonce, ciphertext, prev = b'{"v":1}', os.urandom(12), os.urandom(size), "ab" * 32
    parts = (meta, nonce, hashlib.sha256(ciphertext).digest(), prev.encode("ascii"))
    expected = hashlib.sha256(b"".join(len(p).to_bytes(8, "big") + p for p in parts)).hexdigest()
    assert chain.row_hash(meta, nonce, ciphertext, prev) == expected


# Each search filter of `leis-gateway audit search` that picks out few rows, and the index that
# answers it (audit/models.py). `--direction inbound|outbound` and `--operation` match a large share
# of the rows and read the table in chain order up to the limit instead.
SEARCH_INDEXES = {
    "--since/--until": (dict(since=datetime(2025, 1, 1, tzinfo=UTC), until=datetime(2025, 1, 8, tzinfo=UTC)),
                        "ix_audit_message_at"),
    "--agreement": (dict(agreement_id="azlink"), "ix_audit_message_agreement_at"),
    "--agreement in a window": (dict(agreement_id="azlink", since=datetime(2025, 1, 1, tzinfo=UTC)),
                                "ix_audit_message_agreement_at"),
    "--user": (dict(user_id="officer.b"), "ix_audit_message_user_at"),
    "--ori": (dict(ori="AZ0000000"), "ix_audit_message_ori_at"),
    "--result": (dict(result_code="Error"), "ix_audit_message_result_code"),
    "--correlation": (dict(correlation_id="corr-2"), "ix_audit_message_correlation_id"),
    "--direction review": (dict(direction="review"), "ix_audit_message_log_rows"),
    "--direction admin --newest-first": (dict(direction="admin", newest_first=True), "ix_audit_message_log_rows"),
}


def _plans(store: Store, audit: AuditLog, run: Callable[[], object]) -> list[str]:
    """The query plans of the SELECTs on audit_message that `run` executes."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM audit_message" in statement:
            seen.append((statement, parameters))

    event.listen(audit._engine, "before_cursor_execute", grab)
    try:
        run()
    finally:
        event.remove(audit._engine, "before_cursor_execute", grab)
    plans = []
    with audit._engine.connect() as conn:
        for statement, parameters in seen:
            if store.backend == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
                plans.append("\n".join(str(row[-1]) for row in rows))
            else:  # a handful of rows: make the planner show which index it can use
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).fetchall()
                plans.append("\n".join(str(row[0]) for row in rows))
    return plans


@pytest.mark.parametrize("name", list(SEARCH_INDEXES))
def test_each_selective_search_filter_uses_its_index(store: Store, audit: AuditLog, name: str) -> None:
    audit.record(inbound(1), b"x")
    audit.record(outbound(2, agreement_id="azlink", ori="AZ0000000", user_id="officer.b", result_code="Error"), b"x")
    audit.show(1, "reviewer", "index test")
    kw, index = SEARCH_INDEXES[name]
    plans = _plans(store, audit, lambda: audit.search(AuditFilter(**kw)))
    assert plans and index in plans[0], plans


def test_verify_finds_the_latest_purge_checkpoint_by_index(store: Store, audit: AuditLog) -> None:
    _fill(audit, 2)
    audit.purge(datetime.now(UTC) - timedelta(days=1), "records.officer")
    plans = _plans(store, audit, lambda: audit.verify())
    assert any("ix_audit_message_log_rows" in plan for plan in plans), plans


# --- record / search / encryption --------------------------------------------------------


def test_record_and_search_by_each_metadata_filter(audit: AuditLog) -> None:
    t0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
    a = audit.record(inbound(1, at=t0), b"<req1/>")
    b = audit.record(
        outbound(1, at=t0 + timedelta(seconds=1), disclosures=(Disclosure("TECS", "T-100", ("PersonGivenName", "PersonBirthDate")),)),
        b"<resp1/>",
    )
    c = audit.record(inbound(2, at=t0 + timedelta(hours=1), agreement_id="azlink", ori="AZ0000000", user_id="officer.b"), b"<r2/>")
    d = audit.record(outbound(2, at=t0 + timedelta(hours=1, seconds=1), agreement_id="azlink", ori="AZ0000000",
                              user_id="officer.b", result_code="Error", advisory_categories=("BusinessRuleNotMet",)), b"<e/>")
    assert (a, b, c, d) == (1, 2, 3, 4)

    def ids(**kw: Any) -> list[int]:
        return [r.id for r in audit.search(AuditFilter(**kw))]

    assert ids() == [1, 2, 3, 4]
    assert ids(agreement_id="azlink") == [3, 4]
    assert ids(ori="DCFBI0000") == [1, 2]
    assert ids(user_id="officer.b") == [3, 4]
    assert ids(operation="doStructuredSearch", direction="outbound") == [2, 4]
    assert ids(direction=Direction.INBOUND) == [1, 3]
    assert ids(result_code="Error") == [4]
    assert ids(since=t0 + timedelta(minutes=30)) == [3, 4]
    assert ids(until=t0 + timedelta(minutes=30)) == [1, 2]
    assert ids(correlation_id="corr-2") == [3, 4]
    assert ids(message_id="msg-1") == [1]
    assert ids(newest_first=True, limit=2) == [4, 3]
    assert ids(agreement_id="nobody") == []

    rows = {r.id: r for r in audit.search()}
    assert rows[1].query_categories == ("Name", "IdentifyingNumber")
    assert rows[1].purpose == "CriminalLawEnforcement" and rows[1].size_bytes == len(b"<req1/>")
    assert rows[2].disclosures == (Disclosure("TECS", "T-100", ("PersonGivenName", "PersonBirthDate")),)
    assert rows[2].latency_ms == pytest.approx(12.346)
    assert rows[4].advisory_categories == ("BusinessRuleNotMet",)
    assert rows[1].at == t0 and rows[1].at.tzinfo is not None
    assert rows[2].prev_hash == rows[1].row_hash


def test_search_filter_has_no_content_parameter() -> None:
    """Issue 5: stored messages can only be searched by metadata."""
    allowed = {"since", "until", "agreement_id", "ori", "user_id", "operation", "direction", "result_code",
               "correlation_id", "message_id", "limit", "newest_first"}
    assert {f.name for f in dataclasses.fields(AuditFilter)} == allowed


def test_content_is_encrypted_at_rest(store: Store, audit: AuditLog) -> None:
    audit.record(inbound(1), b"<soap:Envelope>" + CANARY + b"</soap:Envelope>")
    audit.record(outbound(1), CANARY * 3)
    stored = store.all_stored_bytes()
    assert b"CANARY-SURNAME" not in stored
    assert b"CANARY-SURNAME".hex().encode() not in stored
    nonces = [bytes(n) for (n,) in store.sql("SELECT nonce FROM audit_message")]
    assert len(set(nonces)) == 2 and all(len(n) == 12 for n in nonces)
    assert {k for (k,) in store.sql("SELECT DISTINCT key_id FROM audit_message")} == {store.key_id}


def test_ciphertext_is_bound_to_its_row(store: Store, audit: AuditLog) -> None:
    """Associated data = the row's metadata: moving ciphertext between rows cannot decrypt."""
    from leis_gateway.audit import AuditIntegrityError

    audit.record(inbound(1), b"first")
    audit.record(inbound(2), b"second")
    store.sql("UPDATE audit_message SET user_id = 'someone.else' WHERE id = 1")
    with pytest.raises(AuditIntegrityError):
        audit.show(1, "reviewer", "integrity test")


def test_show_decrypts_audits_itself_and_requires_a_reason(audit: AuditLog) -> None:
    rid = audit.record(inbound(1), CANARY)
    for reason in ("", "   "):
        with pytest.raises(ValueError):
            audit.show(rid, "reviewer.r", reason)
    with pytest.raises(ValueError):
        audit.show(rid, "", "complaint 42")
    assert [r.id for r in audit.search()] == [rid]  # refused views wrote nothing and showed nothing

    assert audit.show(rid, "reviewer.r", "complaint 42") == CANARY
    review = audit.search(AuditFilter(direction=Direction.REVIEW))
    assert len(review) == 1
    assert review[0].operation == "audit.show" and review[0].user_id == "reviewer.r"
    assert json.loads(review[0].detail or "") == {"row_id": rid, "reason": "complaint 42"}
    assert review[0].correlation_id == "corr-1"
    with pytest.raises(AuditNotFound):
        audit.show(999, "reviewer.r", "no such row")
    assert audit.verify().ok


def test_record_refuses_review_direction_and_clips_hostile_lengths(audit: AuditLog) -> None:
    with pytest.raises(ValueError):
        audit.record(AuditEntry(Direction.REVIEW, "audit.show"), b"")
    rid = audit.record(inbound(1, message_id="M" * 5000, user_id="U" * 5000), b"x")
    row = audit.search()[0]
    assert row.id == rid and len(row.message_id or "") == 256 and len(row.user_id or "") == 256
    assert audit.verify().ok


def test_old_keys_keep_rotated_rows_readable(store: Store, audit: AuditLog) -> None:
    rid = audit.record(inbound(1), b"written with the old key")
    new_key = os.urandom(32)
    rotated = AuditLog.open(store.url, new_key, key_id_of(new_key), schema=store.schema,
                            old_keys={store.key_id: store.key})
    store.opened.append(rotated)
    rid2 = rotated.record(inbound(2), b"written with the new key")
    assert rotated.show(rid, "r", "rotation") == b"written with the old key"
    assert rotated.show(rid2, "r", "rotation") == b"written with the new key"
    assert {r.key_id for r in rotated.search(AuditFilter(direction="inbound"))} == {store.key_id, key_id_of(new_key)}


# --- hash chain --------------------------------------------------------------------------


def _fill(audit: AuditLog, n: int = 6) -> None:
    for i in range(n):
        audit.record(inbound(i), b"in %d" % i)
        audit.record(outbound(i, disclosures=(Disclosure("EID", f"E-{i}", ("PersonSurName",)),)), b"out %d" % i)


TAMPER: dict[str, tuple[list[str], int]] = {
    # name: (SQL statements, first bad row id)
    "changed metadata": (["UPDATE audit_message SET user_id = 'innocent' WHERE id = 5"], 5),
    "changed time": (["UPDATE audit_message SET at = (SELECT at FROM audit_message WHERE id = 1) WHERE id = 7"], 7),
    "changed ciphertext": (["UPDATE audit_message SET ciphertext = (SELECT ciphertext FROM audit_message WHERE id = 3) WHERE id = 5"], 5),
    "deleted row": (["DELETE FROM audit_disclosure WHERE message_row_id = 6", "DELETE FROM audit_message WHERE id = 6"], 7),
    "deleted first row": (["DELETE FROM audit_message WHERE id = 1"], 2),
    "deleted last row": (["DELETE FROM audit_disclosure WHERE message_row_id = 12", "DELETE FROM audit_message WHERE id = 12"], 12),
    "removed disclosure": (["DELETE FROM audit_disclosure WHERE message_row_id = 4"], 4),
    "swapped rows": (
        [
            "UPDATE audit_message SET id = -3 WHERE id = 3",
            "UPDATE audit_message SET id = 3 WHERE id = 5",
            "UPDATE audit_message SET id = 5 WHERE id = -3",
        ],
        3,
    ),
}


@pytest.mark.parametrize("tamper", sorted(TAMPER))
def test_verify_detects_tampering(store: Store, audit: AuditLog, tamper: str) -> None:
    _fill(audit)
    report = audit.verify()
    assert report.ok and report.rows_checked == 12 and report.head_id == 12, report
    statements, bad = TAMPER[tamper]
    if store.backend == "sqlite":
        with closing(sqlite3.connect(store.home / "audit.db")) as conn:
            conn.execute("PRAGMA foreign_keys=OFF")
            for s in statements:
                conn.execute(s)
            conn.commit()
    else:
        with store.raw_engine.begin() as conn:
            for s in statements:
                conn.exec_driver_sql(s)
    report = audit.verify()
    assert not report.ok, tamper
    assert report.first_bad_id == bad, report
    assert str(bad) in str(report)


def test_purge_keeps_the_chain_verifiable(store: Store, audit: AuditLog) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for day in range(10):
        audit.record(inbound(day, at=t0 + timedelta(days=day)), b"old")
    assert audit.purge(t0 + timedelta(days=4), "records.officer") == 4
    assert [r.id for r in audit.search(AuditFilter(direction="inbound"))] == [5, 6, 7, 8, 9, 10]
    cp = audit.search(AuditFilter(operation="audit.purge"))[0]
    assert cp.direction == "admin" and cp.user_id == "records.officer"
    assert json.loads(cp.detail or "")["through_id"] == 4
    report = audit.verify()
    assert report.ok and report.anchor_id == 5, report

    assert audit.purge(t0, "records.officer") == 0  # nothing older: audited, chain unchanged at the start
    assert audit.verify().ok

    # only a prefix is ever cut: rows 5..8 (days 4-7), the checkpoints (written now) stay
    assert audit.purge(t0 + timedelta(days=8), "records.officer") == 4
    assert audit.verify().ok
    audit.record(inbound(99), b"new")
    assert audit.verify().ok

    # removing a remaining row at the start (quietly "purging" more) is still detected
    store.sql("DELETE FROM audit_message WHERE id = 9")
    report = audit.verify()
    assert not report.ok and report.first_bad_id == 10, report


def test_purge_of_everything_anchors_on_the_checkpoint(audit: AuditLog) -> None:
    _fill(audit, 2)
    assert audit.purge(datetime.now(UTC) + timedelta(days=1), "records.officer") == 4
    rows = audit.search()
    assert [r.operation for r in rows] == ["audit.purge"]
    report = audit.verify()
    assert report.ok and report.anchor_id == rows[0].id, report
    with pytest.raises(ValueError):
        audit.purge(datetime.now(UTC), " ")


def test_concurrent_writers_threads_keep_one_chain(audit: AuditLog) -> None:
    errors: list[BaseException] = []
    ids: list[int] = []
    lock = threading.Lock()

    def writer(t: int) -> None:
        try:
            for i in range(50):
                rid = audit.record(inbound(t * 1000 + i, user_id=f"thread-{t}"), b"x" * i)
                with lock:
                    ids.append(rid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert sorted(ids) == list(range(1, 401))
    report = audit.verify()
    assert report.ok and report.rows_checked == 400, report


_WRITER = """
import sys
from leis_gateway.audit import AuditEntry, AuditLog
url, schema, key_hex, key_id, n, who = sys.argv[1:7]
log = AuditLog.open(url, bytes.fromhex(key_hex), key_id, schema=schema or None)
try:
    for i in range(int(n)):
        log.record(AuditEntry("inbound", "getDataItem", user_id=who, message_id=f"{who}-{i}"), b"proc")
finally:
    log.close()
"""


def test_concurrent_writers_processes_keep_one_chain(store: Store) -> None:
    """Three gateway processes start together on an empty store (racing migrations), then write."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, store.url, store.schema or "", store.key.hex(), store.key_id, "25", f"p{p}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for p in range(3)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err.decode()
    audit = store.open()
    report = audit.verify()
    assert report.ok and report.rows_checked == 75, report
    assert len(audit.search(AuditFilter(user_id="p2"))) == 25


# --- replay cache ------------------------------------------------------------------------


def test_replay_cache_remembers_once(store: Store, audit: AuditLog) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    assert audit.remember_once("sig:abc", soon) is True
    assert audit.remember_once("sig:abc", soon) is False
    assert audit.remember_once("sig:other", soon) is True
    # a second process (another AuditLog on the same store) sees the same cache
    other = store.open()
    assert other.remember_once("sig:abc", soon) is False
    # an expired entry no longer blocks, and is purged
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert audit.remember_once("sig:expired", past) is True
    assert audit.remember_once("sig:expired", soon) is True
    assert audit.remember_once("sig:gone", past) is True
    assert audit.purge_replays() == 1
    stored = store.all_stored_bytes()
    assert b"sig:abc" not in stored and hashlib.sha256(b"sig:abc").hexdigest().encode() in stored


def test_replay_cache_concurrent_exactly_one_winner(store: Store, audit: AuditLog) -> None:
    other = store.open()
    soon = datetime.now(UTC) + timedelta(minutes=5)
    barrier = threading.Barrier(16)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        log = audit if i % 2 else other
        barrier.wait()
        r = log.remember_once("nonce-xyz", soon)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [False] * 15 + [True]


# --- one transaction for several rows (guard/edge.py's order) ------------------------------


def test_record_inbound_stores_the_row_and_remembers_the_key_in_one_transaction(store: Store, audit: AuditLog) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    assert audit.record_inbound(inbound(1), b"first", "sig:one", soon) is True
    assert audit.remember_once("sig:one", soon) is False  # the key is the replay cache's
    # a replay is refused, and its arrival is audited all the same
    assert audit.record_inbound(inbound(2), b"again", "sig:one", soon) is False
    rows = audit.search(AuditFilter())
    assert [(r.correlation_id, r.direction) for r in rows] == [("corr-1", "inbound"), ("corr-2", "inbound")]
    assert store.open().record_inbound(inbound(3), b"elsewhere", "sig:one", soon) is False  # across processes
    # nothing of a write that fails is kept: neither the row nor the key
    with pytest.raises(ValueError):
        audit.record_inbound(inbound(4, at=datetime(2025, 1, 1)), b"naive time", "sig:four", soon)
    assert audit.remember_once("sig:four", soon) is True
    assert len(audit.search(AuditFilter())) == 3 and audit.verify().ok


def test_record_with_its_pending_inbound_row_writes_both_in_order(store: Store, audit: AuditLog) -> None:
    disclosed = (Disclosure("TECS", "T-1", ("PersonSurName",)),)
    out_id = audit.record(outbound(1, result_code="Fault:BadSignature"), b"<fault/>", disclosed,
                          inbound=(inbound(1), b"<request/>"))
    rows = audit.search(AuditFilter())
    assert [(r.id, r.direction) for r in rows] == [(out_id - 1, "inbound"), (out_id, "outbound")]
    assert rows[1].disclosures == (Disclosure("TECS", "T-1", ("PersonSurName",)),)
    assert audit.show(rows[0].id, "auditor", "test") == b"<request/>"
    # one transaction: when the answer's row cannot be written, neither is the request's
    with pytest.raises(ValueError):
        audit.record(outbound(2, at=datetime(2025, 1, 1)), b"x", inbound=(inbound(2), b"y"))
    with pytest.raises(ValueError):
        audit.record(outbound(3), b"x", inbound=(AuditEntry(Direction.REVIEW, "audit.show"), b"y"))
    assert [r.correlation_id for r in audit.search(AuditFilter(direction="inbound"))] == ["corr-1"]
    assert audit.verify().ok


# --- fail closed -------------------------------------------------------------------------


def test_sqlite_unavailable_fails_closed_and_recovers(tmp_path: Path) -> None:
    key = os.urandom(32)
    home = tmp_path / "home"
    log = AuditLog.open(f"sqlite:///{home / 'audit.db'}", key, key_id_of(key))
    try:
        assert log.record(inbound(1), b"before") == 1
        moved = tmp_path / "moved-away"
        home.rename(moved)
        assert log.ready() is False
        with pytest.raises(AuditUnavailable):
            log.record(inbound(2), b"during")
        with pytest.raises(AuditUnavailable):
            log.remember_once("k", datetime.now(UTC) + timedelta(minutes=1))
        assert not home.exists(), "the store must not be silently re-created"

        moved.rename(home)
        assert log.ready() is True
        assert log.record(inbound(3), b"after") == 2
        assert log.verify().ok
    finally:
        log.close()


def test_sqlite_replaced_file_fails_closed(tmp_path: Path) -> None:
    """A database file swapped under a running gateway is not written to."""
    key = os.urandom(32)
    db = tmp_path / "audit.db"
    log = AuditLog.open(f"sqlite:///{db}", key, key_id_of(key))
    try:
        log.record(inbound(1), b"x")
        db.rename(tmp_path / "audit.old")
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        with closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE decoy (x)")
        with pytest.raises(AuditUnavailable):
            log.record(inbound(2), b"x")
        assert log.ready() is False
    finally:
        log.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_open_unreachable_postgres_raises(pg_user: str | None) -> None:
    key = os.urandom(32)
    with pytest.raises(AuditUnavailable):
        AuditLog.open(postgres_url(pg_user or "postgres", _closed_port()), key, key_id_of(key))


class _Proxy:
    """A TCP forwarder we can cut and restore, to simulate a PostgreSQL outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _closed_port()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        ls.settimeout(0.1)
        self._listener = ls
        self._spawn(self._accept)

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        th = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(th)
        th.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads[:1]:
            th.join()
        if self._listener is not None:
            self._listener.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for th in self._threads:
            th.join(timeout=5)
        self._socks, self._threads = [], []


def test_postgres_outage_fails_closed_and_recovers(pg_user: str | None) -> None:
    if pg_user is None:
        pytest.skip(f"!!! PostgreSQL NOT REACHABLE at {PG_HOST}:{PG_PORT}: outage test NOT run !!!")
    schema = f"audit_t_{uuid.uuid4().hex[:12]}"
    proxy = _Proxy((PG_HOST, PG_PORT))
    proxy.start()
    key = os.urandom(32)
    log = None
    try:
        log = AuditLog.open(postgres_url(pg_user, proxy.port), key, key_id_of(key), schema=schema)
        assert log.record(inbound(1), b"before") == 1
        proxy.stop()
        assert log.ready() is False
        with pytest.raises(AuditUnavailable):
            log.record(inbound(2), b"during")
        proxy.start()
        assert log.ready() is True
        assert log.record(inbound(3), b"after") == 2
        assert log.verify().ok
    finally:
        if log is not None:
            log.close()
        proxy.stop()
        admin = create_engine(postgres_url(pg_user), poolclass=NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


# --- weekly report -----------------------------------------------------------------------


def test_weekly_report_html_svg_and_csv(store: Store, audit: AuditLog, tmp_path: Path) -> None:
    week_start = datetime(2025, 1, 13, tzinfo=UTC)  # Monday of 2025-W03
    prev = week_start - timedelta(days=7)
    audit.record(inbound(0, at=prev + timedelta(hours=10), user_id="steady"), b"x")
    n = 0
    for i in range(12):  # "jumper": 12 this week vs 0 last week, 3 of them at night
        hour = 2 if i < 3 else 11
        audit.record(inbound(n := n + 1, at=week_start + timedelta(days=1, hours=hour, minutes=i), user_id="jumper"), b"x")
    audit.record(inbound(n := n + 1, at=week_start + timedelta(hours=9), user_id="steady"), b"x")
    audit.record(outbound(n, at=week_start + timedelta(hours=9, seconds=1), user_id="steady", result_code="Error",
                          advisory_categories=("BusinessRuleNotMet",)), b"x")
    audit.record(outbound(n + 1, at=week_start + timedelta(hours=9, seconds=2), user_id="jumper",
                          disclosures=(Disclosure("TECS", "T-1", ("PersonSurName",)),)), b"x")
    audit.record(inbound(n + 2, at=week_start + timedelta(hours=12), agreement_id="<script>alert(1)</script>",
                         user_id="=HYPERLINK(1)"), b"x")
    audit.record(inbound(n + 3, at=week_start + timedelta(days=8)), b"next week: not in the report")

    html_path, csv_path = audit.weekly_report("2025-W03", tmp_path / "out", reviewer="weekly.reviewer")
    page = html_path.read_text()
    assert page.count("<svg") >= 4
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from the web
    for title in ("per agreement", "per user", "Refusals by cause", "Off-hours", "jump", "BusinessRuleNotMet"):
        assert title in page, title
    assert "OK:" in page  # chain verified

    import csv as _csv

    with csv_path.open(newline="") as fh:
        lines = list(_csv.DictReader(fh))
    by_user = {ln["user_id"]: ln for ln in lines}
    assert by_user["jumper"]["requests"] == "12" and by_user["jumper"]["off_hours_requests"] == "3"
    assert by_user["jumper"]["volume_jump"] == "yes" and by_user["jumper"]["records_disclosed"] == "1"
    assert by_user["steady"]["refusals"] == "1" and by_user["steady"]["prev_week_requests"] == "1"
    assert by_user["steady"]["volume_jump"] == "no"
    assert "'=HYPERLINK(1)" in by_user  # formula defused
    assert audit.search(AuditFilter(operation="audit.report"))[0].user_id == "weekly.reviewer"
    with pytest.raises(ValueError):
        audit.weekly_report("2025-03", tmp_path)


# --- CLI ---------------------------------------------------------------------------------


def _cli(store: Store) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leis-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    add_audit_commands(sub, lambda args: AuditLog.open(store.url, store.key, store.key_id, schema=store.schema))
    return parser


def _main(store: Store, *argv: str) -> int:
    args = _cli(store).parse_args(list(argv))
    return args.func(args)


def test_cli_commands(store: Store, audit: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit.record(inbound(1, at=datetime(2025, 1, 14, 10, tzinfo=UTC)), b"<req>CLI-CANARY</req>")
    audit.record(outbound(1, at=datetime(2025, 1, 14, 10, 0, 1, tzinfo=UTC)), b"<resp/>")
    capsys.readouterr()

    assert _main(store, "audit", "search", "--agreement", "ndex", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [1, 2] and "CLI-CANARY" not in json.dumps(rows)

    assert _main(store, "audit", "search", "--since", "2025-01-14", "--until", "2025-01-15", "--direction", "outbound") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("id") and len(table) == 2 and "Success" in table[1]

    with pytest.raises(SystemExit):
        _main(store, "audit", "show", "1")  # --reason is required
    capsys.readouterr()
    assert _main(store, "audit", "show", "1", "--reason", " ", "--reviewer", "r") == 2
    assert _main(store, "audit", "show", "1", "--reason", "case 7", "--reviewer", "r") == 0
    assert "CLI-CANARY" in capsys.readouterr().out
    assert _main(store, "audit", "show", "99", "--reason", "x", "--reviewer", "r") == 2

    assert _main(store, "audit", "verify") == 0
    assert "OK" in capsys.readouterr().out
    assert _main(store, "audit", "report", "--week", "2025-W03", "--out", str(tmp_path / "rep"), "--reviewer", "r") == 0
    assert (tmp_path / "rep" / "audit-2025-W03.html").exists()
    assert _main(store, "audit", "purge", "--before", "2025-01-14T10:00:00.5", "--operator", "ops") == 0
    assert "purged 1 rows" in capsys.readouterr().out
    assert _main(store, "audit", "verify") == 0

    store.sql("UPDATE audit_message SET operation = 'x' WHERE id = 2")
    assert _main(store, "audit", "verify") == 1
    assert "BROKEN at row 2" in capsys.readouterr().out


def test_cli_reports_unavailable_store(capsys: pytest.CaptureFixture[str]) -> None:
    def unavailable(args: argparse.Namespace) -> AuditLog:
        raise AuditUnavailable("down")

    parser = argparse.ArgumentParser()
    add_audit_commands(parser.add_subparsers(), unavailable)
    args = parser.parse_args(["audit", "verify"])
    assert args.func(args) == 2
    assert "unavailable" in capsys.readouterr().err


# --- helpers -----------------------------------------------------------------------------


def test_load_or_create_key(tmp_path: Path) -> None:
    path = tmp_path / "pki" / "audit.key"
    key, kid = load_or_create_key(path)
    assert len(key) == 32 and (path.stat().st_mode & 0o777) == 0o600
    assert kid == hashlib.sha256(key).hexdigest()[:8]
    assert load_or_create_key(path) == (key, kid)
    assert list(path.parent.iterdir()) == [path]  # no temp files left behind
    path.write_bytes(b"short")
    with pytest.raises(ValueError):
        load_or_create_key(path)


def test_query_categories_never_look_at_values() -> None:
    q = Query((Criterion(QueryField.SURNAME, "DOE"), Criterion(QueryField.SSN, "900123456"), Criterion(QueryField.CITY, "X")))
    assert query_categories(q) == ("Name", "IdentifyingNumber", "Address")
    assert query_categories([]) == ()


def test_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError):
        AuditLog.open("sqlite://", os.urandom(32), "k")
