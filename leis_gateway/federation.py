"""Ask every source in parallel under one deadline; late or failing sources become advisories.

A source that misses the deadline does not hold the answer back: the fan-out returns at the
deadline with what arrived and names every source that did not answer. Late work is not left
to run for ever either:

* every source call runs with the fan-out's deadline in a context variable (`remaining_seconds`),
  which the adapters use as their own limit: a remote adapter's HTTP timeout, the progress
  handler that interrupts a SQLite query (`sources/base.py`). So a late call ends at the
  deadline and gives back its thread and its pooled connection;
* the worker pool is bounded (`max_workers`) and its threads exit after `idle_seconds` without
  work, so the thread count returns to its baseline once the load is gone;
* each source may hold at most `per_source_limit` calls at once (a bulkhead): a source that hangs
  beyond every timeout can tie up that many threads, never the whole pool, and further calls to
  it fail at once (Timeout) instead of queueing behind it.
"""
from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, wait
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Collection, Generic, Sequence, TypeVar

from .domain import Advisory, AdvisoryCategory, SourceStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_WORKERS = 64
DEFAULT_PER_SOURCE_LIMIT = 24
DEFAULT_IDLE_SECONDS = 2.0

# The monotonic time by which the current source call must be finished (None: no fan-out).
_deadline_at: ContextVar[float | None] = ContextVar("leis_source_deadline", default=None)
# How long a call on the caller's thread may run before the calls held back for that thread go to
# the pool after all (`fan_out`): longer than a local search takes, short against any deadline.
HAND_OFF_AFTER_S = 0.01


# --- what a source adapter may raise ---------------------------------------------------


class SourceError(Exception):
    """A source could not answer; the fan-out turns it into an advisory naming the source."""


class SourceTimeout(SourceError):
    """The source did not answer in time (-> `Timeout`)."""


class SourceUnavailable(SourceError):
    """The source could not be reached or refused to answer (-> `NetworkFailure`)."""


class SourceInvalidResponse(SourceError):
    """The source answered with something that is not a valid answer (-> `InvalidResponse`)."""


def remaining_seconds() -> float | None:
    """Seconds left before the deadline of the source call running in this thread (may be <= 0);
    None outside a fan-out."""
    deadline = _deadline_at.get()
    return None if deadline is None else deadline - time.monotonic()


def deadline_passed() -> bool:
    """Whether the current source call is past its deadline. A source that ends by the deadline by
    itself asks this as it runs (SQLite's progress handler); on the caller's thread the question
    also hands the calls held back for that thread to the pool once it runs long (`_HandOff`)."""
    now = time.monotonic()
    hand_off = _hand_off.get()
    if hand_off is not None:
        hand_off.check(now)
    deadline = _deadline_at.get()
    return deadline is not None and now >= deadline


class _HandOff:
    """Calls queued in the pool without waking it, for the caller's thread to run after its own;
    woken after all if the caller's own call is still running at `due_at`."""

    __slots__ = ("_pool", "_count", "_due_at")

    def __init__(self, pool: WorkerPool, count: int, due_at: float) -> None:
        self._pool: WorkerPool | None = pool
        self._count = count
        self._due_at = due_at

    def check(self, now: float) -> None:
        if self._pool is not None and now >= self._due_at:
            pool, self._pool = self._pool, None
            pool.wake(self._count)


_hand_off: ContextVar[_HandOff | None] = ContextVar("leis_source_hand_off", default=None)


# --- the fan-out -------------------------------------------------------------------------


@dataclass(frozen=True)
class FanOutResult(Generic[T]):
    results: tuple[tuple[str, T], ...]  # (source name, result) of every source that answered
    statuses: tuple[SourceStatus, ...]

    @property
    def all_failed(self) -> bool:
        return bool(self.statuses) and not any(s.ok for s in self.statuses)

    @property
    def advisories(self) -> tuple[Advisory, ...]:
        return tuple(s.advisory for s in self.statuses if s.advisory is not None)


class Federation:
    """One bounded worker pool shared by every request of the process."""

    def __init__(
        self,
        max_workers: int = DEFAULT_MAX_WORKERS,
        *,
        per_source_limit: int = DEFAULT_PER_SOURCE_LIMIT,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        if max_workers < 1 or per_source_limit < 1:
            raise ValueError("max_workers and per_source_limit must be at least 1")
        self._pool = WorkerPool(max_workers, idle_seconds=idle_seconds, name="source")
        self.per_source_limit = per_source_limit
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def fan_out(
        self,
        calls: Sequence[tuple[str, Callable[[], T]]],
        deadline_seconds: float,
        *,
        stated_seconds: float | None = None,
        on_caller: Collection[str] = (),
    ) -> FanOutResult[T]:
        """Run every call in parallel; return at the latest `deadline_seconds` from now.

        `stated_seconds` is the deadline the advisories name (the requester's, of which the
        fan-out may get a little less); default `deadline_seconds`. `on_caller` names sources
        whose calls end by the deadline by themselves (a local SQLite source interrupts its own
        query, asking `deadline_passed` as it runs): one of them runs on the caller's thread,
        which would otherwise only wait, and the caller runs the rest of them after its own,
        queued for the pool without waking a thread: a local search takes less than a
        millisecond, and under load a hand-over to another thread and back costs more than that
        (docs/performance.md, the tenth round). If the caller's own call is still running
        `HAND_OFF_AFTER_S` later, they go to the pool and run in parallel. Other sources run on
        the pool. An answer that arrives after the deadline is still a `Timeout`.
        """
        started = time.monotonic()
        budget = max(deadline_seconds, 0.0)
        stated = budget if stated_seconds is None else stated_seconds
        deadline_at = started + budget
        futures: dict[Future, str] = {}
        refused: dict[str, SourceStatus] = {}
        inline: tuple[str, Callable[[], T]] | None = None
        held_back = 0
        for name, call in calls:
            if inline is None and name in on_caller and self._admit(name):
                inline = (name, call)
                continue
            if not self._admit(name):
                log.warning("source %s refused: %d calls to it outstanding", name, self.per_source_limit)
                refused[name] = _failed(
                    name, AdvisoryCategory.TIMEOUT,
                    f"Source system {name} is not answering (earlier calls to it are still outstanding).",
                    started,
                )
                continue
            hold = inline is not None and name in on_caller  # for the caller's thread, after its own
            try:
                future = self._pool.submit(_run_source_call, call, deadline_at, wake=not hold)
            except RuntimeError:  # shutting down
                self._release(name)
                refused[name] = _failed(
                    name, AdvisoryCategory.NETWORK_FAILURE, f"Source system {name} is not available.", started
                )
                continue
            future.add_done_callback(lambda _f, n=name: self._release(n))
            futures[future] = name
            held_back += hold
        late_here: set[Future] = set()
        if inline is not None:
            name, call = inline
            future = Future()
            future.set_running_or_notify_cancel()
            due_at = started + HAND_OFF_AFTER_S
            hand_off = _hand_off.set(_HandOff(self._pool, held_back, due_at) if held_back else None)
            try:
                _execute(future, _run_source_call, (call, deadline_at))
            finally:
                _hand_off.reset(hand_off)
            self._release(name)
            futures[future] = name
            if time.monotonic() > deadline_at:
                late_here.add(future)
            # The calls held back for this thread, and any other call to such a source that no
            # pool thread has started yet, run here (under load the pool's threads wait their turn
            # for the GIL, and each hand-over between threads costs more than the call;
            # docs/performance.md, the sixth and tenth rounds). One a pool thread took runs on there.
            for future, name in list(futures.items()):
                taken = self._pool.take_back(future) if name in on_caller else None
                if taken is not None:
                    _execute(future, *taken)
                    if time.monotonic() > deadline_at:
                        late_here.add(future)
        _done, late = wait(futures, timeout=max(deadline_at - time.monotonic(), 0.0))
        late |= late_here
        by_name: dict[str, SourceStatus] = dict(refused)
        results: list[tuple[str, Any]] = []
        for future, name in futures.items():
            if future in late:
                future.cancel()  # not started yet: never runs; running: ends at its own deadline
                log.warning("source %s did not answer within %g s", name, stated)
                by_name[name] = _failed(
                    name, AdvisoryCategory.TIMEOUT, f"Source system {name} did not answer within {stated:g} s.", started
                )
                continue
            try:
                value, elapsed = future.result()
            except (SourceTimeout, TimeoutError, _PastDeadline) as exc:
                log.warning("source %s timed out: %s", name, type(exc).__name__)
                by_name[name] = _failed(
                    name, AdvisoryCategory.TIMEOUT, f"Source system {name} did not answer within {stated:g} s.", started
                )
            except SourceInvalidResponse as exc:
                log.warning("source %s answered invalidly: %s", name, type(exc).__name__)  # the message may quote a value
                by_name[name] = _failed(
                    name, AdvisoryCategory.INVALID_RESPONSE, f"Source system {name} gave an invalid answer.", started
                )
            except Exception as exc:  # a source failure must never fail the whole answer
                log.warning("source %s failed: %s", name, type(exc).__name__)
                by_name[name] = _failed(
                    name, AdvisoryCategory.NETWORK_FAILURE, f"Source system {name} is not available.", started
                )
            else:
                results.append((name, value))
                by_name[name] = SourceStatus(name, ok=True, elapsed_ms=elapsed)
        order = {name: i for i, (name, _) in enumerate(calls)}
        results.sort(key=lambda r: order[r[0]])
        statuses = sorted(by_name.values(), key=lambda s: order[s.source])
        return FanOutResult(tuple(results), tuple(statuses))

    # --- the bulkhead ----------------------------------------------------------------------
    def _admit(self, name: str) -> bool:
        with self._lock:
            count = self._in_flight.get(name, 0)
            if count >= self.per_source_limit:
                return False
            self._in_flight[name] = count + 1
            return True

    def _release(self, name: str) -> None:
        with self._lock:
            self._in_flight[name] -= 1

    # --- observation (tests, benchmarks) -----------------------------------------------------
    def in_flight(self) -> dict[str, int]:
        """Calls per source not finished yet (including abandoned late ones)."""
        with self._lock:
            return {name: count for name, count in self._in_flight.items() if count}

    @property
    def workers(self) -> int:
        """Worker threads alive now."""
        return self._pool.workers

    def close(self) -> None:
        self._pool.shutdown()


class _PastDeadline(Exception):
    """A call that failed after its deadline had passed: the deadline, not the source, ended it."""


def _run_source_call(call: Callable[[], T], deadline_at: float) -> tuple[T, float]:
    started = time.monotonic()
    if started >= deadline_at:
        raise _PastDeadline("the deadline passed before the call started")
    token = _deadline_at.set(deadline_at)
    try:
        value = call()
    except Exception as exc:
        if time.monotonic() >= deadline_at and not isinstance(exc, SourceError):
            raise _PastDeadline(type(exc).__name__) from exc  # e.g. a SQLite query interrupted at the deadline
        raise
    finally:
        _deadline_at.reset(token)
    return value, (time.monotonic() - started) * 1000


def _failed(name: str, category: AdvisoryCategory, text: str, started: float) -> SourceStatus:
    return SourceStatus(name, ok=False, advisory=Advisory(category, text), elapsed_ms=(time.monotonic() - started) * 1000)


# --- a bounded pool whose idle threads go away ----------------------------------------------


class WorkerPool:
    """Like `ThreadPoolExecutor`, but bounded *and* shrinking: a worker with nothing to do for
    `idle_seconds` exits, so threads started for a burst (or for calls abandoned at a deadline)
    do not stay. Threads are daemons: a source hung beyond every timeout cannot hold up exit."""

    def __init__(self, max_workers: int, *, idle_seconds: float = DEFAULT_IDLE_SECONDS, name: str = "worker") -> None:
        self._max = max_workers
        self._idle_seconds = idle_seconds
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._tasks: deque[tuple[Future, Callable[..., Any], tuple[Any, ...]]] = deque()
        self._workers = 0
        self._idle = 0
        self._started = 0
        self._closed = False

    @property
    def workers(self) -> int:
        with self._cv:
            return self._workers

    def submit(self, fn: Callable[..., T], *args: Any, wake: bool = True) -> Future:
        """Queue a call; `wake=False` leaves it for a worker that is busy now, for `take_back`,
        or for a later `wake`, without waking or starting a thread for it."""
        future: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            # run in the caller's context: log lines keep the exchange's correlation id
            self._tasks.append((future, contextvars.copy_context().run, (fn, *args)))
            if wake:
                self._wake(1)
        return future

    def wake(self, count: int) -> None:
        """Wake (or start) workers for `count` calls queued with `wake=False`."""
        with self._cv:
            self._wake(count)

    def _wake(self, count: int) -> None:
        if self._idle:
            self._cv.notify(min(count, self._idle))
        for _ in range(count):
            if self._idle >= len(self._tasks) or self._workers >= self._max:
                break
            self._workers += 1
            self._started += 1
            threading.Thread(target=self._work, name=f"{self._name}-{self._started}", daemon=True).start()

    def take_back(self, future: Future) -> tuple[Callable[..., Any], tuple[Any, ...]] | None:
        """The call of `future`, taken out of the queue for the caller to run, if no worker has
        started it yet (the future is then running); None if one has."""
        with self._cv:
            for i, (queued, fn, args) in enumerate(self._tasks):
                if queued is future:
                    del self._tasks[i]
                    break
            else:
                return None
        if not future.set_running_or_notify_cancel():  # cancelled while queued
            return None
        return fn, args

    def _work(self) -> None:
        with self._cv:
            while True:
                if self._tasks:
                    future, fn, args = self._tasks.popleft()
                    if not future.set_running_or_notify_cancel():
                        continue
                    self._cv.release()
                    try:
                        _execute(future, fn, args)
                    finally:
                        del future, fn, args  # hold nothing of a finished call while idle
                        self._cv.acquire()
                    continue
                if self._closed:
                    break
                self._idle += 1
                notified = self._cv.wait(self._idle_seconds)
                self._idle -= 1
                if not notified and not self._tasks:
                    break
            self._workers -= 1

    def shutdown(self) -> None:
        """Cancel what has not started; running calls finish at their own deadlines."""
        with self._cv:
            self._closed = True
            while self._tasks:
                future, _fn, _args = self._tasks.popleft()
                future.cancel()
            self._cv.notify_all()


def _execute(future: Future, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the waiter
        future.set_exception(exc)
    else:
        future.set_result(result)
