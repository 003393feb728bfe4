"""WS-Security sign/verify: interop with independent implementations, and every refusal's stable code.

python-xmlsec (libxmlsec1) is the independent judge of our signatures. zeep's own `verify` is also
shown to accept them, but it is never the judge of a refusal: it accepts wrapped messages.
"""
from __future__ import annotations

import copy
import datetime as dt

import pytest
import xmlsec
from lxml import etree
from zeep.exceptions import SignatureVerificationFailed
from zeep.wsse.signature import BinarySignature

from leis_gateway.security import pki
from leis_gateway.security.wssec import (
    DS_NS, RSA_SHA1, RSA_SHA256, SHA1, SHA256, SOAP11_NS, WSSE_NS, WSU_ID, WSU_NS, X509V3_TOKEN,
    ErrorCode, SignatureConfiguration, WsSecurityError, sign_envelope, verify_envelope)

NS = {"soap": SOAP11_NS, "wsse": WSSE_NS, "wsu": WSU_NS, "ds": DS_NS, "x": "urn:example:lexs"}
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)  # within the demo certificates' validity
DEFAULT = SignatureConfiguration()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return pki.ensure_demo_pki(tmp_path_factory.mktemp("pki"), ["ndex", "nlets"])


@pytest.fixture(scope="module")
def ndex(demo):
    return pki.load_signing_credentials(demo.agency("ndex").key, demo.agency("ndex").certificate)


@pytest.fixture(scope="module")
def nlets(demo):
    return pki.load_signing_credentials(demo.agency("nlets").key, demo.agency("nlets").certificate)


def envelope(items: int = 3) -> etree._Element:
    """A request envelope whose Body uses a prefix declared on the Envelope (exc-c14n must carry it)."""
    people = "".join(f"<x:Person n='{i}'><x:Name>JOHN QUINCY DOE</x:Name></x:Person>" for i in range(items))
    return etree.fromstring(
        f'<soap:Envelope xmlns:soap="{SOAP11_NS}" xmlns:x="urn:example:lexs" xmlns:wsu="{WSU_NS}">'
        f"<soap:Header/><soap:Body><x:doStructuredSearchRequest>{people}</x:doStructuredSearchRequest>"
        "</soap:Body></soap:Envelope>".encode())


def signed(creds, created=NOW, **kwargs) -> bytes:
    return etree.tostring(sign_envelope(envelope(), creds.key, creds.certificate, created=created, **kwargs))


def verify(data, creds=None, *, config=DEFAULT, now=NOW, expected=True):
    expected_certs = [creds.certificate] if creds is not None and expected else None
    return verify_envelope(data, expected_certs=expected_certs, config=config, now=now)


def refused(data, code: ErrorCode, creds=None, **kwargs):
    with pytest.raises(WsSecurityError) as info:
        verify(data, creds, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def edit(data: bytes, change) -> bytes:
    doc = etree.fromstring(data)
    change(doc)
    return etree.tostring(doc)


def one(doc, path):
    [node] = doc.xpath(path, namespaces=NS)
    return node


def xmlsec_verify(data: bytes, cert_file) -> None:
    """libxmlsec1's verdict; it needs to be told that wsu:Id is an ID attribute."""
    doc = etree.fromstring(data)
    ctx = xmlsec.SignatureContext()
    for node in doc.xpath("//*[@wsu:Id]", namespaces=NS):
        ctx.register_id(node, "Id", WSU_NS)
    ctx.key = xmlsec.Key.from_file(str(cert_file), xmlsec.KeyFormat.CERT_PEM)
    ctx.verify(one(doc, "//ds:Signature"))


def xmlsec_sign(doc: etree._Element, key_file, cert_file, targets, *, transform=xmlsec.Transform.EXCL_C14N):
    """An independent signer (libxmlsec1) building the WS-Security shape around chosen references."""
    security = one(doc, "/soap:Envelope/soap:Header/wsse:Security")
    token = security.find(f"{{{WSSE_NS}}}BinarySecurityToken")
    signature = xmlsec.template.create(doc, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256)
    security.append(signature)
    ctx = xmlsec.SignatureContext()
    for target in targets:
        ctx.register_id(target, "Id", WSU_NS)
        ref = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri="#" + target.get(WSU_ID))
        xmlsec.template.add_transform(ref, transform)
    key_info = xmlsec.template.ensure_key_info(signature)
    ctx.key = xmlsec.Key.from_file(str(key_file), xmlsec.KeyFormat.PEM)
    ctx.sign(signature)
    str_ = etree.SubElement(key_info, f"{{{WSSE_NS}}}SecurityTokenReference")
    etree.SubElement(str_, f"{{{WSSE_NS}}}Reference", URI="#" + token.get(WSU_ID), ValueType=X509V3_TOKEN)
    return doc


def unsigned_security(creds) -> etree._Element:
    """Our Timestamp and token, with the Signature removed (to be re-signed by xmlsec_sign)."""
    doc = etree.fromstring(signed(creds))
    sig = one(doc, "//ds:Signature")
    sig.getparent().remove(sig)
    return doc


# --- signing and interoperability -----------------------------------------------------------


def test_signed_envelope_has_the_ws_security_shape(ndex):
    doc = etree.fromstring(signed(ndex))
    security = one(doc, "/soap:Envelope/soap:Header/wsse:Security")
    assert security.get(f"{{{SOAP11_NS}}}mustUnderstand") == "1"
    timestamp = one(security, "wsu:Timestamp")
    assert one(timestamp, "wsu:Created").text == NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert one(timestamp, "wsu:Expires").text == (NOW + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    token = one(security, "wsse:BinarySecurityToken")
    assert token.get("ValueType") == X509V3_TOKEN
    body = one(doc, "/soap:Envelope/soap:Body")
    refs = [r.get("URI") for r in security.xpath("ds:Signature/ds:SignedInfo/ds:Reference", namespaces=NS)]
    assert refs == ["#" + body.get(WSU_ID), "#" + timestamp.get(WSU_ID)]
    assert one(security, "ds:Signature/ds:SignedInfo/ds:SignatureMethod").get("Algorithm") == RSA_SHA256
    assert {t.get("Algorithm") for t in security.xpath(".//ds:Transform | .//ds:CanonicalizationMethod",
                                                        namespaces=NS)} == {
        "http://www.w3.org/2001/10/xml-exc-c14n#"}
    assert one(security, "ds:Signature/ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference").get(
        "URI") == "#" + token.get(WSU_ID)


def test_round_trip_returns_the_signed_body_and_metadata(ndex):
    data = signed(ndex)
    result = verify(data, ndex)
    assert etree.QName(result.body).localname == "Body"
    assert result.body.getparent().getparent() is None  # the Envelope's own Body
    assert result.body.find("x:doStructuredSearchRequest", NS) is not None
    assert result.created == NOW
    assert result.expires == NOW + dt.timedelta(seconds=300)
    assert result.signer_fingerprint == ndex.fingerprint
    assert result.replay_window_ends == NOW + dt.timedelta(seconds=300) + DEFAULT.max_clock_skew
    assert result.signature_algorithm == RSA_SHA256
    assert len(result.replay_key) == 64
    assert verify(data, ndex).replay_key == result.replay_key
    assert verify(signed(ndex), ndex).replay_key != result.replay_key


def test_verifying_an_element_does_not_change_it_and_returns_its_body(ndex):
    doc = etree.fromstring(signed(ndex))
    before = etree.tostring(doc)
    result = verify(doc, ndex)
    assert result.body is one(doc, "/soap:Envelope/soap:Body")
    assert etree.tostring(doc) == before


def test_python_xmlsec_verifies_our_signature(ndex, demo):
    data = signed(ndex)
    xmlsec_verify(data, demo.agency("ndex").certificate)
    with pytest.raises(xmlsec.Error):
        xmlsec_verify(data.replace(b"JOHN QUINCY DOE", b"JOHN QUINCY DOF", 1), demo.agency("ndex").certificate)


def test_zeep_binary_signature_verifies_our_signature(ndex, demo):
    checker = BinarySignature(str(demo.agency("ndex").key), str(demo.agency("ndex").certificate))
    checker.verify(etree.fromstring(signed(ndex)))
    with pytest.raises(SignatureVerificationFailed):
        checker.verify(etree.fromstring(signed(ndex).replace(b"JOHN QUINCY DOE", b"JOHN QUINCY DOF", 1)))


def test_signature_made_by_libxmlsec_is_accepted(ndex, demo):
    doc = unsigned_security(ndex)
    targets = [one(doc, "//soap:Body"), one(doc, "//wsu:Timestamp"), one(doc, "//wsse:BinarySecurityToken")]
    data = etree.tostring(xmlsec_sign(doc, demo.agency("ndex").key, demo.agency("ndex").certificate, targets))
    assert verify(data, ndex).signer_fingerprint == ndex.fingerprint


def test_envelope_without_header_gets_one_and_existing_body_id_is_kept(ndex):
    doc = etree.fromstring(f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body wsu:Id="b1" xmlns:wsu="{WSU_NS}">'
                           "<x xmlns='urn:x'/></s:Body></s:Envelope>".encode())
    data = etree.tostring(sign_envelope(doc, ndex.key, ndex.certificate, created=NOW))
    assert verify(data, ndex).body.get(WSU_ID) == "b1"
    with pytest.raises(ValueError):
        sign_envelope(etree.fromstring(data), ndex.key, ndex.certificate)  # no double signing


def test_sha384_and_sha512_are_accepted_by_default(ndex, demo):
    from leis_gateway.security.wssec import RSA_SHA512, SHA384
    data = signed(ndex, signature_algorithm=RSA_SHA512, digest_algorithm=SHA384)
    verify(data, ndex)
    xmlsec_verify(data, demo.agency("ndex").certificate)


# --- refusals -----------------------------------------------------------------------------


def test_no_security_header_is_no_signature(ndex):
    refused(etree.tostring(envelope()), ErrorCode.NO_SIGNATURE, ndex)
    without_signature = edit(signed(ndex), lambda d: one(d, "//wsse:Security").remove(one(d, "//ds:Signature")))
    refused(without_signature, ErrorCode.NO_SIGNATURE, ndex)


def test_tampered_body_is_bad_signature(ndex):
    refused(signed(ndex).replace(b"JOHN QUINCY DOE", b"JOHN QUINCY DOF", 1), ErrorCode.BAD_SIGNATURE, ndex)


def test_tampered_timestamp_is_bad_signature(ndex):
    def extend(doc):
        one(doc, "//wsu:Expires").text = (NOW + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    refused(edit(signed(ndex), extend), ErrorCode.BAD_SIGNATURE, ndex)


def test_tampered_signature_value_is_bad_signature(ndex):
    def flip(doc):
        value = one(doc, "//ds:SignatureValue")
        value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]
    refused(edit(signed(ndex), flip), ErrorCode.BAD_SIGNATURE, ndex)


def test_signature_by_another_certificate_is_wrong_signer(ndex, nlets):
    data = signed(nlets)
    refused(data, ErrorCode.WRONG_SIGNER, ndex)
    assert verify(data, None).signer_fingerprint == nlets.fingerprint  # unpinned: the caller decides


def test_token_swapped_for_the_expected_certificate_is_bad_signature(ndex, nlets):
    """Signed by nlets, but presenting ndex's certificate: the signature does not verify with it."""
    ndex_token = one(etree.fromstring(signed(ndex)), "//wsse:BinarySecurityToken").text

    def swap(doc):
        one(doc, "//wsse:BinarySecurityToken").text = ndex_token
    refused(edit(signed(nlets), swap), ErrorCode.BAD_SIGNATURE, ndex)


@pytest.mark.parametrize("created, now", [
    (NOW, NOW + dt.timedelta(hours=1)),                         # expired and too old
    (NOW + dt.timedelta(hours=1), NOW),                         # created in the future
    (NOW, NOW + dt.timedelta(seconds=300 + 301)),               # just beyond Expires + skew
])
def test_timestamp_outside_the_window_is_stale(ndex, created, now):
    refused(signed(ndex, created=created), ErrorCode.STALE, ndex, now=now)


def test_timestamp_within_clock_skew_is_accepted(ndex):
    verify(signed(ndex, created=NOW + dt.timedelta(seconds=299)), ndex, now=NOW)
    verify(signed(ndex), ndex, now=NOW + dt.timedelta(seconds=599))


def test_short_lived_timestamp_expires(ndex):
    config = SignatureConfiguration(max_clock_skew=dt.timedelta(seconds=5))
    data = signed(ndex, expires_in=10)
    verify(data, ndex, config=config, now=NOW + dt.timedelta(seconds=14))
    refused(data, ErrorCode.STALE, ndex, config=config, now=NOW + dt.timedelta(seconds=16))


def test_sha1_is_refused_by_default_and_accepted_when_explicitly_allowed(ndex):
    data = signed(ndex, signature_algorithm=RSA_SHA1, digest_algorithm=SHA1)
    refused(data, ErrorCode.UNSUPPORTED_ALGORITHM, ndex)
    assert verify(data, ndex, config=DEFAULT.allowing_sha1()).signature_algorithm == RSA_SHA1
    refused(signed(ndex, digest_algorithm=SHA1), ErrorCode.UNSUPPORTED_ALGORITHM, ndex)


def test_configuration_refuses_unknown_algorithms_and_dropping_the_body():
    with pytest.raises(ValueError):
        SignatureConfiguration(signature_algorithms=frozenset({"http://example.com/hmac"}))
    with pytest.raises(ValueError):
        SignatureConfiguration(required_references=frozenset({"Timestamp"}))


def test_signature_not_covering_the_timestamp_is_bad_signature(ndex, demo):
    doc = unsigned_security(ndex)
    data = etree.tostring(xmlsec_sign(doc, demo.agency("ndex").key, demo.agency("ndex").certificate,
                                      [one(doc, "//soap:Body")]))
    xmlsec_verify(data, demo.agency("ndex").certificate)  # cryptographically fine...
    refused(data, ErrorCode.BAD_SIGNATURE, ndex)          # ...but it does not cover what we require


def test_reference_to_any_other_element_is_bad_signature(ndex, demo):
    doc = unsigned_security(ndex)
    extra = etree.SubElement(one(doc, "//soap:Header"), "{urn:example:lexs}Routing")
    extra.set(WSU_ID, "routing-1")
    targets = [one(doc, "//soap:Body"), one(doc, "//wsu:Timestamp"), extra]
    data = etree.tostring(xmlsec_sign(doc, demo.agency("ndex").key, demo.agency("ndex").certificate, targets))
    xmlsec_verify(data, demo.agency("ndex").certificate)
    refused(data, ErrorCode.BAD_SIGNATURE, ndex)


def test_transform_other_than_exclusive_c14n_is_unsupported(ndex, demo):
    doc = unsigned_security(ndex)
    targets = [one(doc, "//soap:Body"), one(doc, "//wsu:Timestamp")]
    data = etree.tostring(xmlsec_sign(doc, demo.agency("ndex").key, demo.agency("ndex").certificate, targets,
                                      transform=xmlsec.Transform.C14N))
    xmlsec_verify(data, demo.agency("ndex").certificate)
    refused(data, ErrorCode.UNSUPPORTED_ALGORITHM, ndex)


# --- XML Signature Wrapping and structural attacks ------------------------------------------


def test_signed_body_moved_into_a_header_and_new_body_inserted_is_refused(ndex):
    def wrap(doc):
        body = one(doc, "/soap:Envelope/soap:Body")
        wrapper = etree.SubElement(one(doc, "/soap:Envelope/soap:Header"), "{urn:example:lexs}Wrapper")
        wrapper.append(body)
        evil = etree.SubElement(doc, f"{{{SOAP11_NS}}}Body")
        etree.SubElement(evil, "{urn:example:lexs}doStructuredSearchRequest").text = "EVIL"
    data = edit(signed(ndex), wrap)
    refused(data, ErrorCode.MALFORMED, ndex)


def test_signed_body_moved_and_new_body_given_the_same_id_is_refused(ndex):
    def wrap(doc):
        body = one(doc, "/soap:Envelope/soap:Body")
        wrapper = etree.SubElement(one(doc, "/soap:Envelope/soap:Header"), "{urn:example:lexs}Wrapper")
        body_id = body.get(WSU_ID)
        wrapper.append(body)
        evil = etree.SubElement(doc, f"{{{SOAP11_NS}}}Body")
        evil.set(WSU_ID, body_id)
        etree.SubElement(evil, "{urn:example:lexs}doStructuredSearchRequest").text = "EVIL"
    refused(edit(signed(ndex), wrap), ErrorCode.MALFORMED, ndex)


def test_duplicate_wsu_id_anywhere_is_refused(ndex):
    def duplicate(doc):
        ts_id = one(doc, "//wsu:Timestamp").get(WSU_ID)
        etree.SubElement(one(doc, "//soap:Header"), "{urn:example:lexs}Other").set(WSU_ID, ts_id)
    refused(edit(signed(ndex), duplicate), ErrorCode.MALFORMED, ndex)

    def duplicate_plain_id(doc):  # an unqualified Id counts too (xmlsec resolves those)
        body_id = one(doc, "//soap:Body").get(WSU_ID)
        etree.SubElement(one(doc, "//soap:Header"), "{urn:example:lexs}Other").set("Id", body_id)
    refused(edit(signed(ndex), duplicate_plain_id), ErrorCode.MALFORMED, ndex)


def test_second_body_is_refused(ndex):
    def second(doc):
        doc.append(copy.deepcopy(one(doc, "/soap:Envelope/soap:Body")))
        del doc[-1].attrib[WSU_ID]
    refused(edit(signed(ndex), second), ErrorCode.MALFORMED, ndex)


def test_duplicated_timestamp_is_refused(ndex):
    def second(doc):
        ts = copy.deepcopy(one(doc, "//wsu:Timestamp"))
        del ts.attrib[WSU_ID]
        one(doc, "//wsse:Security").insert(0, ts)
    refused(edit(signed(ndex), second), ErrorCode.MALFORMED, ndex)


def test_signed_timestamp_moved_out_of_security_and_fresh_one_inserted_is_bad_signature(ndex):
    def move(doc):
        security = one(doc, "//wsse:Security")
        signed_ts = one(security, "wsu:Timestamp")
        etree.SubElement(one(doc, "//soap:Header"), "{urn:example:lexs}Old").append(signed_ts)
        fresh = copy.deepcopy(signed_ts)
        del fresh.attrib[WSU_ID]
        security.insert(0, fresh)
    refused(edit(signed(ndex), move), ErrorCode.BAD_SIGNATURE, ndex)


def test_second_security_header_is_refused(ndex, nlets):
    def second(doc):
        other = one(etree.fromstring(signed(nlets)), "//wsse:Security")
        for node in other.iter():
            node.attrib.pop(WSU_ID, None)
        one(doc, "//soap:Header").insert(0, other)
    refused(edit(signed(ndex), second), ErrorCode.MALFORMED, ndex)


@pytest.mark.parametrize("uri", ["", "http://example.com/body", "#xpointer(/)",
                                 "#xpointer(id('x'))", "doc.xml#Body"])
def test_references_must_be_same_document_ids(ndex, uri):
    def point(doc):
        one(doc, "//ds:Reference[1]").set("URI", uri)
    refused(edit(signed(ndex), point), ErrorCode.MALFORMED, ndex)


def test_extra_transform_is_unsupported(ndex):
    def add(doc):
        transforms = one(doc, "//ds:Reference[1]/ds:Transforms")
        etree.SubElement(transforms, f"{{{DS_NS}}}Transform",
                         Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature")
    refused(edit(signed(ndex), add), ErrorCode.UNSUPPORTED_ALGORITHM, ndex)


def test_body_referenced_twice_is_refused(ndex):
    def twice(doc):
        signed_info = one(doc, "//ds:SignedInfo")
        signed_info.append(copy.deepcopy(one(signed_info, "ds:Reference[1]")))
    refused(edit(signed(ndex), twice), ErrorCode.MALFORMED, ndex)


def test_token_outside_the_security_header_is_refused(ndex):
    def move(doc):
        token = one(doc, "//wsse:BinarySecurityToken")
        etree.SubElement(one(doc, "//soap:Header"), "{urn:example:lexs}Elsewhere").append(token)
    refused(edit(signed(ndex), move), ErrorCode.MALFORMED, ndex)


def test_comment_inserted_into_signed_text_is_refused(ndex):
    """Exclusive c14n ignores comments, so the digest still matches; the reader's .text would not."""
    data = signed(ndex).replace(b"JOHN QUINCY DOE", b"JOHN<!---->QUINCY DOE", 1)
    refused(data, ErrorCode.MALFORMED, ndex)


@pytest.mark.parametrize("data", [
    b"not xml",
    b'<!DOCTYPE x [<!ENTITY e "boom">]><x/>',
    f'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body/></soap:Envelope>'.encode(),
    f'<soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body/><soap:Body/></soap:Envelope>'.encode(),
    f'<soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body/><soap:Header/></soap:Envelope>'.encode(),
])
def test_unusable_documents_are_malformed(data):
    refused(data, ErrorCode.MALFORMED)


def test_doctype_before_a_signed_envelope_is_malformed(ndex):
    data = signed(ndex)
    refused(b"<!DOCTYPE soap:Envelope>" + data, ErrorCode.MALFORMED, ndex)


def test_envelope_nested_in_another_root_is_malformed(ndex):
    doc = etree.fromstring(signed(ndex))
    outer = etree.Element("{urn:example:lexs}Outer")
    outer.append(doc)
    refused(outer[0], ErrorCode.MALFORMED, ndex)


def test_extra_signature_children_are_malformed(ndex):
    def add_object(doc):
        etree.SubElement(one(doc, "//ds:Signature"), f"{{{DS_NS}}}Object").text = "x"
    refused(edit(signed(ndex), add_object), ErrorCode.MALFORMED, ndex)


def test_error_messages_never_quote_the_message(ndex):
    error = refused(signed(ndex).replace(b"JOHN QUINCY DOE", b"JOHN QUINCY DOF", 1), ErrorCode.BAD_SIGNATURE, ndex)
    assert "JOHN" not in str(error)
    assert str(SHA256) not in str(error)


# --- robustness: every mutation is either accepted or refused with a code, never a crash -------


def _mutations(data: bytes):
    count = sum(1 for _ in etree.fromstring(data).iter())
    for index in range(1, count):  # removing any element (but the root)
        def remove(doc, index=index):
            node = list(doc.iter())[index]
            node.getparent().remove(node)
        yield "remove", index, remove
    for index in range(count):
        def clear_text(doc, index=index):
            list(doc.iter())[index].text = "x"
        yield "text", index, clear_text
        def strip_attributes(doc, index=index):
            list(doc.iter())[index].attrib.clear()
        yield "attributes", index, strip_attributes


def test_every_single_mutation_is_handled(ndex):
    """Removing any element, or changing any text or attributes inside the signed parts (Body,
    Timestamp, SignedInfo) is refused with a code; no mutation crashes the verifier."""
    data = signed(ndex)
    original = etree.fromstring(data)
    signed_parts = {el for part in original.xpath("//soap:Body | //wsu:Timestamp | //ds:SignedInfo", namespaces=NS)
                    for el in part.iter()}
    nodes = list(original.iter())
    accepted = []
    for kind, index, mutate in _mutations(data):
        mutated = edit(data, mutate)
        if mutated == data:
            continue  # e.g. clearing the attributes of an element that has none
        try:
            verify(mutated, ndex)
        except WsSecurityError:
            continue
        accepted.append((kind, etree.QName(nodes[index]).localname, nodes[index] in signed_parts))
    assert [a for a in accepted if a[0] == "remove" or a[2]] == [], accepted
