"""`leis-gateway partners ...`: see which partners the gateway would ask, and ask them as an analyst.

`partners search` stands in for AFI: it signs a LEXS doStructuredSearch with the `afi` demo
certificate, sends it to the internal endpoint over mutual TLS and prints what came back
(it prints; it writes nothing).
"""
from __future__ import annotations

import datetime as dt

import requests
from lxml import etree

from ..config import INTERNAL_SR_PATH, Settings
from ..domain import Criterion, Purpose, QueryField, QueryMatch
from ..lexs import requests as lexs_requests
from ..security.tls import client_session
from ..policy.agreements import AgreementRegistry
from ..security.pki import load_signing_credentials
from ..security.wssec import sign_envelope
from .partners import why_not

NS = {"soap": "http://schemas.xmlsoap.org/soap/envelope/", "lexs": "http://usdoj.gov/leisp/lexs/3.1",
      "lexsdigest": "http://usdoj.gov/leisp/lexs/digest/3.1", "nc": "http://niem.gov/niem/niem-core/2.0"}
DEFAULT_INTERNAL_PORT = 8444


def list_partners(settings: Settings) -> int:
    today = dt.date.today()
    rows = [("ID", "DIRECTION", "STATUS", "ENDPOINT", "QUERIED")]
    for agreement in AgreementRegistry(settings.registry_path).all():
        reason = why_not(agreement, None, today)
        rows.append((agreement.id, agreement.direction, agreement.status, agreement.endpoint or "-",
                     "yes" if reason is None else f"no: {reason}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def search(settings: Settings, *, url: str | None, surname: str | None, given: str | None,
           birth_date: str | None, owners: list[str], purpose: str, timeout: float | None, user: str) -> int:
    criteria = [Criterion(f, v, QueryMatch.WILDCARD if "*" in v else QueryMatch.EXACT)
                for f, v in ((QueryField.SURNAME, surname), (QueryField.GIVEN_NAME, given),
                             (QueryField.BIRTH_DATE, birth_date)) if v]
    if not criteria:
        print("partners search: give at least --surname, --given or --birth-date")
        return 2
    requester = lexs_requests.Requester("ICE Homeland Security Investigations", "AFI", "DCICEAFI0", user,
                                        Purpose(purpose))
    message = lexs_requests.structured_search_request(
        requester, criteria, timeout=dt.timedelta(seconds=timeout) if timeout else None,
        data_owners=tuple(("Partner", o) for o in owners))
    pki = settings.pki_dir
    signer = load_signing_credentials(pki / "agencies" / "afi.key", pki / "agencies" / "afi.crt")
    envelope = etree.fromstring(lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", message)))
    sign_envelope(envelope, signer.key, signer.certificate)
    host = settings.internal_host or settings.host
    url = url or f"https://{host}:{settings.internal_port or DEFAULT_INTERNAL_PORT}{INTERNAL_SR_PATH}"
    with client_session(pki / "ca.crt", pki / "agencies" / "afi.crt", pki / "agencies" / "afi.key") as session:
        try:
            response = session.post(url, data=etree.tostring(envelope), timeout=60,
                                    headers={"Content-Type": "text/xml; charset=utf-8"})
        except requests.RequestException as exc:
            print(f"cannot reach {url}: {type(exc).__name__} (is `scripts/serve` running?)")
            return 1
    root = etree.fromstring(response.content)
    fault = root.find(".//soap:Fault", NS)
    if fault is not None:
        print(f"SOAP fault: {fault.findtext('faultstring')}")
        return 1
    answer = root.find("soap:Body", NS)[0][0]
    print(f"{url}\nResultCode: {answer.findtext('lexs:ResponseMetadata/lexs:ResultCode', namespaces=NS)}")
    for advisory in answer.iterfind("lexs:ResponseMetadata/lexs:Advisory", NS):
        print(f"  advisory {advisory.findtext('lexs:AdvisoryCategory', namespaces=NS)}: "
              f"{advisory.findtext('lexs:AdvisoryText', default='', namespaces=NS)}")
    for package in answer.iterfind("lexs:SearchResultPackage", NS):
        meta = package.find("lexs:PackageMetadata", NS)
        partner = next((a.findtext("lexs:AttributeValue", namespaces=NS)
                        for a in meta.iterfind("lexs:DomainAttribute", NS)
                        if a.findtext("lexs:AttributeName", namespaces=NS) == "LEISPartner"), "?")
        owner = meta.findtext("lexs:DataOwnerMetadata/lexs:DataOwnerIdentifier/nc:OrganizationName", namespaces=NS)
        person = package.find(".//lexsdigest:Person", NS)
        name = " ".join(filter(None, (person.findtext(f"nc:PersonName/nc:{p}", namespaces=NS)
                                      for p in ("PersonGivenName", "PersonMiddleName", "PersonSurName"))))
        born = person.findtext("nc:PersonBirthDate/nc:Date", default="", namespaces=NS)
        photo = " [photo]" if package.find("lexs:AttachmentLink", NS) is not None else ""
        print(f"  {partner:<8} {name} {born}{photo}  (data owner: {owner})")
    return 0
