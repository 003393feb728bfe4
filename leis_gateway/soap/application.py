"""The spyne application: the LEXS 3.1 SR operations, SOAP 1.1 document/literal.

spyne cannot describe an external-XSD body, so each operation takes and returns bare `AnyXml`
under the exact wrapper element names of the SR schema; the body is validated and turned
into domain objects by the `OperationHandler` (see `endpoint.py`), not by spyne.

A request the guard has parsed and verified takes a short path past spyne's dispatch
(`GuardedWsgiApplication`): the operation's handler called directly, and the answer envelope (or
fault) spyne's generic handling would give.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from lxml import etree
from spyne import BODY_STYLE_BARE, AnyXml, Application, Fault, ServiceBase, rpc
from spyne import application as spyne_application
from spyne.const.http import HTTP_200
from spyne.const.xml import DEFAULT_NS
from spyne.context import EventContext
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication, WsgiMethodContext, WsgiTransportContext

from ..guard.middleware import ENVIRON_EXCHANGE, Exchange
from ..lexs.namespaces import OPERATIONS, SR, Operation

log = logging.getLogger(__name__)

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


_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


class GuardedWsgiApplication(WsgiApplication):
    """spyne's WSGI server, with a short path for the envelopes the guard parsed and verified.

    For such an envelope, spyne's generic request handling finds what the guard already knows
    (the one Body, its one request) by parsing, matching and copying contexts, calls the service
    method through its context, service and event machinery, and wraps the answer through its
    generic serialiser. The short path calls the operation's handler with the request element
    (what the service method would pass it) and builds the answer envelope with the same lxml
    steps as `Soap11.serialize`. A failure gets spyne's own fault path, from the context spyne
    would have made (`_fault`): a `Fault` as raised, anything else spyne's Server fault; a handler
    that answers with something other than an element gets a Server fault too.

    It is taken only when that equivalence holds: the exchange carries a parsed envelope, no
    spyne event handler is registered (the events it skips would fire for nobody), the request
    is the Body's first node and carries no `xsi:nil`/`xsi:type` (which spyne interprets), and
    the operation has one method and no auxiliary ones. Anything else goes through
    `WsgiApplication` unchanged. Why: spyne's context, dispatch and events were about 3 % of the
    full path's requests/s under load, all of it work under the GIL (docs/performance.md, the
    seventh round).
    """

    def __init__(self, app: Application, handler: OperationHandler) -> None:
        super().__init__(app)
        self._handler = handler
        self._descriptors = {  # the operations the short path can answer as spyne would
            name: handles[0]
            for name, handles in app.interface.service_method_map.items()
            if len(handles) == 1 and handles[0].aux is None and handles[0].body_style is BODY_STYLE_BARE
            and not handles[0].mtom
        }
        self._event_managers = (self.event_manager, app.event_manager, app.in_protocol.event_manager,
                                app.out_protocol.event_manager)
        self._envelope_tag = f"{{{app.out_protocol.ns_soap_env}}}Envelope"
        self._body_tag = f"{{{app.out_protocol.ns_soap_env}}}Body"
        self._envelope_nsmap = app.interface.nsmap
        self._wrapper_tags = {descriptor: _out_tag(app, descriptor) for descriptor in self._descriptors.values()}
        self._headers = [("Content-Type", app.out_protocol.mime_type), ("Content-Length", "0")]
        # The state of a new context that is the same for every request (None, False, the
        # application and its protocols), as spyne's constructor leaves it.
        blank = WsgiMethodContext(self, {}, app.out_protocol.mime_type).__dict__
        self._blank_context = {key: value for key, value in blank.items() if key not in _PER_REQUEST}

    def __call__(self, req_env, start_response, wsgi_url=None):
        if ENVIRON_EXCHANGE in req_env and req_env.get("REQUEST_METHOD", "").upper() != "GET":
            return self.handle_rpc(req_env, start_response)  # never a WSDL request: no URL to build
        return super().__call__(req_env, start_response, wsgi_url)

    def handle_rpc(self, req_env, start_response):
        exchange: Exchange | None = req_env.get(ENVIRON_EXCHANGE)
        envelope = None if exchange is None else exchange.envelope
        if envelope is None:
            return super().handle_rpc(req_env, start_response)
        request = envelope.request
        descriptor = self._descriptors.get(request.tag)
        operation = OPERATION_BY_WRAPPER_TAG.get(request.tag)
        if (descriptor is None or operation is None
                or descriptor.event_managers and _any_handlers(descriptor.event_managers)
                or _any_handlers(self._event_managers) or request.getprevious() is not None
                or request.get(_XSI_NIL) is not None or request.get(_XSI_TYPE) is not None):
            return super().handle_rpc(req_env, start_response)

        # spyne's `process_request` around the service method: the call, and a failure made a fault
        # (a `Fault` as raised, anything else a Server fault with spyne's text for it); no event
        # fires, since none has a handler.
        try:
            answer = self._handler(operation, request, exchange)
        except Fault as fault:
            return self._fault(req_env, envelope, descriptor, fault, start_response)
        except Exception as exc:  # noqa: BLE001 - answered as spyne answers it, logged without its text
            log.error("%s failed: %s", operation.name, type(exc).__name__)
            text = spyne_application.get_fault_string_from_exception(exc)
            return self._fault(req_env, envelope, descriptor, Fault("Server", text), start_response)
        if not isinstance(answer, etree._Element):  # an `OperationHandler` answers with an element
            return self._fault(req_env, envelope, descriptor, Fault("Server", "The operation gave no answer."),
                               start_response)

        # Soap11.serialize for a bare AnyXml answer. The answer is moved into the envelope once
        # (spyne builds the wrapper and the Body apart and moves the whole answer three times:
        # each move walks all of its nodes); the namespace declarations that come out are the
        # same, since either way a declaration the envelope already makes is dropped from the
        # answer and its names are bound to the envelope's. An answer that is not the root of
        # its own tree gets spyne's exact steps.
        document = etree.Element(self._envelope_tag, nsmap=self._envelope_nsmap)
        if answer.getparent() is None:
            body = _sub_element(document, self._body_tag)
            _sub_element(body, self._wrapper_tags[descriptor]).append(answer)
        else:
            body = etree.Element(self._body_tag)
            wrapper = etree.Element(self._wrapper_tags[descriptor])
            wrapper.append(answer)
            body.append(wrapper)
            document.append(body)
        etree.cleanup_namespaces(document)
        exchange.response = document  # what GuardedSoap11.create_out_string leaves
        start_response(HTTP_200, list(self._headers))
        return [b""]

    def _fault(self, req_env: dict, envelope, descriptor, fault: Fault, start_response):
        """A failed call answered through spyne's own fault path, from the context spyne would have."""
        ctx = self._context(req_env)
        state = ctx.__dict__  # the context is frozen; these attributes exist (spyne sets them so)
        state["active"] = True
        state["in_document"] = envelope.root
        state["in_header_doc"] = None if envelope.header is None else envelope.header.getchildren()
        state["in_body_doc"] = envelope.request
        state["method_request_string"] = envelope.request.tag
        ctx.descriptor = descriptor
        ctx.out_error = fault
        return self.handle_error(ctx, (), fault, start_response)

    def _context(self, req_env: dict) -> WsgiMethodContext:
        """A `WsgiMethodContext` with the attributes and values spyne's constructor gives it.

        spyne's constructor sets its forty attributes one at a time through a `__setattr__` that
        checks a freeze flag, logs each HTTP header at DEBUG while it copies them, and fires
        `method_context_created` (for no handler here): the same state is set in one step.
        """
        ctx = WsgiMethodContext.__new__(WsgiMethodContext)
        state = ctx.__dict__
        state.update(self._blank_context)
        app = self.app
        transport = WsgiTransportContext.__new__(WsgiTransportContext)
        transport.__dict__.update(
            parent=ctx, itself=self, type="http", app=app, request_encoding=None, remote_addr=None,
            sessid="", req=req_env, resp_headers={"Content-Type": app.out_protocol.mime_type},
            resp_code=None, wsdl=None, wsdl_error=None, req_env=req_env,
            req_method=req_env.get("REQUEST_METHOD", None),
            headers={key[5:].lower(): [value] for key, value in req_env.items() if key.startswith("HTTP_")},
        )
        inprot_ctx = app.in_protocol.get_context(ctx, self)
        state.update(
            call_start=time.time(), transport=transport, outprot_ctx=app.out_protocol.get_context(ctx, self),
            inprot_ctx=inprot_ctx, protocol=inprot_ctx, event=EventContext(ctx), files=[], pusher_stack=[],
        )
        return ctx


_sub_element = etree.SubElement
#: The parts of a new `WsgiMethodContext` that belong to one request (`_context` makes them).
_PER_REQUEST = frozenset(
    ("call_start", "transport", "outprot_ctx", "inprot_ctx", "protocol", "event", "files", "pusher_stack"))


def _out_tag(app: Application, descriptor) -> str:
    """The answer's wrapper element, as `Soap11.serialize` names it for a bare body."""
    message = descriptor.out_message
    namespace = message.Attributes.sub_ns
    if namespace is None:
        namespace = message.get_namespace()
    if namespace is DEFAULT_NS:
        namespace = app.interface.get_tns()
    name = message.Attributes.sub_name
    if name is None:
        name = message.get_type_name()
    return f"{{{namespace}}}{name}"


def _any_handlers(managers) -> bool:
    for manager in managers:
        if manager.handlers:
            return True
    return False


def soap_application(handler: OperationHandler) -> WsgiApplication:
    application = Application(
        [_service(handler)],
        tns=SR,
        name="LEXSSearchRetrieveService",
        in_protocol=GuardedSoap11(validator=None),
        out_protocol=GuardedSoap11(),
    )
    return GuardedWsgiApplication(application, handler)
