"""Criteria -> SQL: how a `Query` finds records in a source and how well each one matched.

Every criterion becomes a `Predicate`: an indexed SQL condition, the same test in Python that
yields the row's score for that criterion, and (when scores differ between rows) a SQL score
expression so the database itself can order best-first and stop at the limit. Criteria AND
together; a row's score is the product of its criterion scores (100 = every criterion exact).

A predicate's SQL takes its values as bound parameters and is built from its *shape* alone, so
a source builds and compiles the SQL of each query shape once (`statements.py`) and a search
only binds its values: building SQL per search cost many times the database's own work.

A criterion that a source cannot answer (a field it does not hold, a range on a name, a date
that is not a date) makes the whole query unanswerable there: `compile_query` returns None and
the source returns no records. Free-text narratives are never searchable.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache, lru_cache
from itertools import chain
from math import prod
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement, Connection, Float, Select, Table, and_, case, cast, literal, or_, select, union_all,
)
from sqlalchemy.orm import Session

from ..domain import Criterion, Query, QueryField, QueryMatch
from .names import FUZZY_THRESHOLD, AlikeNames, nickname_variants, phonetic_key
from .normalise import (
    WILDCARDS,
    normalise_a_number,
    normalise_country,
    normalise_digits,
    normalise_digits_pattern,
    normalise_identifier,
    normalise_identifier_pattern,
    normalise_phone,
    normalise_postal_code,
    normalise_secondary_unit,
    normalise_state,
    normalise_street_name,
    normalise_street_name_pattern,
    normalise_text,
    normalise_text_pattern,
    parse_date,
    parse_full_address,
)
from .statements import Binds, Build, Reader, bind, direct_reader

EXACT_SCORE = 100
WILDCARD_SCORE = 90
INITIAL_SCORE = 95  # a one-letter middle name matched as an initial
NEAR_DATE_SCORE = 80  # fuzzy birth date: day/month swapped or one year off
MAX_FUZZY_CANDIDATES = 200

GIVEN_PART = "G"  # name vocabulary: given and middle names
SURNAME_PART = "S"

_RANGES = frozenset({QueryMatch.GT, QueryMatch.GE, QueryMatch.LT, QueryMatch.LE})
_STOPWORDS = frozenset(
    {"A", "AN", "AND", "AS", "AT", "BY", "FOR", "FROM", "IN", "INTO", "OF", "ON", "OR", "THE", "TO", "WITH"}
)

_COMPARE = {
    QueryMatch.GT: operator.gt, QueryMatch.GE: operator.ge, QueryMatch.LT: operator.lt, QueryMatch.LE: operator.le
}

RowScore = Callable[[Any], "int | None"]
SqlOf = Callable[[Binds], ColumnElement[Any]]  # SQL given the bound parameters of `values`


@dataclass(slots=True)
class Predicate:
    """One criterion, compiled: SQL condition, the per-row score, and its SQL twin for ordering.

    The SQL uses no value but through the bound parameters of `values`; `shape` names all else
    it depends on (columns, comparisons, how many values), so equal shapes give equal SQL.
    Never changed once made (not `frozen` only because a frozen dataclass costs three times as
    much to make, and every search makes a few).
    """

    shape: Hashable
    values: tuple[Any, ...]
    clause: SqlOf
    row_score: RowScore  # None when the row does not satisfy the criterion
    sql_score: SqlOf | int = EXACT_SCORE  # an int: every matching row scores it
    # For `column IN (values)` with a score per value (fuzzy names): (column, n) with the n values
    # best first, then their n scores, so the best rows can be read value by value from the
    # column's index (see `select_matches`).
    levels: tuple[str, int] | None = None
    # The columns `row_score` reads (None: any), so a search selects only those and the record's.
    columns: tuple[str, ...] | None = None
    # The columns it holds to one value each (equalities): see `_pinned_by_an_index`.
    pins: tuple[str, ...] = ()


class RecordSchema(Protocol):
    """What matching needs to know about a source's person-record table."""

    model: type
    name_vocabulary: Table  # part (G/S), name_norm, name_key: the source's distinct names
    activity_words: Table | None  # word, record_pk: inverted index of incident descriptions


@dataclass(frozen=True)
class _Spelling:
    exact: Callable[[str], str]
    pattern: Callable[[str], str]


_TEXT = _Spelling(normalise_text, normalise_text_pattern)
_IDENT = _Spelling(normalise_identifier, normalise_identifier_pattern)
_DIGITS = _Spelling(normalise_digits, normalise_digits_pattern)
_PHONE = _Spelling(normalise_phone, normalise_digits_pattern)
_A_NUMBER = _Spelling(normalise_a_number, normalise_identifier_pattern)
_POSTAL = _Spelling(normalise_postal_code, normalise_identifier_pattern)
_STREET = _Spelling(normalise_street_name, normalise_street_name_pattern)
_UNIT = _Spelling(normalise_secondary_unit, normalise_identifier_pattern)
_STATE = _Spelling(normalise_state, normalise_text_pattern)
_COUNTRY = _Spelling(normalise_country, normalise_text_pattern)

# Plain fields: the canonical column each is matched on, and how its values are spelled.
_PLAIN_FIELDS: dict[QueryField, tuple[str, _Spelling]] = {
    QueryField.SSN: ("ssn", _DIGITS),
    QueryField.PASSPORT: ("passport", _IDENT),
    QueryField.A_NUMBER: ("a_number", _A_NUMBER),
    QueryField.ENCOUNTER_ID: ("encounter_id", _IDENT),
    QueryField.DRIVER_LICENSE: ("driver_license", _IDENT),
    QueryField.STREET_NUMBER: ("street_number", _IDENT),
    QueryField.STREET_NAME: ("street_name_norm", _STREET),
    QueryField.SECONDARY_UNIT: ("secondary_unit_norm", _UNIT),
    QueryField.CITY: ("city_norm", _TEXT),
    QueryField.STATE: ("state", _STATE),
    QueryField.COUNTRY: ("country", _COUNTRY),
    QueryField.POSTAL_CODE: ("postal_code", _POSTAL),
    QueryField.PHONE: ("phone", _PHONE),
    QueryField.ACTIVITY_NUMBER: ("activity_number", _IDENT),
}
_NAME_FIELDS: dict[QueryField, tuple[str, str]] = {
    QueryField.GIVEN_NAME: ("given_norm", GIVEN_PART),
    QueryField.MIDDLE_NAME: ("middle_norm", GIVEN_PART),
    QueryField.SURNAME: ("surname_norm", SURNAME_PART),
}
_ADDRESS_PARTS = (
    ("street_number", "street_number"),
    ("street_name", "street_name_norm"),
    ("secondary_unit", "secondary_unit_norm"),
    ("city", "city_norm"),
    ("state", "state"),
    ("postal_code", "postal_code"),
    ("country", "country"),
)


@cache
def supported_fields(schema: RecordSchema) -> frozenset[QueryField]:
    """The query fields this source holds (derived from its table's columns)."""
    has = lambda name: name in schema.model.__table__.c  # noqa: E731
    fields = {f for f, (column, _) in _PLAIN_FIELDS.items() if has(column)}
    fields |= {f for f, (column, _) in _NAME_FIELDS.items() if has(column)}
    if has("given_norm") and has("surname_norm"):
        fields.add(QueryField.FULL_NAME)
    if has("birth_date"):
        fields.add(QueryField.BIRTH_DATE)
    if all(has(column) for _, column in _ADDRESS_PARTS):
        fields.add(QueryField.FULL_ADDRESS)
    if schema.activity_words is not None:
        fields.add(QueryField.ACTIVITY_DESCRIPTION)
    return frozenset(fields)


def description_words(text: str | None) -> set[str]:
    """The words of an incident description that the inverted index holds."""
    if not text:
        return set()
    return {w for w in normalise_text(text).split() if w not in _STOPWORDS}


# --- compiling a query -------------------------------------------------------------------


def compile_query(
    source: Reader | Session | Connection, schema: RecordSchema, query: Query
) -> list[Predicate] | None:
    """The predicates of `query` for this source, or None when it cannot match anything here.

    `source` reads the name vocabulary for fuzzy names: a `statements.Reader`, or a Session or
    Connection that runs each statement as built.
    """
    if not query.criteria:
        return None
    read = direct_reader(source) if isinstance(source, (Session, Connection)) else source
    fields = supported_fields(schema)
    predicates: list[Predicate] = []
    for criterion in query.criteria:
        if criterion.field not in fields:
            return None
        predicate = _criterion_predicate(read, schema, criterion)
        if predicate is None:
            return None
        predicates.append(predicate)
    return predicates


def select_matches(schema: RecordSchema, predicates: list[Predicate], limit: int) -> Select[Any]:
    """SELECT of the best `limit` rows (mapped instances, values bound), best first; see `read_matches`."""
    return _matches(schema, predicates, bind(_values(predicates, max(limit, 0))), schema.model)


def read_matches(
    read: Reader, schema: RecordSchema, predicates: list[Predicate], limit: int, columns: Sequence[str] | None = None
) -> Sequence[Any]:
    """The best `limit` rows, best first; ties in row order (pk: the same on any database).

    A row holds `columns` and every column the predicates' row checks read (all columns when
    `columns` is None): a search reads no column it does not use.
    The rows are picked by their primary keys first, so the database can often choose and sort
    them from its indexes alone and read only the `limit` rows it returns; where equalities pin
    an index, that index already gives the rows in pk order and they are read directly (see
    `_matches`). Rows picked by levels are ranked here rather than by the database, which
    would sort whole rows.
    """
    shape = ("matches", tuple((p.shape, p.levels) for p in predicates), None if columns is None else tuple(columns))
    leveled = _leveled(predicates)
    rows = read(
        shape,
        lambda binds: _matches(
            schema, predicates, binds, *_selected(schema, predicates, columns), levels_ranked=leveled is None
        ),
        _values(predicates, max(limit, 0)),
    )
    return rows if leveled is None else _rank_by_level(rows, predicates[leveled])


def _selected(schema: RecordSchema, predicates: Sequence[Predicate], columns: Sequence[str] | None) -> list[Any]:
    """The table's columns (in table order) that are in `columns` or read by a predicate."""
    table_columns = schema.model.__table__.columns  # type: ignore[attr-defined]
    if columns is None:
        return list(table_columns)
    wanted = set(columns)
    for predicate in predicates:
        if predicate.columns is None:
            return list(table_columns)
        wanted.update(predicate.columns)
    return [c for c in table_columns if c.key in wanted]


def _values(predicates: Sequence[Predicate], *more: Any) -> tuple[Any, ...]:
    return (*chain.from_iterable(p.values for p in predicates), *more)


def _parts(predicates: Sequence[Predicate], binds: Binds) -> list[Binds]:
    """Each predicate's own bound parameters, out of those of all their values in a row."""
    parts, start = [], 0
    for predicate in predicates:
        parts.append(binds[start : start + len(predicate.values)])
        start += len(predicate.values)
    return parts


def _matches(
    schema: RecordSchema, predicates: list[Predicate], binds: Binds, *selected: Any, levels_ranked: bool = True
) -> Select[Any]:
    """`selected` of the best rows; `binds` hold the predicates' values, then the limit.

    With `levels_ranked` false, rows picked by levels (see `_leveled`) come in pk order, for the
    caller to rank by level (`_rank_by_level`): the database then need not sort whole rows.
    """
    model, limit = schema.model, binds[-1]
    parts = _parts(predicates, binds)
    clauses = [p.clause(part) for p, part in zip(predicates, parts)]
    variable = [p.sql_score(part) for p, part in zip(predicates, parts) if not isinstance(p.sql_score, int)]
    ordering = [model.pk]
    if variable:
        score = prod((cast(s, Float) for s in variable[1:]), start=cast(variable[0], Float))
        ordering = [score.desc(), model.pk]
    if not variable and _pinned_by_an_index(schema, predicates):
        # An index holds every match of the pinned values in pk order: reading the rows
        # themselves in that order, the database stops at the limit without picking pks first.
        return select(*selected).where(and_(*clauses)).order_by(model.pk).limit(limit)
    i = _leveled(predicates)
    if i is not None:
        best = _best_by_levels(model, predicates[i], parts[i], clauses[:i] + clauses[i + 1 :], limit)
        if not levels_ranked:
            ordering = [model.pk]
    else:
        best = select(model.pk).where(and_(*clauses)).order_by(*ordering).limit(limit)
    return select(*selected).where(model.pk.in_(best)).order_by(*ordering)


def _pinned_by_an_index(schema: RecordSchema, predicates: Sequence[Predicate]) -> bool:
    """True when equalities pin every column of one of the table's indexes.

    Such an index holds the matches of those values in pk order (after its columns, an index
    orders by the row), so the best rows by pk come from it straight.
    """
    pinned = set(chain.from_iterable(p.pins for p in predicates))
    return bool(pinned) and any(columns <= pinned for columns in _indexed_columns(schema))


@cache
def _indexed_columns(schema: RecordSchema) -> tuple[frozenset[str], ...]:
    table = schema.model.__table__  # type: ignore[attr-defined]
    return tuple(frozenset(c.key for c in index.columns) for index in table.indexes)


def _leveled(predicates: Sequence[Predicate]) -> int | None:
    """The predicate whose levels pick the best rows: the only one whose score varies, by levels."""
    if all(p.levels is None for p in predicates):
        return None
    variable = [i for i, p in enumerate(predicates) if not isinstance(p.sql_score, int)]
    if len(variable) != 1:
        return None
    leveled = [i for i, p in enumerate(predicates) if p.levels is not None]
    if len(leveled) != 1 or not 1 < predicates[leveled[0]].levels[1] <= MAX_FUZZY_CANDIDATES:  # type: ignore[index]
        return None
    return leveled[0]


def _rank_by_level(rows: Sequence[Any], predicate: Predicate) -> list[Any]:
    """Rows in pk order -> best level first, pk order within a level: the SQL order of `_matches`.

    A level's score is that of its value in the predicate's values (`col IN (v1..vn)` scored
    `CASE col WHEN v1 THEN s1 ...`): every row holds one of them.
    """
    column, count = predicate.levels  # type: ignore[misc]
    score_of = dict(zip(predicate.values[:count], predicate.values[count:]))
    return sorted(rows, key=lambda row: -score_of[getattr(row, column)])  # stable


def _best_by_levels(
    model: type, predicate: Predicate, binds: Binds, others: list[ColumnElement[bool]], limit: Any
) -> Select[Any]:
    """The best `limit` pks when one criterion's score depends only on a column's value.

    `col IN (v1..vn) ORDER BY score, pk LIMIT k` makes the database read and sort every row of
    every value: a common surname has thousands of rows per million people. Instead each value
    gives at most its first k rows in pk order, straight from the column's index, and only those
    n x k rows are ranked: the same rows, at a cost that does not grow with the table.
    """
    name, count = predicate.levels  # type: ignore[misc]
    column = getattr(model, name)
    arms = [
        select(
            select(model.pk.label("pk"), score.label("score"))
            .where(column == value, *others).order_by(model.pk).limit(limit).subquery()
        )
        for value, score in zip(binds[:count], binds[count:])  # best first
    ]
    candidates = union_all(*arms).subquery()
    return select(candidates.c.pk).order_by(candidates.c.score.desc(), candidates.c.pk).limit(limit)


def combined_score(predicates: Sequence[Predicate], row: Any) -> int | None:
    """The row's score for the whole query (product of criterion scores), None if it fails one."""
    if len(predicates) == 1:
        score = predicates[0].row_score(row)
        return None if score is None else _product((score,))
    scores = []
    for predicate in predicates:
        score = predicate.row_score(row)
        if score is None:
            return None
        scores.append(score)
    return _product(tuple(scores))


@lru_cache(maxsize=4096)  # arithmetic on a few distinct scores, asked for every row
def _product(scores: tuple[int, ...]) -> int:
    return max(1, round(100 * prod(s / 100 for s in scores))) if scores else EXACT_SCORE


def _criterion_predicate(read: Reader, schema: RecordSchema, criterion: Criterion) -> Predicate | None:
    model, value, match = schema.model, criterion.value, criterion.match
    field = criterion.field
    if field in _PLAIN_FIELDS:
        column, spelling = _PLAIN_FIELDS[field]
        return _plain_predicate(model, column, spelling, value, match)
    if field in _NAME_FIELDS:
        column, part = _NAME_FIELDS[field]
        return _name_predicate(read, schema, column, part, value, match)
    if field == QueryField.FULL_NAME:
        return _full_name_predicate(read, schema, value, match)
    if field == QueryField.BIRTH_DATE:
        return _date_predicate(model, "birth_date", value, match)
    if field == QueryField.FULL_ADDRESS:
        return _full_address_predicate(model, value, match)
    if field == QueryField.ACTIVITY_DESCRIPTION:
        return _description_predicate(schema, value, match)
    return None


# --- building blocks ---------------------------------------------------------------------


def _exact(model: type, column: str, value: str, score: int = EXACT_SCORE) -> Predicate | None:
    if not value:
        return None
    return Predicate(
        shape=("=", column, score),
        values=(value,),
        clause=lambda b: getattr(model, column) == b[0],
        row_score=lambda row: score if getattr(row, column) == value else None,
        sql_score=score,
        columns=(column,),
        pins=(column,),
    )


def _has_wildcard(value: str) -> bool:
    return any(w in value for w in WILDCARDS)


def _next_prefix(prefix: str) -> str | None:
    """A string above every string starting with `prefix` ("GARC" -> "GARD", "GARZ" -> "GAS").

    With `prefix` as the lower bound it turns a prefix search into an index range on any
    database; None when `prefix` does not end in a letter or digit that can be counted up.
    """
    stem = prefix.rstrip("Z9")
    if not stem or not (("A" <= stem[-1] < "Z") or ("0" <= stem[-1] < "9")):
        return None
    return stem[:-1] + chr(ord(stem[-1]) + 1)


def _like(pattern: str) -> str:
    """A LIKE pattern (escape `\\`) of a query pattern: `*` any run, `?` one character."""
    return "".join(
        "%" if ch == "*" else "_" if ch == "?" else ("\\" + ch if ch in "\\%_" else ch) for ch in pattern
    )


def _starts(word: str) -> str:
    """A LIKE pattern (escape `\\`) for words starting with `word`."""
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _wildcard(model: type, column: str, pattern: str, score: int = WILDCARD_SCORE) -> Predicate | None:
    """`*` any run, `?` one character; a literal prefix keeps the lookup on the column's index."""
    if not _has_wildcard(pattern):
        return _exact(model, column, pattern)
    if not pattern.strip("*?"):
        return None  # nothing but wildcards: not a search
    col = getattr(model, column)
    prefix = re.split(r"[*?]", pattern, maxsplit=1)[0]
    upper = _next_prefix(prefix)
    bounded = upper is not None

    def clause(b: Binds) -> ColumnElement[bool]:
        like = col.like(b[-1], escape="\\")
        return and_(col >= b[0], col < b[1], like) if bounded else like

    regex = re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern), re.S)

    def row_score(row: Any) -> int | None:
        held = getattr(row, column)
        return score if held is not None and regex.fullmatch(held) else None

    return Predicate(
        shape=("like", column, bounded, score),
        values=(prefix, upper, _like(pattern)) if bounded else (_like(pattern),),
        clause=clause,
        row_score=row_score,
        sql_score=score,
        columns=(column,),
    )


def _plain_predicate(model: type, column: str, spelling: _Spelling, value: str, match: QueryMatch) -> Predicate | None:
    if match in _RANGES:
        return None
    if match == QueryMatch.WILDCARD:
        return _wildcard(model, column, spelling.pattern(value))
    # Fuzzy on a number, code or place name means "the same, however it is written".
    return _exact(model, column, spelling.exact(value))


def _name_predicate(
    read: Reader, schema: RecordSchema, column: str, part: str, value: str, match: QueryMatch
) -> Predicate | None:
    model = schema.model
    if match in _RANGES:
        return None
    if match == QueryMatch.WILDCARD or (match == QueryMatch.FUZZY and _has_wildcard(value)):
        return _wildcard(model, column, normalise_text_pattern(value))
    name = normalise_text(value)
    if not name:
        return None
    if match == QueryMatch.FUZZY:
        return _fuzzy_name(read, schema, column, part, name)
    if column == "middle_norm" and len(name) == 1:
        return _wildcard(model, column, name + "*", score=INITIAL_SCORE)
    return _exact(model, column, name)


def _fuzzy_name(read: Reader, schema: RecordSchema, column: str, part: str, name: str) -> Predicate | None:
    """Names like `name`, taken from the source's name vocabulary, then an indexed IN on them."""
    nicknames = part == GIVEN_PART
    variants = sorted(nickname_variants(name)) if nicknames else []
    upper = _next_prefix(name[0])
    bounds = (name[0], upper) if upper is not None else ()
    lookup = _vocabulary_lookup(schema.name_vocabulary, len(variants), bool(bounds))
    shape = ("vocabulary", len(variants), bool(bounds))
    candidates = read(shape, lookup, (part, phonetic_key(name), *variants, *bounds))
    scored = {name: EXACT_SCORE}
    alike = AlikeNames(name, nicknames=nicknames, floor=FUZZY_THRESHOLD)
    for (candidate,) in candidates:
        if abs(len(candidate) - len(name)) <= 4:
            score = alike.score(candidate)
            if score is not None:
                scored[candidate] = score
    ranked = sorted(scored.items(), key=lambda item: (-item[1], item[0]))[:MAX_FUZZY_CANDIDATES]
    scored = dict(ranked)
    col, count = getattr(schema.model, column), len(ranked)
    return Predicate(
        shape=("fuzzy", column, count),
        values=(*scored, *scored.values()),
        clause=lambda b: col.in_(b[:count]),
        row_score=lambda row: scored.get(getattr(row, column)),
        sql_score=lambda b: case(*zip(b[:count], b[count:]), value=col, else_=0),
        levels=(column, count),
        columns=(column,),
    )


def _vocabulary_lookup(vocabulary: Table, variants: int, bounded: bool) -> Build:
    """Names of a part (G/S) with the same phonetic key, a nickname variant or the same initial."""

    def build(b: Binds) -> Select[Any]:
        c = vocabulary.c
        alike = [c.name_key == b[1]]
        if variants:
            alike.append(c.name_norm.in_(b[2 : 2 + variants]))
        if bounded:
            alike.append(and_(c.name_norm >= b[-2], c.name_norm < b[-1]))
        return select(c.name_norm).where(c.part == b[0], or_(*alike))

    return build


def _score_expression(predicate: Predicate, binds: Binds) -> ColumnElement[Any]:
    score = predicate.sql_score
    return literal(score) if isinstance(score, int) else score(binds)


def _conjunction(predicates: list[Predicate]) -> Predicate:
    """All of the predicates; the score is the product, as for a whole query."""
    if len(predicates) == 1:
        return predicates[0]
    constant = _product(tuple(p.sql_score for p in predicates if isinstance(p.sql_score, int)))  # type: ignore[misc]

    def clause(b: Binds) -> ColumnElement[bool]:
        return and_(*(p.clause(part) for p, part in zip(predicates, _parts(predicates, b))))

    def sql_score(b: Binds) -> ColumnElement[Any]:
        score: Any = constant
        for p, part in zip(predicates, _parts(predicates, b)):
            if not isinstance(p.sql_score, int):
                score = cast(p.sql_score(part), Float) * score / 100
        return score

    return Predicate(
        shape=("and", tuple(p.shape for p in predicates)),
        values=_values(predicates),
        clause=clause,
        row_score=lambda row: combined_score(predicates, row),
        sql_score=constant if all(isinstance(p.sql_score, int) for p in predicates) else sql_score,
        columns=_columns(predicates),
        pins=tuple(dict.fromkeys(chain.from_iterable(p.pins for p in predicates))),
    )


def _columns(predicates: Sequence[Predicate]) -> tuple[str, ...] | None:
    """Every column the predicates read (None when one of them may read any)."""
    if any(p.columns is None for p in predicates):
        return None
    return tuple(dict.fromkeys(chain.from_iterable(p.columns for p in predicates)))  # type: ignore[arg-type]


def _disjunction(alternatives: list[Predicate]) -> Predicate:
    """Any of the alternatives; a row scores as the first alternative it satisfies."""
    if len(alternatives) == 1:
        return alternatives[0]

    def row_score(row: Any) -> int | None:
        for alternative in alternatives:
            score = alternative.row_score(row)
            if score is not None:
                return score
        return None

    def clause(b: Binds) -> ColumnElement[bool]:
        return or_(*(a.clause(part) for a, part in zip(alternatives, _parts(alternatives, b))))

    def sql_score(b: Binds) -> ColumnElement[Any]:
        parts = _parts(alternatives, b)
        return case(*((a.clause(p), _score_expression(a, p)) for a, p in zip(alternatives, parts)), else_=0)

    return Predicate(
        shape=("or", tuple(a.shape for a in alternatives)),
        values=_values(alternatives),
        clause=clause,
        row_score=row_score,
        sql_score=sql_score,
        columns=_columns(alternatives),
    )


def split_full_name(value: str) -> list[tuple[str | None, str | None, str]]:
    """Ways to read a full name as (given, middle, surname), likeliest first.

    "DOE, JOHN Q" puts the surname first; otherwise the surname is the last word, then the last
    two, three... words ("MARIA DE LA CRUZ"). One word is a surname.
    """
    head, comma, tail = value.partition(",")
    if comma:
        surname = normalise_text_pattern(head)
        rest = normalise_text_pattern(tail).split()
        if not surname:
            return []
        return [(rest[0] if rest else None, " ".join(rest[1:]) or None, surname)]
    words = normalise_text_pattern(value).split()
    if not words:
        return []
    if len(words) == 1:
        return [(None, None, words[0])]
    return [
        (words[0], " ".join(words[1:cut]) or None, " ".join(words[cut:]))
        for cut in range(len(words) - 1, 0, -1)
    ]


def _full_name_predicate(read: Reader, schema: RecordSchema, value: str, match: QueryMatch) -> Predicate | None:
    alternatives = []
    for given, middle, surname in split_full_name(value):
        parts = [("surname_norm", SURNAME_PART, surname), ("given_norm", GIVEN_PART, given), ("middle_norm", GIVEN_PART, middle)]
        predicates = []
        for column, part, text in parts:
            if text is None:
                continue
            predicate = _name_predicate(read, schema, column, part, text, match)
            if predicate is None:
                break
            predicates.append(predicate)
        else:
            alternatives.append(_conjunction(predicates))
    return _disjunction(alternatives) if alternatives else None


def _date_predicate(model: type, column: str, value: str, match: QueryMatch) -> Predicate | None:
    if match == QueryMatch.WILDCARD and _has_wildcard(value):
        return _date_wildcard(model, column, value)
    day = parse_date(value)
    if day is None:
        return None
    held = lambda row: getattr(row, column)  # noqa: E731
    if match in _RANGES:
        compare = _COMPARE[match]
        return Predicate(
            shape=("date", column, match),
            values=(day,),
            clause=lambda b: compare(getattr(model, column), b[0]),
            row_score=lambda row: EXACT_SCORE if held(row) is not None and compare(held(row), day) else None,
            columns=(column,),
        )
    if match == QueryMatch.FUZZY:
        near = _near_dates(day)
        scores = {day: EXACT_SCORE, **{d: NEAR_DATE_SCORE for d in near if d != day}}
        count = len(scores)
        return Predicate(
            shape=("date~", column, count),
            values=(*sorted(scores), day),
            clause=lambda b: getattr(model, column).in_(b[:count]),
            row_score=lambda row: scores.get(held(row)),
            sql_score=lambda b: case((getattr(model, column) == b[count], EXACT_SCORE), else_=NEAR_DATE_SCORE),
            columns=(column,),
        )
    return Predicate(
        shape=("date=", column),
        values=(day,),
        clause=lambda b: getattr(model, column) == b[0],
        row_score=lambda row: EXACT_SCORE if getattr(row, column) == day else None,
        columns=(column,),
        pins=(column,),
    )


def _near_dates(day: date) -> set[date]:
    """Common birth-date slips: day and month swapped, one year off."""
    near = set()
    for year, month, dom in ((day.year, day.day, day.month), (day.year - 1, day.month, day.day), (day.year + 1, day.month, day.day)):
        try:
            near.add(date(year, month, dom))
        except ValueError:
            continue
    return near


def _date_wildcard(model: type, column: str, value: str) -> Predicate | None:
    """"1975*" and "1975-04*" are year and month ranges; other date patterns match nothing."""
    found = re.fullmatch(r"(\d{4})(?:-?(\d{2}))?-?\*", value.strip())
    if not found:
        return None
    year, month = int(found.group(1)), found.group(2)
    try:
        if month is None:
            first, after = date(year, 1, 1), date(year + 1, 1, 1)
        else:
            first = date(year, int(month), 1)
            after = (first + timedelta(days=32)).replace(day=1)
    except ValueError:
        return None
    col = getattr(model, column)
    return Predicate(
        shape=("date*", column),
        values=(first, after),
        clause=lambda b: and_(col >= b[0], col < b[1]),
        row_score=lambda row: WILDCARD_SCORE if getattr(row, column) is not None and first <= getattr(row, column) < after else None,
        sql_score=WILDCARD_SCORE,
        columns=(column,),
    )


def _full_address_predicate(model: type, value: str, match: QueryMatch) -> Predicate | None:
    """Every part found in the one-line address must match (wildcards and fuzziness ignored)."""
    if match in _RANGES:
        return None
    parsed = parse_full_address(value.replace("*", " ").replace("?", " "))
    predicates = []
    for part, column in _ADDRESS_PARTS:
        text = getattr(parsed, part)
        if text:
            predicate = _exact(model, column, text)
            if predicate is None:
                return None
            predicates.append(predicate)
    return _conjunction(predicates) if predicates else None


def _description_predicate(schema: RecordSchema, value: str, match: QueryMatch) -> Predicate | None:
    """The description contains every query word (as a word or the start of one)."""
    words = schema.activity_words
    if words is None or match in _RANGES:
        return None
    wanted = sorted(description_words(value)) or sorted(set(normalise_text(value).split()))
    if not wanted:
        return None
    model = schema.model
    uppers = [_next_prefix(word) for word in wanted]
    bounded = tuple(upper is not None for upper in uppers)

    def clause(b: Binds) -> ColumnElement[bool]:
        column, clauses, i = words.c.word, [], 0
        for has_upper in bounded:
            if has_upper:
                hit = and_(column >= b[i], column < b[i + 1], column.like(b[i + 2], escape="\\"))
                i += 3
            else:
                hit = column.like(b[i], escape="\\")
                i += 1
            clauses.append(model.pk.in_(select(words.c.record_pk).where(hit)))
        return and_(*clauses)

    def row_score(row: Any) -> int | None:
        held = normalise_text(row.activity_description or "").split()
        return EXACT_SCORE if all(any(h.startswith(w) for h in held) for w in wanted) else None

    return Predicate(
        shape=("words", bounded),
        values=tuple(chain.from_iterable(
            (word, upper, _starts(word)) if upper else (_starts(word),) for word, upper in zip(wanted, uppers)
        )),
        clause=clause,
        row_score=row_score,
        columns=("activity_description",),
    )
