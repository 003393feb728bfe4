"""A zeep client for any LEXS 3.1 SR endpoint: mutual TLS, a signed request, the raw answer back.

zeep cannot build LEXS content itself (it does not follow the substitution groups LEXS relies
on), so the operation is called with `xsd.SkipValue` and a plugin puts the ready lxml message
into the wrapper; WS-Security runs after plugins, so the signature covers the final Body.
Answers are returned raw, for the caller to verify and validate.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
from pathlib import Path

import requests
import zeep
from lxml import etree
from zeep.transports import Transport

from .lexs.namespaces import OPERATIONS
from .security.tls import client_session

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"

_message: contextvars.ContextVar[etree._Element | None] = contextvars.ContextVar("lexs_message", default=None)


class _LexsBody(zeep.Plugin):
    """Puts the LEXS message of the current call into the SR wrapper zeep built."""

    def egress(self, envelope, http_headers, operation, binding_options):
        message = _message.get()
        if message is not None:
            wrapper = envelope.find(f"{{{SOAP11_ENV}}}Body")[0]
            for child in list(wrapper):
                wrapper.remove(child)
            wrapper.append(message)
        return envelope, http_headers


@dataclass(frozen=True)
class ClientIdentity:
    """The files a member system connects and signs with."""

    certificate: Path
    key: Path
    ca: Path


class LexsSoapClient:
    def __init__(self, wsdl: str, identity: ClientIdentity, *, sign: bool = True, timeout: float = 30) -> None:
        session = client_session(identity.ca, identity.certificate, identity.key)
        wsse = None
        if sign:
            from .security.zeep_support import zeep_wsse

            wsse = zeep_wsse(identity.key, identity.certificate)
        self.session = session
        self.client = zeep.Client(
            wsdl,
            transport=Transport(session=session, timeout=timeout, operation_timeout=timeout),
            wsse=wsse,
            plugins=[_LexsBody()],
            settings=zeep.Settings(raw_response=True, strict=False),
        )

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(self.client.service._operations)

    def call(self, operation: str, message: etree._Element) -> requests.Response:
        """Send one LEXS message with `operation`; the HTTP response is returned as it came."""
        token = _message.set(message)
        try:
            parameter = OPERATIONS[operation].request_message  # the wrapper's one child
            return getattr(self.client.service, operation)(**{parameter: zeep.xsd.SkipValue})
        finally:
            _message.reset(token)

    def close(self) -> None:
        self.session.close()
