"""The audit log proven end to end, through the real TLS server (project issue 5, "Done when").

- concurrent load: exactly one inbound and one outbound row per exchange, paired by correlation
  id, every disclosure recorded as sent, chain intact (SQLite and PostgreSQL);
- SIGKILL of a real `leis-gateway serve` mid-load: every answer a client received has both rows;
- audit store unavailable: nothing is served, no source is asked, /readyz says 503, and service
  resumes by itself when the store comes back (SQLite and PostgreSQL);
- no CLI or API path selects rows by message content; `audit show` decrypts and is audited;
- `audit verify` exits 0 on an intact chain and 1 after tampering; `audit report` writes HTML+CSV.

PostgreSQL runs use a throwaway database per test (created and dropped here), so runs never
collide; where no PostgreSQL answers on 127.0.0.1:5432 those tests skip loudly.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from lxml import etree
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from leis_gateway.audit import AuditFilter, AuditLog, Direction, load_or_create_key
from leis_gateway.config import SR_PATH
from leis_gateway.domain import Purpose, QueryField
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.security.pki import SigningCredentials, load_signing_credentials
from leis_gateway.security.wssec import sign_envelope
from support import (NS, PG_HOST, PG_PORT, PG_USERS, RunningGateway, postgres_url, postgres_user, requester, search,
                     unsigned_part)

N_REQUESTS = 60
CLIENTS = 6
CANARY_SURNAME = "QXCANARYZULU"  # a queried value: it exists only inside message content
CLI = Path(sys.executable).parent / "leis-gateway"


# --- what the agencies ask ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ask:
    """One kind of request in the load mix, with what its answer must be."""

    label: str
    operation: str
    agreement: str
    build: Callable[[], etree._Element]
    result: str = "Success"
    packages: int | None = None  # exact SearchResultPackage count, when the demo data pins it
    disclosed: dict[str, frozenset[str]] | None = None  # source record id -> elements it must disclose


def _sp() -> etree._Element:
    return lexs_requests.service_provider_request(requester())


S1 = ((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12"))
S1_DISCLOSED = {"TS-DEMO-S1": frozenset({
    "person.given_name", "person.middle_name", "person.surname", "person.birth_date", "person.height_inches",
    "person.weight_pounds", "person.eye_color", "person.hair_color", "person.birthplace_country",
})}
MIX: tuple[Ask, ...] = (
    Ask("S1 disclosed", "doStructuredSearch", "ndex", lambda: search(*S1), packages=1, disclosed=S1_DISCLOSED),
    Ask("S1 to azlink", "doStructuredSearch", "azlink", lambda: search(*S1), packages=1, disclosed=S1_DISCLOSED),
    Ask("SMITH: several", "doStructuredSearch", "tdex", lambda: search((QueryField.SURNAME, "SMITH"))),
    Ask("S4 with photo", "doStructuredSearch", "azlink", lambda: search((QueryField.A_NUMBER, "A099000004")),
        packages=1, disclosed={"EA-DEMO-S4": frozenset({"person.surname", "person.birth_date", "attachment_uri"})}),
    Ask("S2 never released", "doStructuredSearch", "ndex",
        lambda: search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1980-01-01")), packages=0),
    Ask("S5 never to nlets", "doStructuredSearch", "nlets",
        lambda: search((QueryField.SURNAME, "KARIMI"), (QueryField.BIRTH_DATE, "1990-01-15")), packages=0),
    Ask("refused: suspended agreement", "doStructuredSearch", "suspended-demo", lambda: search(*S1),
        result="Error", packages=0),
    Ask("refused: no purpose", "doStructuredSearch", "ndex", lambda: search(*S1, purpose=None),
        result="Error", packages=0),
    Ask("refused: text search", "doTextSearch", "linx-nw",
        lambda: lexs_requests.text_search_request(requester(), "john doe"), result="Error", packages=0),
    Ask("capabilities", "getCapabilities", "ndex", _sp),
    Ask("availability", "getAvailability", "tdex", _sp),
    Ask("data owners", "getDataOwners", "arjis", _sp),
)


@dataclasses.dataclass
class Sent:
    ask: Ask
    correlation_id: str
    request: bytes
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def root(self) -> etree._Element:
        return etree.fromstring(self.body)

    @property
    def message(self) -> etree._Element:
        return self.root.find("soap:Body", NS)[0][0]

    @property
    def fault_cause(self) -> str | None:
        cause = self.root.find(".//soap:Fault/detail/*", NS)
        return cause.text if cause is not None else None

    @property
    def result_code(self) -> str | None:
        return self.message.findtext("lexs:ResponseMetadata/lexs:ResultCode", namespaces=NS)

    def package_systems(self) -> list[str]:
        return [
            p.findtext("lexs:PackageMetadata/lexs:DataOwnerMetadata/lexs:DataOwnerIdentifier/lexs:SystemID",
                       namespaces=NS)
            for p in self.message.findall("lexs:SearchResultPackage", NS)
        ]


class Agencies:
    """Member agencies talking to one gateway: keys loaded once, one TLS session per thread and agreement."""

    def __init__(self, home: Path, url: str) -> None:
        self.home, self.url = home, url
        self._lock = threading.Lock()
        self._credentials: dict[str, SigningCredentials] = {}
        self._sessions: dict[tuple[int, str], requests.Session] = {}

    def credentials(self, agreement: str) -> SigningCredentials:
        with self._lock:
            if agreement not in self._credentials:
                pki = self.home / "pki" / "agencies"
                self._credentials[agreement] = load_signing_credentials(pki / f"{agreement}.key", pki / f"{agreement}.crt")
            return self._credentials[agreement]

    def session(self, agreement: str) -> requests.Session:
        key = (threading.get_ident(), agreement)
        with self._lock:
            if key not in self._sessions:
                s = requests.Session()
                s.trust_env = False
                pki = self.home / "pki"
                s.verify = str(pki / "ca.crt")
                s.cert = (str(pki / "agencies" / f"{agreement}.crt"), str(pki / "agencies" / f"{agreement}.key"))
                self._sessions[key] = s
            return self._sessions[key]

    def envelope(self, ask: Ask) -> bytes:
        envelope = etree.fromstring(lexs_requests.soap_envelope(lexs_requests.wrap_request(ask.operation, ask.build())))
        credentials = self.credentials(ask.agreement)
        sign_envelope(envelope, credentials.key, credentials.certificate)
        return etree.tostring(envelope)

    def send(self, ask: Ask, timeout: float = 30, correlation_id: str | None = None) -> Sent:
        correlation_id = correlation_id or uuid.uuid4().hex
        body = self.envelope(ask)
        response = self.session(ask.agreement).post(
            self.url, data=body, timeout=timeout,
            headers={"Content-Type": "text/xml; charset=utf-8", "X-Correlation-ID": correlation_id},
        )
        return Sent(ask, correlation_id, body, response.status_code, dict(response.headers), response.content)

    def get(self, path: str, agreement: str = "ndex", timeout: float = 10) -> requests.Response:
        return self.session(agreement).get(self.url[: -len(SR_PATH)] + path, timeout=timeout)

    def close(self) -> None:
        with self._lock:
            for s in self._sessions.values():
                s.close()
            self._sessions.clear()

    def __enter__(self) -> Agencies:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plan(n: int) -> list[Ask]:
    return [MIX[i % len(MIX)] for i in range(n)]


# --- audit stores -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(demo_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the demo state (PKI, sources, keys) without any audit database."""
    target = tmp_path_factory.mktemp("e2e") / "home"
    shutil.copytree(demo_home, target, ignore=shutil.ignore_patterns("audit.db*"))
    return target


@pytest.fixture(scope="session")
def pg_admin_url() -> str | None:
    """A URL to the `test` database as the first PostgreSQL user that can connect, or None."""
    user = postgres_user()
    return postgres_url(user) if user else None


@dataclasses.dataclass
class Store:
    """An empty audit store for one test, which the test can take away and give back."""

    backend: str
    url: str
    break_: Callable[[], None]
    restore: Callable[[], None]
    raw: Engine  # direct SQL access to the store, e.g. to install a failing trigger

    def fail_inserts(self, direction: str, correlation_id: str) -> None:
        """Make the store itself refuse one exchange's inbound or outbound row (a trigger)."""
        condition = f"NEW.direction = '{direction}' AND NEW.correlation_id = '{correlation_id}'"
        with self.raw.begin() as conn:
            if self.backend == "sqlite":
                conn.exec_driver_sql(
                    f"CREATE TRIGGER refuse_{direction} BEFORE INSERT ON audit_message WHEN {condition} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
                )
            else:
                conn.exec_driver_sql(
                    f"CREATE FUNCTION refuse_{direction}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF {condition} THEN RAISE EXCEPTION 'refused by test trigger'; END IF; RETURN NEW; END $$"
                )
                conn.exec_driver_sql(
                    f"CREATE TRIGGER refuse_{direction} BEFORE INSERT ON audit_message "
                    f"FOR EACH ROW EXECUTE FUNCTION refuse_{direction}()"
                )


@contextlib.contextmanager
def sqlite_store(directory: Path) -> Iterator[Store]:
    db = directory / "audit.db"
    away = directory / "audit.db.away"

    def take_away() -> None:
        # as root, chmod would not stop us: move the file away and put a directory in its place,
        # so the path can be neither opened nor silently re-created
        db.rename(away)
        db.mkdir()

    def give_back() -> None:
        db.rmdir()
        away.rename(db)

    engine = create_engine(f"sqlite:///{db}", poolclass=NullPool)
    try:
        yield Store("sqlite", f"sqlite:///{db}", take_away, give_back, engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def postgres_store(admin_url: str) -> Iterator[Store]:
    name = f"leis_audit_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except DBAPIError as exc:
            pytest.skip(f"!!! cannot create a throwaway PostgreSQL database ({type(exc.orig).__name__}): "
                        "the PostgreSQL audit backend is NOT tested end to end in this run !!!")
        url = admin_url.rsplit("/", 1)[0] + "/" + name

        def take_away() -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
                )

        def give_back() -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

        raw = create_engine(url, poolclass=NullPool)
        try:
            yield Store("postgresql", url, take_away, give_back, raw)
        finally:
            raw.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, pg_admin_url: str | None) -> Iterator[Store]:
    if request.param == "sqlite":
        with sqlite_store(tmp_path) as s:
            yield s
        return
    if pg_admin_url is None:
        pytest.skip(
            f"!!! PostgreSQL NOT REACHABLE at {PG_HOST}:{PG_PORT} as {'/'.join(PG_USERS)}: "
            "the PostgreSQL audit backend is NOT tested end to end in this run !!!"
        )
    with postgres_store(pg_admin_url) as s:
        yield s


def open_log(home: Path, url: str) -> AuditLog:
    return AuditLog.open(url, *load_or_create_key(home / "audit.key"))


# --- shared assertions --------------------------------------------------------------------------


def assert_exchanges_audited(rows: list, answered: list[Sent], *, exactly: bool) -> None:
    """Every answered exchange has one inbound and one outbound row that record what was sent.

    `exactly`: the log holds nothing else (no lost, duplicated or unpaired rows).
    """
    by_correlation: dict[str, list] = {}
    for row in rows:
        assert row.direction in (Direction.INBOUND, Direction.OUTBOUND), row
        by_correlation.setdefault(row.correlation_id, []).append(row)
    if exactly:
        assert len(rows) == 2 * len(answered)
        assert set(by_correlation) == {s.correlation_id for s in answered}
    for sent in answered:
        assert sent.headers.get("X-Correlation-ID") == sent.correlation_id
        pair = by_correlation.get(sent.correlation_id, [])
        assert [r.direction for r in pair] == ["inbound", "outbound"], (sent.ask.label, pair)
        inbound, outbound = pair
        assert inbound.id < outbound.id
        for row in pair:
            assert row.operation == sent.ask.operation
            assert row.agreement_id == sent.ask.agreement
        # what was stored is what crossed the wire, byte for byte in length
        assert inbound.size_bytes == len(sent.request)
        assert outbound.size_bytes == len(sent.body)
        assert inbound.disclosures == ()
        if sent.status != 200:
            assert outbound.result_code == f"Fault:{sent.fault_cause}"
            assert outbound.disclosures == ()
            continue
        assert outbound.result_code == sent.result_code
        systems = sent.package_systems()
        # every disclosure recorded: one per SearchResultPackage sent, from the same source
        assert len(outbound.disclosures) == len(systems), (sent.ask.label, outbound.disclosures, systems)
        assert Counter(d.source_system for d in outbound.disclosures) == Counter(systems)
        for d in outbound.disclosures:
            assert d.source_record_id and d.elements, d
        if sent.ask.disclosed is not None:  # the demo subjects: which record, and what of it
            recorded = {d.source_record_id: set(d.elements) for d in outbound.disclosures}
            assert recorded.keys() == sent.ask.disclosed.keys(), recorded
            for record_id, elements in sent.ask.disclosed.items():
                assert elements <= recorded[record_id], (record_id, elements - recorded[record_id])


# --- 1. concurrent load ---------------------------------------------------------------------------


def test_concurrent_load_is_audited_exactly_once_per_message(home: Path, store: Store) -> None:
    with RunningGateway.start(home, audit_url=store.url) as running, Agencies(home, running.url) as agencies:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            answered = list(pool.map(agencies.send, plan(N_REQUESTS)))
        audit = running.gateway.audit

        for sent in answered:  # the answers are what the mix expects (else the audit proves little)
            assert sent.status == 200, (sent.ask.label, sent.body[:300])
            assert sent.result_code == sent.ask.result, sent.ask.label
            if sent.ask.packages is not None:
                assert len(sent.package_systems()) == sent.ask.packages, sent.ask.label
        assert max(len(s.package_systems()) for s in answered) > 1, "the mix must include a multi-record answer"

        rows = audit.search(AuditFilter(limit=None))
        assert_exchanges_audited(rows, answered, exactly=True)
        assert sum(len(r.disclosures) for r in rows) == sum(len(s.package_systems()) for s in answered) > 0

        report = audit.verify()
        assert report.ok, str(report)
        assert report.rows_checked == 2 * N_REQUESTS

        # the stored message is the very message sent (decrypting is itself audited)
        disclosing = next(s for s in answered if s.ask.label == "S4 with photo")
        outbound = audit.search(AuditFilter(correlation_id=disclosing.correlation_id, direction="outbound"))[0]
        assert audit.show(outbound.id, "auditor.e2e", "issue 5 end-to-end proof") == disclosing.body
        inbound = audit.search(AuditFilter(correlation_id=disclosing.correlation_id, direction="inbound"))[0]
        assert audit.show(inbound.id, "auditor.e2e", "issue 5 end-to-end proof") == disclosing.request
        assert audit.verify().ok


# --- 2. SIGKILL mid-load ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(home: Path, audit_url: str, log_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`leis-gateway serve` as its own process, ready when this yields; always reaped."""
    port = _free_port()
    env = dict(os.environ, LEIS_HOME=str(home), LEIS_AUDIT_URL=audit_url, LEIS_THREADS="16")
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "leis_gateway.cli"]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command + ["--home", str(home), "serve", "--port", str(port)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    url = f"https://127.0.0.1:{port}{SR_PATH}"
    try:
        with Agencies(home, url) as probe:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    if probe.get("/readyz", timeout=2).status_code == 200:
                        break
                except requests.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"server not ready:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def stop_mid_exchange(proc: subprocess.Popen, store: Store, answered: Callable[[], set[str]]) -> None:
    """SIGSTOP the server at a moment when an exchange has arrived (its inbound row is committed)
    and is not answered; otherwise let it run a little and look again.

    Why: the inbound row is written once the signature is verified, and the clients spend much of
    their time signing; a SIGKILL at a random moment caught no such exchange in about one run in
    ten. Stopped, the server can answer no more: what it is in the middle of is what SIGKILL cuts.
    """
    deadline = time.monotonic() + 30
    while True:
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.2)  # answers already sent reach their clients
        with store.raw.connect() as conn:
            arrived = {cid for (cid,) in conn.exec_driver_sql(
                "SELECT correlation_id FROM audit_message WHERE direction = 'inbound'")}
        pending = arrived - answered()
        time.sleep(0.2)  # still unanswered a while later: no answer of it is on its way
        if pending - answered():
            return
        assert time.monotonic() < deadline, "no exchange was ever caught between its arrival and its answer"
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)


def test_sigkill_mid_load_loses_no_row_of_an_answered_exchange(home: Path, store: Store, tmp_path: Path) -> None:
    answered: list[Sent] = []
    lock = threading.Lock()
    stop = threading.Event()
    mix = plan(len(MIX) * 100)

    with served(home, store.url, tmp_path / "serve.log") as (proc, url), Agencies(home, url) as agencies:

        def client(offset: int) -> None:
            i = offset
            while not stop.is_set():
                try:
                    sent = agencies.send(mix[i % len(mix)], timeout=15)
                except requests.exceptions.RequestException:
                    return  # the server is gone: in flight when it died, or refused afterwards
                with lock:
                    answered.append(sent)
                i += CLIENTS

        def answered_so_far() -> set[str]:
            with lock:
                return {s.correlation_id for s in answered}

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while len(answered) < 40 and time.monotonic() < deadline:
                time.sleep(0.01)
            stop_mid_exchange(proc, store, answered_so_far)
            os.kill(proc.pid, signal.SIGKILL)  # mid-load: six clients in flight, one exchange past its inbound row
            proc.wait(timeout=30)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(answered) >= 40

    with open_log(home, store.url) as audit:
        rows = audit.search(AuditFilter(limit=None))
        assert_exchanges_audited(rows, answered, exactly=False)
        answered_ids = {s.correlation_id for s in answered}
        directions: dict[str, list[str]] = {}
        for r in rows:
            directions.setdefault(r.correlation_id, []).append(r.direction)
        # beyond the answered exchanges only those cut off by the kill: inbound, maybe outbound not yet sent
        for correlation_id, seen in directions.items():
            if correlation_id not in answered_ids:
                assert seen in (["inbound"], ["inbound", "outbound"]), seen
        cut_off = len(directions) - len(answered_ids)
        assert cut_off <= CLIENTS
        # evidence that the kill landed mid-load: exchanges had arrived (inbound row) but were never answered
        assert cut_off >= 1, "no exchange was in flight when the server was killed"
        report = audit.verify()
        assert report.ok, str(report)
        assert report.rows_checked == len(rows)

    # a new gateway continues the same chain after the crash
    with RunningGateway.start(home, audit_url=store.url) as running, Agencies(home, running.url) as agencies:
        after = agencies.send(MIX[0])
        assert after.status == 200 and after.result_code == "Success"
        assert running.gateway.audit.verify().ok
        assert len(running.gateway.audit.search(AuditFilter(correlation_id=after.correlation_id))) == 2


# --- 3. audit store unavailable ------------------------------------------------------------------------


class SpiedHub:
    """The far side instrumented: counts every call into a source adapter or the photo store."""

    def __init__(self, hub) -> None:
        self.calls: list[str] = []
        self.on_call: Callable[[], None] = lambda: None  # runs inside the exchange, before the source answers
        self.adapters = tuple(_Spy(a, self) for a in hub.adapters)
        self.photos = _Spy(hub.photos, self)

    def adapter(self, system):
        return next((a for a in self.adapters if a.system == system), None)


class _Spy:
    def __init__(self, inner, hub: SpiedHub) -> None:
        self._inner, self._hub = inner, hub

    def __getattr__(self, name: str):
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        def spied(*args, **kwargs):
            self._hub.calls.append(f"{getattr(self._inner, 'system', 'photos')}.{name}")
            self._hub.on_call()
            return value(*args, **kwargs)

        return spied


def test_no_service_without_audit_and_service_resumes_by_itself(home: Path, store: Store) -> None:
    with RunningGateway.start(home, audit_url=store.url) as running, Agencies(home, running.url) as agencies:
        spied = SpiedHub(running.gateway.service.hub)
        running.gateway.service.hub = spied

        before = agencies.send(MIX[0])
        assert before.status == 200 and len(before.package_systems()) == 1
        assert spied.calls, "the spy must see the sources being asked"
        item_id = before.message.findtext(".//lexs:PackageMetadata/lexs:DataItemID", namespaces=NS)
        spied.calls.clear()

        store.break_()
        try:
            refused = [
                agencies.send(MIX[0]),  # a search that would disclose S1
                agencies.send(Ask("item", "getDataItem", "ndex",
                                  lambda: lexs_requests.data_item_request(requester(), item_id))),
                agencies.send(Ask("availability", "getAvailability", "ndex", _sp)),  # would ping the sources
                agencies.send(MIX[0]),
            ]
            for sent in refused:
                assert sent.status == 503, sent.body[:300]
                assert sent.fault_cause == "AuditUnavailable"
                assert b"SearchResultPackage" not in sent.body and b"DOE" not in unsigned_part(sent.body)
            assert spied.calls == [], "a source was asked while the audit log was down"
            assert agencies.get("/readyz").status_code == 503
            assert agencies.get("/healthz").status_code == 200  # alive, just not ready
        finally:
            store.restore()

        deadline = time.monotonic() + 10  # no restart: the gateway notices by itself
        while agencies.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "/readyz did not recover"
            time.sleep(0.1)
        after = agencies.send(MIX[0])
        assert after.status == 200 and after.result_code == "Success" and len(after.package_systems()) == 1
        assert spied.calls

        # the store goes away while an exchange is inside (the sources already answered):
        # the answer that cannot be audited is never sent
        lost = threading.Event()
        once = threading.Lock()  # the sources are asked in parallel threads

        def lose_store_once() -> None:
            with once:
                if not lost.is_set():
                    lost.set()
                    store.break_()

        spied.on_call = lose_store_once
        try:
            cut = agencies.send(MIX[0])
        finally:
            spied.on_call = lambda: None
            if lost.is_set():
                store.restore()
        assert lost.is_set()
        assert cut.status == 503 and cut.fault_cause == "AuditUnavailable", cut.body[:300]
        assert b"SearchResultPackage" not in cut.body and b"DOE" not in unsigned_part(cut.body)

        deadline = time.monotonic() + 10
        while agencies.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "/readyz did not recover"
            time.sleep(0.1)
        again = agencies.send(MIX[0])
        assert again.status == 200 and len(again.package_systems()) == 1

        audit = running.gateway.audit
        rows = audit.search(AuditFilter(limit=None))
        # only the exchanges that were served have both rows: nothing unaudited was answered;
        # the cut exchange left its inbound row (it did arrive) and no outbound row
        cut_rows = [r for r in rows if r.correlation_id == cut.correlation_id]
        assert [r.direction for r in cut_rows] == ["inbound"]
        assert_exchanges_audited([r for r in rows if r not in cut_rows], [before, after, again], exactly=True)
        assert audit.verify().ok


def test_an_exchange_the_store_refuses_to_record_is_never_served(home: Path, store: Store) -> None:
    """The store itself (a trigger) refuses one exchange's inbound row, then another's outbound row."""
    with RunningGateway.start(home, audit_url=store.url) as running, Agencies(home, running.url) as agencies:
        spied = SpiedHub(running.gateway.service.hub)
        running.gateway.service.hub = spied
        audit = running.gateway.audit

        unrecorded_in = uuid.uuid4().hex
        store.fail_inserts("inbound", unrecorded_in)
        sent = agencies.send(MIX[0], correlation_id=unrecorded_in)
        assert sent.status == 503 and sent.fault_cause == "AuditUnavailable", sent.body[:300]
        assert spied.calls == [], "a source was asked for a request the log could not record"
        rows = audit.search(AuditFilter(correlation_id=unrecorded_in))
        # no inbound row could be written; what was sent back (the refusal, nothing else) may be recorded
        assert [r.direction for r in rows] in ([], ["outbound"])
        for r in rows:
            assert r.result_code == "Fault:AuditUnavailable" and r.disclosures == ()

        unrecorded_out = uuid.uuid4().hex
        store.fail_inserts("outbound", unrecorded_out)
        sent = agencies.send(MIX[0], correlation_id=unrecorded_out)
        assert sent.status == 503 and sent.fault_cause == "AuditUnavailable", sent.body[:300]
        assert b"SearchResultPackage" not in sent.body and b"DOE" not in unsigned_part(sent.body)  # the answer never left
        assert spied.calls  # the sources had answered: only the audit stood between S1 and the caller
        assert [r.direction for r in audit.search(AuditFilter(correlation_id=unrecorded_out))] == ["inbound"]

        served = agencies.send(MIX[0])  # everyone else is served as before
        assert served.status == 200 and len(served.package_systems()) == 1
        assert_exchanges_audited(audit.search(AuditFilter(correlation_id=served.correlation_id)), [served],
                                 exactly=True)
        assert audit.verify().ok


# --- 4/5. the CLI over a loaded log ------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    home: Path
    db: Path
    url: str
    answered: list[Sent]
    canary: Sent

    def cli(self, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
        """The installed `leis-gateway` command, as its own process."""
        command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "leis_gateway.cli"]
        env = dict(os.environ, LEIS_HOME=str(self.home), LEIS_AUDIT_URL=url or self.url)
        return subprocess.run(command + ["--home", str(self.home), *args], env=env, capture_output=True, timeout=60)

    def search(self, *args: str) -> list[dict]:
        """`leis-gateway --home H audit search --json ARGS` in this process (a CLI start costs ~1 s).

        The parser and handlers are the real ones from `leis_gateway.cli`; `sys.argv` is set too,
        because the audit commands' log opener re-reads it to find `--home`.
        """
        from leis_gateway.cli import build_parser

        argv = ["--home", str(self.home), "audit", "search", "--json", *args]
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LEIS_HOME", str(self.home))
            mp.setenv("LEIS_AUDIT_URL", self.url)
            mp.setattr(sys, "argv", ["leis-gateway", *argv])
            mp.setattr(sys, "stdout", out)
            mp.setattr(sys, "stderr", io.StringIO())
            parsed = build_parser().parse_args(argv)
            assert parsed.func(parsed) == 0
        return json.loads(out.getvalue())

    def log(self) -> AuditLog:
        return open_log(self.home, self.url)


@pytest.fixture(scope="module")
def loaded(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """A SQLite audit log after a small load that includes a search for a canary surname."""
    db = tmp_path_factory.mktemp("loaded") / "audit.db"
    url = f"sqlite:///{db}"
    canary = Ask("canary", "doStructuredSearch", "azlink",
                 lambda: search((QueryField.SURNAME, CANARY_SURNAME), (QueryField.BIRTH_DATE, "1961-02-03"),
                                purpose=Purpose.NATIONAL_SECURITY), packages=0)
    with RunningGateway.start(home, audit_url=url) as running, Agencies(home, running.url) as agencies:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answered = list(pool.map(agencies.send, [*MIX, canary, *MIX[:3]]))
    assert all(s.status == 200 for s in answered)
    return Loaded(home, db, url, answered, next(s for s in answered if s.ask is canary))


def test_no_cli_or_api_filter_selects_by_message_content(loaded: Loaded) -> None:
    assert CANARY_SURNAME.encode() in loaded.canary.request
    # the canary is stored (encrypted) but nowhere in clear: not in the database file, not in metadata
    assert CANARY_SURNAME.encode() not in b"".join(p.read_bytes() for p in loaded.db.parent.glob("audit.db*"))

    filters = ("--agreement", "--ori", "--user", "--operation", "--result", "--correlation")
    variants = [
        *[[flag, CANARY_SURNAME] for flag in filters],
        *[[flag, f"%{CANARY_SURNAME}%"] for flag in filters],  # no LIKE pattern sneaks in either
        ["--agreement", "%"], ["--user", "*"],
    ]
    for variant in variants:
        assert loaded.search(*variant) == [], f"audit search {' '.join(variant)} returned rows"
    positive = {"--agreement": "azlink", "--user": "det.smith", "--ori": "AZDPSLNK0",
                "--operation": "doStructuredSearch", "--result": "Success",
                "--correlation": loaded.canary.correlation_id}
    for flag, value in positive.items():  # else the empty answers above would prove nothing
        assert loaded.search(flag, value), f"audit search {flag} {value} finds nothing at all"
    assert {r["correlation_id"] for r in loaded.search("--correlation", loaded.canary.correlation_id)} == {
        loaded.canary.correlation_id
    }
    everything = loaded.search("--limit", "100000")
    assert len(everything) == 2 * len(loaded.answered)
    assert CANARY_SURNAME not in json.dumps(everything)  # the rows themselves hold metadata only

    # the installed command, as a separate process, agrees
    done = loaded.cli("audit", "search", "--json", "--user", CANARY_SURNAME)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []

    # the API: every filter field is metadata, and none matches the canary
    fields = {f.name for f in dataclasses.fields(AuditFilter)}
    assert fields == {"since", "until", "agreement_id", "ori", "user_id", "operation", "direction",
                      "result_code", "correlation_id", "message_id", "limit", "newest_first"}
    with loaded.log() as audit:
        for name in fields - {"since", "until", "direction", "limit", "newest_first"}:
            assert audit.search(AuditFilter(**{name: CANARY_SURNAME})) == [], name
        assert not hasattr(audit, "search_content") and not hasattr(audit, "grep")


def test_audit_search_help_offers_no_content_filter(loaded: Loaded) -> None:
    done = loaded.cli("audit", "search", "--help")
    assert done.returncode == 0, done.stderr
    help_text = done.stdout.decode()
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))
    assert options == {"--help", "--since", "--until", "--agreement", "--ori", "--user", "--operation",
                       "--direction", "--result", "--correlation", "--limit", "--newest-first", "--json"}
    for word in ("content", "text", "body", "message", "query", "value", "name", "grep", "contains", "match"):
        assert not any(word in o for o in options), word
    top = loaded.cli("audit", "--help")
    assert top.returncode == 0
    assert re.search(r"\{search,show,purge,report,verify\}", top.stdout.decode())


def test_audit_show_decrypts_through_the_cli_and_is_itself_audited(loaded: Loaded) -> None:
    with loaded.log() as audit:
        (inbound,) = audit.search(AuditFilter(correlation_id=loaded.canary.correlation_id, direction="inbound"))
        reviews_before = audit.search(AuditFilter(direction="review", limit=None))

    no_reason = loaded.cli("audit", "show", str(inbound.id), "--reviewer", "auditor.kim")
    assert no_reason.returncode == 2 and b"--reason" in no_reason.stderr
    assert CANARY_SURNAME.encode() not in no_reason.stdout

    shown = loaded.cli("audit", "show", str(inbound.id), "--reason", "case 42: weekly review",
                       "--reviewer", "auditor.kim")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip(b"\n") == loaded.canary.request.rstrip(b"\n")  # the message as it arrived
    assert CANARY_SURNAME.encode() in shown.stdout

    missing = loaded.cli("audit", "show", "999999", "--reason", "typo", "--reviewer", "auditor.kim")
    assert missing.returncode == 2

    with loaded.log() as audit:
        reviews = audit.search(AuditFilter(direction="review", limit=None))
        new = [r for r in reviews if r.id not in {x.id for x in reviews_before}]
        assert len(new) == 1, new  # the refused attempts left no review row and showed nothing
        (review,) = new
        assert review.operation == "audit.show" and review.user_id == "auditor.kim"
        assert json.loads(review.detail) == {"row_id": inbound.id, "reason": "case 42: weekly review"}
        assert review.correlation_id == loaded.canary.correlation_id
        assert audit.verify().ok


def test_audit_verify_cli_exits_0_when_intact_and_1_after_tampering(loaded: Loaded, tmp_path: Path) -> None:
    with loaded.log() as audit:  # a copy, so the other tests keep an intact log
        victim = audit.search(AuditFilter(correlation_id=loaded.canary.correlation_id, direction="outbound"))[0]
    copy = tmp_path / "audit.db"
    with contextlib.closing(sqlite3.connect(loaded.db)) as source, contextlib.closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    url = f"sqlite:///{copy}"

    intact = loaded.cli("audit", "verify", url=url)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.startswith(b"OK: ")

    with contextlib.closing(sqlite3.connect(copy)) as conn, conn:
        conn.execute("UPDATE audit_message SET agreement_id = 'ndex' WHERE id = ?", (victim.id,))
    tampered = loaded.cli("audit", "verify", url=url)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert tampered.stdout.startswith(f"BROKEN at row {victim.id}:".encode())


def test_weekly_report_after_load_writes_html_and_csv(loaded: Loaded, tmp_path: Path) -> None:
    with loaded.log() as audit:
        first = audit.search(AuditFilter(limit=1))[0]
    year, week, _ = first.at.isocalendar()  # the week the load happened in (UTC)
    iso_week = f"{year}-W{week:02d}"
    out = tmp_path / "report"
    done = loaded.cli("audit", "report", "--week", iso_week, "--out", str(out), "--reviewer", "auditor.kim")
    assert done.returncode == 0, done.stderr
    html_path, csv_path = out / f"audit-{iso_week}.html", out / f"audit-{iso_week}.csv"
    assert done.stdout.decode().split() == [str(html_path), str(csv_path)]

    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert f"weekly review {iso_week}" in page and "OK: " in page
    assert CANARY_SURNAME not in page

    with csv_path.open(newline="", encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    assert CANARY_SURNAME not in csv_path.read_text(encoding="utf-8")
    requests_by_agreement = Counter()
    for line in lines:
        assert line["week"] == iso_week
        requests_by_agreement[line["agreement_id"]] += int(line["requests"])
    assert requests_by_agreement == Counter(s.ask.agreement for s in loaded.answered)
    disclosed = sum(int(line["records_disclosed"]) for line in lines)
    assert disclosed == sum(len(s.package_systems()) for s in loaded.answered) > 0
    assert any(int(line["refusals"]) for line in lines)

    with loaded.log() as audit:  # producing the report is itself audited
        assert [r.operation for r in audit.search(AuditFilter(direction="review", user_id="auditor.kim",
                                                              operation="audit.report"))] == ["audit.report"]


def test_the_audit_commands_read_the_home_given_to_main(tmp_path, capsys):
    """`main(["--home", H, "audit", ...])` must open H's audit log, not one named by sys.argv."""
    from leis_gateway import cli

    home = tmp_path / "home"
    assert cli.main(["--home", str(home), "audit", "verify"]) == 0
    assert (home / "audit.db").exists()
