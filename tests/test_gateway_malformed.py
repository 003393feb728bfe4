"""Malformed input gets a SOAP fault or a LEXS Error; the server keeps serving; logs stay clean."""
from __future__ import annotations

import logging

import pytest
from lxml import etree

from leis_gateway.domain import QueryField
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.lexs.namespaces import LEXS, SR
from support import NS, Answer, requester, search

CANARY = "ZZCANARYNAME"
ENVELOPE = '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{}</soap:Body></soap:Envelope>'


def _search_body(surname: str = CANARY) -> bytes:
    return lexs_requests.soap_envelope(
        lexs_requests.wrap_request("doStructuredSearch", search((QueryField.SURNAME, surname)))
    )


FAULT_CASES = {
    "not xml": (b"this is not xml " + CANARY.encode(), "NotXml"),
    "truncated": (_search_body()[:-40], "NotXml"),
    "not soap": (f"<person><name>{CANARY}</name></person>".encode(), "NotSoap"),
    "empty body": (b"", "EmptyMessage"),
    "empty soap body": (ENVELOPE.format("").encode(), "EmptyMessage"),
    "unknown operation": (ENVELOPE.format(f'<sr:doSomething xmlns:sr="{SR}"/>').encode(), "UnknownOperation"),
    "wrong namespace": (
        ENVELOPE.format(f'<x:doStructuredSearchRequest xmlns:x="urn:not-lexs"><n>{CANARY}</n></x:doStructuredSearchRequest>').encode(),
        "UnknownOperation",
    ),
    "dtd": (
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "{CANARY}">]>'.encode() + ENVELOPE.format("&a;").encode(),
        "DtdForbidden",
    ),
    "two bodies": (
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/><soap:Body/></soap:Envelope>',
        "BadBody",
    ),
    "soap 1.2": (
        b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body/></env:Envelope>',
        "VersionMismatch",
    ),
}


@pytest.mark.parametrize("case", sorted(FAULT_CASES))
def test_what_is_not_a_lexs_request_gets_a_soap_fault(gateway, case, caplog):
    body, cause = FAULT_CASES[case]
    with caplog.at_level(logging.DEBUG):
        response = gateway.post(body)
    answer = Answer.of(response)
    assert response.status_code in (400, 413, 500)
    assert response.headers["Content-Type"].startswith("text/xml")
    assert answer.fault_cause == cause
    assert CANARY not in caplog.text


def test_ten_megabytes_get_a_fault_and_the_server_keeps_serving(gateway):
    huge = ENVELOPE.format("<x>" + "A" * (10 * 1024 * 1024) + "</x>").encode()
    response = gateway.post(huge)
    assert response.status_code == 413
    assert Answer.of(response).fault_cause == "MessageTooLarge"
    follow_up = gateway.call("getAvailability", lexs_requests.service_provider_request(requester()))
    assert follow_up.result_code == "Success"


def test_a_schema_invalid_body_gets_an_invalid_request_naming_element_and_line(gateway, official_schema, caplog):
    message = search((QueryField.SURNAME, CANARY))
    # break the order: MaxItemMatches before RequestedData is not what the schema allows
    metadata = message.find(f"{{{LEXS}}}SearchRequestMetadata")
    metadata.insert(0, metadata.find(f"{{{LEXS}}}MaxItemMatches"))
    body = lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", message))
    body = etree.tostring(etree.fromstring(body), pretty_print=True)  # so that lines mean something
    with caplog.at_level(logging.DEBUG):
        answer = Answer.of(gateway.post(body, sign=True))
    assert answer.status == 200
    assert etree.QName(answer.root.find("soap:Body", NS)[0]).localname == "doSearchResponse"
    assert answer.result_code == "Error"
    [(category, text)] = answer.advisories
    assert category == "InvalidRequest"
    assert "MaxItemMatches" in text and "Line " in text
    assert CANARY not in text and CANARY not in caplog.text
    if official_schema is not None:
        assert official_schema.validate(answer.message), official_schema.error_log


def test_a_wrapper_with_two_messages_is_an_invalid_request(gateway):
    wrapper = lexs_requests.wrap_request("getCapabilities", lexs_requests.service_provider_request(requester()))
    wrapper.append(lexs_requests.service_provider_request(requester()))
    answer = Answer.of(gateway.post(lexs_requests.soap_envelope(wrapper), sign=True))
    assert answer.result_code == "Error"
    assert answer.advisories[0][0] == "InvalidRequest"


def test_queried_names_never_reach_the_logs(gateway, caplog):
    with caplog.at_level(logging.DEBUG):
        gateway.call("doStructuredSearch", search((QueryField.SURNAME, CANARY), (QueryField.BIRTH_DATE, "1975-04-12")))
        gateway.call("doStructuredSearch", search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12")))
    assert CANARY not in caplog.text
    assert "DOE" not in caplog.text and "1975-04-12" not in caplog.text


def test_an_invalid_value_is_named_by_element_and_line_but_never_echoed(gateway):
    message = search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12"))
    date = message.find(".//{http://niem.gov/niem/niem-core/2.0}Date")
    date.text = CANARY  # not a date: the schema refuses it, and the refusal must not quote it
    body = etree.tostring(etree.fromstring(lexs_requests.soap_envelope(
        lexs_requests.wrap_request("doStructuredSearch", message))), pretty_print=True)
    answer = Answer.of(gateway.post(body, sign=True))
    [(category, text)] = answer.advisories
    assert category == "InvalidRequest" and "nc:Date" in text and "Line " in text
    assert CANARY not in etree.tostring(answer.root, encoding="unicode")


def test_a_comment_before_the_message_is_no_obstacle(demo_home):
    from support import RunningGateway

    # only reachable unsigned: signed bodies refuse comments (exclusive c14n would hide them)
    with RunningGateway.start(demo_home, require_signature=False) as unsigned:
        wrapper = lexs_requests.wrap_request("getCapabilities", lexs_requests.service_provider_request(requester()))
        wrapper.insert(0, etree.Comment(" a legacy switch's comment "))
        answer = Answer.of(unsigned.post(lexs_requests.soap_envelope(wrapper)))
    assert answer.result_code == "Success"
