"""WS-Security at the edge, through the real TLS server.

Each refusal is a SOAP fault with a stable cause and a fixed text; every answer, faults included,
is signed by the gateway. Positive interoperability uses signatures made by independent
implementations (zeep + xmlsec, and python-xmlsec directly), not by the gateway's own signer.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

import hostile
from leis_gateway.client import ClientIdentity, LexsSoapClient
from leis_gateway.config import PROJECT_ROOT
from leis_gateway.domain import QueryField
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.security import wssec
from leis_gateway.security.pki import load_certificate
from leis_gateway.security.wssec import sign_envelope, verify_envelope
from support import NS, Answer, RunningGateway, requester, search, unsigned_part

S1 = ((QueryField.SURNAME, "DOE"), (QueryField.BIRTH_DATE, "1975-04-12"))
WSSE, WSU, DS, SOAP = wssec.WSSE_NS, wssec.WSU_NS, wssec.DS_NS, wssec.SOAP11_NS
CAUSE_REASONS = {
    "NoSignature": "The message carries no WS-Security signature.",
    "BadSignature": "The message signature does not verify.",
    "WrongSigner": "The message is not signed by the caller's registered key.",
    "Stale": "The message timestamp is outside the allowed window.",
    "Replay": "The message has been received before.",
    "UnsupportedAlgorithm": "The signature algorithm is not accepted.",
    "UnknownAgreement": "The client certificate is in no agreement.",
}


def _envelope(message: etree._Element | None = None, operation: str = "doStructuredSearch") -> bytes:
    message = message if message is not None else search(*S1)
    return lexs_requests.soap_envelope(lexs_requests.wrap_request(operation, message))


def _sign(gateway, data: bytes, agreement: str = "ndex", **options) -> bytes:
    credentials = gateway.credentials(agreement)
    root = etree.fromstring(data)
    sign_envelope(root, credentials.key, credentials.certificate, **options)
    return etree.tostring(root)


def _checked(gateway, response) -> Answer:
    """The answer, after proving the gateway signed it (faults included)."""
    verify_envelope(response.content, expected_certs=[load_certificate(gateway.home / "pki" / "server.crt")])
    assert response.headers["Content-Type"].startswith("text/xml")
    return Answer.of(response)


def _refused(gateway, response, cause: str, *, sent: bytes = b"") -> None:
    answer = _checked(gateway, response)
    assert answer.fault_cause == cause
    assert response.status_code == 500
    faultstring = answer.root.findtext(".//soap:Fault/faultstring", namespaces=NS)
    assert faultstring == CAUSE_REASONS[cause]  # a fixed text: nothing of the input
    unsigned = unsigned_part(response.content)
    assert b"DOE" not in unsigned and hostile.CANARY.encode() not in unsigned


# --- the stable causes ---------------------------------------------------------------------------


def test_no_signature(gateway):
    _refused(gateway, gateway.post(_envelope()), "NoSignature")


def test_tampered_body(gateway):
    root = etree.fromstring(_sign(gateway, _envelope()))
    root.find(".//{*}DigestQueryField//{*}PersonSurName").text = "ROE"
    _refused(gateway, gateway.post(etree.tostring(root)), "BadSignature")


def test_signed_with_another_agreements_key_than_the_tls_certificate(gateway):
    signed = _sign(gateway, _envelope(), "azlink")  # valid signature, but azlink's; TLS says ndex
    _refused(gateway, gateway.post(signed, agreement="ndex"), "WrongSigner")
    unregistered = _sign(gateway, _envelope(), "unregistered")  # our CA's, in no agreement
    _refused(gateway, gateway.post(unregistered, agreement="ndex"), "WrongSigner")


def test_a_self_signed_certificate_with_the_agreements_name_is_the_wrong_signer(gateway):
    """The demo binds agreements by subject CN: a signer certificate must also come from our CA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ndex")])
    now = dt.datetime.now(dt.timezone.utc)
    forged = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
              .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    root = etree.fromstring(_envelope())
    sign_envelope(root, key, forged)
    _refused(gateway, gateway.post(etree.tostring(root), agreement="ndex"), "WrongSigner")


def test_a_stale_timestamp(gateway):
    hour_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    _refused(gateway, gateway.post(_sign(gateway, _envelope(), created=hour_ago)), "Stale")
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    _refused(gateway, gateway.post(_sign(gateway, _envelope(), created=future)), "Stale")


def test_the_same_signed_bytes_twice_is_a_replay(gateway):
    signed = _sign(gateway, _envelope())
    first = _checked(gateway, gateway.post(signed))
    assert first.result_code == "Success" and first.persons()
    _refused(gateway, gateway.post(signed), "Replay")


def test_unknown_agreement(gateway):
    _refused(gateway, gateway.post(_envelope(), agreement="unregistered", sign=True), "UnknownAgreement")


def test_sha1_is_refused_by_default(gateway):
    signed = _sign(gateway, _envelope(), signature_algorithm=wssec.RSA_SHA1, digest_algorithm=wssec.SHA1)
    _refused(gateway, gateway.post(signed), "UnsupportedAlgorithm")
    sha1_digests = _sign(gateway, _envelope(), digest_algorithm=wssec.SHA1)
    _refused(gateway, gateway.post(sha1_digests), "UnsupportedAlgorithm")


@pytest.fixture(scope="module")
def legacy_gateway(demo_home, tmp_path_factory):
    """The demo registry with one agreement (azlink) that explicitly allows SHA-1."""
    document = json.loads((PROJECT_ROOT / "fixtures" / "agreements.json").read_text())
    next(a for a in document["agreements"] if a["id"] == "azlink")["allow_sha1"] = True
    path = tmp_path_factory.mktemp("legacy") / "agreements.json"
    path.write_text(json.dumps(document))
    with RunningGateway.start(demo_home, registry_path=path) as running:
        yield running


def test_sha1_is_accepted_only_where_an_agreement_allows_it(legacy_gateway):
    gateway = legacy_gateway
    assert gateway.gateway.registry.get("azlink").allow_sha1 is True
    assert gateway.gateway.registry.get("ndex").allow_sha1 is False
    sha1 = {"signature_algorithm": wssec.RSA_SHA1, "digest_algorithm": wssec.SHA1}
    allowed = _checked(gateway, gateway.post(_sign(gateway, _envelope(), "azlink", **sha1), agreement="azlink"))
    assert allowed.result_code == "Success" and allowed.persons()
    _refused(gateway, gateway.post(_sign(gateway, _envelope(), "ndex", **sha1), agreement="ndex"),
             "UnsupportedAlgorithm")


# --- signature wrapping: a valid signature value, a different Body --------------------------------


def _signed_info_verifies(root: etree._Element) -> bool:
    """The XML-DSig SignatureValue over SignedInfo checks out with the token's key (cryptographically)."""
    signed_info = root.find(".//ds:SignedInfo", NS | {"ds": DS})
    value = base64.b64decode(root.find(".//ds:SignatureValue", {"ds": DS}).text)
    token = root.find(".//wsse:BinarySecurityToken", {"wsse": WSSE})
    cert = x509.load_der_x509_certificate(base64.b64decode(token.text))
    c14n = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    try:
        cert.public_key().verify(value, c14n, padding.PKCS1v15(), hashes.SHA256())
        return True
    except Exception:  # noqa: BLE001
        return False


def _signed_body_digest_matches_somewhere(root: etree._Element) -> bool:
    """The Body digest of the SignedInfo matches an element still present in the message (moved)."""
    ref = next(r for r in root.iterfind(".//ds:Reference", {"ds": DS}) if r.get("URI", "").startswith("#Body"))
    digest = base64.b64decode(ref.findtext("ds:DigestValue", namespaces={"ds": DS}))
    for element in root.iter(f"{{{SOAP}}}Body"):
        c14n = etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
        if hashlib.sha256(c14n).digest() == digest:
            return True
    return False


@pytest.mark.parametrize("variant", [
    "wrapping: signed body moved into a header, new body",
    "wrapping: new body with the signed body's wsu:Id",
    "wrapping: signed copy in a header, body replaced",
    "wrapping: signed copy inside wsse:Security",
    "wrapping: extra body after the signed one",
    "wrapping: extra body before the signed one",
])
def test_a_wrapped_message_is_refused_although_its_signature_value_is_valid(gateway, variant):
    cases = {case.name: case for case in hostile.wrapping_cases(lambda data: _sign(gateway, data))}
    wrapped = cases[variant].data
    root = etree.fromstring(wrapped)
    assert _signed_info_verifies(root), "the attack keeps a cryptographically valid SignatureValue"
    assert _signed_body_digest_matches_somewhere(root), "the signed Body is still in the message"
    response = gateway.post(wrapped)
    answer = _checked(gateway, response)
    assert answer.fault_cause in {"BadSignature", "BadBody"}, answer.fault_cause
    assert answer.root.find("soap:Body", NS)[0].tag == f"{{{SOAP}}}Fault"


# --- interoperability: independent signers --------------------------------------------------------


def _xmlsec_sign(data: bytes, key_file, cert_file, *, method=xmlsec.constants.TransformRsaSha256,
                 digest=xmlsec.constants.TransformSha256) -> bytes:
    """WS-Security (Timestamp + BinarySecurityToken + Signature over Body and Timestamp) by python-xmlsec."""
    root = etree.fromstring(data)
    header = root.find(f"{{{SOAP}}}Header")
    if header is None:
        header = etree.Element(f"{{{SOAP}}}Header")
        root.insert(0, header)
    security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE, "wsu": WSU})
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    timestamp = etree.SubElement(security, f"{{{WSU}}}Timestamp", {f"{{{WSU}}}Id": f"TS-{uuid.uuid4().hex}"})
    etree.SubElement(timestamp, f"{{{WSU}}}Created").text = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    etree.SubElement(timestamp, f"{{{WSU}}}Expires").text = (now + dt.timedelta(minutes=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    cert = load_certificate(cert_file)
    token = etree.SubElement(security, f"{{{WSSE}}}BinarySecurityToken", {
        "EncodingType": wssec.BASE64_BINARY, "ValueType": wssec.X509V3_TOKEN,
        f"{{{WSU}}}Id": f"X509-{uuid.uuid4().hex}"})
    token.text = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    body = root.find(f"{{{SOAP}}}Body")
    body.set(f"{{{WSU}}}Id", f"Body-{uuid.uuid4().hex}")
    signature = xmlsec.template.create(root, xmlsec.constants.TransformExclC14N, method)
    security.append(signature)
    for target in (body, timestamp):
        reference = xmlsec.template.add_reference(signature, digest, uri="#" + target.get(f"{{{WSU}}}Id"))
        xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    str_ = etree.SubElement(key_info, f"{{{WSSE}}}SecurityTokenReference")
    etree.SubElement(str_, f"{{{WSSE}}}Reference", URI="#" + token.get(f"{{{WSU}}}Id"),
                     ValueType=wssec.X509V3_TOKEN)
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_file(str(key_file), xmlsec.constants.KeyDataFormatPem)
    for element in (body, timestamp):
        context.register_id(element, "Id", WSU)
    context.sign(signature)
    return etree.tostring(root)


def test_a_python_xmlsec_signature_is_accepted(gateway):
    pki = gateway.home / "pki" / "agencies"
    signed = _xmlsec_sign(_envelope(), pki / "tdex.key", pki / "tdex.crt")
    answer = _checked(gateway, gateway.post(signed, agreement="tdex"))
    assert answer.result_code == "Success"
    assert {"given": "JOHN", "middle": "QUINCY", "surname": "DOE", "birth_date": "1975-04-12"} in answer.persons()


def test_a_python_xmlsec_sha1_signature_is_refused(gateway):
    pki = gateway.home / "pki" / "agencies"
    signed = _xmlsec_sign(_envelope(), pki / "tdex.key", pki / "tdex.crt",
                          method=xmlsec.constants.TransformRsaSha1, digest=xmlsec.constants.TransformSha1)
    _refused(gateway, gateway.post(signed, agreement="tdex"), "UnsupportedAlgorithm")


def test_zeep_with_xmlsec_interoperates_for_another_agreement(gateway):
    pki = gateway.home / "pki"
    client = LexsSoapClient(gateway.url + "?wsdl", ClientIdentity(
        pki / "agencies" / "linx-nw.crt", pki / "agencies" / "linx-nw.key", pki / "ca.crt"))
    try:
        response = client.call("doStructuredSearch", search(*S1))
        capabilities = client.call("getCapabilities", lexs_requests.service_provider_request(requester()))
    finally:
        client.close()
    found = _checked(gateway, response)
    assert found.result_code == "Success" and found.persons()
    assert _checked(gateway, capabilities).result_code == "Success"


def test_zeep_default_binary_signature_is_sha1_and_refused(gateway):
    from zeep.wsse.signature import BinarySignature

    agencies = gateway.home / "pki" / "agencies"
    wsse = BinarySignature(str(agencies / "ndex.key"), str(agencies / "ndex.crt"))  # RSA-SHA1, SHA-1
    envelope = etree.fromstring(_envelope(lexs_requests.service_provider_request(requester()), "getAvailability"))
    signed, _ = wsse.apply(envelope, {})
    answer = _checked(gateway, gateway.post(etree.tostring(signed)))
    # zeep's defaults are RSA-SHA1/SHA-1 and it adds no Timestamp: refused either way, never served
    assert answer.fault_cause in {"UnsupportedAlgorithm", "BadSignature"}
