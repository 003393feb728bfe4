"""The audit log: every message in and out, encrypted, hash-chained, searchable by metadata only.

Fail closed: every database problem surfaces as `AuditUnavailable`, and the gateway must
not serve a transaction it could not audit. The engine is created once per `AuditLog`;
each public method is one unit of work in one transaction (the per-message writes: one job of a
group commit, `_GroupCommit`).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

from sqlalchemy import Connection, Dialect, Engine, Executable, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.pool import PoolProxiedConnection

from . import chain
from .crypto import Sealer
from .models import GENESIS_HASH, LOG_ROWS, AuditChainHead, AuditDisclosure, AuditMessage, AuditReplay
from .store import (
    SQLITE_BUSY_TIMEOUT_S,
    WRITE,
    begin_sqlite_write,
    create_audit_engine,
    migrate,
    prepare_sqlite_file,
    sqlite_path,
)
from .types import (
    AuditEntry,
    AuditFilter,
    AuditNotFound,
    AuditRow,
    AuditUnavailable,
    Direction,
    Disclosure,
    VerifyReport,
)

log = logging.getLogger(__name__)

_LIMITS = {
    "operation": 64, "message_id": 256, "correlation_id": 256, "agreement_id": 128, "ori": 64,
    "user_id": 256, "purpose": 64, "query_categories": 256, "result_code": 32, "advisory_categories": 512,
    "source_system": 32, "source_record_id": 256,
}
_REPLAY_PURGE_EVERY_S = 60.0
_HELD_IDLE_S = 1.0
_VERIFY_BATCH = 1000

Cursor = Any  # a DBAPI cursor inside an audit write transaction

_HEAD = AuditChainHead.__table__
_REPLAY = AuditReplay.__table__
_MESSAGE_COLUMNS = (
    "id", "at", "direction", "operation", "message_id", "correlation_id", "agreement_id", "ori", "user_id",
    "purpose", "query_categories", "result_code", "advisory_categories", "size_bytes", "latency_ms", "detail",
    "key_id", "nonce", "ciphertext", "prev_hash", "row_hash",
)
_DISCLOSURE_COLUMNS = ("message_row_id", "agreement_id", "user_id", "source_system", "source_record_id", "elements")
_NO_VALUES: Mapping[str, Any] = {}
# The condition of the partial index on the log's own rows, repeated word for word in a query
# about them (models.LOG_ROWS): SQLite uses a partial index only for a query that states its condition.
_LOG_DIRECTIONS = frozenset((str(Direction.REVIEW), str(Direction.ADMIN)))
_LOG_ROWS = text(LOG_ROWS)


class _Statement:
    """A fixed statement compiled once for the engine's dialect and run on the DBAPI cursor, with
    the values SQLAlchemy would bind (each column type's bind processor applied).

    Why: SQLAlchemy's per-execute work (contexts, events, result set-up) cost more CPU than the
    database itself, three to four times per row (docs/performance.md, "Throughput").
    """

    def __init__(self, statement: Executable, dialect: Dialect, columns: Sequence[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        names = compiled.positiontup if compiled.positional else list(binds)
        self.sql = compiled.string
        self._names = tuple(names or ())
        self._named = not compiled.positional
        self._fixed = {name: binds[name].value for name in self._names if not binds[name].required}
        processors = [binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self._names]
        self._processors = [(i, process) for i, process in enumerate(processors) if process is not None]
        self._constant: Sequence[Any] | dict[str, Any] | None = None
        if len(self._fixed) == len(self._names):  # nothing to bind per call (the chain head's SELECT)
            self._constant = self.params({})

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self._constant is not None:
            return self._constant
        if self._fixed:
            values = {**values, **self._fixed}
        bound = [values[name] for name in self._names]
        for i, process in self._processors:
            bound[i] = process(bound[i])
        return dict(zip(self._names, bound)) if self._named else bound

    def row(self, values: list[Any]) -> Sequence[Any] | dict[str, Any]:
        """`params` of a statement without fixed values, given in the order of `names` (no dicts on
        the way: the message row's insert)."""
        for i, process in self._processors:
            values[i] = process(values[i])
        return dict(zip(self._names, values)) if self._named else values

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def run(self, cursor: Cursor, values: Mapping[str, Any] = _NO_VALUES) -> Cursor:
        cursor.execute(self.sql, self.params(values))
        return cursor

    def run_row(self, cursor: Cursor, values: list[Any]) -> None:
        cursor.execute(self.sql, self.row(values))

    def run_rows(self, cursor: Cursor, rows: Sequence[list[Any]]) -> None:
        cursor.executemany(self.sql, [self.row(values) for values in rows])


class _Statements:
    """The per-message statements of one engine: the chain append and the replay key."""

    def __init__(self, dialect: Dialect) -> None:
        on_conflict = pg_insert if dialect.name == "postgresql" else sqlite_insert
        remember = on_conflict(_REPLAY)
        self.head = _Statement(select(_HEAD.c.last_id, _HEAD.c.last_hash).where(_HEAD.c.id == 1).with_for_update(),
                               dialect)
        self.update_head = _Statement(update(_HEAD).where(_HEAD.c.id == 1).values(
            last_id=bindparam("last_id", type_=_HEAD.c.last_id.type),
            last_hash=bindparam("last_hash", type_=_HEAD.c.last_hash.type)), dialect)
        self.message = _Statement(insert(AuditMessage.__table__), dialect, _MESSAGE_COLUMNS)
        self.disclosure = _Statement(insert(AuditDisclosure.__table__), dialect, _DISCLOSURE_COLUMNS)
        if self.message.names != _MESSAGE_COLUMNS or self.disclosure.names != _DISCLOSURE_COLUMNS:
            raise RuntimeError("audit: `_append` hands the columns over in another order than the tables'")
        # one statement for "first time, or expired": a live key is left alone, and the statement
        # then changes no row (its row count, 0 or 1, says which; cheaper than RETURNING)
        self.remember = _Statement(remember.on_conflict_do_update(
            index_elements=[_REPLAY.c.key_hash], set_={"expires": remember.excluded.expires},
            where=_REPLAY.c.expires <= bindparam("now", type_=_REPLAY.c.expires.type),
        ), dialect, ["key_hash", "expires"])
        self.purge_replays = _Statement(delete(_REPLAY).where(_REPLAY.c.expires <= bindparam("now")), dialect)


class _Rows:
    """The rows one write transaction appends: its DBAPI cursor, and the chain head as its rows
    move it, read (and locked) before the first and written back once after the last.

    Why: a group commit appends several rows in one transaction; a read and an update of the head
    per row cost two statements each, and every statement gives the GIL away several times
    (docs/performance.md, the sixth round).
    """

    __slots__ = ("cursor", "_sql", "_head", "_moved")

    def __init__(self, cursor: Cursor, sql: _Statements) -> None:
        self.cursor = cursor
        self._sql = sql
        self._head: tuple[int, str] | None = None
        self._moved = False

    def head(self) -> tuple[int, str]:
        """(id, hash) of the last row of the chain, this transaction's rows included."""
        if self._head is None:
            self._head = tuple(self._sql.head.run(self.cursor).fetchone())  # type: ignore[assignment]
        return self._head  # type: ignore[return-value]

    def moved_to(self, row_id: int, row_hash: str) -> None:
        self._head, self._moved = (row_id, row_hash), True

    def finish(self) -> None:
        """Write the head back (before the commit) if a row was appended."""
        if self._moved:
            last_id, last_hash = self._head  # type: ignore[misc]
            self._sql.update_head.run(self.cursor, {"last_id": last_id, "last_hash": last_hash})
            self._moved = False


class _Held:
    """A connection kept from one write to the next, given back through the pool when it broke or
    sat idle (PostgreSQL: whose pre-ping replaces a connection the server dropped)."""

    __slots__ = ("connection", "pid", "at")

    def __init__(self) -> None:
        self.connection: PoolProxiedConnection | None = None
        self.pid: int | None = None
        self.at = 0.0

    def take(self, engine: Engine) -> PoolProxiedConnection:
        held, now = self.connection, time.monotonic()
        if held is not None and self.pid != os.getpid():
            held = None  # a forked child's copy: never used, never closed (that would close the parent's)
        elif held is not None and (not held.is_valid or now - self.at > _HELD_IDLE_S):
            held.close()
            held = None
        if held is None:
            self.connection, self.pid = engine.raw_connection(), os.getpid()
        self.at = now
        return self.connection  # type: ignore[return-value]

    def close(self) -> None:
        if self.connection is not None and self.pid == os.getpid():
            self.connection.close()
        self.connection = None


class _Writers:
    """One writer at a time: a thread lock within the process, an `flock` on `<database>-writer`
    across processes (SQLite only).

    SQLite serialises writers itself, but a writer that finds the database locked polls: it sleeps
    1, 2, 5, 10, ... up to 100 ms between tries (its busy handler). With 16 server threads and three
    writes per exchange that sleeping was most of a request's time under load, and its tail
    (docs/performance.md). Queued on these locks instead, the next writer starts the moment the
    previous one commits. SQLite's own locking still decides; other programs (the audit CLI) need
    not take these locks.
    """

    def __init__(self, sqlite_file: Path | None) -> None:
        self._path = None if sqlite_file is None else sqlite_file.with_name(sqlite_file.name + "-writer")
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise AuditUnavailable("audit store busy: no write turn within the busy timeout")
        try:
            fd = self._file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._pid != os.getpid():  # a descriptor inherited over fork would share its lock with the parent
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None


@dataclass(eq=False)
class _Job:
    work: Callable[[Any], Any]
    durable: bool
    woken: threading.Event | None = None  # a follower's: its outcome is in, or it is to lead
    done: bool = False
    committed: bool = False
    result: Any = None
    error: BaseException | None = None


class _GroupCommit:
    """The per-message writes of one process, committed together (a group commit).

    Callers queue a unit of work and wait for its commit. The caller that finds nobody committing
    leads: it takes what is queued (its own job first), runs it in *one* transaction, gives each
    job its own result, or the error that stopped the commit, then hands the lead to the first job
    queued meanwhile. Nothing is answered before its row is committed, exactly as with a
    transaction per message (fail closed). If a batch of several fails, each of its jobs is tried
    again alone, so that a job gets its own outcome.

    Why: under load every transaction was a turn at the writers' lock held across several SQLite
    calls, each giving the GIL away and waiting to get it back; the turns, not the work, were the
    limit (docs/performance.md, "Throughput"). Why on the callers' threads and not a writer
    thread's: that thread cost two hand-offs of the GIL per write; a lone caller now commits
    without any, and a waiting one is woken once.
    """

    MAX_BATCH = 64

    def __init__(self, write: Callable[[bool], ContextManager[Any]]) -> None:
        self._write = write
        self._forked()
        _GROUPS.add(self)

    def _forked(self) -> None:
        """A fresh state (also in a forked child: the parent's queue and leader are not its own)."""
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        self._leading = False

    def run(self, work: Callable[[Any], Any], durable: bool) -> Any:
        job = _Job(work, durable)
        with self._lock:
            self._queue.append(job)
            if self._leading:
                job.woken = threading.Event()
            self._leading = True
        if job.woken is not None:
            job.woken.wait()
        if not job.done:  # nobody was committing, or the lead was handed over: commit what is queued
            self._lead()
        if job.error is not None:
            raise job.error
        return job.result

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
        try:
            self._commit(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the callers, never lost
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for job in batch:
                    try:
                        self._commit([job])
                    except BaseException as alone:  # noqa: BLE001
                        job.error = alone
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            for job in batch:
                if not job.committed and job.error is None:  # interrupted: never answered as written
                    job.error = AuditUnavailable("the audit write was interrupted")
                job.done = True
                _wake(job)
            if successor is not None:
                _wake(successor)

    def _commit(self, batch: list[_Job]) -> None:
        with self._write(any(job.durable for job in batch)) as cursor:
            for job in batch:
                job.result = job.work(cursor)
        for job in batch:
            job.committed = True


def _wake(job: _Job) -> None:
    if job.woken is not None:  # a follower (a leader's own job is in its own hands)
        job.woken.set()


_GROUPS: weakref.WeakSet[_GroupCommit] = weakref.WeakSet()


def _after_fork() -> None:
    for group in list(_GROUPS):
        group._forked()


os.register_at_fork(after_in_child=_after_fork)


def _clip(field: str, value: object) -> str | None:
    """Oversized identifiers from a hostile request must not make the audit write fail."""
    if value is None:
        return None
    s = value if type(value) is str else str(value)
    limit = _LIMITS[field]
    return s if len(s) <= limit else s[: limit - 1] + "~"


def _join(field: str, values: Sequence[object]) -> str | None:
    if not values:
        return None
    items = list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    return _clip(field, ",".join(items)) if items else None


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(",")) if value else ()


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("times given to the audit log must be timezone-aware")
    return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _message(entry: AuditEntry, raw: bytes) -> tuple[AuditEntry, bytes]:
    """A message as `record` stores it: inbound or outbound (review/admin rows are the log's own)."""
    if Direction(entry.direction) not in (Direction.INBOUND, Direction.OUTBOUND):
        raise ValueError("record() takes inbound/outbound messages; review/admin rows are written by the log")
    return entry, bytes(raw)


def _disclosure_triples(disclosures: Sequence[AuditDisclosure]) -> list[tuple[str, str, str]]:
    return [(d.source_system, d.source_record_id, d.elements) for d in disclosures]


def _to_row(m: AuditMessage) -> AuditRow:
    return AuditRow(
        id=m.id, at=m.at, direction=m.direction, operation=m.operation, message_id=m.message_id,
        correlation_id=m.correlation_id, agreement_id=m.agreement_id, ori=m.ori, user_id=m.user_id,
        purpose=m.purpose, query_categories=_split(m.query_categories), result_code=m.result_code,
        advisory_categories=_split(m.advisory_categories), size_bytes=m.size_bytes, latency_ms=m.latency_ms,
        key_id=m.key_id, detail=m.detail, prev_hash=m.prev_hash, row_hash=m.row_hash,
        disclosures=tuple(
            Disclosure(d.source_system, d.source_record_id, _split(d.elements)) for d in m.disclosures
        ),
    )


class AuditLog:
    """Thread-safe handle on the audit store; share one instance per process."""

    def __init__(self, engine: Engine, sealer: Sealer, *, sqlite_file: Path | None = None) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**WRITE)
        self._sealer = sealer
        self._sqlite_file = sqlite_file
        self._replay_lock = threading.Lock()
        self._replay_purged_at = 0.0
        self._writers = _Writers(sqlite_file)
        self._group = _GroupCommit(self._write)
        self._sql = _Statements(engine.dialect)
        durable = _Held()  # see `_writer_connection`: on SQLite one per durability
        self._held = {True: durable, False: _Held() if sqlite_file is not None else durable}
        # the statements run on the DBAPI cursor: its errors are the store's too
        self._store_errors: tuple[type[BaseException], ...] = (
            SQLAlchemyError, OSError, engine.dialect.loaded_dbapi.Error)

    # --- lifecycle ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        key: bytes,
        key_id: str,
        *,
        schema: str | None = None,
        old_keys: dict[str, bytes] | None = None,
    ) -> AuditLog:
        """Connect, migrate to the current schema, and return a ready log.

        `schema` (PostgreSQL only) puts the tables in that schema via `search_path`;
        `old_keys` maps retired key ids to keys so rows written before a rotation stay readable.
        Raises `AuditUnavailable` if the store cannot be reached or migrated.
        """
        sealer = Sealer(key, key_id, old_keys)
        path = sqlite_path(url)
        engine: Engine | None = None
        try:
            if path is not None:
                prepare_sqlite_file(path)
            engine = create_audit_engine(url, schema)
            migrate(engine, schema)
        except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
            if engine is not None:
                engine.dispose()
            raise AuditUnavailable(f"audit store cannot be opened ({type(exc).__name__})") from exc
        return cls(engine, sealer, sqlite_file=path)

    def close(self) -> None:
        for held in self._held.values():
            held.close()
        self._engine.dispose()
        self._writers.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def key_id(self) -> str:
        return self._sealer.key_id

    # --- units of work --------------------------------------------------------------------

    @contextmanager
    def _unit(self, *, write: bool, snapshot: bool = False) -> Iterator[Session]:
        """One transaction; any database or file-system failure becomes AuditUnavailable."""
        try:
            with self._writers.hold() if write else nullcontext():
                with Session(self._write_engine if write else self._engine, expire_on_commit=False) as session:
                    with session.begin():
                        if snapshot and self._engine.dialect.name == "postgresql":
                            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                        yield session
                        if write:
                            self._check_sqlite_file(session.connection())
        except self._store_errors as exc:
            log.error("audit store unavailable: %s", type(exc).__name__)
            raise AuditUnavailable(f"audit store unavailable ({type(exc).__name__})") from exc

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[_Rows]:
        """One write transaction of the per-message writes (`record`, `remember_once`), on the DBAPI
        cursor of their own connection (`_writer_connection`, `_Statement`).

        Not `durable`: SQLite commits without an fsync (see `record`). A failed transaction is
        rolled back at once (SQLite's write lock must not wait for the garbage collector); a
        connection that cannot even roll back is discarded.
        """
        try:
            with self._writers.hold():
                connection = self._writer_connection(durable)
                try:
                    cursor = connection.cursor()
                    try:
                        if self._sqlite_file is not None:
                            begin_sqlite_write(cursor.execute, connection.info, durable=durable)
                        rows = _Rows(cursor, self._sql)
                        yield rows
                        rows.finish()
                    finally:
                        cursor.close()
                    self._check_sqlite_file(connection)
                    connection.commit()
                except BaseException:
                    self._roll_back(connection)
                    raise
        except self._store_errors as exc:
            log.error("audit store unavailable: %s", type(exc).__name__)
            raise AuditUnavailable(f"audit store unavailable ({type(exc).__name__})") from exc

    def _writer_connection(self, durable: bool) -> PoolProxiedConnection:
        """The connection of the per-message writes, kept from one to the next (they run one at a
        time, under the writers' lock): a pool round trip per write cost about as much CPU as the
        row, and a kept SQLite connection keeps its page cache. On SQLite one per durability, each
        keeping its `synchronous` level: one connection for both switched the level with a PRAGMA
        before nearly every transaction (an exchange writes one of each), and every statement gives
        the GIL away several times (docs/performance.md, the ninth round).
        """
        return self._held[durable].take(self._engine)

    def _roll_back(self, connection: PoolProxiedConnection) -> None:
        if not connection.is_valid:  # already discarded (`_check_sqlite_file`)
            return
        try:
            connection.rollback()
        except self._store_errors:
            connection.invalidate()

    def _check_sqlite_file(self, connection: Connection | PoolProxiedConnection) -> None:
        """Refuse to commit into a database file that was unlinked or replaced meanwhile."""
        if self._sqlite_file is None:
            return
        expected = connection.info.get("audit_inode")
        try:
            st = os.stat(self._sqlite_file)
        except OSError as exc:
            connection.invalidate()
            raise AuditUnavailable("audit database file is gone") from exc
        if expected != (st.st_dev, st.st_ino):
            connection.invalidate()
            raise AuditUnavailable("audit database file was replaced")

    def _append(
        self,
        rows: _Rows,
        entry: AuditEntry,
        raw: bytes,
        *,
        detail: str | None = None,
        disclosures: Sequence[Disclosure] = (),
    ) -> int:
        """Append one row at the chain head; the caller's transaction holds the chain lock.

        Fixed statements on the transaction's DBAPI cursor (ORM callers: `_append_alone`): the ORM
        unit of work, then Core's per-execute work, cost more CPU than the rest of the row
        (docs/performance.md).
        """
        sql, cursor = self._sql, rows.cursor
        last_id, last_hash = rows.head()
        row_id = last_id + 1
        at = _utc(entry.at) if entry.at is not None else _now()
        direction = str(Direction(entry.direction))
        operation = _clip("operation", entry.operation) or ""
        message_id = _clip("message_id", entry.message_id)
        correlation_id = _clip("correlation_id", entry.correlation_id)
        agreement_id = _clip("agreement_id", entry.agreement_id)
        ori = _clip("ori", entry.ori)
        user_id = _clip("user_id", entry.user_id)
        purpose = _clip("purpose", entry.purpose)
        query_categories = _join("query_categories", entry.query_categories)
        result_code = _clip("result_code", entry.result_code)
        advisory_categories = _join("advisory_categories", entry.advisory_categories)
        size_bytes = len(raw)
        latency_ms = None if entry.latency_ms is None else round(float(entry.latency_ms), 3)
        key_id = self._sealer.key_id
        released = [  # (source system, record id, elements)
            (_clip("source_system", d.source_system) or "", _clip("source_record_id", d.source_record_id) or "",
             ",".join(dict.fromkeys(d.elements)))
            for d in (*entry.disclosures, *disclosures)
        ] if entry.disclosures or disclosures else []
        meta = chain.canonical_metadata(
            row_id=row_id, at=at, direction=direction, operation=operation, message_id=message_id,
            correlation_id=correlation_id, agreement_id=agreement_id, ori=ori, user_id=user_id, purpose=purpose,
            query_categories=query_categories, result_code=result_code, advisory_categories=advisory_categories,
            size_bytes=size_bytes, latency_ms=latency_ms, detail=detail, key_id=key_id, disclosures=released,
        )
        nonce, ciphertext = self._sealer.seal(raw, meta)
        row_hash = chain.row_hash(meta, nonce, ciphertext, last_hash)
        sql.message.run_row(cursor, [  # in _MESSAGE_COLUMNS' order
            row_id, at, direction, operation, message_id, correlation_id, agreement_id, ori, user_id, purpose,
            query_categories, result_code, advisory_categories, size_bytes, latency_ms, detail, key_id, nonce,
            ciphertext, last_hash, row_hash,
        ])
        if released:
            sql.disclosure.run_rows(cursor, [  # in _DISCLOSURE_COLUMNS' order
                [row_id, agreement_id, user_id, system, record_id, elements] for system, record_id, elements in released
            ])
        rows.moved_to(row_id, row_hash)
        return row_id

    def _append_alone(self, session: Session, entry: AuditEntry, detail: str) -> None:
        """A review or admin row (no message) in an ORM unit's transaction."""
        rows = _Rows(session.connection().connection.cursor(), self._sql)
        self._append(rows, entry, b"", detail=detail)
        rows.finish()

    # --- writing --------------------------------------------------------------------------

    def record(self, entry: AuditEntry, raw: bytes, disclosures: Sequence[Disclosure] = (), *,
               durable: bool = True, inbound: tuple[AuditEntry, bytes] | None = None) -> int:
        """Store one message (and, for an outbound response, what it disclosed); return its row id.

        Raises `AuditUnavailable` if the row could not be committed: do not serve the exchange.
        `durable=False` (SQLite: commit without an fsync; a crash of the process loses nothing, a
        power failure may lose it) is for the inbound message of an exchange whose answer will be
        recorded durably before it is sent: that commit's fsync of the WAL file covers this row too.
        `inbound`: the exchange's inbound message (entry, raw bytes) if it is not stored yet (a
        request refused before its signature was checked): appended just before, in the same
        transaction.
        """
        first = None if inbound is None else _message(*inbound)
        entry, raw = _message(entry, raw)

        def work(rows: _Rows) -> int:
            if first is not None:
                self._append(rows, *first)
            return self._append(rows, entry, raw, disclosures=disclosures)

        return self._group.run(work, durable)

    def record_inbound(self, entry: AuditEntry, raw: bytes, replay_key: str, expires: datetime) -> bool:
        """Store an inbound message and remember its replay key, in one transaction (see `remember_once`).

        True the first time the key is seen, False for a replay: the row is stored either way (a
        replayed message arrived too). Raises `AuditUnavailable` if it could not be committed.
        Committed without an fsync, as `record(durable=False)` and `remember_once`.
        """
        entry, raw = _message(entry, raw)
        remember = self._remembering(replay_key, expires)

        def work(rows: _Rows) -> bool:
            self._append(rows, entry, raw)
            return remember(rows)

        return self._group.run(work, False)

    def remember_once(self, key: str, expires: datetime) -> bool:
        """True the first time `key` is seen (until it expires), False for a replay; cross-process.

        Keys are stored as SHA-256 hashes: the cache never holds signature or token material.
        Committed without an fsync (SQLite): the exchange's durable outbound row makes it durable
        before any answer leaves; a request never answered may, after a power failure, be
        accepted once more (a search has no side effect but its audit rows).
        """
        return self._group.run(self._remembering(key, expires), False)

    def _remembering(self, key: str, expires: datetime) -> Callable[[_Rows], bool]:
        """The replay-key write for the caller's transaction (values taken now, on the caller's thread)."""
        values = {"key_hash": chain.sha256_digest(key.encode("utf-8")).hex(), "expires": _utc(expires), "now": _now()}
        purge = self._replay_purge_due()

        def work(rows: _Rows) -> bool:
            fresh = self._sql.remember.run(rows.cursor, values).rowcount == 1
            if purge:
                self._sql.purge_replays.run(rows.cursor, values)
            return fresh

        return work

    def _replay_purge_due(self) -> bool:
        with self._replay_lock:
            if time.monotonic() - self._replay_purged_at < _REPLAY_PURGE_EVERY_S:
                return False
            self._replay_purged_at = time.monotonic()
            return True

    def purge_replays(self, now: datetime | None = None) -> int:
        """Delete expired replay keys (remember_once also does this about once a minute)."""
        cutoff = _utc(now) if now is not None else _now()
        with self._unit(write=True) as session:
            return session.execute(delete(AuditReplay).where(AuditReplay.expires <= cutoff)).rowcount  # type: ignore[attr-defined]

    # --- reading --------------------------------------------------------------------------

    def ready(self) -> bool:
        """Health probe: the store answers and holds an audit chain. Never raises."""
        try:
            with self._unit(write=False) as session:
                return session.execute(select(AuditChainHead.last_id).where(AuditChainHead.id == 1)).first() is not None
        except AuditUnavailable:
            return False

    def search(self, filters: AuditFilter = AuditFilter()) -> list[AuditRow]:
        """Metadata search; there is intentionally no way to search message content."""
        q = select(AuditMessage).options(selectinload(AuditMessage.disclosures))
        f = filters
        if f.since is not None:
            q = q.where(AuditMessage.at >= _utc(f.since))
        if f.until is not None:
            q = q.where(AuditMessage.at < _utc(f.until))
        for column, value in (
            (AuditMessage.agreement_id, f.agreement_id),
            (AuditMessage.ori, f.ori),
            (AuditMessage.user_id, f.user_id),
            (AuditMessage.operation, f.operation),
            (AuditMessage.direction, None if f.direction is None else str(Direction(f.direction))),
            (AuditMessage.result_code, f.result_code),
            (AuditMessage.correlation_id, f.correlation_id),
            (AuditMessage.message_id, f.message_id),
        ):
            if value is not None:
                q = q.where(column == value)
        if f.direction is not None and str(Direction(f.direction)) in _LOG_DIRECTIONS:
            q = q.where(_LOG_ROWS)  # implied; lets the database use the partial index of these rows
        q = q.order_by(AuditMessage.id.desc() if f.newest_first else AuditMessage.id)
        if f.limit is not None:
            q = q.limit(f.limit)
        with self._unit(write=False) as session:
            return [_to_row(m) for m in session.execute(q).scalars().all()]

    def show(self, row_id: int, reviewer: str, reason: str) -> bytes:
        """Decrypt one stored message for a reviewer; the viewing is audited before it happens."""
        reviewer, reason = (reviewer or "").strip(), (reason or "").strip()
        if not reason:
            raise ValueError("a reason is required to view a stored message")
        if not reviewer:
            raise ValueError("a reviewer name is required to view a stored message")
        with self._unit(write=True) as session:
            target = session.execute(
                select(AuditMessage).options(selectinload(AuditMessage.disclosures)).where(AuditMessage.id == row_id)
            ).scalar_one_or_none()
            if target is None:
                raise AuditNotFound(f"no audit row {row_id}")
            meta = chain.metadata_of(target, _disclosure_triples(target.disclosures))
            key_id, nonce, ciphertext = target.key_id, target.nonce, target.ciphertext
            detail = json.dumps({"row_id": row_id, "reason": reason}, sort_keys=True)
            self._append_alone(
                session,
                AuditEntry(Direction.REVIEW, "audit.show", user_id=reviewer, correlation_id=target.correlation_id),
                detail,
            )
        return self._sealer.open(key_id, nonce, ciphertext, meta)

    # --- retention ------------------------------------------------------------------------

    def purge(self, before: datetime, operator: str) -> int:
        """Destroy rows older than `before` (retention); return how many were deleted.

        Only a prefix of the chain is ever removed (rows up to the first one at or after
        `before`), and a checkpoint row recording the hash of the last purged row is
        appended, so verify() can still anchor the earliest remaining row.
        """
        operator = (operator or "").strip()
        if not operator:
            raise ValueError("an operator name is required to purge the audit log")
        before = _utc(before)
        with self._unit(write=True) as session:
            # Lock the chain first: nothing may be appended while the prefix is cut.
            head = session.execute(
                select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update()
            ).scalar_one()
            first_kept = session.execute(
                select(func.min(AuditMessage.id)).where(AuditMessage.at >= before)
            ).scalar_one_or_none()
            cut = (first_kept if first_kept is not None else head.last_id + 1) - 1  # last purged id
            last_purged = session.execute(
                select(AuditMessage.id, AuditMessage.row_hash)
                .where(AuditMessage.id <= cut)
                .order_by(AuditMessage.id.desc())
                .limit(1)
            ).first()
            count = 0
            detail: dict[str, object] = {"before": before.isoformat(), "purged": 0}
            if last_purged is not None:
                session.execute(delete(AuditDisclosure).where(AuditDisclosure.message_row_id <= cut))
                count = session.execute(delete(AuditMessage).where(AuditMessage.id <= cut)).rowcount  # type: ignore[attr-defined]
                detail.update(
                    purged=count,
                    through_id=last_purged.id,
                    anchor_hash=last_purged.row_hash,
                    # None: nothing older remains, the checkpoint itself is the first row.
                    first_kept_id=first_kept,
                )
            self._append_alone(session, AuditEntry(Direction.ADMIN, "audit.purge", user_id=operator),
                               json.dumps(detail, sort_keys=True))
        log.info("audit purge by %s: %d rows before %s", operator, count, before.isoformat())
        return count

    # --- integrity ------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Walk the whole chain in one snapshot: recompute every hash and check every link."""
        with self._unit(write=False, snapshot=True) as session:
            head = session.execute(select(AuditChainHead).where(AuditChainHead.id == 1)).scalar_one()
            checkpoint = self._latest_checkpoint(session)
            anchor_id: int | None = None
            expected_prev = GENESIS_HASH
            if checkpoint is not None:
                cp_id, cp = checkpoint
                anchor_id = cp.get("first_kept_id") or cp_id
                expected_prev = str(cp.get("anchor_hash"))
            checked = 0
            prev_id: int | None = None
            after = 0
            while True:
                batch = session.execute(
                    select(AuditMessage)
                    .options(selectinload(AuditMessage.disclosures))
                    .where(AuditMessage.id > after)
                    .order_by(AuditMessage.id)
                    .limit(_VERIFY_BATCH)
                ).scalars().all()
                if not batch:
                    break
                for m in batch:
                    if prev_id is None and anchor_id is not None and m.id != anchor_id:
                        return self._broken(checked, m.id, f"first row should be {anchor_id} (purge checkpoint)", head)
                    if m.prev_hash != expected_prev:
                        what = "earlier row(s) missing, reordered or altered" if prev_id is not None else "chain start does not match its anchor"
                        return self._broken(checked, m.id, f"prev_hash does not link to the previous row: {what}", head)
                    meta = chain.metadata_of(m, _disclosure_triples(m.disclosures))
                    if chain.row_hash(meta, m.nonce, m.ciphertext, m.prev_hash) != m.row_hash:
                        return self._broken(checked, m.id, "row content does not match its hash (altered or moved)", head)
                    expected_prev = m.row_hash
                    prev_id = m.id
                    checked += 1
                session.expunge_all()
                after = batch[-1].id
            if (prev_id or 0) != head.last_id or (prev_id is not None and expected_prev != head.last_hash):
                return self._broken(checked, (prev_id or 0) + 1, f"chain ends at row {prev_id}, head says {head.last_id}: tail removed or head altered", head)
            return VerifyReport(True, checked, head_id=head.last_id, head_hash=head.last_hash, anchor_id=anchor_id)

    @staticmethod
    def _broken(checked: int, row_id: int, problem: str, head: AuditChainHead) -> VerifyReport:
        return VerifyReport(False, checked, row_id, problem, head.last_id, head.last_hash)

    @staticmethod
    def _latest_checkpoint(session: Session) -> tuple[int, dict[str, object]] | None:
        """The newest purge that removed rows; it vouches for the first remaining row."""
        rows = session.execute(
            select(AuditMessage.id, AuditMessage.detail)
            .where(AuditMessage.direction == str(Direction.ADMIN), AuditMessage.operation == "audit.purge", _LOG_ROWS)
            .order_by(AuditMessage.id.desc())
        )
        for row_id, detail in rows:
            try:
                doc = json.loads(detail or "{}")
            except ValueError:
                continue  # its own hash check will flag it
            if doc.get("purged"):
                return row_id, doc
        return None

    # --- weekly review --------------------------------------------------------------------

    def weekly_report(
        self,
        iso_week: str,
        out_dir: Path,
        *,
        reviewer: str = "system",
        verify: bool = True,
        tz: tzinfo = UTC,
    ) -> tuple[Path, Path]:
        """Write the weekly review (HTML with inline SVG, and CSV) for an ISO week, e.g. 2025-W03.

        `tz` sets both the week boundaries and what counts as off hours (outside 07:00-19:00).
        Producing the report is itself audited (review row "audit.report").
        """
        from .report import week_bounds, write_weekly_report

        start, end = week_bounds(iso_week, tz)
        prev_start = start - (end - start)
        this_week = self.search(AuditFilter(since=start, until=end, limit=None))
        last_week = self.search(AuditFilter(since=prev_start, until=start, limit=None))
        report = self.verify() if verify else None
        html_path, csv_path = write_weekly_report(iso_week, Path(out_dir), this_week, last_week, report, tz)
        with self._unit(write=True) as session:
            self._append_alone(session, AuditEntry(Direction.REVIEW, "audit.report", user_id=reviewer),
                               json.dumps({"week": iso_week, "rows": len(this_week)}, sort_keys=True))
        return html_path, csv_path
