"""Prometheus metrics, written by hand (text exposition format 0.0.4; no client library).

One registry per process (`METRICS`) with the gateway's instruments below. Labels take only
values from closed sets (operation names, LEXS result codes, fault codes, source names, advisory
categories): never anything a caller sent.

Several worker processes (`serve --workers N`, workers.py) share one listening socket, so a
scrape reaches whichever worker accepts it. For a scrape to mean the whole gateway, the numbers
are aggregated across workers: each worker writes a snapshot of its registry (JSON, atomic rename)
into a directory the supervisor made, every `FLUSH_SECONDS` and just before it answers a scrape;
a scrape sums every worker's snapshot. Snapshots of workers that exited are folded into one
`retired.json` by the supervisor (under an exclusive lock; readers take a shared lock), so a
restart never makes a counter go down. Counters and histograms are summed; gauges (the process
basics) carry a `worker` label (the worker's slot, 0..N-1) and are shown for live workers only.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

try:  # POSIX only; without it snapshots are still atomic, the retirement merely less so
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_SECONDS = 1.0

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
AUDIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Labels = tuple[str, ...]


class _Metric:
    kind = ""

    def __init__(self, registry: "Registry", name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._values: dict[Labels, object] = {}
        registry.register(self)

    def _key(self, labels: Mapping[str, object]) -> Labels:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def reset(self) -> None:
        with self._lock:
            self._values.clear()

    def snapshot(self) -> dict:
        with self._lock:
            series = [[list(k), _copy(v)] for k, v in self._values.items()]
        return {"type": self.kind, "help": self.help, "labels": list(self.labelnames), "series": series,
                **self._extra()}

    def _extra(self) -> dict:
        return {}

    def value(self, **labels: object):
        """The current value of one series (tests)."""
        with self._lock:
            return _copy(self._values.get(self._key(labels)))


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount  # type: ignore[operator]


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, registry: "Registry", name: str, help: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(float(b) for b in buckets))
        super().__init__(registry, name, help, labelnames)

    def observe(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            state = self._values.get(key)
            if state is None:
                state = self._values[key] = {"counts": [0] * (len(self.buckets) + 1), "sum": 0.0, "count": 0}
            for i, bound in enumerate(self.buckets):  # per-bucket counts; cumulated when rendered
                if value <= bound:
                    state["counts"][i] += 1  # type: ignore[index]
                    break
            else:
                state["counts"][-1] += 1  # type: ignore[index]
            state["sum"] += value  # type: ignore[operator,index]
            state["count"] += 1  # type: ignore[operator,index]

    def _extra(self) -> dict:
        return {"buckets": list(self.buckets)}


def _copy(value):
    if isinstance(value, dict):
        return {"counts": list(value["counts"]), "sum": value["sum"], "count": value["count"]}
    return value


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self.worker = "0"  # this process's slot (pre-fork); "0" for a single process
        self.shared_dir: Path | None = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()

    def register(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric

    def reset(self) -> None:
        for metric in self._metrics.values():
            metric.reset()

    def snapshot(self) -> dict[str, dict]:
        _update_process_metrics(self.worker)
        return {name: metric.snapshot() for name, metric in self._metrics.items()}

    # --- several processes --------------------------------------------------------------------
    def share(self, directory: Path, worker: str) -> None:
        """Write this process's snapshot into `directory` (made by the supervisor) every
        FLUSH_SECONDS from now on, as worker `worker`; call in the worker right after fork."""
        self.reset()  # nothing inherited from the parent counts for this worker
        self.worker = worker
        self.shared_dir = Path(directory)
        self._stop.clear()
        self.flush()
        self._flusher = threading.Thread(target=self._flush_loop, name="metrics-flush", daemon=True)
        self._flusher.start()

    def stop_sharing(self) -> None:
        """A last snapshot (the worker is about to exit)."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
            self._flusher = None
        if self.shared_dir is not None:
            self.flush()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except OSError:  # the directory went away: the supervisor is stopping
                return

    def flush(self) -> None:
        if self.shared_dir is None:
            return
        with self._flush_lock:
            _write_json(self.shared_dir / worker_file(self.worker, os.getpid()), self.snapshot())

    def render(self) -> bytes:
        """The exposition for a scrape: every worker's numbers when shared, else this process's."""
        if self.shared_dir is None:
            return render(self.snapshot())
        self.flush()  # this worker's own numbers as of now; the others' are at most FLUSH_SECONDS old
        return render_directory(self.shared_dir)


def worker_file(worker: str, pid: int) -> str:
    return f"worker-{worker}-{pid}.json"


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


# --- aggregation across processes --------------------------------------------------------------


@contextmanager
def _locked(directory: Path, exclusive: bool) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    with open(directory / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_directory(directory: Path) -> list[dict]:
    """Every snapshot in `directory` (workers, retired workers, supervisor), consistently."""
    with _locked(directory, exclusive=False):
        return [s for s in (_read_json(p) for p in sorted(directory.glob("*.json"))) if s is not None]


def merge(snapshots: Iterable[Mapping[str, dict]], keep_gauges: bool = True) -> dict[str, dict]:
    """Sum counters and histograms series by series; gauges are taken as they are (they carry a
    `worker` label, so they do not collide), or dropped when `keep_gauges` is false."""
    merged: dict[str, dict] = {}
    for snapshot in snapshots:
        for name, metric in snapshot.items():
            if metric["type"] == "gauge" and not keep_gauges:
                continue
            target = merged.setdefault(name, {**metric, "series": []})
            index = {tuple(k): i for i, (k, _) in enumerate(target["series"])}
            for labels, value in metric["series"]:
                at = index.get(tuple(labels))
                if at is None:
                    index[tuple(labels)] = len(target["series"])
                    target["series"].append([list(labels), _copy(value)])
                    continue
                current = target["series"][at][1]
                if metric["type"] == "histogram":
                    current["counts"] = [a + b for a, b in zip(current["counts"], value["counts"])]
                    current["sum"] += value["sum"]
                    current["count"] += value["count"]
                elif metric["type"] == "counter":
                    target["series"][at][1] = current + value
                else:
                    target["series"][at][1] = value
    return merged


def render_directory(directory: Path) -> bytes:
    return render(merge(read_directory(directory)))


def retire(directory: Path, pid: int) -> None:
    """Fold the snapshot of worker process `pid` (which has exited) into `retired.json`: its
    counters keep counting in the totals, its gauges go."""
    with _locked(directory, exclusive=True):
        for path in directory.glob(f"worker-*-{pid}.json"):
            dead = _read_json(path)
            if dead is not None:
                retired = _read_json(directory / "retired.json") or {}
                _write_json(directory / "retired.json", merge([retired, dead], keep_gauges=False))
            path.unlink(missing_ok=True)


def write_snapshot(directory: Path, name: str, snapshot: Mapping[str, dict]) -> None:
    """A snapshot under a name of its own (the supervisor's)."""
    _write_json(directory / f"{name}.json", snapshot)


# --- the text exposition format 0.0.4 ----------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: tuple[str, str] | None = None) -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra is not None:
        pairs.append(f'{extra[0]}="{_escape(extra[1])}"')
    return "{" + ",".join(pairs) + "}" if pairs else ""


def render(snapshot: Mapping[str, dict]) -> bytes:
    lines: list[str] = []
    for name in sorted(snapshot):
        metric = snapshot[name]
        lines.append(f"# HELP {name} {_escape(metric['help'])}")
        lines.append(f"# TYPE {name} {metric['type']}")
        names = metric["labels"]
        for values, value in sorted(metric["series"], key=lambda s: s[0]):
            if metric["type"] == "histogram":
                cumulative = 0
                for bound, count in zip(list(metric["buckets"]) + [math.inf], value["counts"]):
                    cumulative += count
                    lines.append(f"{name}_bucket{_labels(names, values, ('le', _number(bound)))} {cumulative}")
                lines.append(f"{name}_sum{_labels(names, values)} {_number(value['sum'])}")
                lines.append(f"{name}_count{_labels(names, values)} {value['count']}")
            else:
                lines.append(f"{name}{_labels(names, values)} {_number(value)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- the gateway's instruments -----------------------------------------------------------------

METRICS = Registry()

REQUESTS = Counter(
    METRICS, "leis_requests_total",
    "SOAP exchanges answered, by operation and result (the LEXS ResultCode, or Fault:<code>).",
    ("operation", "result"))
REQUEST_SECONDS = Histogram(
    METRICS, "leis_request_duration_seconds",
    "Time from reading a SOAP request to having its (signed, audited) answer, by operation.",
    ("operation",), LATENCY_BUCKETS)
WORKER_REQUESTS = Counter(
    METRICS, "leis_worker_requests_total", "SOAP exchanges answered by each worker process (its slot).",
    ("worker",))
SOURCE_SECONDS = Histogram(
    METRICS, "leis_source_latency_seconds",
    "Time a source system took to answer (or to fail, or until the deadline), per source.",
    ("source",), LATENCY_BUCKETS)
SOURCE_FAILURES = Counter(
    METRICS, "leis_source_failures_total",
    "Source calls that gave no answer, by source and reason (the LEXS advisory category).",
    ("source", "reason"))
SOURCE_UP = Gauge(
    METRICS, "leis_source_up", "1 when the source answered the last readiness ping, else 0.",
    ("worker", "source"))
AUDIT_WRITE_SECONDS = Histogram(
    METRICS, "leis_audit_write_seconds", "Time to write one audit record, by direction.",
    ("direction",), AUDIT_BUCKETS)
AUDIT_WRITE_FAILURES = Counter(
    METRICS, "leis_audit_write_failures_total", "Audit writes that failed (the exchange was refused).",
    ("direction",))
WORKER_RESTARTS = Counter(
    METRICS, "leis_worker_restarts_total", "Worker processes the supervisor restarted, by slot.", ("worker",))
class _CounterSetFromOutside(Gauge):
    """A counter whose value is read from elsewhere (the process's CPU time), not incremented."""

    kind = "counter"


PROCESS_CPU = _CounterSetFromOutside(
    METRICS, "process_cpu_seconds_total", "User and system CPU time of the worker process.", ("worker",))
PROCESS_RSS = Gauge(METRICS, "process_resident_memory_bytes", "Resident memory of the worker process.",
                    ("worker",))
PROCESS_FDS = Gauge(METRICS, "process_open_fds", "Open file descriptors of the worker process.", ("worker",))
PROCESS_START = Gauge(METRICS, "process_start_time_seconds", "Start of the worker process (Unix time).",
                      ("worker",))
PROCESS_THREADS = Gauge(METRICS, "process_threads", "Threads of the worker process.", ("worker",))

_STARTED = time.time()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _update_process_metrics(worker: str) -> None:
    times = os.times()
    PROCESS_CPU.set(round(times.user + times.system, 3), worker=worker)
    PROCESS_START.set(_STARTED, worker=worker)
    PROCESS_THREADS.set(threading.active_count(), worker=worker)
    try:
        with open("/proc/self/statm") as statm:
            PROCESS_RSS.set(int(statm.read().split()[1]) * _PAGE, worker=worker)
        PROCESS_FDS.set(len(os.listdir("/proc/self/fd")), worker=worker)
    except (OSError, ValueError, IndexError):  # not Linux: the cheap basics only
        pass


def mark_started() -> None:
    """This process (a freshly forked worker) starts now."""
    global _STARTED
    _STARTED = time.time()


# --- what the request path records -------------------------------------------------------------


def observe_exchange(operation: str, result: str, seconds: float) -> None:
    REQUESTS.inc(operation=operation, result=result)
    REQUEST_SECONDS.observe(seconds, operation=operation)
    WORKER_REQUESTS.inc(worker=METRICS.worker)


def observe_sources(statuses: Iterable[object]) -> None:
    """Per-source latency and failures of one fan-out (`federation.FanOutResult.statuses`)."""
    for status in statuses:
        source = str(getattr(status, "source", "unknown"))
        SOURCE_SECONDS.observe(float(getattr(status, "elapsed_ms", 0.0)) / 1000, source=source)
        if not getattr(status, "ok", True):
            advisory = getattr(status, "advisory", None)
            category = getattr(advisory, "category", None)
            reason = getattr(category, "value", None) or "unknown"
            SOURCE_FAILURES.inc(source=source, reason=reason)


def observe_audit_write(direction: str, seconds: float, ok: bool) -> None:
    AUDIT_WRITE_SECONDS.observe(seconds, direction=direction)
    if not ok:
        AUDIT_WRITE_FAILURES.inc(direction=direction)


def observe_source_up(source: str, up: bool) -> None:
    SOURCE_UP.set(1.0 if up else 0.0, worker=METRICS.worker, source=source)
