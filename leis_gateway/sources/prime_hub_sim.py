"""A PRIME hub simulator: the hub's JSON API (`sources/remote.py`) over the demo SQLite sources.

For demos, tests and benchmarks: it answers through the ordinary in-process adapters, and can
be told to be slow, to fail or to hang, per source system:

    scripts/prime-hub-sim --home var --port 8600 --delay TECS=0.2 --fail EID
    scripts/prime-hub-sim --home var --port 0 --hang EID        # prints the URL it listens on

`--delay SYSTEM=SECONDS` waits before every answer for that system (search, record, ping;
`OBIM` for photos); `--fail SYSTEM` answers 503; `--hang SYSTEM` never answers (until stopped).
The faults can also be changed while it runs (`PrimeHubSimulator.faults`), which tests use.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..domain import SourceSystem
from .base import PrimeHub, open_hub
from .remote import query_from_json, record_to_json

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 100_000
FOREVER = 24 * 3600.0


@dataclass
class Faults:
    """What the simulator does wrong, per source system name ("TECS", "EID", "OBIM")."""

    delay: dict[str, float] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    hang: set[str] = field(default_factory=set)

    def clear(self) -> None:
        self.delay.clear()
        self.fail.clear()
        self.hang.clear()


class PrimeHubSimulator:
    """The simulator on `host:port` (0: a free port); `start()` serves in a background thread."""

    def __init__(self, hub: PrimeHub, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> None:
        self.hub = hub
        self.faults = faults or Faults()
        self.requests = 0  # answered or not, for tests
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        simulator = self

        class Handler(_Handler):
            sim = simulator

        self.server = _Server((host, port), Handler)
        self._thread: threading.Thread | None = None

    @classmethod
    def over(cls, home: Path, **kwargs: Any) -> "PrimeHubSimulator":
        """A simulator over the demo databases of the state directory `home` ($LEIS_HOME)."""
        return cls(open_hub(Path(home)), **kwargs)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "PrimeHubSimulator":
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="prime-hub-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes every delayed or hung answer
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.hub.close()

    def __enter__(self) -> "PrimeHubSimulator":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- behaviour -----------------------------------------------------------------------
    def misbehave(self, system: str) -> bool:
        """Apply the faults for `system`: wait, hang; True when the call must fail."""
        with self._lock:
            self.requests += 1
        if system in self.faults.hang:
            self._stopping.wait(FOREVER)
            return True
        delay = self.faults.delay.get(system, 0.0)
        if delay > 0:
            self._stopping.wait(delay)
        return system in self.faults.fail or self._stopping.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        kind = sys.exc_info()[0]
        if kind is not None and issubclass(kind, (ConnectionError, TimeoutError)):
            return  # the gateway gave up on a slow answer and closed the connection: expected
        log.exception("prime hub simulator: error answering %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    sim: PrimeHubSimulator
    protocol_version = "HTTP/1.1"  # keep-alive, so the gateway's pool reuses connections
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall
    server_version = "prime-hub-sim/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    # --- routes --------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
        if parts == ["health"]:
            return self._json(200, {"systems": [a.system.value for a in self.sim.hub.adapters]})
        if len(parts) == 2 and parts[0] == "ping":
            adapter = self._adapter(parts[1])
            if adapter is None or self.sim.misbehave(parts[1]):
                return self._unavailable()
            return self._json(200, {"ok": adapter.ping()})
        if len(parts) == 3 and parts[0] == "records":
            adapter = self._adapter(parts[1])
            if adapter is None:
                return self._json(404, {"error": "unknown system"})
            if self.sim.misbehave(parts[1]):
                return self._unavailable()
            record = adapter.fetch(parts[2])
            if record is None:
                return self._json(404, {"error": "no such record"})
            return self._json(200, {"record": record_to_json(record)})
        if len(parts) == 2 and parts[0] == "photos":
            if self.sim.misbehave(SourceSystem.OBIM.value):
                return self._unavailable()
            photo = self.sim.hub.photos.photo(parts[1])
            if photo is None:
                return self._json(404, {"error": "no such photo"})
            return self._send(200, photo.content_type, photo.data)
        return self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0].rstrip("/") != "/search":
            return self._json(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            return self._json(413, {"error": "too large"})
        try:
            body = json.loads(self.rfile.read(length))
            system = body["system"]
            limit = body["limit"]
            query = query_from_json(body["query"])
            if not isinstance(limit, int) or not isinstance(system, str):
                raise ValueError("bad limit or system")
        except (ValueError, KeyError, TypeError):
            return self._json(400, {"error": "not a search"})
        adapter = self._adapter(system)
        if adapter is None:
            return self._json(404, {"error": "unknown system"})
        if self.sim.misbehave(system):
            return self._unavailable()
        records = adapter.search(query, limit)
        return self._json(200, {"records": [record_to_json(r) for r in records]})

    # --- helpers -------------------------------------------------------------------------
    def _adapter(self, system: str):
        return next((a for a in self.sim.hub.adapters if a.system.value == system), None)

    def _unavailable(self) -> None:
        self._json(503, {"error": "source system unavailable"})

    def _json(self, status: int, value: Any) -> None:
        self._send(status, "application/json", json.dumps(value).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# --- command line ------------------------------------------------------------------------


def _system_value(text: str) -> tuple[str, float]:
    system, _, seconds = text.partition("=")
    try:
        return SourceSystem(system.strip().upper()).value, float(seconds)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected SYSTEM=SECONDS (TECS, EID, OBIM), got {text!r}") from exc


def _system(text: str) -> str:
    try:
        return SourceSystem(text.strip().upper()).value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"unknown source system {text!r} (TECS, EID, OBIM)") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prime-hub-sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=None, help="state directory holding sources/ (default $LEIS_HOME or ./var)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600, help="0: a free port (printed)")
    parser.add_argument("--delay", type=_system_value, action="append", default=[], metavar="SYSTEM=SECONDS")
    parser.add_argument("--fail", type=_system, action="append", default=[], metavar="SYSTEM")
    parser.add_argument("--hang", type=_system, action="append", default=[], metavar="SYSTEM")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..config import Settings

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    home = Path(args.home) if args.home else Settings.from_env().home
    faults = Faults(delay=dict(args.delay), fail=set(args.fail), hang=set(args.hang))
    simulator = PrimeHubSimulator.over(home, host=args.host, port=args.port, faults=faults)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    simulator.start()
    print(f"prime hub simulator at {simulator.url} (faults: delay={faults.delay} fail={sorted(faults.fail)} "
          f"hang={sorted(faults.hang)})", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
