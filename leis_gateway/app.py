"""The composition root: build every layer once at start-up and wire the request path.

guard (size, parse, identity, audit, signatures) -> soap (spyne) -> endpoint (lexs parse/build)
-> service (policy, federation, sources, release).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .config import INTERNAL_SR_PATH, SR_PATH, Settings
from .audit import AuditLog, load_or_create_key
from .federation import Federation
from .guard.edge import Edge
from .guard.identity import CertificateIdentity
from .guard.middleware import Caller, Guard
from .lexs import build
from .observability import metrics
from .observability.readiness import Readiness
from .policy.agreements import AgreementRegistry
from .release.tokens import ItemTokens
from .security.pki import certificate_fingerprint, load_signing_credentials
from .service import SearchRetrieveService
from .soap import faults
from .lexs import schema
from .soap.application import OPERATION_BY_WRAPPER_TAG, soap_application
from .soap.endpoint import LexsEndpoint
from .soap.faults import SoapFault
from .soap.wsdl import ContractDocuments
from .domain import SourceSystem
from .sources.base import PrimeHub, RemoteHubSettings, open_hub

log = logging.getLogger(__name__)

# spyne logs whole messages (personal data) at DEBUG and on invalid input: never let it.
for _noisy in ("spyne", "zeep"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
logging.getLogger("spyne.protocol.soap.soap11.invalid").disabled = True

DHS = build.GatewayIdentity()


def load_or_create_secret(path: Path) -> bytes:
    """A random 32-byte secret kept in $LEIS_HOME (0600), created atomically on first use, so
    worker processes starting together agree on one secret."""
    return load_or_create_key(path)[0]


@dataclass
class Gateway:
    """Everything one serving process needs; `wsgi` is the application to serve."""

    settings: Settings
    registry: AgreementRegistry
    hub: PrimeHub
    federation: Federation
    audit: AuditLog
    service: SearchRetrieveService
    contract: ContractDocuments
    wsgi: Guard
    identity: CertificateIdentity | None = None  # None: read from settings on first use
    readiness: Readiness | None = None  # None: built on first /readyz

    def identify(self, environ: dict) -> Caller | SoapFault:
        """The caller: a checked client certificate (guard/identity.py), then its agreement."""
        if self.identity is None:
            self.identity = certificate_identity(self.settings)
        certificate = self.identity.certificate(environ)
        if isinstance(certificate, SoapFault):
            return certificate
        return self.caller_for(certificate)

    def caller_for(self, certificate: x509.Certificate) -> Caller | SoapFault:
        agreement = self.registry.by_certificate(certificate)
        if agreement is None:
            return faults.UNKNOWN_AGREEMENT
        return Caller(agreement.id, certificate_fingerprint(certificate))

    def serve_get(self, environ: dict):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return "200 OK", [("Content-Type", "text/plain")], b"ok\n"
        if path == "/readyz":  # audit writable, registry loaded, sources answering (observability/readiness.py)
            if self.readiness is None:
                self.readiness = Readiness(audit=self.audit, registry=self.registry, federation=self.federation,
                                           hub=self.hub)
            report = self.readiness.check()
            return report.status, [("Content-Type", "text/plain; charset=utf-8")], report.body
        if path == "/metrics" and self.settings.endpoint_metrics:  # any client certificate of the CA
            return "200 OK", [("Content-Type", metrics.CONTENT_TYPE)], metrics.METRICS.render()
        if path.rstrip("/") == SR_PATH:
            return self.contract.serve(environ)
        return None

    def close(self) -> None:
        self.federation.close()
        self.hub.close()
        self.audit.close()


def certificate_identity(settings: Settings) -> CertificateIdentity:
    return CertificateIdentity(
        settings.client_ca_file,
        crl=settings.crl_path,
        trusted_proxies=settings.trusted_proxies,
        header=settings.client_cert_header,
    )


def open_source_hub(settings: Settings) -> PrimeHub:
    """The source systems: the local databases, or the PRIME hub service when one is configured."""
    remote = None
    if settings.prime_hub_url:
        remote = RemoteHubSettings(
            url=settings.prime_hub_url,
            systems=tuple(SourceSystem(s) for s in settings.prime_hub_systems),
            pool_size=settings.prime_hub_pool,
            default_timeout=settings.default_timeout_seconds,
            ca_file=str(settings.prime_hub_ca) if settings.prime_hub_ca else None,
        )
    return open_hub(settings.home, remote=remote)


def open_audit(settings: Settings) -> AuditLog:
    return AuditLog.open(settings.audit_database_url, *load_or_create_key(settings.audit_key_path))


def create_gateway(settings: Settings) -> Gateway:
    schema.gateway_schema()  # compile once at start-up, not on the first request
    registry = AgreementRegistry(settings.registry_path)
    audit = open_audit(settings)
    hub = open_source_hub(settings)
    federation = Federation(settings.source_workers, per_source_limit=settings.source_concurrency,
                            idle_seconds=settings.source_idle_seconds)
    tokens = ItemTokens(load_or_create_secret(settings.token_key_path), settings.item_ttl_seconds)
    service = SearchRetrieveService(
        registry=registry,
        hub=hub,
        federation=federation,
        tokens=tokens,
        default_timeout_seconds=settings.default_timeout_seconds,
        max_timeout_seconds=settings.max_timeout_seconds,
    )
    contract = ContractDocuments(settings.wsdl_path, settings.endpoint_url)
    endpoint = LexsEndpoint(service, DHS)
    identity = certificate_identity(settings)
    gateway = Gateway(settings, registry, hub, federation, audit, service, contract, wsgi=None,  # type: ignore[arg-type]
                      identity=identity)
    credentials = load_signing_credentials(settings.pki_dir / "server.key", settings.pki_dir / "server.crt")
    gateway.wsgi = Guard(
        soap_application(endpoint),
        path=SR_PATH,
        operations={tag: op.name for tag, op in OPERATION_BY_WRAPPER_TAG.items()},
        max_body_bytes=settings.max_body_bytes,
        identify=gateway.identify,
        hooks=Edge(audit, registry, credentials, require_signature=settings.require_signature,
                   certificates=identity),
        get_handler=gateway.serve_get,
    )
    return gateway


# --- two-way sharing: the internal analysts' endpoint (issue 7, leis_gateway/twoway/) ---------------


@dataclass
class InternalGateway:
    """The analysts' endpoint: serve `wsgi` on its own port; shares registry, audit and identity."""

    wsgi: Guard
    service: "TwoWayService"  # noqa: F821 - imported lazily
    contract: ContractDocuments

    def close(self) -> None:
        self.service.close()


def create_internal_endpoint(gateway: Gateway) -> InternalGateway:
    """The internal endpoint (INTERNAL_SR_PATH) for the `internal` agreement (AFI) only: the same guard
    and edge (audit, signatures) as the member endpoint, answered by the two-way partners."""
    from .twoway.client import PartnerClient
    from .twoway.endpoint import InternalEndpoint, internal_only
    from .twoway.ids import PartnerIds
    from .twoway.service import TwoWayService

    settings = gateway.settings
    if not (settings.partner_client_cert.exists() and settings.partner_client_key.exists()):
        raise FileNotFoundError(
            f"{settings.partner_client_cert} is missing: run `leis-gateway init` (it issues the gateway's "
            "client certificate for two-way sharing)")
    identity = gateway.identity or certificate_identity(settings)
    client = PartnerClient(
        registry=gateway.registry,
        audit=gateway.audit,
        credentials=load_signing_credentials(settings.partner_client_key, settings.partner_client_cert),
        client_cert=str(settings.partner_client_cert),
        client_key=str(settings.partner_client_key),
        ca_file=str(settings.client_ca_file),
        certificates=identity,
        max_response_bytes=settings.partner_max_response_bytes,
    )
    service = TwoWayService(
        registry=gateway.registry,
        client=client,
        ids=PartnerIds(load_or_create_secret(settings.token_key_path), settings.item_ttl_seconds),
        gateway=DHS,
        default_timeout_seconds=settings.default_timeout_seconds,
        max_timeout_seconds=settings.max_timeout_seconds,
        partner_timeout_seconds=settings.partner_timeout_seconds,
    )
    contract = ContractDocuments(settings.wsdl_path, settings.internal_endpoint_url)

    def serve_get(environ: dict):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return "200 OK", [("Content-Type", "text/plain")], b"ok\n"
        if path.rstrip("/") == INTERNAL_SR_PATH:
            return contract.serve(environ)
        return None

    credentials = load_signing_credentials(settings.pki_dir / "server.key", settings.pki_dir / "server.crt")
    wsgi = Guard(
        soap_application(InternalEndpoint(service, DHS)),
        path=INTERNAL_SR_PATH,
        operations={tag: op.name for tag, op in OPERATION_BY_WRAPPER_TAG.items()},
        max_body_bytes=settings.max_body_bytes,
        identify=internal_only(gateway.identify, gateway.registry),
        hooks=Edge(gateway.audit, gateway.registry, credentials, require_signature=settings.require_signature,
                   certificates=identity),
        get_handler=serve_get,
    )
    return InternalGateway(wsgi, service, contract)
