"""Test support: build a small demo state, run the real TLS server, talk to it as an agency."""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import requests
from lxml import etree

from leis_gateway.app import Gateway, create_gateway, load_or_create_secret
from leis_gateway.config import PROJECT_ROOT, SR_PATH, Settings
from leis_gateway.domain import Criterion, Purpose, QueryField, QueryMatch
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.lexs.namespaces import LEXS
from leis_gateway.policy.agreements import AgreementRegistry
from leis_gateway.security.pki import SigningCredentials, ensure_demo_pki, load_signing_credentials
from leis_gateway.security.wssec import WSSE_NS, sign_envelope
from leis_gateway.security.tls import base_url, client_session, make_tls_server
from leis_gateway.sources.demo import build_demo_sources

TEST_PEOPLE = 300
OFFICIAL_LEXS = PROJECT_ROOT.parent / "shared" / "lexs-3.1.4"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
NS = {"soap": SOAP_NS, "lexs": LEXS, "sr": "http://usdoj.gov/leisp/lexs/searchretrieve/3.1",
      "lexsdigest": "http://usdoj.gov/leisp/lexs/digest/3.1", "nc": "http://niem.gov/niem/niem-core/2.0"}


def build_demo_home(home: Path, people: int = TEST_PEOPLE) -> Path:
    settings = Settings(home=home)
    registry = AgreementRegistry(settings.registry_path)
    ensure_demo_pki(settings.pki_dir, [a.id for a in registry.all()])
    build_demo_sources(settings.home, people=people)
    load_or_create_secret(settings.token_key_path)
    return home


@dataclass
class RunningGateway:
    gateway: Gateway
    url: str  # the SR endpoint
    home: Path

    @classmethod
    @contextlib.contextmanager
    def start(cls, home: Path, **settings_changes):
        settings = Settings(home=home, port=0, **settings_changes)
        pki = settings.pki_dir
        server = make_tls_server(
            None, "127.0.0.1", 0, cert=pki / "server.crt", key=pki / "server.key", ca=pki / "ca.crt",
            numthreads=8,
        )
        server.prepare()
        url = base_url(server) + SR_PATH
        gateway = create_gateway(settings.with_(public_url=url))
        server.wsgi_app = gateway.wsgi
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            yield cls(gateway, url, home)
        finally:
            server.stop()
            thread.join(timeout=10)
            gateway.close()

    @property
    def base(self) -> str:
        return self.url[: -len(SR_PATH)]

    def session(self, agreement: str | None = "ndex") -> requests.Session:
        pki = self.home / "pki"
        if agreement is None:
            return client_session(pki / "ca.crt")
        return client_session(pki / "ca.crt", pki / "agencies" / f"{agreement}.crt", pki / "agencies" / f"{agreement}.key")

    def credentials(self, agreement: str) -> SigningCredentials:
        pki = self.home / "pki" / "agencies"
        return load_signing_credentials(pki / f"{agreement}.key", pki / f"{agreement}.crt")

    def signed(self, body: bytes, agreement: str = "ndex") -> bytes:
        credentials = self.credentials(agreement)
        envelope = etree.fromstring(body)
        sign_envelope(envelope, credentials.key, credentials.certificate)
        return etree.tostring(envelope)

    def post(self, body: bytes, agreement: str | None = "ndex", content_type: str = "text/xml; charset=utf-8",
             sign: bool = False, **kwargs) -> requests.Response:
        if sign:
            body = self.signed(body, agreement)
        with self.session(agreement) as session:
            return session.post(self.url, data=body, headers={"Content-Type": content_type}, timeout=30, **kwargs)

    def call(self, operation: str, message: etree._Element, agreement: str = "ndex") -> "Answer":
        """Send one signed LEXS message; a LEXS answer is checked against the official schema."""
        envelope = lexs_requests.soap_envelope(lexs_requests.wrap_request(operation, message))
        answer = Answer.of(self.post(envelope, agreement, sign=True))
        if answer.fault_cause is None:
            assert_officially_valid(answer.message)
        return answer


@functools.cache
def official_schema() -> etree.XMLSchema | None:
    from leis_gateway.lexs import schema

    return schema.official_schema(OFFICIAL_LEXS) if OFFICIAL_LEXS.exists() else None


def assert_officially_valid(message: etree._Element) -> None:
    """Every LEXS message the gateway emits must validate against the official lexs.xsd."""
    official = official_schema()
    if official is None:  # conftest says so loudly at the end of the run
        return
    assert official.validate(message), [str(e) for e in official.error_log][:5]


@dataclass(frozen=True)
class Answer:
    status: int
    root: etree._Element

    @classmethod
    def of(cls, response: requests.Response) -> "Answer":
        return cls(response.status_code, etree.fromstring(response.content))

    @property
    def fault_cause(self) -> str | None:
        cause = self.root.find(".//soap:Fault/detail/*", NS)
        return cause.text if cause is not None else None

    @property
    def message(self) -> etree._Element:
        """The LEXS response message inside the SR wrapper."""
        body = self.root.find("soap:Body", NS)
        return body[0][0]

    @property
    def result_code(self) -> str:
        return self.message.findtext("lexs:ResponseMetadata/lexs:ResultCode", namespaces=NS)

    @property
    def advisories(self) -> list[tuple[str, str]]:
        return [
            (a.findtext("lexs:AdvisoryCategory", namespaces=NS), a.findtext("lexs:AdvisoryText", default="", namespaces=NS))
            for a in self.message.iterfind("lexs:ResponseMetadata/lexs:Advisory", NS)
        ]

    @property
    def packages(self) -> list[etree._Element]:
        return self.message.findall("lexs:SearchResultPackage", NS)

    def persons(self) -> list[dict[str, str]]:
        found = []
        for person in self.message.iterfind(".//lexsdigest:EntityPerson/lexsdigest:Person", NS):
            name = person.find("nc:PersonName", NS)
            found.append({
                "given": name.findtext("nc:PersonGivenName", default="", namespaces=NS) if name is not None else "",
                "middle": name.findtext("nc:PersonMiddleName", default="", namespaces=NS) if name is not None else "",
                "surname": name.findtext("nc:PersonSurName", default="", namespaces=NS) if name is not None else "",
                "birth_date": person.findtext("nc:PersonBirthDate/nc:Date", default="", namespaces=NS),
            })
        return found


REQUESTERS = {
    "ndex": lexs_requests.Requester("FBI CJIS Division", "N-DEx", "WVFBI0000", "det.smith"),
}


def requester(purpose: Purpose | str | None = Purpose.CRIMINAL_LAW_ENFORCEMENT, user: str = "det.smith") -> lexs_requests.Requester:
    return lexs_requests.Requester("Test Agency", "TESTSYS", "AZ0000000", user, purpose)


def search(*criteria: tuple[QueryField, str] | tuple[QueryField, str, QueryMatch], purpose=Purpose.CRIMINAL_LAW_ENFORCEMENT,
           max_items: int = 25, timeout: dt.timedelta | None = None, extra_blocks: int = 0) -> etree._Element:
    built = [Criterion(c[0], c[1], c[2] if len(c) > 2 else QueryMatch.EXACT) for c in criteria]
    return lexs_requests.structured_search_request(
        requester(purpose), built, max_items=max_items, timeout=timeout, extra_blocks=extra_blocks
    )


# --- PostgreSQL for the tests that run on both databases ---------------------------------------

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_USERS = ("postgres", "root")


def postgres_url(user: str, port: int = PG_PORT) -> str:
    return f"postgresql+psycopg://{user}@{PG_HOST}:{port}/test"


@functools.cache
def postgres_user() -> str | None:
    """The first user that can connect to the `test` database, or None (PG tests then skip loudly)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    for user in PG_USERS:
        engine = create_engine(postgres_url(user), poolclass=NullPool, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return user
        except Exception:
            continue
        finally:
            engine.dispose()
    return None


def unsigned_part(message: bytes) -> bytes:
    """A signed message without its WS-Security header, for checks that no input value comes back:
    the header's base64 digests and signature are random text, which may spell anything ("DOE")."""
    root = etree.fromstring(message)
    for security in list(root.iter(f"{{{WSSE_NS}}}Security")):
        security.getparent().remove(security)
    return etree.tostring(root)
