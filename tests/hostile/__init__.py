"""A corpus of hostile inputs for the gateway's edge (tests/test_edge_hostile.py).

Every case carries the canary `CANARY` (in text, a name, a URL or an attribute) so that a test can
prove nothing of the input reaches the logs or comes back in an answer. `build(sign)` makes the
cases; `sign(bytes) -> bytes` signs an envelope as a registered agency would (the signature-
wrapping cases start from a validly signed message and then move its parts around, so their
signature values are valid).

`expect` is the set of acceptable outcomes: SOAP fault causes (the `leis:FaultCause` codes) or
`"LEXS:Error"` for a LEXS response whose ResultCode is Error.
"""
from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from leis_gateway.domain import Criterion, Purpose, QueryField, QueryMatch
from leis_gateway.lexs import requests as lexs_requests

CANARY = "ZZHOSTILECANARY"
PASSWD_MARKERS = ("root:x:0:0", "root:*:0:0", "/bin/bash", "/usr/sbin/nologin")

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
SR = "http://usdoj.gov/leisp/lexs/searchretrieve/3.1"
NS = {"soap": SOAP, "wsse": WSSE, "wsu": WSU, "ds": DS, "sr": SR}

XML_TYPE = "text/xml; charset=utf-8"
DTD = frozenset({"DtdForbidden"})
SIGNATURE_REFUSED = frozenset({"BadSignature", "UnsupportedAlgorithm", "NoSignature", "WrongSigner"})


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: frozenset[str]
    content_type: str | None = XML_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # send with Transfer-Encoding: chunked (no Content-Length)


def envelope(body: str, header: str = "", *, prefix: str = "soap", ns: str = SOAP) -> str:
    head = f"<{prefix}:Header>{header}</{prefix}:Header>" if header else ""
    return (f'<{prefix}:Envelope xmlns:{prefix}="{ns}">{head}'
            f"<{prefix}:Body>{body}</{prefix}:Body></{prefix}:Envelope>")


def wrapper(inner: str = "", op: str = "doStructuredSearchRequest") -> str:
    return f'<sr:{op} xmlns:sr="{SR}">{inner}</sr:{op}>'


def search_envelope(surname: str = CANARY) -> bytes:
    requester = lexs_requests.Requester("Test Agency", "TESTSYS", "AZ0000000", "det.smith",
                                        Purpose.CRIMINAL_LAW_ENFORCEMENT)
    message = lexs_requests.structured_search_request(
        requester, [Criterion(QueryField.SURNAME, surname, QueryMatch.EXACT)], max_items=5)
    return lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", message))


def _doc(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def _bytes(root: etree._Element) -> bytes:
    return etree.tostring(root)


# --- the cases ---------------------------------------------------------------------------------


def _entity_cases() -> list[Case]:
    lol = "".join(f'<!ENTITY lol{i} "{"&lol%d;" % (i - 1) * 10}">' for i in range(1, 10))
    billion = (f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "{CANARY}">{lol}]>'
               + envelope(wrapper("<x>&lol9;</x>")))
    big = "A" * 20_000
    quadratic = (f'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "{big}{CANARY}">]>'
                 + envelope(wrapper("<x>" + "&a;" * 40 + "</x>")))
    return [
        Case("billion laughs", billion.encode(), DTD),
        Case("quadratic blow-up", quadratic.encode(), DTD),
        Case("xxe to /etc/passwd", (
            f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            + envelope(wrapper(f"<x>&xxe;{CANARY}</x>"))).encode(), DTD),
        Case("xxe to a url", (
            f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/{CANARY}">]>'
            + envelope(wrapper("<x>&xxe;</x>"))).encode(), DTD),
        Case("external dtd", (
            f'<?xml version="1.0"?><!DOCTYPE soap:Envelope SYSTEM "http://127.0.0.1:9/{CANARY}.dtd">'
            + envelope(wrapper())).encode(), DTD),
        Case("parameter entities", (
            f'<!DOCTYPE x [<!ENTITY % file SYSTEM "file:///etc/passwd">'
            f'<!ENTITY % eval "<!ENTITY &#x25; exfil SYSTEM \'http://127.0.0.1:9/{CANARY}?%file;\'>">'
            f'%eval;%exfil;]>' + envelope(wrapper())).encode(), DTD),
        Case("entity in an attribute", (
            f'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            + envelope(wrapper(f'<x a="&e;">{CANARY}</x>'))).encode(), DTD),
        Case("doctype after a comment", (
            f'<!-- {CANARY} --><!DOCTYPE x [<!ENTITY e "{CANARY}">]>' + envelope(wrapper("&e;"))).encode(), DTD),
        Case("lower-case doctype", (f'<!doctype x>' + envelope(wrapper(CANARY))).encode(), frozenset({"NotXml"})),
        Case("undeclared entity", envelope(wrapper(f"<x>&{CANARY};</x>")).encode(), frozenset({"NotXml"})),
        Case("xinclude of /etc/passwd", envelope(wrapper(
            f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>'
            f"<x>{CANARY}</x>")).encode(), frozenset({"NoSignature"})),
        Case("schemaLocation to a url", envelope(wrapper(
            f'<x xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="urn:x http://127.0.0.1:9/{CANARY}.xsd"/>')).encode(), frozenset({"NoSignature"})),
    ]


def _structure_cases() -> list[Case]:
    deep = "<d>" * 10_000 + CANARY + "</d>" * 10_000
    medium = "<d>" * 100 + CANARY + "</d>" * 100
    attributes = " ".join(f'a{i}="{CANARY}"' for i in range(20_000))
    namespaces = " ".join(f'xmlns:p{i}="urn:{CANARY}:{i}"' for i in range(20_000))
    good = envelope(wrapper(CANARY))
    return [
        Case("deep nesting (10,000)", envelope(wrapper(deep)).encode(), frozenset({"TooDeep"})),
        Case("nesting beyond the limit (100)", envelope(wrapper(medium)).encode(), frozenset({"TooDeep"})),
        Case("huge attribute", envelope(wrapper(f'<x a="{CANARY}{"A" * 900_000}"/>')).encode(),
             frozenset({"NoSignature"})),
        Case("huge text", envelope(wrapper(f'<x>{CANARY}{"B" * 900_000}</x>')).encode(), frozenset({"NoSignature"})),
        Case("huge element name", envelope(wrapper(f'<{CANARY}{"n" * 400_000}/>')).encode(),
             frozenset({"NoSignature", "NotXml"})),
        Case("many attributes", envelope(wrapper(f"<x {attributes}/>")).encode(), frozenset({"NoSignature"})),
        Case("many namespaces", envelope(wrapper(f"<x {namespaces}/>")).encode(), frozenset({"NoSignature"})),
        Case("over the size limit", envelope(wrapper(f'<x>{CANARY}{"C" * 1_100_000}</x>')).encode(),
             frozenset({"MessageTooLarge"})),
        Case("soap 1.2 envelope", envelope(wrapper(CANARY), prefix="env", ns=SOAP12).encode(),
             frozenset({"VersionMismatch"})),
        Case("soap 1.2 content type", envelope(wrapper(CANARY), prefix="env", ns=SOAP12).encode(),
             frozenset({"VersionMismatch"}), content_type="application/soap+xml; charset=utf-8"),
        Case("two bodies", (f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body>{wrapper(CANARY)}</soap:Body>'
                            f"<soap:Body>{wrapper()}</soap:Body></soap:Envelope>").encode(), frozenset({"BadBody"})),
        Case("two headers", (f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Header/><soap:Header/>'
                             f"<soap:Body>{wrapper(CANARY)}</soap:Body></soap:Envelope>").encode(),
             frozenset({"BadBody"})),
        Case("body before header", (f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body>{wrapper(CANARY)}'
                                    f"</soap:Body><soap:Header/></soap:Envelope>").encode(), frozenset({"BadBody"})),
        Case("element after the body", (f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body>{wrapper(CANARY)}'
                                        f"</soap:Body><x/></soap:Envelope>").encode(), frozenset({"BadBody"})),
        Case("two requests in the body", envelope(wrapper(CANARY) + wrapper()).encode(), frozenset({"BadBody"})),
        Case("text-only body", envelope(CANARY).encode(), frozenset({"EmptyMessage"})),
        Case("no body", f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Header>{CANARY}</soap:Header></soap:Envelope>'
             .encode(), frozenset({"BadBody"})),
        Case("not an envelope", f"<Envelope><Body>{wrapper(CANARY)}</Body></Envelope>".encode(),
             frozenset({"NotSoap"})),
        Case("envelope in another namespace", envelope(wrapper(CANARY), ns="urn:not-soap").encode(),
             frozenset({"NotSoap"})),
        Case("unknown operation", envelope(f'<sr:{CANARY} xmlns:sr="{SR}"/>').encode(),
             frozenset({"UnknownOperation"})),
        Case("trailing content after the root", (good + f"<x>{CANARY}</x>").encode(), frozenset({"NotXml"})),
    ]


def _encoding_cases() -> list[Case]:
    good = envelope(wrapper(f"<x>{CANARY}</x>"))
    latin = envelope(wrapper(f"<x>{CANARY} caf\u00e9</x>"))
    rng = random.Random(4)
    return [
        Case("truncated", search_envelope()[:-60], frozenset({"NotXml"})),
        Case("garbage bytes", CANARY.encode() + rng.randbytes(4096), frozenset({"Encoding", "NotXml"})),
        Case("printable garbage", (CANARY + " <<>>&&;; ]]> <!-- <? " * 50).encode(), frozenset({"NotXml", "Encoding"})),
        Case("utf-16 with bom", ('<?xml version="1.0" encoding="UTF-16"?>' + good).encode("utf-16"),
             frozenset({"Encoding"})),
        Case("utf-16 without bom", good.encode("utf-16-le"), frozenset({"Encoding"})),
        Case("utf-16 doctype", (f'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                                + envelope(wrapper("&e;" + CANARY))).encode("utf-16-le"), frozenset({"Encoding"})),
        Case("utf-32", good.encode("utf-32"), frozenset({"Encoding"})),
        Case("latin-1 declared", ('<?xml version="1.0" encoding="ISO-8859-1"?>' + latin).encode("latin-1"),
             frozenset({"Encoding"})),
        Case("latin-1 declared, ascii content", ("<?xml version='1.0' encoding='iso-8859-1'?>" + good).encode(),
             frozenset({"Encoding"})),
        Case("utf-8 bom then latin-1 declaration", b"\xef\xbb\xbf" + (
            '<?xml version="1.0" encoding="ISO-8859-1"?>' + good).encode(), frozenset({"Encoding"})),
        Case("double bom", b"\xef\xbb\xbf\xef\xbb\xbf" + good.encode(), frozenset({"NotXml", "Encoding"})),
        Case("utf-16 bom with a utf-8 declaration", b"\xff\xfe" + (
            '<?xml version="1.0" encoding="UTF-8"?>' + good).encode("utf-16-le"), frozenset({"Encoding"})),
        Case("invalid utf-8 (overlong)", good.replace(CANARY, CANARY + "\x00").encode().replace(b"\x00", b"\xc0\xaf"),
             frozenset({"Encoding"})),
        Case("nul byte", good.replace(CANARY, CANARY + "\x00").encode(), frozenset({"Encoding", "NotXml"})),
        Case("ebcdic declared", ('<?xml version="1.0" encoding="EBCDIC-US"?>' + good).encode(),
             frozenset({"Encoding"})),
        Case("empty", b"", frozenset({"EmptyMessage"}), headers={"X-Canary": CANARY}),
        Case("whitespace only", b" \r\n\t " * 100, frozenset({"EmptyMessage"}), headers={"X-Canary": CANARY}),
    ]


def _content_type_cases() -> list[Case]:
    good = envelope(wrapper(f"<x>{CANARY}</x>")).encode()
    return [
        Case("json content type", good, frozenset({"ContentType"}), content_type="application/json"),
        Case("no content type", good, frozenset({"ContentType"}), content_type=None),
        Case("multipart (mtom)", good, frozenset({"ContentType"}),
             content_type=f'multipart/related; type="application/xop+xml"; boundary="{CANARY}"'),
        Case("html content type", good, frozenset({"ContentType"}), content_type="text/html"),
        Case("form content type", b"a=" + CANARY.encode(), frozenset({"ContentType"}),
             content_type="application/x-www-form-urlencoded"),
        Case("utf-16 charset parameter on utf-8 bytes", good, frozenset({"NoSignature"}),
             content_type="text/xml; charset=utf-16"),
        Case("hostile correlation id", good, frozenset({"NoSignature"}),
             headers={"X-Correlation-ID": f"{CANARY}<script> %0a"}),
        Case("chunked body", good, frozenset({"NoSignature"}), chunked=True),
    ]


def _comment_cases(sign: Callable[[bytes], bytes]) -> list[Case]:
    good = envelope(wrapper(f"<x>{CANARY}</x>"))
    signed = sign(search_envelope())

    def comment_in_surname() -> bytes:
        root = _doc(signed)
        surname = root.find(".//{*}DigestQueryField//{*}PersonSurName")
        text = surname.text
        surname.text = text[:4]
        comment = etree.Comment(CANARY)
        comment.tail = text[4:]
        surname.append(comment)
        return _bytes(root)

    def comment_in_timestamp() -> bytes:
        root = _doc(signed)
        root.find(".//wsu:Created", NS).append(etree.Comment(CANARY))
        return _bytes(root)

    def cdata_next_to_the_request() -> bytes:
        body = _doc(signed).find("soap:Body", NS)
        text = signed.decode()
        marker = text.index(">", text.index("Body")) + 1
        return (text[:marker] + f"<![CDATA[{CANARY}]]>" + text[marker:]).encode() if body is not None else signed

    return [
        Case("processing instruction before the root",
             (f'<?xml-stylesheet type="text/xsl" href="http://127.0.0.1:9/{CANARY}.xsl"?>' + good).encode(),
             frozenset({"ProcessingInstructionForbidden"})),
        Case("processing instruction in the body", envelope(wrapper(f"<?evil {CANARY}?><x/>")).encode(),
             frozenset({"ProcessingInstructionForbidden"})),
        Case("processing instruction after the root", (good + f"<?evil {CANARY}?>").encode(),
             frozenset({"ProcessingInstructionForbidden"})),
        Case("comment before the root", (f"<!-- {CANARY} -->" + good).encode(), frozenset({"NoSignature"})),
        Case("cdata section", envelope(wrapper(f"<x><![CDATA[{CANARY} ]]]]><![CDATA[> <a>&amp;]]></x>")).encode(),
             frozenset({"NoSignature"})),
        Case("comment inside signed text", comment_in_surname(), frozenset({"BadSignature"})),
        Case("comment inside the signed timestamp", comment_in_timestamp(), frozenset({"BadSignature"})),
        Case("cdata added to the signed body", cdata_next_to_the_request(), frozenset({"BadSignature"})),
    ]


def wrapping_cases(sign: Callable[[bytes], bytes]) -> list[Case]:
    """Signature wrapping: a valid signature over one Body, a different Body for the service to read."""
    evil_request = search_envelope("DOE")  # what the attacker wants executed instead

    def signed_parts():
        root = _doc(sign(search_envelope()))
        return root, root.find("soap:Header", NS), root.find("soap:Body", NS)

    def evil_body(body_id: str | None = None) -> etree._Element:
        body = copy.deepcopy(_doc(evil_request).find("soap:Body", NS))
        if body_id:
            body.set(f"{{{WSU}}}Id", body_id)
        return body

    def moved_into_header() -> bytes:
        root, header, body = signed_parts()
        holder = etree.SubElement(header, f"{{urn:{CANARY}}}Wrapper")
        root.remove(body)
        holder.append(body)
        root.append(evil_body())
        return _bytes(root)

    def duplicate_id() -> bytes:
        root, header, body = signed_parts()
        body_id = body.get(f"{{{WSU}}}Id")
        holder = etree.SubElement(header, f"{{urn:{CANARY}}}Wrapper")
        root.remove(body)
        holder.append(body)
        root.append(evil_body(body_id))
        return _bytes(root)

    def signed_copy_in_header() -> bytes:
        root, header, body = signed_parts()
        holder = etree.SubElement(header, f"{{urn:{CANARY}}}Wrapper")
        holder.append(copy.deepcopy(body))
        replacement = evil_body(body.get(f"{{{WSU}}}Id"))
        root.replace(body, replacement)
        return _bytes(root)

    def copy_inside_security() -> bytes:
        """Done on the text, as an attacker would: lxml would rename the Body's wsu prefix on a move."""
        root, header, body = signed_parts()
        text = _bytes(root).decode()
        start, end = text.index("<soap:Body"), text.index("</soap:Body>") + len("</soap:Body>")
        signed_body = text[start:end]
        evil = etree.tostring(evil_body()).decode()
        text = text[:start] + evil + text[end:]
        closing = text.index("</wsse:Security>")
        return (text[:closing] + signed_body + text[closing:]).encode()

    def extra_body() -> bytes:
        root, header, body = signed_parts()
        root.append(evil_body())
        return _bytes(root)

    def extra_body_first() -> bytes:
        root, header, body = signed_parts()
        root.insert(1, evil_body())
        return _bytes(root)

    def id_moved_to_wrapper() -> bytes:
        """The signed Body's id on a wrapper element holding a copy of it; the real Body replaced."""
        root, header, body = signed_parts()
        body_id = body.get(f"{{{WSU}}}Id")
        holder = etree.SubElement(header, f"{{urn:{CANARY}}}Wrapper")
        inner = copy.deepcopy(body)
        holder.append(inner)
        root.replace(body, evil_body())
        holder.set(f"{{{WSU}}}Id", body_id)
        inner.attrib.pop(f"{{{WSU}}}Id")
        return _bytes(root)

    def second_security_header() -> bytes:
        root, header, body = signed_parts()
        security = header.find("wsse:Security", NS)
        header.append(copy.deepcopy(security))
        return _bytes(root)

    def reference(mutate: Callable[[etree._Element], None]) -> Callable[[], bytes]:
        def build() -> bytes:
            root, header, body = signed_parts()
            mutate(root)
            return _bytes(root)
        return build

    def xpointer(root):
        root.find(".//ds:Reference", NS).set("URI", "#xpointer(/)")

    def external(root):
        root.find(".//ds:Reference", NS).set("URI", f"file:///etc/passwd#{CANARY}")

    def xslt(root):
        root.find(".//ds:Transform", NS).set("Algorithm", "http://www.w3.org/TR/1999/REC-xslt-19991116")

    def hmac(root):
        root.find(".//ds:SignatureMethod", NS).set("Algorithm", "http://www.w3.org/2000/09/xmldsig#hmac-sha1")

    def retrieval_method(root):
        key_info = root.find(".//ds:KeyInfo", NS)
        for child in list(key_info):
            key_info.remove(child)
        etree.SubElement(key_info, f"{{{DS}}}RetrievalMethod", URI=f"http://127.0.0.1:9/{CANARY}")

    def bad_token(root):
        root.find(".//wsse:BinarySecurityToken", NS).text = "AAAA" + CANARY

    def bad_value(root):
        value = root.find(".//ds:SignatureValue", NS)
        value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]

    def drop_timestamp_reference(root):
        references = root.findall(".//ds:Reference", NS)
        references[-1].getparent().remove(references[-1])

    return [
        Case("wrapping: signed body moved into a header, new body", moved_into_header(), SIGNATURE_REFUSED),
        Case("wrapping: new body with the signed body's wsu:Id", duplicate_id(), SIGNATURE_REFUSED),
        Case("wrapping: signed copy in a header, body replaced", signed_copy_in_header(), SIGNATURE_REFUSED),
        Case("wrapping: signed copy inside wsse:Security", copy_inside_security(), SIGNATURE_REFUSED | {"BadBody"}),
        Case("wrapping: extra body after the signed one", extra_body(), frozenset({"BadBody"})),
        Case("wrapping: extra body before the signed one", extra_body_first(), frozenset({"BadBody"})),
        Case("wrapping: signed id on a wrapper element", id_moved_to_wrapper(), SIGNATURE_REFUSED),
        Case("wrapping: two security headers", second_security_header(), SIGNATURE_REFUSED),
        Case("signature: xpointer reference", reference(xpointer)(), SIGNATURE_REFUSED),
        Case("signature: reference to /etc/passwd", reference(external)(), SIGNATURE_REFUSED),
        Case("signature: xslt transform", reference(xslt)(), SIGNATURE_REFUSED),
        Case("signature: hmac method", reference(hmac)(), SIGNATURE_REFUSED),
        Case("signature: retrieval method to a url", reference(retrieval_method)(), SIGNATURE_REFUSED),
        Case("signature: garbage token", reference(bad_token)(), SIGNATURE_REFUSED),
        Case("signature: altered signature value", reference(bad_value)(), SIGNATURE_REFUSED),
        Case("signature: timestamp not covered", reference(drop_timestamp_reference)(), SIGNATURE_REFUSED),
    ]


def _deep_cases(sign: Callable[[bytes], bytes]) -> list[Case]:
    """Validly signed, hostile content: past the guard and the signature check, into the SOAP layer."""

    def signed_with(mutate: Callable[[etree._Element], None]) -> bytes:
        root = _doc(search_envelope())
        mutate(root)
        return sign(_bytes(root))

    def xinclude(root):
        message = root.find("soap:Body", NS)[0][0]
        include = etree.SubElement(message, "{http://www.w3.org/2001/XInclude}include",
                                   href="file:///etc/passwd", parse="text")
        include.tail = CANARY

    def huge_surname(root):
        root.find(".//{*}DigestQueryField//{*}PersonSurName").text = CANARY + "D" * 500_000

    def foreign_element(root):
        etree.SubElement(root.find("soap:Body", NS)[0][0], f"{{urn:{CANARY}}}Injected").text = CANARY

    def script_text(root):
        root.find(".//{*}DigestQueryField//{*}PersonSurName").text = f"</x><script>{CANARY}</script>&amp;" * 3

    def wrong_message(root):
        wrapper_el = root.find("soap:Body", NS)[0]
        wrapper_el.remove(wrapper_el[0])
        etree.SubElement(wrapper_el, f"{{urn:{CANARY}}}NotALexsMessage")

    return [
        Case("signed: xinclude inside the message", signed_with(xinclude), frozenset({"LEXS:Error"})),
        Case("signed: huge surname", signed_with(huge_surname), frozenset({"LEXS:Error"})),
        Case("signed: foreign element in the message", signed_with(foreign_element), frozenset({"LEXS:Error"})),
        Case("signed: markup and control characters in a value", signed_with(script_text),
             frozenset({"LEXS:Error"})),
        Case("signed: a wrapper holding no lexs message", signed_with(wrong_message), frozenset({"LEXS:Error"})),
    ]


def build(sign: Callable[[bytes], bytes]) -> list[Case]:
    cases = [*_entity_cases(), *_structure_cases(), *_encoding_cases(), *_content_type_cases(),
             *_comment_cases(sign), *wrapping_cases(sign), *_deep_cases(sign)]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases
