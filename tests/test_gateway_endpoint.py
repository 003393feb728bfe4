"""The LEXS SR endpoint through the real TLS server: WSDL, every operation, the demo subjects."""
from __future__ import annotations

import base64
import io
import ssl

import pytest
import requests
from lxml import etree

from leis_gateway.domain import Purpose, QueryField, QueryMatch
from leis_gateway.lexs import requests as lexs_requests
from support import NS, Answer, requester, search


def assert_officially_valid(official_schema, message: etree._Element) -> None:
    if official_schema is None:
        pytest.skip("official LEXS schema absent: official validation skipped")
    assert official_schema.validate(message), [str(e) for e in official_schema.error_log][:5]


# --- the contract: WSDL ---------------------------------------------------------------------


def test_wsdl_is_served_with_the_public_address(gateway):
    with gateway.session() as session:
        wsdl = session.get(gateway.url + "?wsdl", timeout=10)
    assert wsdl.status_code == 200
    root = etree.fromstring(wsdl.content)
    addresses = root.findall(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert [a.get("location") for a in addresses] == [gateway.url] * len(addresses) and addresses
    operations = {op.get("name") for op in root.iterfind(".//{http://schemas.xmlsoap.org/wsdl/}portType/{http://schemas.xmlsoap.org/wsdl/}operation")}
    assert operations == {"doStructuredSearch", "doTextSearch", "getDataItem", "getAttachment",
                          "getCapabilities", "getDataOwners", "getAvailability"}


def test_zeep_loads_the_served_wsdl_and_sees_every_operation(gateway):
    import zeep
    from zeep.transports import Transport

    with gateway.session() as session:
        client = zeep.Client(gateway.url + "?wsdl", transport=Transport(session=session))
        names = set(client.service._operations)
    assert {"doStructuredSearch", "doTextSearch", "getDataItem", "getAttachment",
            "getCapabilities", "getDataOwners", "getAvailability"} <= names


# --- identity at the TLS layer -----------------------------------------------------------------


def test_a_client_without_certificate_never_gets_past_the_handshake(gateway):
    body = lexs_requests.soap_envelope(
        lexs_requests.wrap_request("getCapabilities", lexs_requests.service_provider_request(requester()))
    )
    with pytest.raises(requests.exceptions.SSLError):
        gateway.post(body, agreement=None)


def test_a_certificate_in_no_agreement_is_refused_with_a_fault(gateway):
    answer = gateway.call("getCapabilities", lexs_requests.service_provider_request(requester()), agreement="unregistered")
    assert answer.status == 500
    assert answer.fault_cause == "UnknownAgreement"


# --- the demo subjects ---------------------------------------------------------------------------


def test_s1_is_found_by_name_and_birth_date_with_every_released_element(gateway, official_schema):
    answer = gateway.call("doStructuredSearch", search((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12")))
    assert answer.result_code == "Success", answer.advisories
    assert_officially_valid(official_schema, answer.message)
    persons = answer.persons()
    assert {"given": "JOHN", "middle": "QUINCY", "surname": "DOE", "birth_date": "1975-04-12"} in persons
    text = etree.tostring(answer.message, encoding="unicode")
    for expected in ("BRO", "BLK", "70", "180", "85701", "802-872-6020"):
        assert expected in text
    city = answer.message.findtext(".//nc:LocationCityName", namespaces=NS)
    assert city and city.upper() == "TUCSON"


def test_s1_is_found_by_ssn_and_by_address(gateway):
    by_ssn = gateway.call("doStructuredSearch", search((QueryField.SSN, "900-12-3456")))
    assert [p["surname"] for p in by_ssn.persons()] == ["DOE"]
    by_address = gateway.call("doStructuredSearch", search((QueryField.FULL_ADDRESS, "100 Main St, Tucson AZ 85701")))
    assert "DOE" in [p["surname"] for p in by_address.persons()]


def test_never_released_subjects_stay_inside(gateway):
    for criteria in (
        ((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1980-01-01")),  # S2: open record
        ((QueryField.SURNAME, "ROE"), (QueryField.BIRTH_DATE, "1979-07-07")),  # S3: a victim
        ((QueryField.SURNAME, "SLATE"), (QueryField.BIRTH_DATE, "1969-03-03")),  # S6: undercover
    ):
        answer = gateway.call("doStructuredSearch", search(*criteria))
        assert answer.result_code == "Success"
        assert answer.packages == []


def test_s4_photo_comes_back_through_get_attachment(gateway, official_schema):
    answer = gateway.call("doStructuredSearch", search((QueryField.A_NUMBER, "A099000004")))
    assert [p["surname"] for p in answer.persons()] == ["GARCIA"]
    uris = [u.text for u in answer.message.iterfind(".//lexs:AttachmentLink/lexs:AttachmentURI", NS)]
    assert len(uris) == 1
    assert answer.message.find(".//lexsdigest:EntityPersonFacialImageAssociation", NS) is not None
    attachment = gateway.call("getAttachment", lexs_requests.attachment_request(requester(), uris[0]))
    assert attachment.result_code == "Success"
    assert_officially_valid(official_schema, attachment.message)
    binary = attachment.message.findtext(".//nc:BinaryBase64Object", namespaces=NS)
    data = base64.b64decode(binary)
    assert data[:3] == b"\xff\xd8\xff"
    from PIL import Image

    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_an_attachment_uri_is_useless_to_another_agreement(gateway):
    answer = gateway.call("doStructuredSearch", search((QueryField.A_NUMBER, "A099000004")))
    uri = answer.message.findtext(".//lexs:AttachmentLink/lexs:AttachmentURI", namespaces=NS)
    stolen = gateway.call("getAttachment", lexs_requests.attachment_request(requester(), uri), agreement="azlink")
    assert stolen.result_code == "Error"
    assert stolen.message.find(".//nc:BinaryBase64Object", NS) is None


def test_s5_goes_to_two_way_agreements_but_never_to_nlets(gateway):
    query = search((QueryField.SURNAME, "KARIMI"), (QueryField.BIRTH_DATE, "1990-01-15"))
    assert [p["surname"] for p in gateway.call("doStructuredSearch", query, agreement="ndex").persons()] == ["KARIMI"]
    assert gateway.call("doStructuredSearch", query, agreement="nlets").persons() == []


def test_s7_is_released_without_any_narrative(gateway):
    answer = gateway.call("doStructuredSearch", search((QueryField.SURNAME, "CHEN"), (QueryField.BIRTH_DATE, "1992-11-11")))
    assert [p["surname"] for p in answer.persons()] == ["CHEN"]
    assert b"CANARY" not in etree.tostring(answer.root)


def test_get_data_item_returns_the_released_record(gateway, official_schema):
    answer = gateway.call("doStructuredSearch", search((QueryField.SSN, "900123456")))
    item_id = answer.message.findtext(".//lexs:PackageMetadata/lexs:DataItemID", namespaces=NS)
    item = gateway.call("getDataItem", lexs_requests.data_item_request(requester(), item_id))
    assert item.result_code == "Success", item.advisories
    assert_officially_valid(official_schema, item.message)
    assert item.persons()[0]["surname"] == "DOE"


# --- the other operations ------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["getCapabilities", "getDataOwners", "getAvailability"])
def test_service_provider_operations_answer_validly(gateway, official_schema, operation):
    answer = gateway.call(operation, lexs_requests.service_provider_request(requester()))
    assert answer.status == 200
    assert answer.result_code == "Success"
    assert_officially_valid(official_schema, answer.message)


def test_capabilities_say_text_search_is_not_supported_and_text_search_says_so(gateway):
    capabilities = gateway.call("getCapabilities", lexs_requests.service_provider_request(requester()))
    assert capabilities.message.find(".//lexs:TextSearch", NS) is None
    assert capabilities.message.find(".//lexs:StructuredSearch", NS) is not None
    text = gateway.call("doTextSearch", lexs_requests.text_search_request(requester(), "doe"))
    assert text.result_code == "Error"
    assert text.advisories[0][0] == "UnstructuredSearchNotSupported"


def test_data_owners_name_ice_and_cbp_systems(gateway):
    answer = gateway.call("getDataOwners", lexs_requests.service_provider_request(requester()))
    text = etree.tostring(answer.message, encoding="unicode")
    for owner in ("TECS", "EID"):
        assert owner in text


def test_the_official_schemas_are_there_to_judge_the_gateway():
    from support import OFFICIAL_LEXS

    if not OFFICIAL_LEXS.exists():
        pytest.skip(f"official LEXS schemas absent at {OFFICIAL_LEXS}: official validation skipped")
    assert (OFFICIAL_LEXS / "xsd" / "lexs" / "3.1" / "lexs.xsd").is_file()


# --- the SOAP layer's short path for guarded requests: what spyne itself would answer ------------


def _soap_call(application, handle, body: bytes):
    """Call `handle(environ, start_response)` as the guard does: ((status, headers), body, answer envelope),
    or what it raises."""
    from leis_gateway.config import SR_PATH
    from leis_gateway.guard.middleware import ENVIRON_EXCHANGE, Exchange
    from leis_gateway.guard.xmlsafety import parse_envelope

    exchange = Exchange("test", 0.0, body, envelope=parse_envelope(body))
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": SR_PATH, "CONTENT_TYPE": "text/xml; charset=utf-8",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "https",
               "SERVER_NAME": "x", "SERVER_PORT": "8443", "HTTP_HOST": "x:8443", ENVIRON_EXCHANGE: exchange}
    started = []
    try:
        out = b"".join(handle(environ, lambda status, headers, exc_info=None: started.append((status, headers))))
    except Exception as exc:
        return "raises", type(exc)
    return started, out, None if exchange.response is None else etree.tostring(exchange.response)


def _operation_body(operation: str, message: etree._Element, before: bytes = b"") -> bytes:
    wrapper = lexs_requests.wrap_request(operation, message)
    body = lexs_requests.soap_envelope(wrapper)
    return body.replace(b"<soap:Body>", b"<soap:Body>" + before) if before else body


@pytest.mark.parametrize("outcome", ["answer", "failure"])
@pytest.mark.parametrize("before", [b"", b"<!-- a comment first -->"])
def test_the_guarded_path_answers_as_spyne_itself_does(outcome, before):
    from datetime import UTC, datetime

    from spyne.server.wsgi import WsgiApplication

    from leis_gateway.domain import ResultCode, SearchOutcome
    from leis_gateway.lexs import build
    from leis_gateway.soap.application import GuardedWsgiApplication, soap_application

    def handler(operation, wrapper, exchange):
        if outcome == "failure":
            raise RuntimeError("the handler failed")
        answer = SearchOutcome(ResultCode.SUCCESS, (), matches_found=0, max_items_requested=5)
        return build.search_response(answer, None, sequence=7, now=datetime(2024, 1, 2, tzinfo=UTC))

    application = soap_application(handler)
    assert isinstance(application, GuardedWsgiApplication)
    body = _operation_body("doStructuredSearch", search((QueryField.SURNAME, "DOE")), before)
    generic = _soap_call(application, lambda environ, start: WsgiApplication.handle_rpc(application, environ, start), body)
    assert _soap_call(application, application, body) == generic


def test_a_guarded_context_is_the_context_spyne_makes():
    from spyne.server.wsgi import WsgiMethodContext

    from leis_gateway.soap.application import soap_application

    application = soap_application(lambda operation, wrapper, exchange: wrapper)
    environ = {"REQUEST_METHOD": "POST", "HTTP_HOST": "x", "HTTP_X_CORRELATION_ID": "c", "CONTENT_TYPE": "text/xml"}
    ours, spynes = application._context(environ), WsgiMethodContext(application, environ,
                                                                    application.app.out_protocol.mime_type)

    def state(ctx):
        return {key: type(value) if key in ("call_start", "transport", "inprot_ctx", "outprot_ctx", "protocol", "event")
                else value for key, value in vars(ctx).items()}

    assert state(ours) == state(spynes)
    assert {k: v for k, v in vars(ours.transport).items() if k != "parent"} == \
        {k: v for k, v in vars(spynes.transport).items() if k != "parent"}
    assert ours.transport.parent is ours and ours.inprot_ctx.parent is ours and ours.event.parent is ours
    assert ours.protocol is ours.inprot_ctx


def test_a_handler_that_gives_no_element_gets_a_server_fault():
    from leis_gateway.soap.application import soap_application

    application = soap_application(lambda operation, wrapper, exchange: None)
    started, out, answer = _soap_call(application, application,
                                      _operation_body("doStructuredSearch", search((QueryField.SURNAME, "DOE"))))
    assert started[0][0].startswith("500")
    assert b"faultcode" in answer and b"Server" in answer  # left on the exchange for the edge to sign
