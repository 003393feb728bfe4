"""XML to domain and back for each SR operation: validate, parse, ask the core, build.

The request body is validated against the gateway's own schemas before anything reads it;
an invalid one gets the operation's own response with ResultCode Error and an InvalidRequest
advisory naming the element and line.
"""
from __future__ import annotations

import logging

from lxml import etree

from ..domain import (
    Advisory,
    AdvisoryCategory,
    AttachmentRequest,
    DataItemRequest,
    MessageHeader,
    ServiceProviderRequest,
    ServiceQuestion,
    StructuredSearchRequest,
    TextSearchRequest,
)
from ..guard.middleware import Exchange
from ..lexs import build, parse, schema
from ..service import AuditFacts, Refusal, SearchRetrieveService
from .application import Operation

log = logging.getLogger(__name__)


class EndpointBase:
    """What every SR endpoint does around its business: validate, parse, answer, summarise.

    Subclasses answer a parsed request in `_dispatch`; anything unexpected becomes a LEXS
    Error answer of the operation (never a stack trace, never message content in logs).
    """

    identity: build.GatewayIdentity

    def __call__(self, operation: Operation, wrapper: etree._Element, exchange: Exchange) -> etree._Element:
        try:
            response = self._answer(operation, wrapper, exchange)
        except Exception as exc:
            log.error("%s failed: %s (correlation %s)", operation.name, type(exc).__name__, exchange.correlation_id)
            advisory = Advisory(AdvisoryCategory.OTHER, "The request could not be processed; try again later.")
            response = build.error_response(operation.name, (advisory,), None, self.identity)
        exchange.notes.update(_summary(response))
        return response

    def _answer(self, operation: Operation, wrapper: etree._Element, exchange: Exchange) -> etree._Element:
        errors = schema.validate_message(wrapper)
        if errors:
            advisory = Advisory(AdvisoryCategory.INVALID_REQUEST, errors[0].advisory_text())
            return build.error_response(operation.name, (advisory,), parse.lenient_header(wrapper), self.identity)
        try:
            request = parse.parse_request(operation.name, wrapper)
        except parse.LexsParseError as exc:
            advisory = Advisory(AdvisoryCategory.INVALID_REQUEST, str(exc)[:500])
            return build.error_response(operation.name, (advisory,), parse.lenient_header(wrapper), self.identity)
        agreement_id = exchange.caller.agreement_id if exchange.caller else ""
        response, facts = self._dispatch(operation.name, agreement_id, request, exchange)
        exchange.notes["facts"] = facts
        return response

    def _dispatch(self, operation: str, agreement_id: str, request, exchange: Exchange) -> tuple[etree._Element, AuditFacts]:
        raise NotImplementedError


class LexsEndpoint(EndpointBase):
    """The member endpoint: DHS sources through `SearchRetrieveService`."""

    def __init__(self, service: SearchRetrieveService, identity: build.GatewayIdentity) -> None:
        self.service = service
        self.identity = identity

    def _dispatch(self, operation: str, agreement_id: str, request, exchange: Exchange) -> tuple[etree._Element, AuditFacts]:
        header: MessageHeader = request.header
        if isinstance(request, StructuredSearchRequest):
            outcome, facts = self.service.structured_search(agreement_id, request)
            return build.search_response(outcome, header, self.identity), facts
        if isinstance(request, TextSearchRequest):
            outcome, facts = self.service.text_search(agreement_id, request)
            return build.search_response(outcome, header, self.identity), facts
        if isinstance(request, DataItemRequest):
            item, facts = self.service.data_item(agreement_id, request)
            return build.data_item_response(item, header, self.identity), facts
        if isinstance(request, AttachmentRequest):
            attachments, facts = self.service.attachment(agreement_id, request)
            return build.attachment_response(attachments, header, self.identity), facts
        assert isinstance(request, ServiceProviderRequest)
        admitted = self.service.admit_system(agreement_id)
        if isinstance(admitted, Refusal):
            return build.error_response(operation, (admitted.advisory,), header, self.identity), AuditFacts()
        if request.question is ServiceQuestion.CAPABILITIES:
            return build.capabilities_response(header, self.identity), AuditFacts()
        if request.question is ServiceQuestion.DATA_OWNERS:
            return build.data_owners_response(self.service.data_owners(), header, self.identity), AuditFacts()
        return build.availability_response(self.service.available(), header, self.identity), AuditFacts()


_LEXS = "{http://usdoj.gov/leisp/lexs/3.1}"
_MESSAGE_METADATA, _SEQUENCE = f"{_LEXS}SRMessageMetadata", f"{_LEXS}MessageSequenceNumber"
_RESPONSE_METADATA, _RESULT_CODE = f"{_LEXS}ResponseMetadata", f"{_LEXS}ResultCode"
_ADVISORY, _CATEGORY = f"{_LEXS}Advisory", f"{_LEXS}AdvisoryCategory"


def _summary(response: etree._Element) -> dict[str, object]:
    """Metadata of a response for the audit row: ids and codes, never content.

    The values of `findtext` for `SRMessageMetadata/MessageSequenceNumber` and
    `ResponseMetadata/ResultCode`, and of `iterfind` for `ResponseMetadata/Advisory/AdvisoryCategory`,
    read in one walk over the children (lxml's path engine costs twice as much per response).
    """
    sequence = result = None
    categories: list[str | None] = []
    for child in response:
        tag = child.tag
        if tag == _MESSAGE_METADATA:
            if sequence is None:
                for number in child.iterchildren(_SEQUENCE):
                    sequence = number.text or ""
                    break
        elif tag == _RESPONSE_METADATA:
            for item in child:
                if item.tag == _RESULT_CODE:
                    if result is None:
                        result = item.text or ""
                elif item.tag == _ADVISORY:
                    categories.extend(category.text for category in item.iterchildren(_CATEGORY))
    return {"response_message_id": sequence, "result_code": result, "advisory_categories": tuple(categories)}
