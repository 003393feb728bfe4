"""Statements compiled once per shape, then run with bound values on the engine's pooled connections.

Building SQLAlchemy expressions, generating their cache keys and loading ORM instances cost a
search about ten times the database's own work. A statement's SQL depends only on its *shape*
(which columns, which comparisons, how many values), so each shape is built and compiled once
per engine and a search only binds its values and runs the SQL on a raw DB-API cursor. Results
are never cached: every call asks the database.

Connections come from the engine's pool, so SQLite's deadline interruption (installed on each
new connection by `base.create_source_engine`) applies here too.
"""
from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import BindParameter, Connection, Engine, Select, bindparam
from sqlalchemy.orm import Session

MAX_SHAPES = 500  # compiled statements kept per engine (oldest dropped first)

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

    @contextmanager
    def reading(self) -> Iterator[Reader]:
        """A `Reader` over one pooled connection, given back when the block ends."""
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield lambda shape, build, values: self._get(shape, build, values).run(cursor, values)
            finally:
                cursor.close()
        finally:
            connection.close()

    def _get(self, shape: Hashable, build: Build, values: Sequence[Any]) -> _Compiled:
        compiled = self._compiled.get(shape)
        if compiled is None:
            compiled = _Compiled(build(bind(values)), len(values), self._engine)
            with self._lock:
                if len(self._compiled) >= MAX_SHAPES:
                    del self._compiled[next(iter(self._compiled))]
                self._compiled[shape] = compiled
        return compiled


class _Compiled:
    """One statement's SQL for a dialect, where each value goes, and how its columns convert."""

    def __init__(self, statement: Select[Any], count: int, engine: Engine) -> None:
        dialect = engine.dialect
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
        columns = statement.selected_columns
        self._row = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
        self._convert = [(i, p) for i, p in enumerate(processors) if p is not None]

    def run(self, cursor: Any, values: Sequence[Any]) -> list[Any]:
        params = []
        for position, default, process in self._slots:
            value = default if position is None else values[position]
            params.append(value if process is None else process(value))
        cursor.execute(self.sql, params if self._names is None else dict(zip(self._names, params)))
        make = self._row._make
        if not self._convert:
            return [make(row) for row in cursor.fetchall()]
        rows = []
        for raw in cursor.fetchall():
            row = list(raw)
            for i, process in self._convert:
                row[i] = process(row[i])
            rows.append(make(row))
        return rows
