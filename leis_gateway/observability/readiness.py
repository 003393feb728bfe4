"""`/readyz`: may this process take requests? Cheap enough to be probed every second.

Ready when the audit log answers (asked every time: one indexed SELECT, and the guard refuses
service without it), the agreements registry has been loaded (a broken newer file keeps the last
good one: still ready, said in the body) and at least one source system answers a ping. The pings
go through the fan-out with a short deadline and their result is kept for `cache_seconds`, so a
probe storm does not become a ping storm. One source down leaves the gateway ready: its searches
answer with a Warning naming that source, which is better than taking every replica out of
service at once; the body and `leis_source_up` show it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from . import metrics


@dataclass(frozen=True)
class ReadinessReport:
    ready: bool
    lines: tuple[str, ...]

    @property
    def status(self) -> str:
        return "200 OK" if self.ready else "503 Service Unavailable"

    @property
    def body(self) -> bytes:
        return ("\n".join(("ready" if self.ready else "not ready",) + self.lines) + "\n").encode()


class Readiness:
    def __init__(self, *, audit, registry, federation, hub, cache_seconds: float = 1.0,
                 ping_timeout: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.audit = audit
        self.registry = registry
        self.federation = federation
        self.hub = hub
        self.cache_seconds = cache_seconds
        self.ping_timeout = ping_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._sources: tuple[tuple[str, bool], ...] | None = None
        self._checked_at = 0.0

    def check(self) -> ReadinessReport:
        lines: list[str] = []
        audit_ok = bool(self.audit.ready())
        lines.append("audit: ok" if audit_ok else "audit: unavailable")
        snapshot = self.registry.snapshot()
        registry_ok = bool(snapshot.version or snapshot.agreements)
        error = getattr(self.registry, "last_error", None)
        if registry_ok:
            lines.append(f"registry: version {snapshot.version or '?'}"
                         + (" (a newer file was refused; see the log)" if error else ""))
        else:
            lines.append("registry: not loaded")
        sources = self.sources()
        for name, up in sources:
            lines.append(f"source {name}: {'ok' if up else 'not answering'}")
        sources_ok = not sources or any(up for _, up in sources)
        return ReadinessReport(audit_ok and registry_ok and sources_ok, tuple(lines))

    def sources(self) -> tuple[tuple[str, bool], ...]:
        """(source, answered its ping), at most `cache_seconds` old."""
        with self._lock:  # concurrent probes wait for one ping round instead of each starting one
            now = self._clock()
            if self._sources is not None and now - self._checked_at < self.cache_seconds:
                return self._sources
            adapters = getattr(self.hub, "adapters", ())
            fanned = self.federation.fan_out([(a.system.value, a.ping) for a in adapters], self.ping_timeout)
            result = tuple((s.source, bool(s.ok)) for s in fanned.statuses)
            for name, up in result:
                metrics.observe_source_up(name, up)
            self._sources, self._checked_at = result, self._clock()
            return result
