"""LEXS 3.1 namespaces, qualified names and the Search/Retrieve operation table.

One place for every namespace URI so that `parse`, `build`, `schema` and the SOAP layer agree
on spelling; a typo in a namespace makes a message silently invalid, never an error.
"""
from __future__ import annotations

from dataclasses import dataclass

LEXS = "http://usdoj.gov/leisp/lexs/3.1"
DIGEST = "http://usdoj.gov/leisp/lexs/digest/3.1"
LIBRARY = "http://usdoj.gov/leisp/lexs/library/3.1"
CODES = "http://usdoj.gov/leisp/lexs/codes/3.1"
SR = "http://usdoj.gov/leisp/lexs/searchretrieve/3.1"
SR_WS = "http://usdoj.gov/leisp/lexs/searchretrieve/3.1/ws"
NC = "http://niem.gov/niem/niem-core/2.0"
J = "http://niem.gov/niem/domains/jxdm/4.0"
IM = "http://niem.gov/niem/domains/immigration/2.0"
S = "http://niem.gov/niem/structures/2.0"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

LEXS_VERSION = "3.1.4"

#: Prefixes used when the gateway emits XML (the same prefixes the LEXS samples use).
NSMAP: dict[str, str] = {
    "lexs": LEXS,
    "lexsdigest": DIGEST,
    "lexslib": LIBRARY,
    "lexscodes": CODES,
    "nc": NC,
    "j": J,
    "im": IM,
    "s": S,
    "xsi": XSI,
}

PREFIXES: dict[str, str] = {uri: prefix for prefix, uri in NSMAP.items()} | {SR: "sr", SR_WS: "srws"}


def qname(namespace: str, local: str) -> str:
    """Clark notation, `{namespace}local`, as lxml wants it."""
    return f"{{{namespace}}}{local}"


def prefixed(clark: str) -> str:
    """`{uri}Local` -> `prefix:Local` for humans (advisories, schema errors)."""
    if not clark.startswith("{"):
        return clark
    uri, _, local = clark[1:].partition("}")
    prefix = PREFIXES.get(uri)
    return f"{prefix}:{local}" if prefix else local


def local_name(clark: str) -> str:
    return clark.rpartition("}")[2]


@dataclass(frozen=True)
class Operation:
    """One row of DESIGN.md's operation table."""

    name: str
    request_wrapper: str  # local name in the SR namespace
    request_message: str  # local name in the lexs namespace
    response_wrapper: str
    response_message: str

    @property
    def request_wrapper_qname(self) -> str:
        return qname(SR, self.request_wrapper)

    @property
    def request_message_qname(self) -> str:
        return qname(LEXS, self.request_message)

    @property
    def response_wrapper_qname(self) -> str:
        return qname(SR, self.response_wrapper)

    @property
    def response_message_qname(self) -> str:
        return qname(LEXS, self.response_message)

    @property
    def soap_action(self) -> str:
        return f"{SR_WS}/{self.name}"


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("doStructuredSearch", "doStructuredSearchRequest", "StructuredSearchRequestMessage",
                  "doSearchResponse", "SearchResponseMessage"),
        Operation("doTextSearch", "doTextSearchRequest", "TextSearchRequestMessage",
                  "doSearchResponse", "SearchResponseMessage"),
        Operation("getDataItem", "getDataItemRequest", "DataItemRequestMessage",
                  "getDataItemResponse", "DataItemResponseMessage"),
        Operation("getAttachment", "getAttachmentRequest", "AttachmentRequestMessage",
                  "getAttachmentResponse", "AttachmentResponseMessage"),
        Operation("getCapabilities", "getCapabilitiesRequest", "ServiceProviderRequestMessage",
                  "getCapabilitiesResponse", "CapabilitiesResponseMessage"),
        Operation("getDataOwners", "getDataOwnersRequest", "ServiceProviderRequestMessage",
                  "getDataOwnersResponse", "DataOwnersResponseMessage"),
        Operation("getAvailability", "getAvailabilityRequest", "ServiceProviderRequestMessage",
                  "getAvailabilityResponse", "AvailabilityResponseMessage"),
    )
}

#: SR request wrapper local name -> operation (dispatch on the body element, not on SOAPAction).
OPERATION_BY_REQUEST_WRAPPER: dict[str, Operation] = {op.request_wrapper: op for op in OPERATIONS.values()}
