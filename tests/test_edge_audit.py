"""The edge's audit order (guard/edge.py), through the real TLS server.

The signature is verified first (it touches no data); then the inbound row and the replay key are
one audit write; the answer's row is the second. A message refused before that write (no or a bad
signature, refused by the guard) still has its inbound row, written just before its answer's; a
replay's is written with its key. Every message that arrives is audited before any source is asked
and before any answer; an audit write that fails refuses the request.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable

import pytest
import requests
from lxml import etree

from leis_gateway.audit import AuditFilter, AuditUnavailable
from leis_gateway.domain import QueryField
from leis_gateway.lexs import requests as lexs_requests
from support import Answer, RunningGateway, search, unsigned_part

S1 = ((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12"))


def _envelope() -> bytes:
    return lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", search(*S1)))


def _send(gateway: RunningGateway, body: bytes, correlation_id: str, *, agreement: str = "ndex",
          content_type: str = "text/xml; charset=utf-8") -> requests.Response:
    with gateway.session(agreement) as session:
        return session.post(gateway.url, data=body, timeout=30,
                            headers={"Content-Type": content_type, "X-Correlation-ID": correlation_id})


def _post(gateway: RunningGateway, body: bytes, correlation_id: str, **options: str) -> Answer:
    return Answer.of(_send(gateway, body, correlation_id, **options))


def _rows(gateway: RunningGateway, correlation_id: str) -> list[tuple[str, str | None]]:
    """(direction, result code) of the exchange's rows, in chain order."""
    rows = gateway.gateway.audit.search(AuditFilter(correlation_id=correlation_id))
    return [(r.direction, r.result_code) for r in rows]


class _Recording:
    """The audit log as the edge sees it, each write recorded as (method, directions of its rows)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes: list[tuple[str, tuple[str, ...]]] = []
        self.fail: Callable[[str], bool] = lambda method: False

    def _write(self, method: str, directions: tuple[str, ...], call: Callable[[], Any]) -> Any:
        self.writes.append((method, directions))
        if self.fail(method):
            raise AuditUnavailable("refused by the test")
        return call()

    def record(self, entry, raw, disclosures=(), *, durable=True, inbound=None):
        directions = (() if inbound is None else (str(inbound[0].direction),)) + (str(entry.direction),)
        return self._write("record", directions, lambda: self.real.record(
            entry, raw, disclosures, durable=durable, inbound=inbound))

    def record_inbound(self, entry, raw, replay_key, expires):
        return self._write("record_inbound", (str(entry.direction),),
                           lambda: self.real.record_inbound(entry, raw, replay_key, expires))

    def remember_once(self, key, expires):
        return self._write("remember_once", (), lambda: self.real.remember_once(key, expires))


@pytest.fixture
def audit(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> _Recording:
    recording = _Recording(gateway.gateway.audit)
    monkeypatch.setattr(gateway.gateway.wsgi.hooks, "audit", recording)
    return recording


class _SourcesAsked:
    """For every source search of the exchange `correlation_id`: its audit rows at that moment."""

    def __init__(self) -> None:
        self.correlation_id = ""
        self.seen: list[list[tuple[str, str | None]]] = []


@pytest.fixture
def sources_asked(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> _SourcesAsked:
    asked = _SourcesAsked()
    for adapter in gateway.gateway.service.hub.adapters:
        def spied(*args, _search=adapter.search, **kwargs):
            asked.seen.append(_rows(gateway, asked.correlation_id))
            return _search(*args, **kwargs)
        monkeypatch.setattr(adapter, "search", spied)
    return asked


def test_a_served_request_is_two_audit_writes_and_audited_before_any_source_is_asked(gateway, audit, sources_asked):
    correlation_id = sources_asked.correlation_id = uuid.uuid4().hex
    answer = _post(gateway, gateway.signed(_envelope()), correlation_id)
    assert answer.result_code == "Success" and answer.persons()
    assert audit.writes == [("record_inbound", ("inbound",)), ("record", ("outbound",))]
    assert sources_asked.seen and all(rows == [("inbound", None)] for rows in sources_asked.seen)
    assert _rows(gateway, correlation_id) == [("inbound", None), ("outbound", "Success")]


@pytest.mark.parametrize("case", ["no signature", "bad signature"])
def test_a_request_whose_signature_fails_has_its_inbound_row_written_before_the_answers(gateway, audit, case):
    body = _envelope()
    if case == "bad signature":
        root = etree.fromstring(gateway.signed(body))
        root.find(".//{*}DigestQueryField//{*}PersonSurName").text = "ROE"
        body = etree.tostring(root)
    correlation_id = uuid.uuid4().hex
    answer = _post(gateway, body, correlation_id)
    cause = {"no signature": "NoSignature", "bad signature": "BadSignature"}[case]
    assert answer.fault_cause == cause
    assert audit.writes == [("record", ("inbound", "outbound"))]  # one write: the arrival, then the refusal
    assert _rows(gateway, correlation_id) == [("inbound", None), ("outbound", f"Fault:{cause}")]


def test_a_replay_has_its_inbound_row_written_with_its_refused_key(gateway, audit):
    signed = gateway.signed(_envelope())
    first, again = uuid.uuid4().hex, uuid.uuid4().hex
    assert _post(gateway, signed, first).result_code == "Success"
    audit.writes.clear()
    assert _post(gateway, signed, again).fault_cause == "Replay"
    assert audit.writes == [("record_inbound", ("inbound",)), ("record", ("outbound",))]
    assert _rows(gateway, again) == [("inbound", None), ("outbound", "Fault:Replay")]


@pytest.mark.parametrize("case", ["unknown agreement", "wrong content type"])
def test_a_request_refused_before_admit_has_its_inbound_row(gateway, audit, case):
    correlation_id = uuid.uuid4().hex
    if case == "unknown agreement":
        answer = _post(gateway, gateway.signed(_envelope(), "unregistered"), correlation_id, agreement="unregistered")
        cause = "UnknownAgreement"
    else:
        answer = _post(gateway, gateway.signed(_envelope()), correlation_id, content_type="text/plain")
        cause = answer.fault_cause
    assert answer.fault_cause == cause and cause
    assert audit.writes == [("record", ("inbound", "outbound"))]
    assert _rows(gateway, correlation_id) == [("inbound", None), ("outbound", f"Fault:{cause}")]


def test_a_failing_audit_write_in_admit_refuses_the_request_before_any_source_is_asked(gateway, audit, sources_asked):
    correlation_id = sources_asked.correlation_id = uuid.uuid4().hex
    audit.fail = lambda method: method == "record_inbound"
    answer = _post(gateway, gateway.signed(_envelope()), correlation_id)
    assert answer.fault_cause == "AuditUnavailable"
    assert b"DOE" not in unsigned_part(etree.tostring(answer.root))
    assert sources_asked.seen == []
    # the inbound row could not be written; the refusal itself is (not the inbound row again)
    assert audit.writes == [("record_inbound", ("inbound",)), ("record", ("outbound",))]
    assert _rows(gateway, correlation_id) == [("outbound", "Fault:AuditUnavailable")]


def test_without_signatures_the_inbound_row_is_written_alone_before_any_source_is_asked(demo_home, monkeypatch):
    with RunningGateway.start(demo_home, require_signature=False) as gateway:
        recording = _Recording(gateway.gateway.audit)
        monkeypatch.setattr(gateway.gateway.wsgi.hooks, "audit", recording)
        correlation_id = uuid.uuid4().hex
        answer = _post(gateway, _envelope(), correlation_id)
        assert answer.result_code == "Success"
        assert recording.writes == [("record", ("inbound",)), ("record", ("outbound",))]
        assert _rows(gateway, correlation_id) == [("inbound", None), ("outbound", "Success")]


@pytest.mark.parametrize("failing", ["the signature check", "the answer's signing"])
def test_when_no_answer_can_be_made_what_arrived_is_still_audited(gateway, audit, monkeypatch, failing):
    def broken(*args, **kwargs):
        raise RuntimeError("broken by the test")

    if failing == "the signature check":
        monkeypatch.setattr("leis_gateway.guard.edge.verify_agreement_signature", broken)
        body = gateway.signed(_envelope())
    else:
        monkeypatch.setattr(gateway.gateway.wsgi.hooks, "_sign", broken)
        body = _envelope()  # refused (no signature): its inbound row waits for the answer's
    correlation_id = uuid.uuid4().hex
    response = _send(gateway, body, correlation_id)
    assert response.status_code == 500 and b"DOE" not in response.content
    assert audit.writes == [("record", ("inbound",))]
    assert _rows(gateway, correlation_id) == [("inbound", None)]
