"""The fan-out itself: parallel calls under one deadline, per-source advisories, no leaks.

Sources here are plain functions that sleep, fail or hang (the far side, instrumented); the
federation under test is the real one. Timings have generous margins: this proves behaviour,
`scripts/bench` measures speed.
"""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from leis_gateway.domain import AdvisoryCategory
from leis_gateway.federation import (
    Federation,
    SourceInvalidResponse,
    SourceTimeout,
    WorkerPool,
    deadline_passed,
    remaining_seconds,
)
from leis_gateway.domain import Criterion, Query, QueryField, QueryMatch, SourceSystem
from leis_gateway.sources.base import create_source_engine, open_hub, sqlite_url
from leis_gateway.sources.matching import compile_query, select_matches


def sleeper(seconds: float, value: object = "ok"):
    def call():
        time.sleep(seconds)
        return value

    return call


def failing(exc: Exception):
    def call():
        raise exc

    return call


def wait_until(condition, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def federation():
    fed = Federation(8, per_source_limit=4, idle_seconds=0.2)
    yield fed
    fed.close()


def test_sources_are_asked_in_parallel(federation):
    started = time.monotonic()
    result = federation.fan_out([(f"S{i}", sleeper(0.3, i)) for i in range(4)], 5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 * 2, elapsed  # four 0.3 s calls, not 1.2 s
    assert [name for name, _ in result.results] == ["S0", "S1", "S2", "S3"]
    assert [value for _, value in result.results] == [0, 1, 2, 3]
    assert all(s.ok for s in result.statuses) and not result.advisories


def test_a_late_source_does_not_hold_the_answer(federation):
    started = time.monotonic()
    result = federation.fan_out([("TECS", sleeper(0.05, "t")), ("EID", sleeper(3, "e"))], 0.3, stated_seconds=0.4)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.3 + 0.15, elapsed
    assert result.results == (("TECS", "t"),)
    assert [(a.category, a.text) for a in result.advisories] == [
        (AdvisoryCategory.TIMEOUT, "Source system EID did not answer within 0.4 s.")
    ]
    assert not result.all_failed


def test_each_failure_kind_becomes_its_advisory(federation):
    result = federation.fan_out(
        [
            ("TECS", failing(ConnectionRefusedError("down"))),
            ("EID", failing(SourceTimeout("slow"))),
            ("X", failing(SourceInvalidResponse("garbage"))),
            ("Y", sleeper(0, [1])),
        ],
        2,
    )
    assert [(s.source, s.ok) for s in result.statuses] == [("TECS", False), ("EID", False), ("X", False), ("Y", True)]
    assert [a.category for a in result.advisories] == [
        AdvisoryCategory.NETWORK_FAILURE, AdvisoryCategory.TIMEOUT, AdvisoryCategory.INVALID_RESPONSE,
    ]
    assert "TECS" in result.advisories[0].text and "EID" in result.advisories[1].text
    assert result.results == (("Y", [1]),)


def test_all_failed(federation):
    result = federation.fan_out([("TECS", failing(OSError("x"))), ("EID", sleeper(2))], 0.2)
    assert result.all_failed and not result.results
    assert [a.category for a in result.advisories] == [AdvisoryCategory.NETWORK_FAILURE, AdvisoryCategory.TIMEOUT]


def test_every_call_sees_the_remaining_deadline(federation):
    assert remaining_seconds() is None  # outside a fan-out
    result = federation.fan_out([("TECS", remaining_seconds)], 1.0)
    (_, left), = result.results
    assert 0.8 < left <= 1.0


def test_a_source_named_on_caller_runs_on_the_callers_thread_the_others_in_parallel(federation):
    caller = threading.get_ident()

    def thread_after(seconds: float):
        def call():  # as a source that ends by the deadline runs: asking `deadline_passed` as it goes
            until = time.monotonic() + seconds
            while time.monotonic() < until and not deadline_passed():
                time.sleep(0.002)
            return threading.get_ident() == caller
        return call

    started = time.monotonic()
    result = federation.fan_out([("TECS", thread_after(0.3)), ("EID", thread_after(0.3)), ("X", thread_after(0.3))],
                                5, on_caller={"EID", "X"})
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 * 2, elapsed  # still in parallel
    assert result.results == (("TECS", False), ("EID", True), ("X", False))  # one on the caller's thread
    assert all(s.ok for s in result.statuses)
    assert federation.in_flight() == {}


def test_quick_calls_named_on_caller_all_run_on_the_callers_thread_without_waking_the_pool(federation):
    caller = threading.get_ident()
    result = federation.fan_out([("EID", lambda: threading.get_ident() == caller),
                                 ("X", lambda: threading.get_ident() == caller)], 5, on_caller={"EID", "X"})
    assert result.results == (("EID", True), ("X", True))
    assert federation.workers == 0  # no pool thread was started for them
    assert federation.in_flight() == {}


def test_with_the_pool_busy_the_caller_runs_the_queued_calls_it_may_run():
    """Help while waiting: once its own call is done, the caller runs the calls to sources it may
    run that no pool thread has started; a call to any other source waits for the pool."""
    federation = Federation(1, idle_seconds=0.2)
    release = threading.Event()
    hung = threading.Thread(target=lambda: federation.fan_out([("HUNG", lambda: release.wait(5))], 5))
    hung.start()
    assert wait_until(lambda: federation.in_flight() == {"HUNG": 1})  # the pool's one thread is taken
    caller = threading.get_ident()

    def on_callers_thread():
        return threading.get_ident() == caller

    try:
        result = federation.fan_out([("EID", on_callers_thread), ("X", on_callers_thread), ("REMOTE", on_callers_thread)],
                                    0.3, on_caller={"EID", "X"})
    finally:
        release.set()
        hung.join(5)
    assert result.results == (("EID", True), ("X", True))
    assert [a.category for a in result.advisories] == [AdvisoryCategory.TIMEOUT]  # REMOTE never got a thread
    assert wait_until(lambda: federation.in_flight() == {})
    federation.close()


def test_a_source_on_the_callers_thread_keeps_the_deadline_and_its_failures(federation):
    result = federation.fan_out([("TECS", sleeper(0.05, "t")), ("EID", sleeper(0.5, "e"))], 0.2,
                                stated_seconds=0.3, on_caller={"EID"})
    assert result.results == (("TECS", "t"),)  # EID answered after the deadline: not used
    assert [(a.category, a.text) for a in result.advisories] == [
        (AdvisoryCategory.TIMEOUT, "Source system EID did not answer within 0.3 s.")]
    failed = federation.fan_out([("TECS", failing(ConnectionRefusedError("down")))], 1, on_caller={"TECS"})
    assert [a.category for a in failed.advisories] == [AdvisoryCategory.NETWORK_FAILURE]
    assert (federation.fan_out([("TECS", remaining_seconds)], 1.0, on_caller={"TECS"}).results[0][1] or 0) > 0.8
    assert remaining_seconds() is None  # the caller's own context is left as it was
    assert federation.in_flight() == {}


def test_a_hung_source_gets_its_share_of_threads_never_the_pool():
    """Calls to a source that never answers pile up only to the per-source limit; beyond it the
    source is refused at once, and the other sources keep their threads."""
    release = threading.Event()
    federation = Federation(4, per_source_limit=2, idle_seconds=0.2)
    try:
        for _ in range(2):
            federation.fan_out([("EID", release.wait)], 0.05)
        assert federation.in_flight() == {"EID": 2}
        started = time.monotonic()
        result = federation.fan_out([("TECS", sleeper(0.05, "t")), ("EID", release.wait)], 2)
        assert time.monotonic() - started < 1  # EID refused at once, not waited for
        assert result.results == (("TECS", "t"),)
        assert result.advisories[0].category == AdvisoryCategory.TIMEOUT and "EID" in result.advisories[0].text
    finally:
        release.set()
        assert wait_until(lambda: federation.in_flight() == {})
        federation.close()


def test_threads_return_to_baseline_after_many_timeouts():
    baseline = threading.active_count()
    federation = Federation(6, per_source_limit=6, idle_seconds=0.2)
    try:
        for _ in range(40):
            federation.fan_out([("TECS", sleeper(0.15)), ("EID", sleeper(0.001))], 0.01)
            assert federation.workers <= 6  # bounded, however many calls were abandoned
        assert wait_until(lambda: federation.in_flight() == {} and federation.workers == 0)
        # (<=: idle workers of an earlier test's pool may exit meanwhile)
        assert wait_until(lambda: threading.active_count() <= baseline), (threading.active_count(), baseline)
        # the pool still works after shrinking to nothing
        assert federation.fan_out([("TECS", sleeper(0, 1))], 1).results == (("TECS", 1),)
    finally:
        federation.close()


def test_worker_pool_runs_a_burst_in_parallel_and_shrinks():
    pool = WorkerPool(5, idle_seconds=0.1)
    gate = threading.Barrier(5, timeout=2)
    futures = [pool.submit(gate.wait) for _ in range(5)]  # needs five threads at once
    assert sorted(f.result(timeout=3) for f in futures) == [0, 1, 2, 3, 4]
    assert wait_until(lambda: pool.workers == 0)
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_a_sqlite_query_running_at_the_deadline_is_interrupted(tmp_path, federation):
    """The far side of an in-process SQL source: a query that would never end stops at the
    deadline and gives its pooled connection back."""
    engine = create_source_engine(sqlite_url(tmp_path / "slow.db"))
    endless = text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c")

    def never_ending():
        with engine.connect() as connection:
            return connection.execute(endless).scalar()

    try:
        started = time.monotonic()
        result = federation.fan_out([("TECS", never_ending)], 0.3)
        assert result.advisories[0].category == AdvisoryCategory.TIMEOUT
        assert wait_until(lambda: federation.in_flight() == {}, timeout=1.0)
        assert time.monotonic() - started < 1.0  # ended at the deadline, not "never"
        assert engine.pool.checkedout() == 0
        with engine.connect() as connection:  # the connection is usable again, outside a fan-out
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("system", [SourceSystem.TECS, SourceSystem.EID])
def test_fuzzy_names_read_by_levels_give_the_same_best_rows(demo_home, system):
    """The index-friendly plan for fuzzy names (best rows per matched name, then ranked) picks
    exactly the rows, in exactly the order, of ranking every matching row."""
    import dataclasses

    with open_hub(demo_home) as hub:
        adapter = hub.adapter(system)
        for criteria in (
            [Criterion(QueryField.SURNAME, "GARSIA", QueryMatch.FUZZY)],
            [Criterion(QueryField.SURNAME, "SMYTH", QueryMatch.FUZZY), Criterion(QueryField.BIRTH_DATE, "1970-01-01", QueryMatch.GE)],
            [Criterion(QueryField.GIVEN_NAME, "JOHNNY", QueryMatch.FUZZY)],
        ):
            with adapter._sessions() as session:
                predicates = compile_query(session, adapter.schema, Query(tuple(criteria)))
                assert any(p.levels for p in predicates)
                plain = [dataclasses.replace(p, levels=None) for p in predicates]
                for limit in (1, 3, 26, 1000):
                    by_levels = [r.pk for r in session.scalars(select_matches(adapter.schema, predicates, limit))]
                    by_sorting = [r.pk for r in session.scalars(select_matches(adapter.schema, plain, limit))]
                    assert by_levels == by_sorting and by_levels
