"""Operations: metrics, JSON logs without personal data, readiness, configuration files and `config check`.

The pre-fork supervisor (`serve --workers N`) is proved in test_ops_workers.py.
"""
from __future__ import annotations

import io
import json
import logging
import re
import socket
from pathlib import Path

import pytest

from leis_gateway.cli import build_parser
from leis_gateway.config import ConfigError, Settings
from leis_gateway.domain import QueryField
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.observability import metrics
from leis_gateway.observability.logs import ContextFilter, JsonFormatter, TextFormatter
from leis_gateway.observability.readiness import Readiness
from support import search

CANARY_SURNAME = "CANARYLOGSURNAME"
CANARY_GIVEN = "ZEBULONCANARY"


def _signed_envelope(gateway, message) -> bytes:
    return gateway.signed(lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", message)))


def _post(gateway, body: bytes, correlation_id: str | None = None, content_type="text/xml; charset=utf-8"):
    headers = {"Content-Type": content_type}
    if correlation_id:
        headers["X-Correlation-ID"] = correlation_id
    with gateway.session() as session:
        return session.post(gateway.url, data=body, headers=headers, timeout=30)


def _series(text: str, name: str, **labels: str) -> float:
    """The value of one series in an exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        assert match, f"not exposition format: {line!r}"
        if match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if found == labels:
            return float(match.group(4))
    return 0.0


# --- metrics -----------------------------------------------------------------------------------------


def test_metrics_render_in_the_text_exposition_format():
    registry = metrics.Registry()
    counter = metrics.Counter(registry, "t_total", 'Help with "quotes"\nand a newline.', ("a",))
    histogram = metrics.Histogram(registry, "t_seconds", "Latency.", ("op",), buckets=(0.1, 1.0))
    counter.inc(a='x"y\\z')
    counter.inc(2, a="b")
    histogram.observe(0.05, op="s")
    histogram.observe(0.5, op="s")
    histogram.observe(7, op="s")
    text = metrics.render(registry.snapshot()).decode()
    assert "# TYPE t_total counter" in text and "# TYPE t_seconds histogram" in text
    assert '# HELP t_total Help with \\"quotes\\"\\nand a newline.' in text
    assert 't_total{a="x\\"y\\\\z"} 1' in text and 't_total{a="b"} 2' in text
    assert 't_seconds_bucket{op="s",le="0.1"} 1' in text
    assert 't_seconds_bucket{op="s",le="1"} 2' in text
    assert 't_seconds_bucket{op="s",le="+Inf"} 3' in text
    assert 't_seconds_count{op="s"} 3' in text and 't_seconds_sum{op="s"} 7.55' in text
    assert text.endswith("\n")
    with pytest.raises(ValueError):
        counter.inc(b="wrong label")


def test_snapshots_of_several_workers_add_up_and_retired_workers_keep_counting(tmp_path):
    def worker_snapshot(requests: int, cpu: float, worker: str) -> dict:
        registry = metrics.Registry()
        counter = metrics.Counter(registry, "leis_requests_total", "r", ("operation", "result"))
        histogram = metrics.Histogram(registry, "leis_request_duration_seconds", "d", ("operation",), buckets=(1.0,))
        gauge = metrics.Gauge(registry, "process_open_fds", "fds", ("worker",))
        for _ in range(requests):
            counter.inc(operation="doStructuredSearch", result="Success")
            histogram.observe(0.5, operation="doStructuredSearch")
        gauge.set(cpu, worker=worker)
        return {name: m.snapshot() for name, m in registry._metrics.items()}

    metrics._write_json(tmp_path / metrics.worker_file("0", 101), worker_snapshot(3, 10, "0"))
    metrics._write_json(tmp_path / metrics.worker_file("1", 102), worker_snapshot(4, 11, "1"))
    text = metrics.render_directory(tmp_path).decode()
    assert _series(text, "leis_requests_total", operation="doStructuredSearch", result="Success") == 7
    assert _series(text, "leis_request_duration_seconds_count", operation="doStructuredSearch") == 7
    assert _series(text, "process_open_fds", worker="0") == 10 and _series(text, "process_open_fds", worker="1") == 11

    metrics.retire(tmp_path, 101)  # worker 0 died; its replacement starts from zero
    metrics._write_json(tmp_path / metrics.worker_file("0", 103), worker_snapshot(1, 12, "0"))
    text = metrics.render_directory(tmp_path).decode()
    assert _series(text, "leis_requests_total", operation="doStructuredSearch", result="Success") == 8
    assert _series(text, "process_open_fds", worker="0") == 12  # the dead worker's gauges are gone
    assert not list(tmp_path.glob("worker-0-101.json"))


def test_an_exchange_is_counted_by_operation_and_result_with_sources_and_audit_timed(gateway):
    before = metrics.METRICS.snapshot()
    answer = gateway.call("doStructuredSearch", search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12")))
    assert answer.result_code == "Success"
    refused = _post(gateway, b"this is not XML")
    assert refused.status_code == 500
    with gateway.session() as session:
        scraped = session.get(gateway.base + "/metrics", timeout=10)
    assert scraped.status_code == 200
    assert scraped.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = scraped.text

    def delta(name: str, **labels: str) -> float:
        old = next((v for k, v in before[name]["series"] if dict(zip(before[name]["labels"], k)) == labels), None)
        if isinstance(old, dict):
            old = old["count"]
        return _series(text, name if not name.endswith("_seconds") else name + "_count", **labels) - (old or 0)

    assert delta("leis_requests_total", operation="doStructuredSearch", result="Success") >= 1
    faults = [line for line in text.splitlines() if line.startswith("leis_requests_total") and 'result="Fault:' in line]
    assert faults, "a refused message is counted as Fault:<code>"
    assert delta("leis_request_duration_seconds", operation="doStructuredSearch") >= 1
    assert delta("leis_source_latency_seconds", source="TECS") >= 1
    assert delta("leis_source_latency_seconds", source="EID") >= 1
    assert delta("leis_audit_write_seconds", direction="inbound") >= 2
    assert delta("leis_audit_write_seconds", direction="outbound") >= 2
    assert _series(text, "process_resident_memory_bytes", worker="0") > 0
    for line in text.splitlines():  # every sample line is well formed
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eInfNa]+', line), line


def test_source_failures_are_counted_by_reason():
    from leis_gateway.domain import Advisory, AdvisoryCategory, SourceStatus

    # source names of this test's own: searches of other tests may still be finishing in the background
    late, fine = "OPS-TEST-LATE", "OPS-TEST-FINE"
    metrics.observe_sources([
        SourceStatus(late, ok=False, advisory=Advisory(AdvisoryCategory.TIMEOUT, "late"), elapsed_ms=5000),
        SourceStatus(fine, ok=True, elapsed_ms=12),
    ])
    assert metrics.SOURCE_FAILURES.value(source=late, reason="Timeout") == 1
    assert not metrics.SOURCE_FAILURES.value(source=fine, reason="Timeout")


# --- logs --------------------------------------------------------------------------------------------


@pytest.fixture
def json_logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_logs_carry_correlation_ids_and_no_personal_data(gateway, json_logs):
    # a search that finds nothing, with canary values, and one that releases S1 in full
    canary = _signed_envelope(gateway, search((QueryField.SURNAME, CANARY_SURNAME), (QueryField.GIVEN_NAME, CANARY_GIVEN),
                                              (QueryField.BIRTH_DATE, "1961-06-06")))
    found = _signed_envelope(gateway, search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12")))
    assert _post(gateway, canary, "ops-canary-1").status_code == 200
    answer = _post(gateway, found, "ops-found-1")
    assert answer.status_code == 200 and b"QUINCY" in answer.content
    assert _post(gateway, b"<not-xml " + CANARY_SURNAME.encode(), "ops-broken-1").status_code == 500

    text = json_logs.getvalue()
    entries = [json.loads(line) for line in text.splitlines()]
    assert entries, "an exchange logs at least its access line"
    for entry in entries:
        assert {"time", "level", "logger", "message", "correlation_id", "operation", "agreement"} <= entry.keys()
    for forbidden in (CANARY_SURNAME, CANARY_GIVEN, "1961-06-06", "QUINCY", "900-12-3456", "100 MAIN", "TUCSON",
                      "1975-04-12", "det.smith"):
        assert forbidden.lower() not in text.lower(), f"{forbidden} leaked into the logs"
    access = {e["correlation_id"]: e for e in entries if e["logger"] == "leis_gateway.access"}
    assert {"ops-canary-1", "ops-found-1", "ops-broken-1"} <= access.keys()
    assert access["ops-found-1"]["operation"] == "doStructuredSearch"
    assert access["ops-found-1"]["agreement"] == "ndex"
    assert access["ops-found-1"]["result"] == "Success"
    assert access["ops-broken-1"]["result"].startswith("Fault:")
    assert all(e["correlation_id"] is None for e in entries if e["logger"].startswith("urllib3"))


def test_log_formatters_never_print_an_exception_message():
    try:
        raise ValueError("JOHN QUINCY DOE 900-12-3456")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "QUINCY" not in JsonFormatter().format(record)
    assert "ValueError" in json.loads(JsonFormatter().format(record))["exception"]
    assert "QUINCY" not in TextFormatter().format(record) and "ValueError" in TextFormatter().format(record)


# --- readiness ---------------------------------------------------------------------------------------


def test_readyz_reports_audit_registry_and_sources(gateway):
    with gateway.session() as session:
        ready = session.get(gateway.base + "/readyz", timeout=10)
        alive = session.get(gateway.base + "/healthz", timeout=10)
    assert ready.status_code == 200 and alive.status_code == 200
    assert ready.text.splitlines()[0] == "ready"
    assert "audit: ok" in ready.text and "registry: version" in ready.text
    assert "source TECS: ok" in ready.text and "source EID: ok" in ready.text


class _Ping:
    def __init__(self, name: str, up: bool):
        from leis_gateway.domain import SourceSystem

        self.system = SourceSystem(name)
        self.up = up
        self.calls = 0

    def ping(self):
        self.calls += 1
        if not self.up:
            raise ConnectionError("down")
        return True


class _Hub:
    def __init__(self, *adapters):
        self.adapters = adapters


class _Audit:
    def __init__(self, ok=True):
        self.ok = ok

    def ready(self):
        return self.ok


def test_readiness_needs_audit_registry_and_one_source_and_caches_the_pings(demo_home):
    from leis_gateway.federation import Federation
    from leis_gateway.policy.agreements import AgreementRegistry

    federation = Federation(4)
    now = [100.0]
    try:
        tecs, eid = _Ping("TECS", True), _Ping("EID", False)
        registry = AgreementRegistry(Settings().registry_path)
        readiness = Readiness(audit=_Audit(), registry=registry, federation=federation, hub=_Hub(tecs, eid),
                              clock=lambda: now[0])
        report = readiness.check()
        assert report.ready and "source EID: not answering" in report.lines  # one source down: still ready
        readiness.check()
        assert tecs.calls == 1, "pings are cached for a second"
        now[0] += 1.5
        tecs.up = False
        report = readiness.check()
        assert tecs.calls == 2 and not report.ready  # no source answers: not ready
        assert report.status.startswith("503")
        tecs.up = True
        now[0] += 1.5
        assert not Readiness(audit=_Audit(False), registry=registry, federation=federation, hub=_Hub(tecs)).check().ready
        broken = demo_home / "broken-registry.json"
        broken.write_text("{not json")
        assert not Readiness(audit=_Audit(), registry=AgreementRegistry(broken), federation=federation,
                             hub=_Hub(tecs)).check().ready
    finally:
        federation.close()


# --- configuration ---------------------------------------------------------------------------------


def test_a_config_file_is_overridden_by_the_environment(tmp_path):
    config = tmp_path / "leis.toml"
    config.write_text('home = "state"\nport = 9443\nlog_format = "json"\nworkers = 4\n'
                      'trusted_proxies = ["10.0.0.0/8", "192.168.1.1"]\nrequire_signature = false\n'
                      'default_timeout_seconds = 3\n')
    settings = Settings.load(config, {})
    assert settings.home == tmp_path / "state"  # relative to the file
    assert (settings.port, settings.log_format, settings.workers) == (9443, "json", 4)
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.1")
    assert settings.require_signature is False and settings.default_timeout_seconds == 3.0
    over = Settings.load(None, {"LEIS_CONFIG": str(config), "LEIS_PORT": "9555", "LEIS_REQUIRE_SIGNATURE": "1"})
    assert over.port == 9555 and over.require_signature is True and over.workers == 4
    assert Settings.load(None, {}) == Settings.from_env({})


def test_a_bad_config_file_names_every_problem(tmp_path):
    config = tmp_path / "leis.toml"
    config.write_text('prot = 1\nport = "x"\nworkers = 2\n')
    with pytest.raises(ConfigError) as raised:
        Settings.load(config, {})
    assert "unknown setting 'prot'" in str(raised.value) and "port: expected an integer" in str(raised.value)
    config.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(config, {})
    with pytest.raises(ConfigError, match="cannot be read"):
        Settings.load(tmp_path / "absent.toml", {})


def _config_check(capsys, monkeypatch, *argv: str) -> tuple[int, str]:
    for name in ("LEIS_CONFIG", "LEIS_HOME", "LEIS_PORT", "LEIS_AUDIT_URL", "LEIS_PUBLIC_URL", "LEIS_CRL",
                 "LEIS_REGISTRY", "LEIS_METRICS_PORT", "LEIS_INTERNAL_PORT"):
        monkeypatch.delenv(name, raising=False)
    args = build_parser().parse_args(list(argv))
    code = args.func(args)
    return code, capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_check_passes_a_good_configuration_and_prints_it_without_secrets(demo_home, tmp_path, capsys,
                                                                               monkeypatch):
    config = tmp_path / "good.toml"
    config.write_text(f'home = "{demo_home}"\nport = {_free_port()}\n'
                      f'public_url = "https://leis.example.gov/lexs/sr/3.1"\n'
                      f'prime_hub_url = "https://hub:s3cr3t-pw@hub.example.gov/"\n'
                      f'prime_hub_systems = ["OBIM"]\n')
    code, out = _config_check(capsys, monkeypatch, "config", "check", "--config", str(config))
    assert code == 0, out
    assert "configuration ok" in out and "PROBLEM" not in out
    assert "s3cr3t-pw" not in out and "hub:***@hub.example.gov" in out
    assert re.search(r"public_url\s+https://leis.example.gov/lexs/sr/3.1", out)
    assert "ok       registry:" in out and "ok       PKI:" in out


def test_config_check_reports_each_problem_plainly(demo_home, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty-home"
    empty.mkdir()
    registry = tmp_path / "registry.json"
    registry.write_text('{"version": "x", "agreements": [{"id": 1}]}')
    crl = tmp_path / "bad.crl"
    crl.write_bytes(b"not a crl")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        config = tmp_path / "bad.toml"
        config.write_text(f'home = "{empty}"\nport = {port}\nregistry_path = "{registry}"\ncrl_path = "{crl}"\n'
                          f'public_url = "http//nowhere"\naudit_url = "postgresql+psycopg://u:pw@127.0.0.1:1/x"\n')
        code, out = _config_check(capsys, monkeypatch, "config", "check", "--config", str(config))
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM")]
    joined = "\n".join(problems)
    assert "PKI files missing" in joined
    assert "source databases missing" in joined
    assert f"agreements registry {registry}" in joined
    assert "CRL" in joined and "not a PEM or DER" in joined
    assert "public_url 'http//nowhere'" in joined
    assert "audit database" in joined and "unreachable" in joined and ":pw@" not in out
    assert f"127.0.0.1:{port} is in use" in joined
    assert len(problems) == 7, joined


def test_config_check_refuses_an_unreadable_config_file(tmp_path, capsys, monkeypatch):
    code, out = _config_check(capsys, monkeypatch, "--config", str(tmp_path / "absent.toml"), "config", "check")
    assert code == 1 and "PROBLEM" in out and "cannot be read" in out


def test_setup_logging_writes_json_lines_and_leaves_a_configured_root_alone():
    from leis_gateway.observability.logs import setup_logging

    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        setup_logging("json", "INFO", stream=io.StringIO())  # pytest's capture handlers are there: no change
        assert root.handlers == saved_handlers
        for handler in saved_handlers:
            root.removeHandler(handler)
        setup_logging("json", "INFO", stream=stream)
        logging.getLogger("leis_gateway.test").info("hello %s", "ops")
        entry = json.loads(stream.getvalue().splitlines()[-1])
        assert entry["message"] == "hello ops" and entry["logger"] == "leis_gateway.test"
        assert entry["level"] == "INFO" and entry["correlation_id"] is None
        with pytest.raises(ValueError):
            setup_logging("yaml", force=True)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
