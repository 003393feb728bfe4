"""wsdl/lexs-sr.wsdl loads in zeep, names the real wrapper types, and zeep can send a LEXS message."""
from __future__ import annotations

import pytest
from lxml import etree

from leis_gateway.lexs.namespaces import OPERATIONS, SR, SR_WS
from leis_gateway.lexs.schema import validate_message
from leis_gateway.lexs.testing import REPO, sample

zeep = pytest.importorskip("zeep")
from zeep import xsd  # noqa: E402
from zeep.plugins import Plugin  # noqa: E402

WSDL = REPO / "wsdl" / "lexs-sr.wsdl"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


class LexsBody(Plugin):
    """Put a ready-made LEXS message into the (empty) SR wrapper zeep rendered.

    zeep does not implement substitution groups (lexs:ORI for lexs:AgencyIDAbstract, every
    Digest entity), so it can neither build nor parse LEXS messages itself. Egress plugins run
    before WS-Security, so a signature still covers the final body.
    """

    def __init__(self, message: etree._Element) -> None:
        self.message = message

    def egress(self, envelope, http_headers, operation, binding_options):
        envelope.find(f"{{{SOAP}}}Body")[0].append(self.message)
        return envelope, http_headers


@pytest.fixture(scope="module")
def client():
    return zeep.Client(str(WSDL))


def test_wsdl_has_every_operation(client):
    service = client.wsdl.services["LEXSSearchRetrieveService"]
    port = service.ports["LEXSSearchRetrievePort"]
    assert port.binding_options["address"] == "https://127.0.0.1:8443/lexs/sr/3.1"
    assert port.binding.port_type.name.localname == "LEXSSearchRetrievePortType"
    assert set(port.binding._operations) == set(OPERATIONS)
    for name, op in OPERATIONS.items():
        assert getattr(client.service, name)
        operation = port.binding._operations[name]
        assert operation.soapaction == f"{SR_WS}/{name}"
        assert operation.input.body.qname == op.request_wrapper_qname
        assert operation.output.body.qname == op.response_wrapper_qname


def test_message_parts_are_real_types(client):
    wrapper = client.get_element(f"{{{SR}}}doStructuredSearchRequest")
    (name, child), = wrapper.type.elements
    assert name == "StructuredSearchRequestMessage"
    assert child.type.qname.localname == "StructuredSearchRequestMessageType"


def test_zeep_sends_a_lexs_message_through_a_plugin():
    message = sample("structured-name-dob.xml")
    client = zeep.Client(str(WSDL), plugins=[LexsBody(message)])
    envelope, headers = client.service._binding._create(
        "doStructuredSearch", (), {"StructuredSearchRequestMessage": xsd.SkipValue}, client=client)
    assert headers["SOAPAction"] == f'"{SR_WS}/doStructuredSearch"'
    wrapper = envelope.find(f"{{{SOAP}}}Body")[0]
    assert wrapper.tag == f"{{{SR}}}doStructuredSearchRequest"
    assert validate_message(etree.fromstring(etree.tostring(wrapper))) == []
