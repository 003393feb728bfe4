"""Serving: one process, or a pre-fork supervisor with N worker processes (`serve --workers N`).

The supervisor binds the listening socket(s) once, then forks N workers; each builds its own
gateway *after* the fork (audit log, source engines, connection pools: a SQLite or psycopg
connection must never cross a fork) and runs a cheroot TLS server on the inherited socket. The
kernel hands each new connection to one of the workers blocked on that socket. A worker that dies
is started again (with a growing pause when it keeps dying at once; after `GIVE_UP_AFTER` quick
deaths in a row the supervisor stops everything and exits 1: the configuration is broken).
SIGTERM or SIGINT to the supervisor: every worker gets SIGTERM, finishes its requests in flight,
exits; the supervisor waits for all of them (SIGKILL after `STOP_TIMEOUT` s). Workers also get
SIGTERM if the supervisor dies (Linux: PR_SET_PDEATHSIG), so none is left behind.

Why a shared socket and not SO_REUSEPORT: measured with cheroot's TLS adapter, both work; with
SO_REUSEPORT the kernel pins each connection to one worker's own queue and the connections queued
at a worker that dies are reset, and a port bound by N sockets cannot be checked for "in use" up
front. With one shared socket every worker polls it; the listening socket is put in non-blocking
mode so that a worker that lost the race for a connection gets EAGAIN (cheroot ignores it) instead
of blocking for a second in accept().

Each worker keeps to one CPU of its own (`pin_to_cpu`; LEIS_PIN_WORKERS=0 leaves them to the
scheduler): its threads then hand the GIL to each other without waking another CPU.

Metrics: every worker writes its registry into a directory the supervisor made
(observability/metrics.py); a scrape on any worker, or on the supervisor's plain-HTTP metrics
port, sums them.
"""
from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import Settings
from .observability import metrics

log = logging.getLogger(__name__)

STOP_TIMEOUT = 15.0  # seconds a worker gets to finish its requests after SIGTERM
QUICK_DEATH = 5.0  # a worker that dies this soon after its start "died at once"
GIVE_UP_AFTER = 5  # quick deaths in a row of one slot after which the supervisor gives up
REQUEST_QUEUE = 128


# --- one serving process -------------------------------------------------------------------------


@dataclass
class Listeners:
    """Sockets bound by the supervisor for its workers (None: each server binds its own)."""

    endpoint: socket.socket | None = None
    internal: socket.socket | None = None


def serve_process(settings: Settings, listeners: Listeners | None = None, *, announce: bool = True,
                  on_ready: Callable[[], None] | None = None) -> int:
    """Build the gateway and serve it until SIGTERM/SIGINT (KeyboardInterrupt). Returns an exit code."""
    from .app import create_gateway, create_internal_endpoint
    from .security.tls import make_tls_server

    listeners = listeners or Listeners()
    gateway = create_gateway(settings)
    pki = settings.pki_dir
    tls = dict(cert=pki / "server.crt", key=pki / "server.key", ca=pki / "ca.crt", numthreads=settings.server_threads)
    server = make_tls_server(gateway.wsgi, settings.host, settings.port, **tls)
    _adopt(server, listeners.endpoint)
    internal = internal_server = internal_thread = None
    if settings.internal_port is not None:  # two-way sharing: the analysts' endpoint, on its own port
        internal = create_internal_endpoint(gateway)
        internal_server = make_tls_server(internal.wsgi, settings.internal_host or settings.host,
                                          settings.internal_port, **tls)
        _adopt(internal_server, listeners.internal)
        internal_server.prepare()
        _nonblocking(internal_server, listeners.internal)
        internal_thread = threading.Thread(target=internal_server.serve, name="internal-endpoint", daemon=True)
        internal_thread.start()
    server.prepare()
    _nonblocking(server, listeners.endpoint)
    gc.freeze()  # start-up objects never change: no collection needs to walk them again
    if announce:
        print(f"leis-gateway serving {settings.endpoint_url} (WSDL: {settings.endpoint_url}?wsdl)", flush=True)
        if internal is not None:
            print(f"leis-gateway internal analysts' endpoint {settings.internal_endpoint_url} (afi certificate only)",
                  flush=True)
    if on_ready is not None:
        on_ready()
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        for running, inherited in ((server, listeners.endpoint), (internal_server, listeners.internal)):
            if running is not None:
                _stop(running, inherited)
        if internal_thread is not None:
            internal_thread.join(timeout=STOP_TIMEOUT)
        if internal is not None:
            internal.close()
        gateway.close()
    return 0


def _adopt(server, sock: socket.socket | None) -> None:
    """Make cheroot serve on `sock` (bound and listening already) instead of binding its own."""
    if sock is None:
        return

    def bind(family, type, proto=0):  # noqa: A002 - cheroot's signature
        server.socket = sock
        server.bind_addr = server.resolve_real_bind_addr(sock)
        return sock

    server.bind = bind


def _nonblocking(server, inherited: socket.socket | None) -> None:
    if inherited is not None:  # shared by every worker: a lost race is EAGAIN, not a blocked accept()
        server.socket.setblocking(False)


def _stop(server, inherited: socket.socket | None) -> None:
    """Stop a cheroot server. On a shared socket, cheroot's trick of connecting to its own socket
    to wake accept() would wake *another* worker: detach the socket first (ours just closes)."""
    if inherited is not None and server.socket is not None:
        server.socket = None
        inherited.close()
    server.stop()


def _interrupt(*_):
    raise KeyboardInterrupt


# --- the plain-HTTP metrics port -----------------------------------------------------------------


def metrics_server(host: str, port: int, render: Callable[[], bytes], sock: socket.socket | None = None):
    """A small plain-HTTP server for /metrics (and /healthz), meant for loopback; started on a thread."""
    from cheroot import wsgi

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body, kind = render(), metrics.CONTENT_TYPE
        elif path == "/healthz":
            body, kind = b"ok\n", "text/plain"
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    server = wsgi.Server((host, port), app, numthreads=2, timeout=10)
    _adopt(server, sock)
    server.prepare()
    thread = threading.Thread(target=server.serve, name="metrics-port", daemon=True)
    thread.start()
    return server, thread


def serve_single(settings: Settings) -> int:
    """`serve` with one process: the gateway, and the metrics port on a thread when configured."""
    signal.signal(signal.SIGTERM, _interrupt)  # cheroot's stop() cannot run in a signal handler
    extra = None
    if settings.metrics_port is not None:
        extra = metrics_server(settings.metrics_host, settings.metrics_port, metrics.METRICS.render)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    try:
        return serve_process(settings)
    finally:
        if extra is not None:
            extra[0].stop()
            extra[1].join(timeout=5)


# --- the pre-fork supervisor ---------------------------------------------------------------------


def pin_to_cpu(index: int) -> int | None:
    """Keep this process on one CPU: the `index`-th of those it may use, round robin. Returns
    that CPU, or None where there is one CPU only or the platform does not let it pin.

    Call it while the process has one thread (a fresh fork): threads started later inherit it.
    Why: a worker is bound by its GIL, which its threads hand to each other at every blocking call;
    between threads on two CPUs each hand-off wakes the other CPU, and on a VM that is dear. One
    worker per CPU: about 1.2 x the requests/s of the same workers left to the scheduler
    (docs/performance.md, item 24).
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    cpu = cpus[index % len(cpus)]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:  # e.g. a container that forbids it: serve unpinned
        return None
    return cpu


def bind_listener(host: str, port: int) -> socket.socket:
    """The workers' shared listening socket, set up as cheroot sets up its own (`prepare_socket`).

    TCP_NODELAY above all: accepted connections inherit it. Without it Nagle's algorithm holds an
    answer's last TLS record until the member acknowledges the previous one, which its delayed ACK
    puts off by up to 40 ms: every exchange of a keep-alive connection waited that long.
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if family == socket.AF_INET6 and host in ("::", "::0"):
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.listen(REQUEST_QUEUE)
    return sock


@dataclass
class _Slot:
    index: int
    pid: int | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0


@dataclass
class Supervisor:
    settings: Settings
    workers: int
    slots: list[_Slot] = field(default_factory=list)
    stopping: bool = False
    failed: bool = False

    def run(self) -> int:
        s = self.settings
        self._preflight()
        listeners = Listeners(endpoint=bind_listener(s.host, s.port))
        if s.internal_port is not None:
            listeners.internal = bind_listener(s.internal_host or s.host, s.internal_port)
        if s.port == 0:  # an ephemeral port: every worker serves the one the supervisor got
            self.settings = s = s.with_(port=listeners.endpoint.getsockname()[1])
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="leis-metrics-"))
        self.listeners = listeners
        self._supervisor_snapshot()
        metrics_sock = None
        if s.metrics_port is not None:
            metrics_sock = bind_listener(s.metrics_host, s.metrics_port)
        self._metrics_sock = metrics_sock
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        print(f"leis-gateway serving {s.endpoint_url} (WSDL: {s.endpoint_url}?wsdl) with {self.workers} workers "
              f"(supervisor pid {os.getpid()})", flush=True)
        if s.internal_port is not None:
            print(f"leis-gateway internal analysts' endpoint {s.internal_endpoint_url} (afi certificate only)",
                  flush=True)
        self.slots = [_Slot(i) for i in range(self.workers)]
        extra = None
        try:
            for slot in self.slots:
                self._spawn(slot)
            if metrics_sock is not None:  # after the first forks: no server threads in the children's past
                extra = metrics_server(s.metrics_host, s.metrics_port, lambda: metrics.render_directory(self.metrics_dir),
                                       sock=metrics_sock)
                log.info("metrics on http://%s:%d/metrics", s.metrics_host, s.metrics_port)
            while not self.stopping:
                self._reap()
                self._restart_due()
                time.sleep(0.1)
        finally:
            self._stop_all()
            if extra is not None:
                extra[0].stop()
                extra[1].join(timeout=5)
            for sock in (listeners.endpoint, listeners.internal, metrics_sock):
                if sock is not None:
                    sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 1 if self.failed else 0

    # --- start-up ------------------------------------------------------------------------------
    def _preflight(self) -> None:
        """Open (then close) what every worker will open, once, before forking: a broken configuration
        fails here, once; the audit store is migrated by one process rather than raced by N; the
        compiled schemas are inherited by every worker. Nothing it opened stays open across the fork."""
        from .app import load_or_create_secret, open_audit, open_source_hub
        from .lexs import schema

        schema.gateway_schema()
        s = self.settings
        if s.internal_port is not None and not (s.partner_client_cert.exists() and s.partner_client_key.exists()):
            raise FileNotFoundError(f"{s.partner_client_cert} is missing: run `leis-gateway init` (it issues the "
                                    "gateway's client certificate for two-way sharing)")
        open_audit(self.settings).close()
        open_source_hub(self.settings).close()
        load_or_create_secret(s.token_key_path)  # one secret for all workers: item ids open in any of them

    def _on_stop(self, signum, _frame) -> None:
        if not self.stopping:
            log.info("supervisor: %s, stopping the workers", signal.Signals(signum).name)
        self.stopping = True

    # --- workers -------------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = self._worker(slot.index, parent)
            except KeyboardInterrupt:  # SIGTERM while still starting
                code = 0
            except OSError as exc:  # e.g. a file missing at start-up: its message names it (no request data)
                log.error("worker %d failed: %s", slot.index, exc)
            except BaseException:  # noqa: BLE001 - whatever happens, never return into the supervisor's code
                log.exception("worker %d failed", slot.index)
            finally:
                logging.shutdown()
                os._exit(code)
        slot.pid, slot.started = pid, time.monotonic()
        log.info("supervisor: worker %d started (pid %d)", slot.index, pid)

    def _worker(self, index: int, parent: int) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
        signal.signal(signal.SIGTERM, _interrupt)
        _die_with_parent()
        if os.getppid() != parent:  # the supervisor died before the line above
            return 0
        if self._metrics_sock is not None:
            self._metrics_sock.close()
        if self.settings.pin_workers and (cpu := pin_to_cpu(index)) is not None:
            log.info("worker %d runs on CPU %d", index, cpu)
        metrics.mark_started()
        metrics.METRICS.share(self.metrics_dir, str(index))
        try:
            return serve_process(self.settings, self.listeners, announce=False)
        finally:
            metrics.METRICS.stop_sharing()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            metrics.retire(self.metrics_dir, pid)
            if slot is None:
                continue
            slot.pid = None
            how = _exit_description(status)
            if self.stopping:
                continue
            lived = time.monotonic() - slot.started
            slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH else 0
            if slot.quick_deaths >= GIVE_UP_AFTER:
                log.error("supervisor: worker %d died %d times in a row right after starting (last: %s); "
                          "giving up", slot.index, slot.quick_deaths, how)
                self.failed = self.stopping = True
                return
            pause = min(0.1 * 2 ** slot.quick_deaths, 5.0) if slot.quick_deaths else 0.0
            slot.restart_at = time.monotonic() + pause
            log.warning("supervisor: worker %d (pid %d) %s; restarting it", slot.index, pid, how)
            metrics.WORKER_RESTARTS.inc(worker=str(slot.index))
            self._supervisor_snapshot()

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.pid is None and not self.stopping and now >= slot.restart_at:
                self._spawn(slot)

    def _stop_all(self) -> None:
        self.stopping = True
        alive = [s.pid for s in self.slots if s.pid is not None]
        for pid in alive:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(s.pid is not None for s in self.slots) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for slot in self.slots:
            if slot.pid is not None:
                log.warning("supervisor: worker %d (pid %d) did not stop in %g s; killing it",
                            slot.index, slot.pid, STOP_TIMEOUT)
                _signal(slot.pid, signal.SIGKILL)
                try:
                    os.waitpid(slot.pid, 0)
                except ChildProcessError:
                    pass
                slot.pid = None
        log.info("supervisor: every worker stopped")

    def _supervisor_snapshot(self) -> None:
        snapshot = {name: m for name, m in metrics.METRICS.snapshot().items()
                    if name == metrics.WORKER_RESTARTS.name}
        metrics.write_snapshot(self.metrics_dir, "supervisor", snapshot)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the supervisor dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def serve(settings: Settings) -> int:
    """`leis-gateway serve`: one process, or a supervisor of `settings.workers` processes.
    What makes starting impossible is said in one line (exit 1), not as a traceback."""
    from .audit.types import AuditUnavailable

    try:
        if settings.workers > 1:
            return Supervisor(settings, settings.workers).run()
        return serve_single(settings)
    except (AuditUnavailable, OSError) as exc:  # FileNotFoundError: no PKI or source databases; bind errors
        log.error("cannot serve: %s", exc)
        print(f"leis-gateway serve: cannot start: {exc}", file=sys.stderr)
        return 1
