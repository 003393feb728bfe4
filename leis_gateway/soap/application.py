"""The spyne application: the LEXS 3.1 SR operations, SOAP 1.1 document/literal.

spyne cannot describe an external-XSD body, so each operation takes and returns bare `AnyXml`
under the exact wrapper element names of the SR schema; the body is validated and turned
into domain objects by the `OperationHandler` (see `endpoint.py`), not by spyne.
"""
from __future__ import annotations

from typing import Callable

from lxml import etree
from spyne import AnyXml, Application, ServiceBase, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from ..guard.middleware import ENVIRON_EXCHANGE, Exchange
from ..lexs.namespaces import OPERATIONS, SR, Operation

OPERATION_BY_WRAPPER_TAG: dict[str, Operation] = {op.request_wrapper_qname: op for op in OPERATIONS.values()}

# (operation, the request wrapper element, the exchange) -> the LEXS response message
OperationHandler = Callable[[Operation, etree._Element, Exchange], etree._Element]


def _service(handler: OperationHandler) -> type[ServiceBase]:
    def method(operation: Operation):
        def call(ctx, message):
            return handler(operation, ctx.in_body_doc, ctx.transport.req_env[ENVIRON_EXCHANGE])

        call.__name__ = operation.name
        return rpc(
            AnyXml,
            _returns=AnyXml,
            _body_style="bare",
            _operation_name=operation.name,
            _in_message_name=operation.request_wrapper,
            _out_message_name=operation.response_wrapper,
        )(call)

    members = {op.name: method(op) for op in OPERATIONS.values()}
    return type("LexsSearchRetrieveService", (ServiceBase,), members)


class GuardedSoap11(Soap11):
    """SOAP 1.1 between the guard and the edge, without parsing or serialising twice.

    In: the envelope the guard parsed, checked and verified is the one read, as it is (no
    SOAP-encoding `href` is followed into it). Out: the answer envelope is left on the exchange
    for the edge to sign as an element. Outside the guard (no exchange in the environ) it is plain
    `Soap11`.
    """

    def create_in_document(self, ctx, charset=None):
        exchange: Exchange | None = ctx.transport.req_env.get(ENVIRON_EXCHANGE)
        if exchange is None or exchange.envelope is None:
            return super().create_in_document(ctx, charset)
        ctx.in_document = (exchange.envelope.root, {})

    def create_out_string(self, ctx, charset=None):
        exchange: Exchange | None = ctx.transport.req_env.get(ENVIRON_EXCHANGE)
        if exchange is None:
            return super().create_out_string(ctx, charset)
        exchange.response = ctx.out_document
        ctx.out_string = [b""]


def soap_application(handler: OperationHandler) -> WsgiApplication:
    application = Application(
        [_service(handler)],
        tns=SR,
        name="LEXSSearchRetrieveService",
        in_protocol=GuardedSoap11(validator=None),
        out_protocol=GuardedSoap11(),
    )
    return WsgiApplication(application)
