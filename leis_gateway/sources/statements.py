"""Statements compiled once per shape, then run with bound values on the engine's pooled connections.

Building SQLAlchemy expressions, generating their cache keys and loading ORM instances cost a
search about ten times the database's own work. A statement's SQL depends only on its *shape*
(which columns, which comparisons, how many values), so each shape is built and compiled once
per engine and a search only binds its values and runs the SQL on a raw DB-API cursor. Results
are never cached: every call asks the database.

Connections come from the engine's pool, so SQLite's deadline interruption (installed on each
new connection by `base.create_source_engine`) applies here too. On SQLite a few of them stay
with the statements between calls (checking one out of the pool and back cost a search as much
as its query): a connection that only read holds no transaction and nothing else of the call.
"""
from __future__ import annotations

import threading
from json import loads as _loads
from collections import namedtuple
from collections.abc import Callable, Hashable, Sequence
from operator import itemgetter
from typing import Any, Protocol

from sqlalchemy import BindParameter, Connection, Date, Engine, Integer, Select, String, bindparam, func, select
from sqlalchemy.orm import Session

MAX_SHAPES = 500  # compiled statements kept per engine (oldest dropped first)
# SQLite: a result whose columns are all of these types comes back as one value, a JSON array of
# its rows (each a JSON array of its columns). Python's sqlite3 (3.11) lets go of the GIL around
# every step, every row and every column it reads: under load each is a chance for another thread
# to take the GIL, and getting it back costs a hand-over between CPUs (docs/performance.md, the
# sixth round). One value a query, the same values in the same order: strings, integers (stored
# as integers: JSON holds them exactly) and dates (stored as ISO text) come back as they are, and
# SQLite keeps a FROM subquery's ORDER BY for an order-sensitive aggregate such as
# json_group_array (select.c: "the outer query uses an aggregate function other than count(),
# min(), or max()").
PACK_RESULTS = True
_PACKABLE = (String, Integer, Date)
KEPT_CONNECTIONS = 8  # SQLite: pooled connections kept between calls, at most (the pool's own size)

Binds = Sequence[BindParameter[Any]]
Build = Callable[[Binds], Select[Any]]  # the statement of a shape, its values bound as given


class Reader(Protocol):
    """Rows (attribute access by column name) of the statement `build` makes for `shape`.

    `build` is called with one bound parameter per value (see `bind`) and must use no value
    except through them: its SQL is reused for every later call with an equal `shape`.
    """

    def __call__(self, shape: Hashable, build: Build, values: Sequence[Any]) -> Sequence[Any]: ...


def bind(values: Sequence[Any]) -> list[BindParameter[Any]]:
    """A bound parameter per value, named by its position (v0, v1, ...)."""
    return [bindparam(f"v{i}", value) for i, value in enumerate(values)]


def direct_reader(session: Session | Connection) -> Reader:
    """Each statement built with its values and run by SQLAlchemy (no reuse): the reference path."""
    return lambda shape, build, values: session.execute(build(bind(values))).all()


class Statements:
    """The compiled statements of one engine, by shape; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._compiled: dict[Hashable, _Compiled] = {}
        self._lock = threading.Lock()
        # Connections (each with its cursor) between calls (list.pop/append are atomic): SQLite
        # only. A server's connection (PostgreSQL) goes back to the pool, which ends its
        # transaction and checks it before its next use.
        self._kept: list[tuple[Any, Any]] = []
        self._keep = KEPT_CONNECTIONS if engine.dialect.name == "sqlite" else 0

    def reading(self) -> _Reading:
        """`with statements.reading() as read:` a `Reader` over one pooled connection for the block."""
        return _Reading(self)

    def close(self) -> None:
        """Give the kept connections back to the pool (before it is disposed)."""
        while self._kept:
            try:
                connection, cursor = self._kept.pop()
            except IndexError:
                break
            _close(connection, cursor)

    def _checkout(self) -> tuple[Any, Any]:
        """A connection and a cursor on it: kept ones, else from the pool."""
        try:
            return self._kept.pop()
        except IndexError:
            pass
        connection = self._engine.raw_connection()
        try:
            return connection, connection.cursor()
        except BaseException:
            connection.close()
            raise

    def _checkin(self, connection: Any, cursor: Any, failed: bool) -> None:
        if not failed and len(self._kept) < self._keep and not connection.dbapi_connection.in_transaction:
            self._kept.append((connection, cursor))
        else:
            _close(connection, cursor)

    def _get(self, shape: Hashable, build: Build, values: Sequence[Any]) -> _Compiled:
        compiled = self._compiled.get(shape)
        if compiled is None:
            compiled = _Compiled(build(bind(values)), len(values), self._engine)
            with self._lock:
                if len(self._compiled) >= MAX_SHAPES:
                    del self._compiled[next(iter(self._compiled))]
                self._compiled[shape] = compiled
        return compiled


def _close(connection: Any, cursor: Any) -> None:
    try:
        cursor.close()
    finally:
        connection.close()  # back to the pool, which resets it


class _Reading:
    """One block of `Statements.reading`: a connection and its cursor, given back when it ends."""

    __slots__ = ("_statements", "_connection", "_cursor")

    def __init__(self, statements: Statements) -> None:
        self._statements = statements

    def __enter__(self) -> Reader:
        self._connection, self._cursor = self._statements._checkout()
        return self.read

    def read(self, shape: Hashable, build: Build, values: Sequence[Any]) -> Sequence[Any]:
        return self._statements._get(shape, build, values).run(self._cursor, values)

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        self._statements._checkin(self._connection, self._cursor, failed=kind is not None)


def _packs_rows(dialect: Any) -> bool:
    """SQLite with its JSON functions built in (3.38+)."""
    return dialect.name == "sqlite" and getattr(dialect.dbapi, "sqlite_version_info", (0,)) >= (3, 38, 0)


class _Compiled:
    """One statement's SQL for a dialect, where each value goes, and how its columns convert."""

    def __init__(self, statement: Select[Any], count: int, engine: Engine) -> None:
        dialect = engine.dialect
        columns = statement.selected_columns
        self._packed = PACK_RESULTS and _packs_rows(dialect) and all(isinstance(c.type, _PACKABLE) for c in columns)
        if self._packed:  # the same statement's rows in one JSON value (see PACK_RESULTS)
            rows = statement.with_only_columns(func.json_array(*columns).label("row")).subquery()
            statement = select(func.json_group_array(func.json(rows.c.row)))  # json(): stays an array, not text
        compiled = statement.compile(dialect=dialect)
        if "__[POSTCOMPILE_" in compiled.string:  # e.g. an `in_()` of a list: bind each value instead
            raise ValueError("a statement with parameters expanded at execution cannot be reused")
        self.sql = compiled.string
        positions = {f"v{i}": i for i in range(count)}  # our values; other parameters are constants
        names = compiled.positiontup if compiled.positional else list(dict.fromkeys(compiled.bind_names.values()))
        self._names = None if compiled.positional else [compiled.escaped_bind_names.get(n, n) for n in names]
        self._slots = [
            (positions.get(name), compiled.binds[name].effective_value,
             compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names or ()
        ]
        # The common case: each parameter is one of our values as it is, in order. Otherwise the
        # parameters are picked from our values followed by the statement's constants (e.g. an
        # OFFSET 0), then converted where the dialect says so (e.g. a date for SQLite).
        self._as_given = [position for position, _, _ in self._slots] == list(range(count)) and all(
            process is None for _, _, process in self._slots
        )
        self._constants = tuple(default for position, default, _ in self._slots if position is None)
        constant = iter(range(count, count + len(self._constants)))
        picks = [position if position is not None else next(constant) for position, _, _ in self._slots]
        self._pick = itemgetter(*picks) if len(picks) > 1 else (lambda given: tuple(given[i] for i in picks))
        self._processes = [(i, process) for i, (_, _, process) in enumerate(self._slots) if process is not None]
        self._row = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
        self._convert = [(i, p) for i, p in enumerate(processors) if p is not None]

    def run(self, cursor: Any, values: Sequence[Any]) -> list[Any]:
        if self._as_given:
            params: Sequence[Any] = values
        else:
            params = self._pick((*values, *self._constants))
            if self._processes:
                params = list(params)
                for i, process in self._processes:
                    params[i] = process(params[i])
        cursor.execute(self.sql, params if self._names is None else dict(zip(self._names, params)))
        make = self._row._make
        fetched = _loads(cursor.fetchone()[0]) if self._packed else cursor.fetchall()
        if not self._convert:
            return list(map(make, fetched))
        rows = []
        convert = self._convert
        for raw in fetched:
            row = list(raw)
            for i, process in convert:
                row[i] = process(row[i])
            rows.append(make(row))
        return rows
