"""Our xsd/ accepts official LEXS SR instances and rejects structurally wrong ones."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from lxml import etree

from leis_gateway.lexs import build
from leis_gateway.lexs.namespaces import DIGEST, LEXS, NC, SR, qname
from leis_gateway.lexs.schema import XSD_DIR, gateway_schema, validate_message
from leis_gateway.lexs.testing import REPO, SAMPLES, SHARED, official, official_errors, sample

FIXTURES = sorted(p.name for p in SAMPLES.glob("*.xml"))


def test_schema_compiles_fast_and_once():
    gateway_schema.cache_clear()
    start = time.perf_counter()
    first = gateway_schema()
    assert time.perf_counter() - start < 1.0
    assert gateway_schema() is first


@pytest.mark.parametrize("name", FIXTURES)
def test_request_fixtures_valid_against_ours_and_official(name):
    message = sample(name)
    assert validate_message(message) == []
    assert official_errors(message) == []


@pytest.mark.parametrize("name", FIXTURES)
def test_wrapped_request_is_valid(name):
    message = sample(name)
    wrapper_name = {
        "StructuredSearchRequestMessage": "doStructuredSearchRequest",
        "TextSearchRequestMessage": "doTextSearchRequest",
        "DataItemRequestMessage": "getDataItemRequest",
        "AttachmentRequestMessage": "getAttachmentRequest",
        "ServiceProviderRequestMessage": "getCapabilitiesRequest",
    }[etree.QName(message).localname]
    wrapper = etree.Element(qname(SR, wrapper_name))
    wrapper.append(message)
    assert validate_message(wrapper) == []
    wrapper.append(copy.deepcopy(message))  # a wrapper holds exactly one message
    assert validate_message(wrapper)


def _official_packages():
    if not SHARED.exists():
        return []
    return sorted((SHARED / "samples").glob("*-lexs.xml"))


@pytest.mark.parametrize("path", _official_packages(), ids=lambda p: p.name)
def test_official_sample_packages_validate_against_ours(path: Path):
    """The N-DEx samples' DataItemPackages (full Digests) fit a DataItemResponseMessage in our schema."""
    packages = etree.parse(str(path)).getroot().findall(f".//{{{LEXS}}}DataItemPackage")
    assert packages
    for package in packages:
        message = build.error_response("getDataItem", [], None)
        message.append(copy.deepcopy(package))
        assert official_errors(message) == []
        assert validate_message(message) == [], path.name


def test_official_samples_present_or_skip_loudly():
    official()  # skips with the reason when ../shared is missing


# --- structurally wrong requests ------------------------------------------------------------


def _find(root, ns, local):
    node = root.find(f".//{{{ns}}}{local}")
    assert node is not None, local
    return node


def _swap_metadata_order(root):
    meta = _find(root, LEXS, "SearchRequestMetadata")
    max_items = _find(meta, LEXS, "MaxItemMatches")
    meta.remove(max_items)
    meta.insert(0, max_items)
    return "lexs:MaxItemMatches"


def _drop_user(root):
    root.remove(_find(root, LEXS, "UserAssertion"))
    return "lexs:SearchRequestMetadata"


def _wrong_namespace(root):
    node = _find(root, LEXS, "MaxItemMatches")
    node.tag = "{urn:example:not-lexs}MaxItemMatches"
    return "MaxItemMatches"


def _bad_match_code(root):
    _find(root, LEXS, "QueryMatch").text = "approximately"
    return "lexs:QueryMatch"


def _bad_date(root):
    _find(root, NC, "Date").text = "1975-13-40"
    return "nc:Date"


def _bad_entity(root):
    _find(root, DIGEST, "EntityPerson").tag = qname(DIGEST, "EntityPersonX")
    return "lexsdigest:EntityPersonX"


def _bad_duration(root):
    _find(root, LEXS, "TimeoutDuration").text = "30 seconds"
    return "lexs:TimeoutDuration"


MUTATIONS = [_swap_metadata_order, _drop_user, _wrong_namespace, _bad_match_code, _bad_date,
             _bad_entity, _bad_duration]


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda f: f.__name__.strip("_"))
def test_invalid_requests_are_caught_with_line_and_element(mutate):
    root = etree.fromstring(etree.tostring(sample("structured-name-dob.xml")))
    expected_element = mutate(root)
    # reparse so that line numbers are those of the text a partner would have sent
    text = etree.tostring(root, pretty_print=True)
    root = etree.fromstring(text)
    errors = validate_message(root)
    assert errors, "our schema accepted a structurally wrong request"
    assert all(e.line for e in errors)
    assert any(e.element == expected_element for e in errors), [str(e) for e in errors]
    assert expected_element in str(errors[0]) or errors[0].element
    assert official_errors(root), "the official schema accepts it: the mutation is not wrong"


def test_bad_eye_code_is_caught():
    root = sample("structured-hair-colour.xml")
    _find(root, NC, "PersonHairColorCode").text = "PURPLE"
    errors = validate_message(root)
    assert [e.element for e in errors] == ["nc:PersonHairColorCode"]
    assert official_errors(root)


def test_validates_an_element_inside_a_soap_envelope_with_source_lines():
    body = etree.tostring(sample("structured-ssn.xml")).decode()
    envelope = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">\n'
        "<soap:Body>\n" + body.replace("<lexs:MaxItemMatches>25", "<lexs:MaxItemMatches>-3") +
        "</soap:Body></soap:Envelope>"
    )
    root = etree.fromstring(envelope.encode())
    message = root[0][0]
    errors = validate_message(message)
    assert len(errors) == 1
    assert errors[0].element == "lexs:MaxItemMatches"
    assert errors[0].line == message.find(f".//{{{LEXS}}}MaxItemMatches").sourceline


# --- licence hygiene --------------------------------------------------------------------------


# Spelled in pieces so that this file does not itself contain the phrases it looks for.
FORBIDDEN = ("Reciprocal " + "Public License", "Open Justice " + "Broker Consortium")


@pytest.mark.parametrize("folder", ["xsd", "wsdl", "tests/lexs_samples"])
def test_no_third_party_licence_text(folder):
    for path in (REPO / folder).rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for phrase in FORBIDDEN:
                assert phrase not in text, path


def test_every_schema_location_is_relative_and_exists():
    for path in list(XSD_DIR.rglob("*.xsd")) + list((REPO / "wsdl").glob("*.wsdl")):
        tree = etree.parse(str(path))
        for node in tree.iter("{http://www.w3.org/2001/XMLSchema}import"):
            location = node.get("schemaLocation")
            assert location and "://" not in location and not location.startswith("/")
            assert (path.parent / location).resolve().exists(), (path, location)
