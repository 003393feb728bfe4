"""A hardened parse of inbound bytes: no DTD, no entities, no network, no PIs, bounded depth.

The guard parses once to decide whether a message may go on at all; everything downstream
(spyne, schema validation) sees only bytes that passed here.
"""
from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from ..soap import faults

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
MAX_DEPTH = 64


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_blank_text=False,
        collect_ids=False,
    )


@dataclass(frozen=True)
class InboundEnvelope:
    root: etree._Element
    header: etree._Element | None
    body: etree._Element
    request: etree._Element  # the single child of Body: the SR wrapper element


def parse_envelope(data: bytes) -> InboundEnvelope:
    """Parse and check the SOAP 1.1 shape; raise a `SoapFault` naming the first problem."""
    if not data.strip():
        raise faults.EMPTY
    head = data[:1024].lstrip()
    if head.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark does not hide the declaration
        head = head[3:].lstrip()
    if b"\x00" in data:  # never in UTF-8 XML; always in UTF-16/32, with or without a BOM
        raise faults.NOT_UTF8
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise faults.DTD
    if head.startswith(b"<?xml"):
        declaration = head.split(b"?>", 1)[0].lower().replace(b"'", b'"')
        if b"encoding=" in declaration and b'encoding="utf-8"' not in declaration:
            raise faults.NOT_UTF8
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise faults.NOT_UTF8 from None
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        if "depth" in str(exc).lower() or "nested" in str(exc).lower():
            raise faults.TOO_DEEP from None
        raise faults.NOT_XML from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise faults.DTD
    if _has_processing_instruction(root):
        raise faults.PI
    if _depth_exceeds(root, MAX_DEPTH):
        raise faults.TOO_DEEP
    if root.tag == f"{{{SOAP12_ENV}}}Envelope":
        raise faults.SOAP12
    if root.tag != f"{{{SOAP11_ENV}}}Envelope":
        raise faults.NOT_SOAP
    children = [c for c in root if isinstance(c.tag, str)]
    headers = [c for c in children if c.tag == f"{{{SOAP11_ENV}}}Header"]
    bodies = [c for c in children if c.tag == f"{{{SOAP11_ENV}}}Body"]
    if len(bodies) != 1 or len(headers) > 1 or len(children) != len(bodies) + len(headers):
        raise faults.BAD_BODY
    if headers and children.index(headers[0]) != 0:
        raise faults.BAD_BODY
    payload = [c for c in bodies[0] if isinstance(c.tag, str)]
    if len(payload) != 1:
        raise faults.EMPTY if not payload else faults.BAD_BODY
    return InboundEnvelope(root, headers[0] if headers else None, bodies[0], payload[0])


def _has_processing_instruction(root: etree._Element) -> bool:
    for _ in root.iter(etree.ProcessingInstruction):
        return True
    for step in (etree._Element.getprevious, etree._Element.getnext):  # before and after the root
        sibling = step(root)
        while sibling is not None:
            if isinstance(sibling, etree._ProcessingInstruction):
                return True
            sibling = step(sibling)
    return False


def _depth_exceeds(root: etree._Element, limit: int) -> bool:
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > limit:
            return True
    return False
