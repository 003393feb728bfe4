"""The XML of two-way sharing: requests to partners, partners' answers, the merged answer.

Requests to a partner are built fresh from domain objects (the analyst's XML is never passed
on): DHS is the message origin, the partner the destination, and the analyst's UserAssertion
(user, organisation, ORI, domain attributes such as the purpose) is carried over.

Partners' packages are passed on verbatim except for three changes: their `s:id`/`s:ref`
values get a per-package prefix (ids must stay unique in the merged message), their
DataItemID and AttachmentURI values are replaced by sealed ids (see ids.py), and a
`lexs:DomainAttribute` `LEISPartner` (Domain `LEIS`) names the agreement the package came
from. Their `DataOwnerMetadata` stays the partner's; a package claiming a DHS data owner is
refused.
"""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

from lxml import etree

from ..domain import Advisory, AdvisoryCategory, Agreement, Criterion, MessageHeader, ResultCode, UserAssertion
from ..lexs import build
from ..lexs import requests as lexs_requests
from ..lexs.namespaces import LEXS, NC, OPERATIONS, S, qname

PARTNER_ATTRIBUTE = "LEISPartner"
_S_ID = qname(S, "id")
_S_REFS = (qname(S, "ref"), qname(S, "metadata"), qname(S, "linkMetadata"))


def _q(local: str) -> str:
    return qname(LEXS, local)


# --- requests to partners -------------------------------------------------------------------


def _requester(gateway: build.GatewayIdentity, user: UserAssertion, partner: Agreement) -> lexs_requests.Requester:
    return lexs_requests.Requester(
        organization=gateway.organization, system_id=gateway.system_id, ori=gateway.ori,
        user_id=user.user_id, purpose=None,
        destination_organization=partner.agency_name, destination_system=partner.id,
    )


def _carry_user(message: etree._Element, user: UserAssertion, gateway: build.GatewayIdentity) -> None:
    """Replace the UserAssertion the request builder wrote by the analyst's own."""
    old = message.find(_q("UserAssertion"))
    new = etree.Element(_q("UserAssertion"))
    etree.SubElement(new, _q("UserID")).text = user.user_id
    etree.SubElement(new, qname(NC, "OrganizationName")).text = user.organization or gateway.organization
    etree.SubElement(new, _q("ORI")).text = user.ori or gateway.ori
    for attribute in user.attributes:
        node = etree.SubElement(new, _q("DomainAttribute"))
        etree.SubElement(node, _q("AttributeName")).text = attribute.name
        etree.SubElement(node, _q("AttributeValue")).text = attribute.value
        etree.SubElement(node, _q("Domain")).text = attribute.domain
    old.addprevious(new)
    message.remove(old)


def search_request(gateway: build.GatewayIdentity, user: UserAssertion, partner: Agreement,
                   criteria: tuple[Criterion, ...], max_items: int, timeout_seconds: float) -> etree._Element:
    message = lexs_requests.structured_search_request(
        _requester(gateway, user, partner), criteria, max_items=max_items,
        timeout=dt.timedelta(seconds=max(1, int(timeout_seconds))),
    )
    _carry_user(message, user, gateway)
    return message


def data_item_request(gateway: build.GatewayIdentity, user: UserAssertion, partner: Agreement,
                      item_id: str) -> etree._Element:
    message = lexs_requests.data_item_request(_requester(gateway, user, partner), item_id)
    _carry_user(message, user, gateway)
    return message


def attachment_request(gateway: build.GatewayIdentity, user: UserAssertion, partner: Agreement,
                       uris: tuple[str, ...]) -> etree._Element:
    message = lexs_requests.attachment_request(_requester(gateway, user, partner), *uris)
    _carry_user(message, user, gateway)
    return message


def sequence_number(message: etree._Element) -> str:
    return message.findtext(f"{_q('SRMessageMetadata')}/{_q('MessageSequenceNumber')}") or ""


# --- partners' answers ----------------------------------------------------------------------


class UnusableAnswer(ValueError):
    """A signed, schema-valid answer that still cannot be used (wrong operation, not ours)."""


@dataclass
class PartnerMessage:
    """A partner's verified, schema-valid response message, read for merging."""

    message: etree._Element
    result_code: str
    advisories: tuple[tuple[str, str], ...]  # (category, text) as the partner wrote them
    server_limit: bool = False
    items: list[etree._Element] = field(default_factory=list)  # SearchResultPackage/DataItemPackage/Attachment


def read_answer(operation: str, wrapper: etree._Element, sent_sequence: str) -> PartnerMessage:
    op = OPERATIONS[operation]
    if wrapper.tag != op.response_wrapper_qname:
        raise UnusableAnswer(f"the answer is not a {op.response_wrapper}")
    children = [c for c in wrapper if isinstance(c.tag, str)]
    if len(children) != 1 or children[0].tag != op.response_message_qname:
        raise UnusableAnswer(f"the answer holds no {op.response_message}")
    message = children[0]
    metadata = message.find(_q("ResponseMetadata"))
    in_response_to = (metadata.findtext(_q("InResponseToMessageSequenceNumber")) or "").strip()
    if in_response_to != sent_sequence:
        raise UnusableAnswer("the answer does not respond to the gateway's request")
    advisories = tuple(
        ((a.findtext(_q("AdvisoryCategory")) or "").strip(), (a.findtext(_q("AdvisoryText")) or "").strip())
        for a in metadata.iterfind(_q("Advisory"))
    )
    item_tag = {"SearchResponseMessage": "SearchResultPackage", "DataItemResponseMessage": "DataItemPackage",
                "AttachmentResponseMessage": "Attachment"}.get(op.response_message)
    items = list(message.iterfind(_q(item_tag))) if item_tag else []
    limit = message.findtext(f"{_q('SearchResponseMetadata')}/{_q('ServerLimitIndicator')}") == "true"
    return PartnerMessage(message, (metadata.findtext(_q("ResultCode")) or "").strip(), advisories, limit, items)


def partner_advisories(partner: Agreement, answer: PartnerMessage) -> tuple[Advisory, ...]:
    """The partner's own advisories, passed on with its name (texts clipped)."""
    out = []
    for category, text in answer.advisories:
        out.append(Advisory(_category(category), f"Partner {partner.id}: {text}"[:500]))
    return tuple(out)


def _category(text: str) -> AdvisoryCategory:
    try:
        return AdvisoryCategory(text)
    except ValueError:
        return AdvisoryCategory.OTHER


def prefix_ids(element: etree._Element, prefix: str) -> etree._Element:
    """Prefix every `s:id` and reference in `element` (ids must stay unique in a merged message)."""
    for node in element.iter():
        if not isinstance(node.tag, str):
            continue
        value = node.get(_S_ID)
        if value is not None:
            node.set(_S_ID, prefix + value)
        for attribute in _S_REFS:
            value = node.get(attribute)
            if value is not None:
                node.set(attribute, " ".join(prefix + v for v in value.split()))
    return element


def adopt_package(package: etree._Element, partner: Agreement, seal: Callable[[str, str], str],
                  dhs_oris: frozenset[str]) -> etree._Element:
    """A copy of a partner's package, fit to pass on (see the module doc); UnusableAnswer if not."""
    adopted = copy.deepcopy(package)
    metadata = adopted.find(_q("PackageMetadata"))
    owner_ori = (metadata.findtext(f"{_q('DataOwnerMetadata')}/{_q('DataOwnerIdentifier')}/{_q('ORI')}") or "").strip()
    if owner_ori in dhs_oris:
        raise UnusableAnswer("a package claims a DHS data owner")
    item_id = metadata.find(_q("DataItemID"))
    item_id.text = seal("item", (item_id.text or "").strip())
    for uri in adopted.iterfind(f"{_q('AttachmentLink')}/{_q('AttachmentURI')}"):
        uri.text = seal("attachment", (uri.text or "").strip())
    for attribute in metadata.findall(_q("DomainAttribute")):
        if attribute.findtext(_q("AttributeName")) == PARTNER_ATTRIBUTE:
            metadata.remove(attribute)
    stamp = etree.SubElement(metadata, _q("DomainAttribute"))
    etree.SubElement(stamp, _q("AttributeName")).text = PARTNER_ATTRIBUTE
    etree.SubElement(stamp, _q("AttributeValue")).text = partner.id
    etree.SubElement(stamp, _q("Domain")).text = "LEIS"
    return adopted


def adopt_attachment(attachment: etree._Element, analyst_uri: str) -> etree._Element:
    adopted = copy.deepcopy(attachment)
    adopted.find(_q("AttachmentURI")).text = analyst_uri
    return adopted


# --- answers to the analyst -----------------------------------------------------------------


def search_answer(gateway: build.GatewayIdentity, header: MessageHeader, code: ResultCode,
                  advisories: tuple[Advisory, ...], packages: list[etree._Element], max_items: int,
                  limit_hit: bool) -> etree._Element:
    message = build.error_response("doStructuredSearch", advisories, header, gateway, result_code=code,
                                   max_items_requested=max_items)
    metadata = message.find(_q("SearchResponseMetadata"))
    metadata.find(_q("NumberItemMatches")).text = str(len(packages))
    metadata.find(_q("ServerLimitIndicator")).text = "true" if limit_hit else "false"
    message.extend(packages)
    return message


def data_item_answer(gateway: build.GatewayIdentity, header: MessageHeader, code: ResultCode,
                     advisories: tuple[Advisory, ...], package: etree._Element | None) -> etree._Element:
    message = build.error_response("getDataItem", advisories, header, gateway, result_code=code)
    if package is not None:
        message.append(package)
    return message


def attachment_answer(gateway: build.GatewayIdentity, header: MessageHeader, code: ResultCode,
                      advisories: tuple[Advisory, ...], attachments: list[etree._Element]) -> etree._Element:
    message = build.error_response("getAttachment", advisories, header, gateway, result_code=code)
    message.extend(attachments)
    return message
