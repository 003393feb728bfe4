"""A zeep client, loading the WSDL from the endpoint and signing like a member system, calls every operation."""
from __future__ import annotations

import pytest
from lxml import etree

from leis_gateway.client import ClientIdentity, LexsSoapClient
from leis_gateway.domain import QueryField
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.security.pki import load_certificate
from leis_gateway.security.wssec import verify_envelope
from support import NS, Answer, requester, search


@pytest.fixture(scope="module")
def zeep_client(gateway):
    pki = gateway.home / "pki"
    client = LexsSoapClient(
        gateway.url + "?wsdl",
        ClientIdentity(pki / "agencies" / "ndex.crt", pki / "agencies" / "ndex.key", pki / "ca.crt"),
    )
    yield client
    client.close()


def test_zeep_finds_s1_and_fetches_s4s_photo(zeep_client, gateway, official_schema):
    found = Answer.of(zeep_client.call("doStructuredSearch", search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12"))))
    assert found.result_code == "Success"
    assert {"given": "JOHN", "middle": "QUINCY", "surname": "DOE", "birth_date": "1975-04-12"} in found.persons()
    garcia = Answer.of(zeep_client.call("doStructuredSearch", search((QueryField.A_NUMBER, "A099000004"))))
    uri = garcia.message.findtext(".//lexs:AttachmentURI", namespaces=NS)
    photo = Answer.of(zeep_client.call("getAttachment", lexs_requests.attachment_request(requester(), uri)))
    assert photo.result_code == "Success"
    assert photo.message.findtext(".//nc:BinaryBase64Object", namespaces=NS)
    if official_schema is not None:
        for answer in (found, garcia, photo):
            assert official_schema.validate(answer.message), official_schema.error_log


def test_zeep_calls_every_operation_and_every_answer_is_signed_by_the_gateway(zeep_client, gateway):
    server_cert = load_certificate(gateway.home / "pki" / "server.crt")
    messages = {
        "doStructuredSearch": search((QueryField.SSN, "900-12-3456")),
        "doTextSearch": lexs_requests.text_search_request(requester(), "doe"),
        "getDataItem": lexs_requests.data_item_request(requester(), "no-such-item"),
        "getAttachment": lexs_requests.attachment_request(requester(), "urn:leis:attachment:nothing"),
        "getCapabilities": lexs_requests.service_provider_request(requester()),
        "getDataOwners": lexs_requests.service_provider_request(requester()),
        "getAvailability": lexs_requests.service_provider_request(requester()),
    }
    assert set(messages) == zeep_client.operations
    for operation, message in messages.items():
        response = zeep_client.call(operation, message)
        assert response.status_code == 200, operation
        verified = verify_envelope(response.content, expected_certs=[server_cert])
        wrapper = verified.body[0]
        assert etree.QName(wrapper).namespace == "http://usdoj.gov/leisp/lexs/searchretrieve/3.1"
        assert wrapper[0].findtext("lexs:ResponseMetadata/lexs:ResultCode", namespaces=NS) in ("Success", "Error")
