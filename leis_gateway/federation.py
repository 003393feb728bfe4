"""Ask every source in parallel under one deadline; late or failing sources become advisories.

A source that misses the deadline does not hold the answer back: its work is abandoned (the
pool thread finishes on its own and its result is dropped), and the response names it.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

from .domain import Advisory, AdvisoryCategory, SourceStatus

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    """A bounded pool shared by all requests, so a hung source cannot exhaust threads."""

    def __init__(self, max_workers: int = 32) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="source")
        self._closed = threading.Event()

    def fan_out(
        self, calls: Sequence[tuple[str, Callable[[], T]]], deadline_seconds: float
    ) -> FanOutResult[T]:
        started = time.monotonic()
        futures: dict[Future[T], str] = {}
        for name, call in calls:
            futures[self._pool.submit(_timed, call)] = name
        done, late = wait(futures, timeout=max(deadline_seconds, 0.0))
        results: list[tuple[str, T]] = []
        statuses: list[SourceStatus] = []
        for future, name in futures.items():
            if future in late:
                future.cancel()
                statuses.append(
                    SourceStatus(
                        name,
                        ok=False,
                        advisory=Advisory(
                            AdvisoryCategory.TIMEOUT,
                            f"Source system {name} did not answer within {deadline_seconds:g} s.",
                        ),
                        elapsed_ms=(time.monotonic() - started) * 1000,
                    )
                )
                continue
            try:
                value, elapsed = future.result()
            except Exception as exc:  # a source failure must never fail the whole answer
                log.warning("source %s failed: %s", name, type(exc).__name__)
                statuses.append(
                    SourceStatus(
                        name,
                        ok=False,
                        advisory=Advisory(
                            AdvisoryCategory.NETWORK_FAILURE,
                            f"Source system {name} is not available.",
                        ),
                        elapsed_ms=(time.monotonic() - started) * 1000,
                    )
                )
                continue
            results.append((name, value))
            statuses.append(SourceStatus(name, ok=True, elapsed_ms=elapsed))
        order = {name: i for i, (name, _) in enumerate(calls)}
        results.sort(key=lambda r: order[r[0]])
        statuses.sort(key=lambda s: order[s.source])
        return FanOutResult(tuple(results), tuple(statuses))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    value = call()
    return value, (time.monotonic() - started) * 1000
