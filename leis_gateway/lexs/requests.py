"""Build LEXS SR *request* messages: for the two-way path, the conformance suite and tests.

The inverse of `parse`: a `Query` (criteria on permitted fields) becomes one
`StructuredQuery` with one `DigestQueryStatement` per criterion, as the User Guide (6.2) says.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lxml import etree

from ..domain import Criterion, MessageHeader, Purpose, QueryMatch
from . import build
from .digest_paths import FIELD_PATHS
from .namespaces import DIGEST, IM, J, LEXS, NC, NSMAP, OPERATIONS, SR, qname

_NS = {"lexsdigest": DIGEST, "nc": NC, "j": J, "im": IM, "lexs": LEXS}


@dataclass(frozen=True)
class Requester:
    """Who sends the request: its system, its user, and the purpose it states."""

    organization: str
    system_id: str
    ori: str
    user_id: str
    purpose: Purpose | str | None = Purpose.CRIMINAL_LAW_ENFORCEMENT
    destination_organization: str = "U.S. Department of Homeland Security"
    destination_system: str = "LEIS"

    def identity(self) -> build.GatewayIdentity:
        return build.GatewayIdentity(organization=self.organization, system_id=self.system_id, ori=self.ori)

    def destination(self) -> MessageHeader:
        return MessageHeader("0", None, self.destination_organization, self.destination_system)


def _path(parent: etree._Element, path: tuple[str, ...], value: str) -> None:
    node = parent
    for step in path:
        prefix, local = step.split(":")
        node = etree.SubElement(node, qname(_NS[prefix], local))
    node.text = value


def _start(local: str, requester: Requester, now: dt.datetime | None) -> etree._Element:
    message = etree.Element(qname(LEXS, local), nsmap=NSMAP)
    build._message_metadata(message, requester.identity(), requester.destination(), sequence=None, now=now)
    return message


def _user_assertion(message: etree._Element, requester: Requester) -> None:
    user = etree.SubElement(message, qname(LEXS, "UserAssertion"))
    etree.SubElement(user, qname(LEXS, "UserID")).text = requester.user_id
    etree.SubElement(user, qname(NC, "OrganizationName")).text = requester.organization
    etree.SubElement(user, qname(LEXS, "ORI")).text = requester.ori
    if requester.purpose is not None:
        build._domain_attribute(user, "SearchPurpose", str(requester.purpose))


def structured_search_request(
    requester: Requester,
    criteria: list[Criterion] | tuple[Criterion, ...],
    *,
    max_items: int = 25,
    timeout: dt.timedelta | None = None,
    data_owners: tuple[tuple[str, str], ...] = (),  # (organization, system id)
    extra_blocks: int = 0,
    now: dt.datetime | None = None,
) -> etree._Element:
    """A StructuredSearchRequestMessage; `extra_blocks` repeats the query (a batch: refused)."""
    message = _start("StructuredSearchRequestMessage", requester, now)
    _user_assertion(message, requester)
    meta = etree.SubElement(message, qname(LEXS, "SearchRequestMetadata"))
    etree.SubElement(meta, qname(LEXS, "RequestedData")).text = "All"
    for organization, system in data_owners:
        owner = etree.SubElement(meta, qname(LEXS, "DataOwnerIdentifier"))
        etree.SubElement(owner, qname(LEXS, "ORI")).text = "UNKNOWN00"
        etree.SubElement(owner, qname(NC, "OrganizationName")).text = organization
        etree.SubElement(owner, qname(LEXS, "SystemID")).text = system
    etree.SubElement(meta, qname(LEXS, "MaxItemMatches")).text = str(max_items)
    if timeout is not None:
        etree.SubElement(meta, qname(LEXS, "TimeoutDuration")).text = f"PT{timeout.total_seconds():g}S"
    etree.SubElement(meta, qname(LEXS, "StructuredPayloadsRequestedCode")).text = "none"
    for _ in range(1 + extra_blocks):
        query = etree.SubElement(message, qname(LEXS, "StructuredQuery"))
        for criterion in criteria:
            statement = etree.SubElement(query, qname(LEXS, "DigestQueryStatement"))
            field_element = etree.SubElement(statement, qname(LEXS, "DigestQueryField"))
            _path(field_element, FIELD_PATHS[criterion.field], criterion.value)
            etree.SubElement(statement, qname(LEXS, "QueryMatch")).text = criterion.match.value
    return message


def digest_statement(query: etree._Element, path: tuple[str, ...], value: str,
                     match: QueryMatch = QueryMatch.EXACT) -> None:
    """Append a statement on any Digest path (tests use it for fields that must be refused)."""
    statement = etree.SubElement(query, qname(LEXS, "DigestQueryStatement"))
    _path(etree.SubElement(statement, qname(LEXS, "DigestQueryField")), path, value)
    etree.SubElement(statement, qname(LEXS, "QueryMatch")).text = match.value


def text_search_request(requester: Requester, text: str, *, max_items: int = 25) -> etree._Element:
    message = _start("TextSearchRequestMessage", requester, None)
    _user_assertion(message, requester)
    meta = etree.SubElement(message, qname(LEXS, "SearchRequestMetadata"))
    etree.SubElement(meta, qname(LEXS, "RequestedData")).text = "All"
    etree.SubElement(meta, qname(LEXS, "MaxItemMatches")).text = str(max_items)
    etree.SubElement(meta, qname(LEXS, "StructuredPayloadsRequestedCode")).text = "none"
    etree.SubElement(message, qname(LEXS, "TextQuery")).text = text
    return message


def data_item_request(requester: Requester, item_id: str) -> etree._Element:
    message = _start("DataItemRequestMessage", requester, None)
    _user_assertion(message, requester)
    etree.SubElement(message, qname(LEXS, "DataItemID")).text = item_id
    etree.SubElement(message, qname(LEXS, "StructuredPayloadsRequestedCode")).text = "none"
    return message


def attachment_request(requester: Requester, *uris: str) -> etree._Element:
    message = _start("AttachmentRequestMessage", requester, None)
    _user_assertion(message, requester)
    for uri in uris:
        etree.SubElement(message, qname(LEXS, "AttachmentURI")).text = uri
    return message


def service_provider_request(requester: Requester) -> etree._Element:
    return _start("ServiceProviderRequestMessage", requester, None)


def wrap_request(operation: str, message: etree._Element) -> etree._Element:
    wrapper = etree.Element(qname(SR, OPERATIONS[operation].request_wrapper), nsmap={"sr": SR})
    wrapper.append(message)
    return wrapper


def soap_envelope(body_child: etree._Element) -> bytes:
    """A bare SOAP 1.1 envelope around a wrapper element (unsigned)."""
    soap = "http://schemas.xmlsoap.org/soap/envelope/"
    envelope = etree.Element(qname(soap, "Envelope"), nsmap={"soap": soap})
    etree.SubElement(envelope, qname(soap, "Header"))
    etree.SubElement(envelope, qname(soap, "Body")).append(body_child)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
