"""The internal endpoint's operations: the same SR wrappers as the member endpoint, answered by
the partners (through `TwoWayService`) instead of the DHS sources."""
from __future__ import annotations

import logging

from lxml import etree

from ..domain import (
    Advisory,
    AdvisoryCategory,
    AttachmentRequest,
    DataItemRequest,
    ServiceProviderRequest,
    ServiceQuestion,
    StructuredSearchRequest,
    TextSearchRequest,
)
from ..guard.middleware import Exchange
from ..lexs import build
from ..service import AuditFacts
from ..soap import faults
from ..soap.endpoint import EndpointBase
from ..soap.faults import SoapFault
from .service import TwoWayService

log = logging.getLogger(__name__)
# spyne warns when a second application has the member endpoint's namespace and name: intended here.
logging.getLogger("spyne.util.appreg").setLevel(logging.ERROR)

NOT_INTERNAL = SoapFault("NotInternalSystem", "Only the internal analysts' system may use this endpoint.")


class InternalEndpoint(EndpointBase):
    def __init__(self, service: TwoWayService, identity: build.GatewayIdentity) -> None:
        self.service = service
        self.identity = identity

    def _dispatch(self, operation: str, agreement_id: str, request, exchange: Exchange) -> tuple[etree._Element, AuditFacts]:
        cid = exchange.correlation_id
        facts = AuditFacts()
        header = request.header
        if isinstance(request, StructuredSearchRequest):
            response, facts = self.service.search(agreement_id, request, cid)
        elif isinstance(request, TextSearchRequest):
            advisory = Advisory(AdvisoryCategory.UNSTRUCTURED_SEARCH_NOT_SUPPORTED,
                                "Partners are queried with structured search only (doStructuredSearch).")
            response = build.error_response(operation, (advisory,), header, self.identity,
                                            max_items_requested=request.max_items)
            facts = AuditFacts(user_id=request.user.user_id)
        elif isinstance(request, DataItemRequest):
            response, facts = self.service.data_item(agreement_id, request, cid)
        elif isinstance(request, AttachmentRequest):
            response, facts = self.service.attachment(agreement_id, request, cid)
        else:
            assert isinstance(request, ServiceProviderRequest)
            response = self._service_provider(request, header)
        return response, facts

    def _service_provider(self, request: ServiceProviderRequest, header) -> etree._Element:
        if request.question is ServiceQuestion.CAPABILITIES:
            return build.capabilities_response(header, self.identity)
        if request.question is ServiceQuestion.DATA_OWNERS:
            partners = self.service.partners()
            identity = build.GatewayIdentity(
                owners=tuple(build.DataOwner(p.id, p.agency_name, p.ori) for p in partners))
            return build.data_owners_response(tuple((p.id, p.id) for p in partners), header, identity)
        return build.availability_response(bool(self.service.partners()), header, self.identity)


def internal_only(identify, registry):
    """Wrap a gateway's `identify`: a caller whose agreement is not `internal` is refused."""
    def check(environ: dict):
        caller = identify(environ)
        if isinstance(caller, SoapFault):
            return caller
        agreement = registry.get(caller.agreement_id)
        if agreement is None:
            return faults.UNKNOWN_AGREEMENT
        if agreement.direction != "internal":
            return NOT_INTERNAL
        return caller
    return check
