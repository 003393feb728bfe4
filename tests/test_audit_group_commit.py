"""The audit log's group commit (audit/log.py `_GroupCommit`): several messages in one transaction,
each caller still told its own outcome only after the commit."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leis_gateway.audit import AuditEntry, AuditLog, AuditUnavailable, Direction
from leis_gateway.audit.log import _GroupCommit


def _eventually(condition, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.001)
    return condition()


def _open(tmp_path: Path) -> AuditLog:
    return AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}", os.urandom(32), "k1")


def test_concurrent_records_share_commits_and_keep_the_chain(tmp_path: Path) -> None:
    log = _open(tmp_path)
    barrier = threading.Barrier(12)
    ids: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(10):
            direction = Direction.INBOUND if i % 2 else Direction.OUTBOUND
            row = log.record(AuditEntry(direction, "doStructuredSearch", correlation_id=f"c{n}-{i}"), b"x" * 100,
                             durable=direction is Direction.OUTBOUND)
            with lock:
                ids.append(row)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(ids) == list(range(1, 121))
        report = log.verify()
        assert report.ok and report.rows_checked == 120
    finally:
        log.close()


def test_replays_within_one_batch_have_one_winner(tmp_path: Path) -> None:
    log = _open(tmp_path)
    soon = datetime.now(UTC) + timedelta(minutes=5)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def attempt() -> None:
        barrier.wait()
        results.append(log.remember_once("same-signature", soon))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert sorted(results) == [False] * 7 + [True]


def test_a_failing_job_fails_alone_and_nothing_is_answered_before_the_commit() -> None:
    commits: list[list[str]] = []
    writing = threading.Event()
    release = threading.Event()

    @contextmanager
    def write(durable: bool):
        done: list[str] = []
        writing.set()
        release.wait(5)  # hold the first batch until the others are queued behind it
        yield done
        if "boom" in done:
            raise AuditUnavailable("the commit failed")
        commits.append(done)

    group = _GroupCommit(write)
    outcomes: dict[str, object] = {}

    def job(name: str) -> None:
        def work(done: list[str]) -> str:
            done.append(name)
            return name

        try:
            outcomes[name] = group.run(work, durable=True)
        except AuditUnavailable as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=job, args=(name,)) for name in ("first", "a", "boom", "b")]
    threads[0].start()
    assert writing.wait(5)  # the first job is being written, by its own caller (it leads)
    for t in threads[1:]:
        t.start()
    assert _eventually(lambda: len(group._queue) == 3)  # the others wait behind it
    assert outcomes == {}  # nobody is answered while their commit is pending
    release.set()
    for t in threads:
        t.join(5)
    assert outcomes["first"] == "first" and outcomes["a"] == "a" and outcomes["b"] == "b"
    assert isinstance(outcomes["boom"], AuditUnavailable)
    assert ["first"] in commits and ["a"] in commits and ["b"] in commits  # retried one by one


def test_errors_that_are_not_the_stores_keep_their_type(tmp_path: Path) -> None:
    log = _open(tmp_path)
    try:
        with pytest.raises(ValueError):
            log.record(AuditEntry(Direction.INBOUND, "x", at=datetime(2025, 1, 1)), b"")  # naive time
        assert log.record(AuditEntry(Direction.INBOUND, "x"), b"") == 1
    finally:
        log.close()


def test_a_lone_caller_commits_on_its_own_thread() -> None:
    """No writer thread: nothing to hand the work to and back (two GIL hand-offs per write)."""
    threads: list[threading.Thread] = []

    @contextmanager
    def write(durable: bool):
        threads.append(threading.current_thread())
        yield None

    group = _GroupCommit(write)
    assert group.run(lambda cursor: "committed", durable=False) == "committed"
    assert group.run(lambda cursor: "again", durable=True) == "again"
    assert threads == [threading.current_thread()] * 2


def test_answers_commit_with_an_fsync_and_inbound_rows_without_switching_levels(tmp_path: Path) -> None:
    """An exchange's inbound row commits with synchronous=NORMAL and its answer's row with FULL
    (which makes both durable), each on a connection kept at its level, not switched per write."""
    log = _open(tmp_path)
    statements: list[str] = []
    for held in log._held.values():  # the kept connections, once opened, report what they run
        held.take(log._engine).driver_connection.set_trace_callback(statements.append)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    for n in range(3):
        assert log.record_inbound(AuditEntry(direction=Direction.INBOUND, operation="op"), b"in", f"k{n}", expires)
        log.record(AuditEntry(direction=Direction.OUTBOUND, operation="op"), b"out")
    assert [s for s in statements if "synchronous" in s] == ["PRAGMA synchronous=NORMAL"]  # once, at its first use
    assert sum(s == "COMMIT" for s in statements) == 6
    levels = {durable: held.connection.driver_connection.execute("PRAGMA synchronous").fetchone()[0]
              for durable, held in log._held.items()}
    assert levels == {True: 2, False: 1}  # FULL, NORMAL
    assert log.verify().ok
    log.close()
