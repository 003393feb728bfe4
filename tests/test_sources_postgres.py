"""The same adapters and loader on PostgreSQL (skipped, loudly, where no server answers)."""
from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from leis_gateway.domain import Criterion, Query, QueryField, QueryMatch, SourceSystem
from leis_gateway.sources import SourceUrls, open_hub
from leis_gateway.sources.demo import DEMO_SUBJECTS, load_demo_sources
from support import postgres_user
from test_sources import SAME_SHAPE_QUERIES, reference_search

F, M = QueryField, QueryMatch


def _url(user: str, schema: str | None = None) -> str:
    base = os.environ.get("LEIS_TEST_PG_URL", f"postgresql+psycopg://{user}@127.0.0.1:5432/test")
    return base + (f"?options=-csearch_path%3D{schema}" if schema else "")


@pytest.fixture(scope="module")
def pg_schema():
    """A throwaway schema in the `test` database; dropped afterwards."""
    user = postgres_user()
    if user is not None:
        engine = create_engine(_url(user), poolclass=NullPool, connect_args={"connect_timeout": 3})
        schema = f"leis_sources_{uuid.uuid4().hex[:10]}"
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield user, schema
        finally:
            with engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()
        return
    pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database `test`): PG source tests SKIPPED")


@pytest.fixture(scope="module")
def pg_hub(pg_schema):
    user, schema = pg_schema
    url = _url(user, schema)
    urls = SourceUrls(tecs=url, eid=url, obim=url)
    load_demo_sources(urls, people=60)
    with open_hub(urls=urls) as hub:
        yield hub


def _found(hub, *criteria: Criterion) -> set[str]:
    query = Query(tuple(criteria))
    return {r.record_id for a in hub.adapters for r in a.search(query, 500)}


def test_postgres_holds_the_demo_subjects(pg_hub) -> None:
    for subject in DEMO_SUBJECTS.values():
        assert pg_hub.adapter(subject.source).fetch(subject.record_id) is not None
    s4 = DEMO_SUBJECTS["S4"]
    photo = pg_hub.photos.photo(s4.photo_id)
    assert photo is not None and photo.data[:3] == b"\xff\xd8\xff"
    assert all(a.ping() for a in pg_hub.adapters)


def test_postgres_answers_every_match_mode(pg_hub) -> None:
    s1, s2, s4 = (DEMO_SUBJECTS[k].record_id for k in ("S1", "S2", "S4"))
    assert _found(pg_hub, Criterion(F.FULL_NAME, "John Quincy Doe"), Criterion(F.BIRTH_DATE, "1975-04-12")) == {s1}
    assert _found(pg_hub, Criterion(F.SSN, "900-12-3456")) == {s1}
    assert _found(pg_hub, Criterion(F.FULL_ADDRESS, "100 Main St, Tucson AZ 85701")) == {s1}
    assert _found(pg_hub, Criterion(F.A_NUMBER, "A-099-000-004")) == {s4}
    assert s4 in _found(pg_hub, Criterion(F.SURNAME, "GARC*", M.WILDCARD))
    assert _found(pg_hub, Criterion(F.SURNAME, "DOE"), Criterion(F.BIRTH_DATE, "1976-01-01", M.GE)) == {s2}
    assert s1 in _found(pg_hub, Criterion(F.ACTIVITY_DESCRIPTION, "undeclared curr"))
    tecs = pg_hub.adapter(SourceSystem.TECS)
    fuzzy = tecs.search(Query((Criterion(F.SURNAME, "DOUGH", M.FUZZY),)), 5)
    assert {r.record_id for r in fuzzy[:2]} == {s1, s2} and all(r.score < 100 for r in fuzzy)
    nick = tecs.search(Query((Criterion(F.GIVEN_NAME, "JOHNNY", M.FUZZY), Criterion(F.SURNAME, "DOE"))), 5)
    assert {r.record_id for r in nick} == {s1, s2}


def test_postgres_runs_the_sql_reused_per_query_shape(pg_hub) -> None:
    """The SQL compiled once per query shape (PostgreSQL's own dialect) finds what building it would."""
    for adapter in pg_hub.adapters:
        for criteria in SAME_SHAPE_QUERIES:
            query = Query(tuple(criteria))
            assert [(r.record_id, r.score) for r in adapter.search(query, 50)] == reference_search(adapter, query, 50)
