"""LEXS 3.1 request messages (lxml elements) -> domain request objects.

The input is assumed schema-valid (`schema.validate_message` ran first), so this module only
checks what the schema cannot: that the message fits the operation, that a query statement has
a value, that numbers and durations are usable. Anything else is a `LexsParseError`, which the
SOAP layer turns into an `InvalidRequest` advisory naming the element and its line.

No policy here: a query on hair colour or a vehicle parses fine; `policy/` refuses it.
"""
from __future__ import annotations

import re
from datetime import datetime

from lxml import etree

from leis_gateway.domain import (
    AttachmentRequest,
    DataItemRequest,
    DomainAttribute,
    LexsRequest,
    MessageHeader,
    QueryField,
    QueryMatch,
    QueryStatement,
    ServiceProviderRequest,
    ServiceQuestion,
    StructuredQueryBlock,
    StructuredSearchRequest,
    TextSearchRequest,
    UserAssertion,
)
from leis_gateway.lexs.digest_paths import FIELD_BY_LOCAL_PATH
from leis_gateway.lexs.namespaces import LEXS, NC, OPERATIONS, SR, local_name, prefixed, qname

__all__ = [
    "DIGEST_QUERY_PATHS",
    "LexsParseError",
    "lenient_header",
    "lenient_metadata",
    "parse_duration",
    "parse_request",
    "query_field",
]

_AGENCY_IDS = (qname(LEXS, "ORI"), qname(LEXS, "OriginatingAgencyID"))


class LexsParseError(ValueError):
    """A schema-valid message the gateway cannot use; `element` is a prefixed name (`lexs:X`)."""

    def __init__(self, element: str, line: int | None, message: str) -> None:
        super().__init__(f"{element} (line {line}): {message}" if line else f"{element}: {message}")
        self.element = element
        self.line = line
        self.message = message


def _error(node: etree._Element, message: str) -> LexsParseError:
    return LexsParseError(prefixed(node.tag), node.sourceline, message)


def _first(parent: etree._Element, tag: str) -> etree._Element | None:
    """The first child element named `tag` (what `find(tag)` gives, without lxml's path parser)."""
    return next(parent.iterchildren(tag), None)


def _child(parent: etree._Element, ns: str, local: str) -> etree._Element:
    node = _first(parent, qname(ns, local))
    if node is None:
        raise LexsParseError(prefixed(qname(ns, local)), parent.sourceline,
                             f"missing inside {prefixed(parent.tag)}")
    return node


def _text(parent: etree._Element, ns: str, local: str, default: str | None = None) -> str:
    node = _first(parent, qname(ns, local))
    if node is None:
        if default is not None:
            return default
        raise LexsParseError(prefixed(qname(ns, local)), parent.sourceline,
                             f"missing inside {prefixed(parent.tag)}")
    return (node.text or "").strip()


def _agency_id(parent: etree._Element) -> str | None:
    for child in parent:
        if child.tag in _AGENCY_IDS:
            return (child.text or "").strip() or None
    return None


def _elements(parent: etree._Element) -> list[etree._Element]:
    """Element children only (comments and processing instructions are not content)."""
    return [child for child in parent if isinstance(child.tag, str)]


# --- xsd values ---------------------------------------------------------------------------------

_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: str) -> float:
    """xsd:duration -> seconds (a year is 365 days, a month 30: only timeouts use this)."""
    match = _DURATION.match(value.strip())
    if match is None or value.strip() in ("P", "-P") or value.strip().endswith("T"):
        raise ValueError(f"not an xsd:duration: {value!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items() if k != "sign"}
    seconds = (((parts["y"] * 365 + parts["mo"] * 30 + parts["d"]) * 24 + parts["h"]) * 60
               + parts["mi"]) * 60 + parts["s"]
    return -seconds if match.group("sign") else seconds


def _datetime(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def _integer(node: etree._Element) -> int:
    try:
        return int((node.text or "").strip())
    except ValueError:
        raise _error(node, "not an integer") from None


# --- common parts -------------------------------------------------------------------------------


def _header(message: etree._Element) -> MessageHeader:
    meta = _child(message, LEXS, "SRMessageMetadata")
    origin = _child(_child(meta, LEXS, "MessageOriginMetadata"), LEXS, "SystemIdentifier")
    return MessageHeader(
        message_id=_text(meta, LEXS, "MessageSequenceNumber"),
        sent_at=_datetime(_text(meta, LEXS, "MessageDateTime", "")),
        origin_organization=_text(origin, NC, "OrganizationName"),
        origin_system=_text(origin, LEXS, "SystemID"),
        origin_ori=_agency_id(origin),
    )


def _domain_attributes(parent: etree._Element) -> tuple[DomainAttribute, ...]:
    return tuple(
        DomainAttribute(
            domain=_text(attr, LEXS, "Domain"),
            name=_text(attr, LEXS, "AttributeName", ""),
            value=_text(attr, LEXS, "AttributeValue", ""),
        )
        for attr in parent.iterchildren(qname(LEXS, "DomainAttribute"))
    )


def _user(message: etree._Element) -> UserAssertion:
    user = _child(message, LEXS, "UserAssertion")
    return UserAssertion(
        user_id=_text(user, LEXS, "UserID"),
        organization=_text(user, NC, "OrganizationName"),
        ori=_agency_id(user),
        attributes=_domain_attributes(user),
    )


def _search_metadata(message: etree._Element) -> tuple[int, float | None, tuple[str, ...]]:
    meta = _child(message, LEXS, "SearchRequestMetadata")
    max_items = _integer(_child(meta, LEXS, "MaxItemMatches"))
    timeout = None
    node = _first(meta, qname(LEXS, "TimeoutDuration"))
    if node is not None:
        try:
            timeout = parse_duration(node.text or "")
        except ValueError:
            raise _error(node, "not an xsd:duration") from None
        if timeout < 0:
            raise _error(node, "a negative timeout cannot be honoured")
    owners = tuple(
        _text(owner, LEXS, "SystemID") for owner in meta.iterchildren(qname(LEXS, "DataOwnerIdentifier"))
    )
    return max_items, timeout, owners


# --- structured queries -------------------------------------------------------------------------


def _leaves(node: etree._Element, path: tuple[str, ...]):
    children = _elements(node)
    if not children:
        yield path, node
        return
    for child in children:
        yield from _leaves(child, path + (local_name(child.tag),))


def _statement(statement: etree._Element) -> list[QueryStatement]:
    field_node = _child(statement, LEXS, "DigestQueryField")
    match_node = _child(statement, LEXS, "QueryMatch")
    try:
        match = QueryMatch((match_node.text or "").strip())
    except ValueError:
        raise _error(match_node, "not a QueryMatch code") from None
    entities = _elements(field_node)
    if len(entities) != 1:
        raise _error(field_node, "a DigestQueryField holds exactly one Digest entity")
    entity = entities[0]
    results = []
    for path, leaf in _leaves(entity, (local_name(entity.tag),)):
        value = (leaf.text or "").strip()
        if not value:
            continue
        results.append(QueryStatement(path=path, value=value, match=match, line=leaf.sourceline))
    if not results:
        raise _error(field_node, "the query field has no value")
    return results


def _structured_query(query: etree._Element) -> StructuredQueryBlock:
    statements: list[QueryStatement] = []
    for statement in query.iterchildren(qname(LEXS, "DigestQueryStatement")):
        statements.extend(_statement(statement))
    payload = sum(1 for _ in query.iterchildren(qname(LEXS, "StructuredPayloadQueryStatement")))
    if not statements and not payload:
        raise _error(query, "a StructuredQuery without any query statement")
    return StructuredQueryBlock(statements=tuple(statements), payload_statements=payload,
                                line=query.sourceline)


# --- the entry point ----------------------------------------------------------------------------

_QUESTIONS = {
    "getCapabilities": ServiceQuestion.CAPABILITIES,
    "getDataOwners": ServiceQuestion.DATA_OWNERS,
    "getAvailability": ServiceQuestion.AVAILABILITY,
}


def parse_request(operation: str, message: etree._Element) -> LexsRequest:
    """Read the lexs request message of `operation` (the wrapper element is accepted too)."""
    op = OPERATIONS.get(operation)
    if op is None:
        raise LexsParseError(operation, None, "unknown LEXS Search/Retrieve operation")
    if message.tag == op.request_wrapper_qname or (
        isinstance(message.tag, str) and message.tag.startswith(f"{{{SR}}}")
    ):
        if message.tag != op.request_wrapper_qname:
            raise _error(message, f"{operation} expects sr:{op.request_wrapper}")
        inner = _elements(message)
        if len(inner) != 1:
            raise _error(message, f"sr:{op.request_wrapper} holds exactly one lexs message")
        message = inner[0]
    if message.tag != op.request_message_qname:
        raise _error(message, f"{operation} expects lexs:{op.request_message}")

    header = _header(message)
    if operation in _QUESTIONS:
        return ServiceProviderRequest(header=header, question=_QUESTIONS[operation])
    user = _user(message)
    if operation == "getDataItem":
        item = _child(message, LEXS, "DataItemID")
        item_id = (item.text or "").strip()
        if not item_id:
            raise _error(item, "empty DataItemID")
        return DataItemRequest(header=header, user=user, item_id=item_id)
    if operation == "getAttachment":
        uris = tuple((node.text or "").strip() for node in message.iterchildren(qname(LEXS, "AttachmentURI")))
        if not uris or not all(uris):
            raise _error(message, "empty AttachmentURI")
        return AttachmentRequest(header=header, user=user, uris=uris)
    max_items, timeout, owners = _search_metadata(message)
    if operation == "doTextSearch":
        return TextSearchRequest(header=header, user=user, max_items=max_items)
    queries = tuple(_structured_query(q) for q in message.iterchildren(qname(LEXS, "StructuredQuery")))
    if not queries:
        raise _error(message, "no StructuredQuery")
    return StructuredSearchRequest(header=header, user=user, queries=queries, max_items=max_items,
                                   timeout_seconds=timeout, data_owners=owners)


# --- best effort, for messages that may be invalid (audit, error responses) ----------------------


def _lexs_message(element: etree._Element | None) -> etree._Element | None:
    """The lexs message itself, whether given the message or its SR wrapper."""
    if element is None or not isinstance(element.tag, str):
        return None
    if element.tag.startswith(f"{{{SR}}}"):
        children = _elements(element)
        return children[0] if children else None
    return element


def lenient_header(element: etree._Element | None) -> MessageHeader | None:
    """The request's `MessageHeader` if it can be read at all, else None; never raises.

    Used to address an error response (InResponseTo, destination) to a message that failed
    validation, so it reads only the metadata and tolerates anything else being wrong.
    """
    try:
        message = _lexs_message(element)
        return _header(message) if message is not None else None
    except Exception:  # noqa: BLE001 - best effort by design
        return None


def lenient_metadata(element: etree._Element | None) -> tuple[MessageHeader | None, UserAssertion | None]:
    """(header, user assertion) for the inbound audit record, each None when unreadable; never raises."""
    header = lenient_header(element)
    try:
        message = _lexs_message(element)
        user = _user(message) if message is not None and _first(message, qname(LEXS, "UserAssertion")) is not None else None
    except Exception:  # noqa: BLE001 - best effort by design
        user = None
    return header, user


# --- which Digest paths mean which query field --------------------------------------------------

#: The Digest leaf paths (as `QueryStatement.path`) the gateway understands, and what they mean.
DIGEST_QUERY_PATHS = FIELD_BY_LOCAL_PATH


def query_field(statement: QueryStatement) -> QueryField | None:
    """The `QueryField` a statement queries, or None for anything the gateway does not know."""
    return DIGEST_QUERY_PATHS.get(statement.path)
