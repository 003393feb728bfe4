"""The hostile corpus (tests/hostile) through the real TLS server.

Each input gets a signed SOAP fault with the expected stable cause (or a LEXS Error) within a
second, never an HTML page or a traceback, never anything of /etc/passwd and never the input
itself; the fault strings are the fixed texts; nothing of the input reaches the logs (DEBUG);
and the server still answers a good request afterwards.
"""
from __future__ import annotations

import logging
import time

import pytest
from lxml import etree

import hostile
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.security.pki import load_certificate
from leis_gateway.security.wssec import verify_envelope
from leis_gateway.soap import faults
from support import NS, Answer, requester

FIXED_REASONS = {value.reason for value in vars(faults).values() if isinstance(value, faults.SoapFault)}
TIME_LIMIT_SECONDS = 1.0


def _fixed_reasons() -> set[str]:
    from leis_gateway.guard.edge import SIGNATURE_FAULTS

    return FIXED_REASONS | {fault.reason for fault in SIGNATURE_FAULTS.values()}


def _send(gateway, session, case: hostile.Case):
    headers = dict(case.headers)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    data = iter([case.data[:100], case.data[100:]]) if case.chunked else case.data
    request = session.prepare_request(__import__("requests").Request("POST", gateway.url, data=data, headers=headers))
    if case.content_type is None:
        request.headers.pop("Content-Type", None)
    started = time.perf_counter()
    response = session.send(request, timeout=10)
    return response, time.perf_counter() - started


def _outcome(response) -> tuple[str, etree._Element]:
    answer = Answer.of(response)
    if answer.fault_cause is not None:
        return answer.fault_cause, answer.root
    return f"LEXS:{answer.result_code}", answer.root


@pytest.fixture(scope="module")
def corpus(gateway) -> list[hostile.Case]:
    return hostile.build(lambda data: gateway.signed(data, "ndex"))


def test_the_corpus_is_large_enough_and_carries_the_canary(corpus):
    assert len(corpus) >= 40
    for case in corpus:
        encodings = ("utf-8", "utf-16-le", "utf-32-le", "utf-16-be")
        carried = any(hostile.CANARY.encode(e) in case.data for e in encodings) or any(
            hostile.CANARY in v for v in case.headers.values()) or hostile.CANARY in (case.content_type or "")
        assert carried, case.name


def test_every_hostile_input_gets_a_signed_fault_in_time_and_nothing_leaks(gateway, corpus, caplog):
    server_cert = load_certificate(gateway.home / "pki" / "server.crt")
    reasons = _fixed_reasons()
    problems: list[str] = []
    with caplog.at_level(logging.DEBUG), gateway.session("ndex") as session:
        for case in corpus:
            response, elapsed = _send(gateway, session, case)
            text = response.content.decode("utf-8", "replace")
            if elapsed > TIME_LIMIT_SECONDS:
                problems.append(f"{case.name}: answered in {elapsed:.2f}s")
            if not response.headers.get("Content-Type", "").startswith("text/xml"):
                problems.append(f"{case.name}: content type {response.headers.get('Content-Type')}")
                continue
            if "Traceback" in text or "<html" in text.lower():
                problems.append(f"{case.name}: traceback or html")
            if hostile.CANARY in text or any(marker in text for marker in hostile.PASSWD_MARKERS):
                problems.append(f"{case.name}: the answer echoes the input")
            try:
                outcome, root = _outcome(response)
            except (etree.XMLSyntaxError, IndexError) as exc:
                problems.append(f"{case.name}: unparsable answer ({type(exc).__name__})")
                continue
            if outcome not in case.expect:
                problems.append(f"{case.name}: {outcome}, expected one of {sorted(case.expect)}")
            if not outcome.startswith("LEXS:"):
                reason = root.findtext(".//soap:Fault/faultstring", namespaces=NS)
                if reason not in reasons:
                    problems.append(f"{case.name}: faultstring is not a fixed text")
                if response.status_code not in (405, 413, 500, 503):
                    problems.append(f"{case.name}: HTTP {response.status_code} for a fault")
            try:
                verify_envelope(response.content, expected_certs=[server_cert])
            except Exception as exc:  # noqa: BLE001 - reported below
                problems.append(f"{case.name}: answer not signed by the gateway ({exc})")
    assert not problems, "\n".join(problems)
    logged = caplog.text
    assert hostile.CANARY not in logged
    assert not any(marker in logged for marker in hostile.PASSWD_MARKERS)
    assert "Traceback" not in logged

    # and the server still serves
    after = gateway.call("getAvailability", lexs_requests.service_provider_request(requester()))
    assert after.result_code == "Success"
