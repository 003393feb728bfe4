"""What every benchmark section needs: cached demo homes, the real gateway (and the PRIME hub
simulator) as separate processes, a member client that signs every request, and timing.

Nothing here is a test: it measures the product as it runs, `leis-gateway serve` in its own
process (so its memory is its own), asked over mutual TLS with WS-Security like any member.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import requests
from lxml import etree

from ..config import PROJECT_ROOT, SR_PATH, Settings
from ..domain import Criterion, Purpose
from ..lexs import requests as lexs_requests
from ..security.tls import client_session
from ..lexs.namespaces import LEXS
from ..security.pki import load_signing_credentials
from ..security.wssec import sign_envelope

BENCH_DIR = PROJECT_ROOT / "var" / "bench"
MEMBER = "ndex"
NS = {"lexs": LEXS, "soap": "http://schemas.xmlsoap.org/soap/envelope/"}


# --- figures and sections ----------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One measured figure against its target (`holds` None: reported, no target)."""

    name: str
    measured: str
    target: str
    holds: bool | None
    detail: str = ""


@dataclass
class Context:
    """Shared by the sections of one run."""

    bench_dir: Path = BENCH_DIR
    requests_per_point: int = 40
    duration: float = 20.0  # throughput: seconds per timed phase
    clients: int = 8  # throughput: concurrent connections
    rounds: int = 2  # throughput: alternating rounds
    verbose: bool = False
    notes: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


# --- demo homes, built once and kept --------------------------------------------------------


def ensure_home(context: Context, people: int) -> Path:
    """`<bench dir>/people-<N>`: a $LEIS_HOME with the demo PKI and N generated people per source.

    Built with the product's own `leis-gateway init --people N` (progress bar on a terminal) the
    first time; reused afterwards (`init` is idempotent and returns at once when it is current).
    """
    home = context.bench_dir / f"people-{people}"
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    context.say(f"[bench] demo state with {people:,} people per source in {home} ...")
    subprocess.run(
        [sys.executable, "-m", "leis_gateway.cli", "--home", str(home), "init", "--people", str(people)],
        check=True, stdout=subprocess.DEVNULL, env=_env(home),
    )
    took = time.monotonic() - started
    if took > 5:
        context.notes.append(f"built the {people:,}-people state in {took:.0f} s")
    return home


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEIS_")}
    env.update({"LEIS_HOME": str(home), "PYTHONUNBUFFERED": "1"}, **extra)
    return env


@dataclass
class Process:
    popen: subprocess.Popen
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def memory_kb(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak) of the process, in kB (Linux /proc)."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
        return found

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextlib.contextmanager
def hub_simulator(home: Path, *faults: str) -> Iterator[Process]:
    """`scripts/prime-hub-sim` over `home` on a free port, with `faults` (e.g. "--delay", "TECS=0.2")."""
    popen = subprocess.Popen(
        [sys.executable, "-m", "leis_gateway.sources.prime_hub_sim", "--home", str(home), "--port", "0", *faults],
        stdout=subprocess.PIPE, text=True, env=_env(home),
    )
    try:
        line = popen.stdout.readline()  # "prime hub simulator at http://127.0.0.1:PORT (...)"
        if "simulator at" not in line:
            raise RuntimeError(f"the hub simulator did not start: {line!r}")
        yield Process(popen, line.split()[4])
    finally:
        Process(popen, "").stop()
        popen.stdout.close()


@contextlib.contextmanager
def gateway(home: Path, **settings: str) -> Iterator[Process]:
    """`leis-gateway serve` on a free port, with LEIS_* settings (e.g. LEIS_PRIME_HUB_URL)."""
    port = free_port()
    env = _env(home, LEIS_PORT=str(port), **settings)
    popen = subprocess.Popen(
        [sys.executable, "-m", "leis_gateway.cli", "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env,
    )
    process = Process(popen, f"https://127.0.0.1:{port}")
    try:
        client = Member(home, process.url)
        deadline = time.monotonic() + 60
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"the gateway exited with {popen.returncode}")
            try:
                if client.session.get(process.url + "/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not come up within 60 s")
            time.sleep(0.2)
        client.close()
        yield process
    finally:
        process.stop()


# --- a member system -----------------------------------------------------------------------


class Member:
    """A member system (agreement `ndex`): keep-alive mutual TLS, a fresh signature per request."""

    def __init__(self, home: Path, base_url: str, agreement: str = MEMBER) -> None:
        pki = Settings(home=home).pki_dir
        self.url = base_url + SR_PATH
        self.session = client_session(pki / "ca.crt", pki / "agencies" / f"{agreement}.crt",
                                      pki / "agencies" / f"{agreement}.key")
        self.credentials = load_signing_credentials(pki / "agencies" / f"{agreement}.key",
                                                    pki / "agencies" / f"{agreement}.crt")
        self.requester = lexs_requests.Requester("Bench Agency", "BENCH", "AZ0000000", "bench.user",
                                                 Purpose.CRIMINAL_LAW_ENFORCEMENT)

    def close(self) -> None:
        self.session.close()

    def prepare(self, criteria: Sequence[Criterion], *, max_items: int = 25, timeout: float | None = None) -> bytes:
        """A signed doStructuredSearch envelope (signing is the client's cost: not timed)."""
        import datetime as dt

        message = lexs_requests.structured_search_request(
            self.requester, list(criteria), max_items=max_items,
            timeout=dt.timedelta(seconds=timeout) if timeout is not None else None,
        )
        envelope = etree.fromstring(lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", message)))
        sign_envelope(envelope, self.credentials.key, self.credentials.certificate)
        return etree.tostring(envelope)

    def send(self, body: bytes) -> tuple["Outcome", float]:
        """Post one prepared request; (its outcome, the round trip in seconds)."""
        started = time.perf_counter()
        response = self.session.post(self.url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"},
                                     timeout=120)
        elapsed = time.perf_counter() - started
        return Outcome.of(response.content), elapsed

    def search(self, criteria: Sequence[Criterion], **kwargs) -> tuple["Outcome", float]:
        return self.send(self.prepare(criteria, **kwargs))


@dataclass(frozen=True)
class Outcome:
    result_code: str
    advisories: tuple[tuple[str, str], ...]
    packages: int
    systems: tuple[str, ...]

    @classmethod
    def of(cls, content: bytes) -> "Outcome":
        root = etree.fromstring(content)
        message = root.find("soap:Body", NS)[0][0]
        advisories = tuple(
            (a.findtext("lexs:AdvisoryCategory", namespaces=NS), a.findtext("lexs:AdvisoryText", default="", namespaces=NS))
            for a in message.iterfind("lexs:ResponseMetadata/lexs:Advisory", NS)
        )
        packages = message.findall("lexs:SearchResultPackage", NS)
        systems = tuple(p.findtext(".//lexs:DataOwnerMetadata/lexs:DataOwnerIdentifier/lexs:SystemID", namespaces=NS)
                        for p in packages)
        return cls(message.findtext("lexs:ResponseMetadata/lexs:ResultCode", namespaces=NS), advisories,
                   len(packages), systems)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
