"""The LEXS 3.1 SR conformance checks, in the order they run.

Each check is a small function registered with `@check`; see `core` for the contract. The requests
come from `leis_gateway.lexs.requests`, so they are the messages a well-behaved member sends.
"""
from __future__ import annotations

import hashlib
import re

import requests
from cryptography.hazmat.primitives import serialization
from lxml import etree

from leis_gateway.domain import Criterion, QueryField
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.security.tls import client_session
from leis_gateway.lexs.namespaces import LEXS, OPERATIONS
from leis_gateway.lexs.validate_cli import Unusable, validate_document

from .core import NS, CheckFailed, Context, Exchange, check

__all__ = ["NO_HIT_SURNAME", "SEARCH_SURNAME"]

SEARCH_SURNAME = "DOE"
#: A surname no real record carries: the no-hit search.
NO_HIT_SURNAME = "ZZQXCONFORMANCENOHIT"
_DUMMY_ITEM = "urn:lexs-conformance:no-such-data-item"
_DUMMY_ATTACHMENT = "urn:lexs-conformance:no-such-attachment"


def _subject(cert) -> str:
    return cert.subject.rfc4514_string()


def _fingerprint(cert) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]


def _brief(error) -> str:
    """A schema error in a few words: where, which element, what (the full path goes to the details)."""
    message = re.sub(r"^Element '[^']*'(, attribute '[^']*')?: ", "", error.message)
    return f"line {error.line}:{error.column} {error.element or error.path}: {message}"


# --- the contract ----------------------------------------------------------------------------------


@check("wsdl-loads", "the WSDL is served at URL?wsdl and zeep loads it (with every schema it imports)")
def wsdl_loads(ctx: Context) -> str:
    from leis_gateway.client import ClientIdentity, LexsSoapClient

    target = ctx.target
    session = client_session(target.ca, target.certificate, target.key)
    try:
        with session:
            response = session.get(target.wsdl_url, timeout=target.timeout)
    except requests.RequestException as exc:
        ctx.client_error = f"the WSDL did not load ({type(exc).__name__})"
        raise CheckFailed(f"GET {target.wsdl_url}: {type(exc).__name__}: {exc}"[:300]) from None
    if response.status_code != 200:
        ctx.client_error = "the WSDL did not load"
        raise CheckFailed(f"GET {target.wsdl_url}: HTTP {response.status_code} "
                          f"{response.headers.get('Content-Type', '')}")
    try:
        root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        ctx.client_error = "the WSDL did not load"
        raise CheckFailed(f"GET {target.wsdl_url}: not XML: {exc}") from None
    if root.tag != "{http://schemas.xmlsoap.org/wsdl/}definitions":
        ctx.client_error = "the WSDL did not load"
        raise CheckFailed(f"GET {target.wsdl_url}: the root element is {root.tag}, not wsdl:definitions")
    addresses = [a.get("location") for a in root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")]
    try:
        client = LexsSoapClient(target.wsdl_url, ClientIdentity(target.certificate, target.key, target.ca),
                                timeout=target.timeout)
    except Exception as exc:  # noqa: BLE001 - zeep raises many kinds
        ctx.client_error = "zeep could not load the WSDL"
        raise CheckFailed(f"zeep could not load {target.wsdl_url}: {type(exc).__name__}: {exc}"[:300]) from None
    ctx.client, ctx.client_error = client, None
    note = ""
    if addresses and any(a != target.endpoint for a in addresses):
        # Call the endpoint under test whatever the WSDL advertises (a proxy may rewrite it).
        client.client.service._binding_options["address"] = target.endpoint
        note = f"; soap:address {addresses[0]} differs from --endpoint (calls go to --endpoint)"
    return f"zeep loaded {target.wsdl_url} ({len(response.content)} bytes, {len(client.operations)} operations){note}"


@check("wsdl-operations", "the WSDL offers every LEXS 3.1 SR operation")
def wsdl_operations(ctx: Context) -> str:
    if ctx.client is None:
        raise CheckFailed(f"not checked: {ctx.client_error}")
    offered = ctx.client.operations
    missing = [name for name in OPERATIONS if name not in offered]
    if missing:
        raise CheckFailed(f"missing: {', '.join(missing)}", [f"offered: {', '.join(sorted(offered))}"])
    extra = sorted(offered - set(OPERATIONS))
    return f"all {len(OPERATIONS)} SR operations" + (f" (also: {', '.join(extra)})" if extra else "")


# --- every operation answers -------------------------------------------------------------------------


def _search(ctx: Context) -> Exchange:
    return ctx.call("search", "doStructuredSearch", "doStructuredSearch",
                    lambda: lexs_requests.structured_search_request(
                        ctx.target.requester, [Criterion(QueryField.SURNAME, SEARCH_SURNAME)]))


def _found(ctx: Context, path: str) -> str | None:
    """A value from the structured search's answer (to ask for a real data item or attachment)."""
    exchange = _search(ctx)
    try:
        message = exchange.lexs_answer().message
    except CheckFailed:
        return None
    value = message.findtext(path, namespaces=NS)
    return value.strip() if value else None


def _answers(operation: str, build) -> None:
    def run(ctx: Context) -> str:
        exchange = build(ctx)
        answer = exchange.lexs_answer()
        packages = len(answer.message.findall("lexs:SearchResultPackage", NS))
        extra = f", {packages} SearchResultPackage(s)" if operation in ("doStructuredSearch", "doTextSearch") else ""
        return f"{exchange.label}: HTTP 200, lexs:{OPERATIONS[operation].response_message}, {answer.describe()}{extra}"

    run.__name__ = f"answers_{operation}"
    check(f"answers:{operation}", f"{operation} answers with sr:{OPERATIONS[operation].response_wrapper} "
                                  f"holding lexs:{OPERATIONS[operation].response_message}")(run)


def _data_item(ctx: Context) -> Exchange:
    item = _found(ctx, "lexs:SearchResultPackage/lexs:PackageMetadata/lexs:DataItemID")
    label = f"getDataItem ({'an item found by the search' if item else 'an unknown item'})"
    return ctx.call("data-item", label, "getDataItem",
                    lambda: lexs_requests.data_item_request(ctx.target.requester, item or _DUMMY_ITEM))


def _attachment(ctx: Context) -> Exchange:
    uri = _found(ctx, ".//lexs:AttachmentLink/lexs:AttachmentURI")
    label = f"getAttachment ({'an attachment found by the search' if uri else 'an unknown attachment'})"
    return ctx.call("attachment", label, "getAttachment",
                    lambda: lexs_requests.attachment_request(ctx.target.requester, uri or _DUMMY_ATTACHMENT))


def _text(ctx: Context) -> Exchange:
    return ctx.call("text", "doTextSearch", "doTextSearch",
                    lambda: lexs_requests.text_search_request(ctx.target.requester, SEARCH_SURNAME))


def _service(operation: str):
    return lambda ctx: ctx.call(operation, operation, operation,
                                lambda: lexs_requests.service_provider_request(ctx.target.requester))


_answers("doStructuredSearch", _search)
_answers("doTextSearch", _text)
_answers("getDataItem", _data_item)
_answers("getAttachment", _attachment)
_answers("getCapabilities", _service("getCapabilities"))
_answers("getDataOwners", _service("getDataOwners"))
_answers("getAvailability", _service("getAvailability"))


@check("found-item-retrievable", "an item (and attachment) a search returned can be fetched with getDataItem "
                                 "(getAttachment)")
def found_item_retrievable(ctx: Context) -> str:
    _search(ctx).lexs_answer()  # no search answer, nothing to judge: fail with the search's problem
    results = []
    for name, exchange_of, path in (
            ("getDataItem", _data_item, "lexs:SearchResultPackage/lexs:PackageMetadata/lexs:DataItemID"),
            ("getAttachment", _attachment, ".//lexs:AttachmentLink/lexs:AttachmentURI")):
        if _found(ctx, path) is None:
            results.append(f"{name}: nothing found to fetch")
            continue
        answer = exchange_of(ctx).lexs_answer()
        if answer.result_code == "Error":
            raise CheckFailed(f"{name} of what the search returned: {answer.describe()}",
                              [f"{c}: {t}" for c, t in answer.advisories])
        results.append(f"{name}: {answer.describe()}")
    return "; ".join(results)


# --- refusals, no hits, text search, capabilities ----------------------------------------------------


def _no_purpose(ctx: Context) -> Exchange:
    from dataclasses import replace

    return ctx.call("no-purpose", "doStructuredSearch (no purpose)", "doStructuredSearch",
                    lambda: lexs_requests.structured_search_request(
                        replace(ctx.target.requester, purpose=None), [Criterion(QueryField.SURNAME, SEARCH_SURNAME)]))


def _schema_invalid_request(ctx: Context) -> etree._Element:
    message = lexs_requests.structured_search_request(ctx.target.requester,
                                                      [Criterion(QueryField.SURNAME, SEARCH_SURNAME)])
    message.find(f"{{{LEXS}}}SearchRequestMetadata/{{{LEXS}}}MaxItemMatches").text = "many"  # not an integer
    return message


@check("refusal:no-purpose", "a search stating no purpose is refused as LEXS: ResultCode Error and a "
                             "BusinessRuleNotMet advisory (no SOAP fault)")
def refusal_no_purpose(ctx: Context) -> str:
    answer = _no_purpose(ctx).lexs_answer()
    if answer.result_code != "Error" or "BusinessRuleNotMet" not in answer.categories:
        raise CheckFailed(f"expected ResultCode Error + BusinessRuleNotMet, got {answer.describe()}",
                          [f"{c}: {t}" for c, t in answer.advisories])
    return answer.describe()


@check("refusal:schema-invalid", "a schema-invalid request (MaxItemMatches 'many') is answered with an "
                                 "InvalidRequest advisory, not a SOAP fault")
def refusal_schema_invalid(ctx: Context) -> str:
    exchange = ctx.call("schema-invalid", "doStructuredSearch (schema-invalid)", "doStructuredSearch",
                        lambda: _schema_invalid_request(ctx))
    answer = exchange.lexs_answer()
    if answer.result_code != "Error" or "InvalidRequest" not in answer.categories:
        raise CheckFailed(f"expected ResultCode Error + InvalidRequest, got {answer.describe()}",
                          [f"{c}: {t}" for c, t in answer.advisories])
    return answer.describe()


@check("search:no-hit", "a search nothing matches is well-formed: Success, no SearchResultPackage, "
                        "NumberItemMatches 0")
def search_no_hit(ctx: Context) -> str:
    exchange = ctx.call("no-hit", f"doStructuredSearch (surname {NO_HIT_SURNAME})", "doStructuredSearch",
                        lambda: lexs_requests.structured_search_request(
                            ctx.target.requester, [Criterion(QueryField.SURNAME, NO_HIT_SURNAME)]))
    answer = exchange.lexs_answer()
    packages = answer.message.findall("lexs:SearchResultPackage", NS)
    matches = answer.message.findtext("lexs:SearchResponseMetadata/lexs:NumberItemMatches", namespaces=NS)
    problems = []
    if answer.result_code != "Success":
        problems.append(f"ResultCode {answer.result_code} (expected Success)")
    if packages:
        problems.append(f"{len(packages)} SearchResultPackage(s) (expected none)")
    if matches is None or matches.strip() != "0":
        problems.append(f"NumberItemMatches {matches!r} (expected '0')")
    if problems:
        raise CheckFailed("; ".join(problems), [f"{c}: {t}" for c, t in answer.advisories])
    return "Success, 0 packages, NumberItemMatches 0"


@check("search:text", "a text search is answered with UnstructuredSearchNotSupported (Error) or with results")
def search_text(ctx: Context) -> str:
    answer = _text(ctx).lexs_answer()
    packages = len(answer.message.findall("lexs:SearchResultPackage", NS))
    if answer.result_code == "Error":
        if "UnstructuredSearchNotSupported" in answer.categories:
            return "not supported: ResultCode Error, UnstructuredSearchNotSupported"
        raise CheckFailed(f"an Error without UnstructuredSearchNotSupported: {answer.describe()}",
                          [f"{c}: {t}" for c, t in answer.advisories])
    return f"supported: {answer.describe()}, {packages} SearchResultPackage(s)"


@check("capabilities", "getCapabilities answers Success with lexs:Capabilities, valid against the schemas")
def capabilities(ctx: Context) -> str:
    exchange = _service("getCapabilities")(ctx)
    answer = exchange.lexs_answer()
    if answer.result_code != "Success":
        raise CheckFailed(f"expected Success, got {answer.describe()}")
    found = answer.message.find("lexs:Capabilities", NS)
    if found is None:
        raise CheckFailed("no lexs:Capabilities in the CapabilitiesResponseMessage")
    verdict = validate_document(exchange.envelope, ctx.target.schemas, exchange.content)
    if not verdict.valid:
        raise CheckFailed(f"schema-invalid: {_brief(verdict.errors[0])}", [e.format("answer") for e in verdict.errors])
    offered = [etree.QName(c).localname for c in found if isinstance(c.tag, str)]
    return f"Success, valid; lexs:Capabilities holds {', '.join(offered) or 'nothing'}"


# --- every answer seen so far ----------------------------------------------------------------------


@check("schema-valid", "every answer's LEXS message validates against the schemas")
def schema_valid(ctx: Context) -> str:
    if not ctx.exchanges:
        raise CheckFailed(f"no answers to validate: {ctx.client_error or 'no request was sent'}")
    bad, details = [], []
    for exchange in ctx.exchanges:
        problem = exchange.problem()
        if problem:
            bad.append(f"{exchange.label}: {problem}")
            details.append(bad[-1])
            continue
        try:
            verdict = validate_document(exchange.envelope, ctx.target.schemas, exchange.content)
        except Unusable as exc:
            bad.append(f"{exchange.label}: no LEXS message: {exc.reason}")
            details.append(bad[-1])
            continue
        if not verdict.valid:
            bad.append(f"{exchange.label}: {_brief(verdict.errors[0])}")
            details.extend(f"{exchange.label}: {e.format('answer')}" for e in verdict.errors)
    if bad:
        raise CheckFailed(f"{len(bad)} of {len(ctx.exchanges)} answers invalid; first: {bad[0]}"[:300], details)
    return f"all {len(ctx.exchanges)} answers valid"


@check("signed", "every answer carries a WS-Security signature (Body + Timestamp) that verifies")
def signed(ctx: Context) -> str:
    if not ctx.exchanges:
        raise CheckFailed(f"no answers to verify: {ctx.client_error or 'no request was sent'}")
    bad, details, signers = [], [], {}
    for exchange in ctx.exchanges:
        problem = exchange.problem()
        if problem:
            bad.append(exchange.label)
            details.append(f"{exchange.label}: {problem}")
        elif exchange.signer is None:
            bad.append(exchange.label)
            details.append(f"{exchange.label}: {exchange.signature_error}")
        else:
            signers[_fingerprint(exchange.signer)] = exchange.signer
    if bad:
        raise CheckFailed(f"{len(bad)} of {len(ctx.exchanges)} answers not verified; first: {details[0]}"[:300],
                          details)
    who = "; ".join(f"{_subject(c)} (sha256 {fp}...)" for fp, c in signers.items())
    how = ("pinned to --server-cert" if ctx.target.server_cert is not None
           else "any valid signer accepted (no --server-cert given)")
    return f"all {len(ctx.exchanges)} answers verified, {how}: {who}"
