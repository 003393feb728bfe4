"""zeep clients (what members and our conformance scripts use) interoperate with `verify_envelope`."""
from __future__ import annotations

import pytest
import xmlsec
import zeep
from lxml import etree
from zeep.wsse import Compose
from zeep.wsse.signature import BinarySignature

from leis_gateway.security import pki
from leis_gateway.security.wssec import (
    RSA_SHA1, RSA_SHA256, ErrorCode, SignatureConfiguration, WsSecurityError, sign_envelope, verify_envelope)
from leis_gateway.security.zeep_support import TimestampedBinarySignature, zeep_wsse

TNS = "urn:example:ping"
WSDL = f"""<?xml version="1.0"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{TNS}" targetNamespace="{TNS}">
  <wsdl:types>
    <xs:schema targetNamespace="{TNS}" elementFormDefault="qualified">
      <xs:element name="Ping"><xs:complexType><xs:sequence>
        <xs:element name="Name" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
      <xs:element name="Pong" type="xs:string"/>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="PingIn"><wsdl:part name="body" element="tns:Ping"/></wsdl:message>
  <wsdl:message name="PingOut"><wsdl:part name="body" element="tns:Pong"/></wsdl:message>
  <wsdl:portType name="PingPort"><wsdl:operation name="ping">
    <wsdl:input message="tns:PingIn"/><wsdl:output message="tns:PingOut"/></wsdl:operation></wsdl:portType>
  <wsdl:binding name="PingBinding" type="tns:PingPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="ping"><soap:operation soapAction="ping"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="PingService"><wsdl:port name="PingPort" binding="tns:PingBinding">
    <soap:address location="https://127.0.0.1:8443/lexs/sr/3.1"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return pki.ensure_demo_pki(tmp_path_factory.mktemp("pki"), ["ndex", "nlets"])


@pytest.fixture(scope="module")
def wsdl(tmp_path_factory):
    path = tmp_path_factory.mktemp("wsdl") / "ping.wsdl"
    path.write_text(WSDL)
    return str(path)


def creds(demo, agency):
    files = demo.agency(agency)
    return pki.load_signing_credentials(files.key, files.certificate)


def client_message(wsdl, wsse) -> bytes:
    client = zeep.Client(wsdl, wsse=wsse)
    envelope = client.create_message(client.service, "ping", Name="JOHN QUINCY DOE")
    return etree.tostring(envelope)


def plain_envelope() -> etree._Element:
    return etree.fromstring(b'<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/">'
                            b'<soap-env:Body><p:Ping xmlns:p="urn:example:ping"><p:Name>X</p:Name></p:Ping>'
                            b"</soap-env:Body></soap-env:Envelope>")


def test_zeep_client_message_signed_with_zeep_wsse_is_accepted(demo, wsdl):
    files = demo.agency("ndex")
    data = client_message(wsdl, zeep_wsse(files.key, files.certificate))
    ndex = creds(demo, "ndex")
    result = verify_envelope(data, expected_certs=[ndex.certificate], config=SignatureConfiguration())
    assert result.signer_fingerprint == ndex.fingerprint
    assert result.signature_algorithm == RSA_SHA256
    assert result.body.find(f"{{{TNS}}}Ping/{{{TNS}}}Name").text == "JOHN QUINCY DOE"
    assert result.expires is not None


def test_zeep_wsse_applied_directly_is_accepted_and_tampering_is_not(demo):
    files = demo.agency("ndex")
    envelope, _headers = zeep_wsse(files.key, files.certificate).apply(plain_envelope(), {})
    data = etree.tostring(envelope)
    expected = [creds(demo, "ndex").certificate]
    verify_envelope(data, expected_certs=expected, config=SignatureConfiguration())
    with pytest.raises(WsSecurityError) as info:
        verify_envelope(data.replace(b">X<", b">Y<"), expected_certs=expected, config=SignatureConfiguration())
    assert info.value.code == ErrorCode.BAD_SIGNATURE


def test_zeep_default_sha1_signature_is_refused_unless_allowed(demo):
    """zeep's BinarySignature defaults to RSA-SHA1/SHA-1."""
    files = demo.agency("ndex")
    wsse = TimestampedBinarySignature(files.key, files.certificate, signature_method=xmlsec.constants.TransformRsaSha1,
                                      digest_method=xmlsec.constants.TransformSha1)
    envelope, _ = wsse.apply(plain_envelope(), {})
    data = etree.tostring(envelope)
    expected = [creds(demo, "ndex").certificate]
    with pytest.raises(WsSecurityError) as info:
        verify_envelope(data, expected_certs=expected, config=SignatureConfiguration())
    assert info.value.code == ErrorCode.UNSUPPORTED_ALGORITHM
    result = verify_envelope(data, expected_certs=expected, config=SignatureConfiguration().allowing_sha1())
    assert result.signature_algorithm == RSA_SHA1


def test_plain_zeep_binary_signature_without_timestamp_is_refused(demo):
    """Without a Timestamp zeep signs the Body only: no freshness, no replay window."""
    files = demo.agency("ndex")
    signature = BinarySignature(str(files.key), str(files.certificate),
                                signature_method=xmlsec.constants.TransformRsaSha256,
                                digest_method=xmlsec.constants.TransformSha256)
    envelope, _ = Compose([signature]).apply(plain_envelope(), {})
    with pytest.raises(WsSecurityError) as info:
        verify_envelope(etree.tostring(envelope), expected_certs=None, config=SignatureConfiguration())
    assert info.value.code == ErrorCode.MALFORMED


def test_zeep_wsse_verifies_responses_pinned_to_the_server_certificate(demo):
    server = creds(demo, "ndex")  # stands in for the gateway's response-signing certificate
    files = demo.agency("nlets")
    wsse = zeep_wsse(files.key, files.certificate, server_cert=server.certificate)
    response = sign_envelope(plain_envelope(), server.key, server.certificate)
    assert wsse.verify(etree.fromstring(etree.tostring(response))) is not None
    assert wsse.last_verified.signer_fingerprint == server.fingerprint
    other = creds(demo, "nlets")
    with pytest.raises(WsSecurityError) as info:
        wsse.verify(sign_envelope(plain_envelope(), other.key, other.certificate))
    assert info.value.code == ErrorCode.WRONG_SIGNER
    with pytest.raises(WsSecurityError):
        wsse.verify(plain_envelope())
