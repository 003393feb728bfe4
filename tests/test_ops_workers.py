"""`leis-gateway serve --workers 2` as its own process: the pre-fork supervisor (leis_gateway/workers.py).

Both workers serve signed requests from the one port, metrics add up across them (endpoint port
and plain-HTTP metrics port), a killed worker is replaced, SIGTERM stops everything, and the JSON
logs carry correlation ids and no personal data.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests
from lxml import etree

from leis_gateway.config import SR_PATH
from leis_gateway.domain import QueryField
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.security.pki import load_signing_credentials
from leis_gateway.security.wssec import sign_envelope
from support import NS, search
from test_ops import _series

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc")

CANARY = "CANARYWORKERSURNAME"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


class Client:
    """A member agency talking to a gateway in another process (mutual TLS, signed requests)."""

    def __init__(self, home: Path, base: str, agreement: str = "ndex") -> None:
        self.home, self.base, self.agreement = home, base, agreement
        pki = home / "pki"
        self.credentials = load_signing_credentials(pki / "agencies" / f"{agreement}.key",
                                                    pki / "agencies" / f"{agreement}.crt")

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        pki = self.home / "pki"
        session.verify = str(pki / "ca.crt")
        session.cert = (str(pki / "agencies" / f"{self.agreement}.crt"),
                        str(pki / "agencies" / f"{self.agreement}.key"))
        return session

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        with self.session() as session:
            return session.get(self.base + path, timeout=timeout)

    def search(self, message: etree._Element, correlation_id: str) -> requests.Response:
        message = copy.deepcopy(message)  # wrapping moves an lxml element: one copy per request (threads)
        envelope = etree.fromstring(lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", message)))
        sign_envelope(envelope, self.credentials.key, self.credentials.certificate)
        with self.session() as session:  # a new connection each time: the kernel picks a worker each time
            return session.post(self.base + SR_PATH, data=etree.tostring(envelope), timeout=30,
                                headers={"Content-Type": "text/xml; charset=utf-8", "X-Correlation-ID": correlation_id})


@contextlib.contextmanager
def supervisor(home: Path, tmp: Path, workers: int = 2) -> Iterator[tuple[subprocess.Popen, Client, str, Path]]:
    port, metrics_port = _free_port(), _free_port()
    log_path = tmp / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEIS_")}
    env.update(LEIS_AUDIT_URL=f"sqlite:///{tmp / 'audit.db'}", LEIS_THREADS="8", LEIS_LOG_FORMAT="json")
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leis_gateway.cli", "--home", str(home), "serve", "--port", str(port),
             "--workers", str(workers), "--metrics-port", str(metrics_port)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    client = Client(home, f"https://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            try:
                if client.get("/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"not ready:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.1)
        yield proc, client, f"http://127.0.0.1:{metrics_port}/metrics", log_path
    finally:
        children = _children(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in children:  # never leave a worker behind, whatever happened
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _scrape(url: str) -> str:
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.text


def _wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_workers_serve_count_restart_and_stop(demo_home, tmp_path):
    with supervisor(demo_home, tmp_path) as (proc, client, metrics_url, log_path):
        workers = _wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), what="two workers")
        # each worker keeps to a CPU of its own (LEIS_PIN_WORKERS, on by default)
        cpus = sorted(os.sched_getaffinity(0))
        one_each = {frozenset({cpu}) for cpu in cpus[:2]} if len(cpus) > 1 else None
        if one_each:
            assert {frozenset(os.sched_getaffinity(pid)) for pid in workers} == one_each
        message = search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12"))
        canary = search((QueryField.SURNAME, CANARY), (QueryField.BIRTH_DATE, "1962-02-02"))

        def ask(i: int) -> requests.Response:
            return client.search(canary if i % 5 == 0 else message, f"ops-workers-{i}")

        sent = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(4):  # until both workers have answered (almost always the first batch)
                answers = list(pool.map(ask, range(sent, sent + 24)))
                sent += 24
                for answer in answers:
                    assert answer.status_code == 200, answer.text[:300]
                    code = etree.fromstring(answer.content).findtext(".//lexs:ResultCode", namespaces=NS)
                    assert code == "Success", answer.text[-1500:]
                text = _scrape(metrics_url)
                if _series(text, "leis_worker_requests_total", worker="0") and \
                        _series(text, "leis_worker_requests_total", worker="1"):
                    break
        # both workers served; their numbers add up (the metrics port shows every worker's snapshot)
        total = lambda text: _series(text, "leis_requests_total", operation="doStructuredSearch", result="Success")  # noqa: E731
        text = _wait_for(lambda: (t := _scrape(metrics_url)) and total(t) == sent and t, what="all requests counted")
        assert _series(text, "leis_worker_requests_total", worker="0") > 0
        assert _series(text, "leis_worker_requests_total", worker="1") > 0
        assert _series(text, "leis_worker_requests_total", worker="0") + \
            _series(text, "leis_worker_requests_total", worker="1") == sent
        assert _series(text, "leis_request_duration_seconds_count", operation="doStructuredSearch") == sent
        assert _series(text, "leis_source_latency_seconds_count", source="TECS") == sent
        assert _series(text, "leis_audit_write_seconds_count", direction="outbound") >= sent
        # the endpoint port serves the same totals (mutual TLS), whichever worker answers
        endpoint = client.get("/metrics")
        assert endpoint.status_code == 200 and total(endpoint.text) == sent

        # a worker that dies is replaced; what it counted still counts
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        replaced = _wait_for(lambda: (c := _children(proc.pid)) and len(c) == 2 and victim not in c and c,
                             what="a replacement worker")
        assert len(replaced & workers) == 1
        if one_each:  # the replacement takes its slot's CPU (it pins itself as it starts: wait for that)
            _wait_for(lambda: {frozenset(os.sched_getaffinity(pid)) for pid in replaced} == one_each,
                      what="the replacement on its slot's CPU")
        text = _wait_for(lambda: (t := _scrape(metrics_url)) and
                         (_series(t, "leis_worker_restarts_total", worker="0") +
                          _series(t, "leis_worker_restarts_total", worker="1")) == 1 and t, what="restart counted")
        assert total(text) == sent  # its snapshot was current (counted above): folded into the totals, not lost
        _wait_for(lambda: client.get("/readyz").status_code == 200, what="ready again")
        with ThreadPoolExecutor(4) as pool:
            again = list(pool.map(ask, range(sent, sent + 8)))
        assert all(a.status_code == 200 for a in again)

        # SIGTERM: every worker stops, then the supervisor; nobody is left
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not [pid for pid in replaced if _alive(pid)]

    log = log_path.read_text()
    assert CANARY not in log and "QUINCY" not in log and "1975-04-12" not in log and "1962-02-02" not in log
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [e for e in entries if e["logger"] == "leis_gateway.access"]
    assert {f"ops-workers-{i}" for i in range(sent)} <= {e["correlation_id"] for e in access}
    assert {e["pid"] for e in access} >= {pid for pid in workers if pid != victim}
    assert all(e["operation"] == "doStructuredSearch" and e["agreement"] == "ndex" for e in access)
    assert any("restarting it" in e["message"] for e in entries)
    assert any(e["message"] == "supervisor: every worker stopped" for e in entries)


def test_a_configuration_that_cannot_serve_fails_once_before_any_fork(demo_home, tmp_path):
    """A broken configuration fails once, before any fork, with a plain exit status."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEIS_")}
    home = tmp_path / "no-sources"
    (home / "pki").mkdir(parents=True)
    for name in ("ca.crt", "server.crt", "server.key"):
        (home / "pki" / name).write_bytes((demo_home / "pki" / name).read_bytes())
    env.update(LEIS_AUDIT_URL=f"sqlite:///{tmp_path / 'audit.db'}")
    done = subprocess.run(
        [sys.executable, "-m", "leis_gateway.cli", "--home", str(home), "serve", "--port", str(_free_port()),
         "--workers", "2"], env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert b"cannot start: source databases missing" in done.stderr
    assert b"Traceback" not in done.stderr and b"worker 0 started" not in done.stderr


def test_the_workers_connections_send_answers_without_waiting_for_acks():
    """The supervisor's shared socket hands out connections with TCP_NODELAY, as cheroot's own
    does: with Nagle's algorithm on, each answer of a keep-alive connection waited for the member's
    delayed ACK (about 40 ms on Linux), which made two workers slower than one."""
    from leis_gateway.workers import bind_listener

    with contextlib.closing(bind_listener("127.0.0.1", 0)) as listener, socket.socket() as member:
        member.connect(listener.getsockname())
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
