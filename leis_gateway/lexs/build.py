"""Domain objects -> LEXS 3.1 response messages (lxml elements).

Only what is on the released domain types can be emitted: every builder reads `ReleasedRecord`
/ `ReleasedPerson` and nothing else, so a field the release layer dropped cannot leak here.

Every message returned validates against the official LEXS 3.1.4 `lexs.xsd` (tests check it)
and against the project's own `xsd/`. Element order follows the official sequences; where the
schema asks for a value the gateway does not know, a neutral documented value is used.

Choices worth knowing (all schema-valid, see `tests/test_lexs_build.py`):

* Deconfliction: every package names the DHS Law Enforcement Support Center as its
  `lexs:DataItemContact` (telephone 802-872-6020) and carries the instruction to contact DHS
  through the LESC before acting, as a `lexs:DomainAttribute` (Domain `LEIS`, AttributeName
  `Deconfliction`) of that contact. `DataItemContact` is the LEXS slot for "who to call about
  this data item", so consumers that render contacts show it without knowing our domain.
* Dissemination: `lexs:DisseminationCriteriaValue` with DomainText `DHS` and a text forbidding
  further release without the written consent of DHS (the code list white/gray/black cannot say it).
* Birthplace: NIEM 2.0 constrained has no `PersonBirthLocation` on a person; LEXS uses a separate
  `EntityLocation` (country only) linked by `lexsdigest:PersonBirthLocationAssociation`.
* Residence: `nc:ResidenceAssociation` (person -> address location), as the N-DEx samples do.
* Phone: a `lexsdigest:EntityTelephoneNumber` linked by `lexsdigest:EntityTelephoneNumberAssociation`
  (NIEM's `nc:Location` has no telephone).
* Photo: `lexs:AttachmentLink` + `lexsdigest:EntityPersonFacialImageAssociation` (EntityReference
  to the `EntityPerson`, as the User Guide 5.2.3 shows); the binary only via getAttachment.
* `s:id` values are unique per message: each package's ids are prefixed `R<n>-`.

Messages are put together from templates, one per shape of a part, with the values written in
(see "templates with values" below): the output is the same as building every element, faster.
"""
from __future__ import annotations

import base64
import copy
import functools
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import compress
from typing import NamedTuple

from lxml import etree

from leis_gateway.domain import (
    Address,
    Advisory,
    AdvisoryCategory,
    MessageHeader,
    Photo,
    QueryField,
    ReleasedPerson,
    ReleasedRecord,
    ResultCode,
    SearchOutcome,
    SourceStatus,
)
from leis_gateway.lexs.namespaces import (
    DIGEST,
    IM,
    J,
    LEXS,
    LEXS_VERSION,
    NC,
    NSMAP,
    OPERATIONS,
    S,
    SR,
    qname,
)
from leis_gateway.places import country_name, state_name

__all__ = [
    "AttachmentItem",
    "DataOwner",
    "GatewayIdentity",
    "SearchCapabilities",
    "attachment_response",
    "availability_response",
    "capabilities_response",
    "data_item_response",
    "data_owners_response",
    "error_response",
    "search_response",
    "wrap_response",
]

LESC_PHONE = "802-872-6020"
DECONFLICTION_TEXT = (
    "Before taking any action on this information, contact DHS through the Law Enforcement "
    "Support Center (LESC), telephone 802-872-6020, for deconfliction."
)
#: NCIC eye and hair colour codes (NCIC 2000 Code Manual), the values `nc:Person*ColorCode` allows.
NCIC_EYE = frozenset({"BLK", "BLU", "BRO", "GRN", "GRY", "HAZ", "MAR", "MUL", "PNK", "XXX"})
NCIC_HAIR = frozenset({"BLK", "BLN", "BLU", "BRO", "GRN", "GRY", "ONG", "PLE", "PNK", "RED", "SDY", "WHI", "XXX"})
DISSEMINATION_TEXT = (
    "For law enforcement use only. No further release or dissemination without the written "
    "consent of the U.S. Department of Homeland Security."
)


# --- identity of the gateway and its data owners ------------------------------------------


@dataclass(frozen=True)
class DataOwner:
    """A DHS component that owns records the gateway releases."""

    code: str  # "ICE" | "CBP" (ReleasedRecord.owner)
    name: str
    ori: str


@dataclass(frozen=True)
class GatewayIdentity:
    """Who the gateway says it is in every response (message origin, contacts, owners)."""

    organization: str = "U.S. Department of Homeland Security"
    system_id: str = "LEIS"
    ori: str = "DHS000000"  # placeholder until DHS assigns the production ORI
    contact_name: str = "Law Enforcement Support Center"
    contact_organization: str = "U.S. Immigration and Customs Enforcement, Law Enforcement Support Center"
    contact_phone: str = LESC_PHONE
    owners: tuple[DataOwner, ...] = (
        DataOwner("ICE", "U.S. Immigration and Customs Enforcement", "DHSICE000"),
        DataOwner("CBP", "U.S. Customs and Border Protection", "DHSCBP000"),
    )
    #: (owner code, source system) pairs answered by getDataOwners.
    sources: tuple[tuple[str, str], ...] = (("ICE", "TECS"), ("CBP", "TECS"), ("ICE", "EID"))
    data_sensitivity: str = "SBU"

    def owner(self, code: str) -> DataOwner:
        for owner in self.owners:
            if owner.code == code:
                return owner
        return DataOwner(code, code, self.ori)


@dataclass(frozen=True)
class SearchCapabilities:
    """What getCapabilities reports; text search is never supported."""

    max_hits: int = 100
    paging: bool = False
    multiple_values: bool = False
    wildcard: bool = True
    fuzzy: bool = True
    date_range: bool = True
    numeric_range: bool = False
    categories: tuple[str, ...] = ("Person",)


@dataclass(frozen=True)
class AttachmentItem:
    """One attachment to return from getAttachment: its opaque URI and the photograph."""

    uri: str
    photo: Photo
    owner: str | None = None  # "ICE" | "CBP": adds DataOwnerMetadata when known
    source: str | None = None
    description: str = "Booking photograph"


# --- message sequence numbers -----------------------------------------------------------

_sequence_lock = threading.Lock()
_sequence = itertools.count(time.time_ns() // 1_000_000)


def next_sequence() -> int:
    """Our own MessageSequenceNumber: monotonic per process, started from the clock (ms)."""
    with _sequence_lock:
        return next(_sequence)


# --- small element helpers ------------------------------------------------------------------


def _el(parent: etree._Element | None, ns: str, local: str, text: object | None = None,
        **attrs: str) -> etree._Element:
    tag = f"{{{ns}}}{local}"  # qname(), inlined: a response builds a few hundred elements
    node = etree.Element(tag, nsmap=NSMAP) if parent is None else _sub_element(parent, tag)
    if text is not None:
        node.text = text if text.__class__ is str else _text(text)
    if attrs:
        for key, value in attrs.items():
            node.set(qname(S, key), value)
    return node


_sub_element = etree.SubElement


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _append_copy(parent: etree._Element, template: etree._Element) -> None:
    parent.append(copy.deepcopy(template))


def _template(build: Callable[[etree._Element], None]) -> etree._Element:
    """A fixed subtree, built once (inside a root that declares NSMAP, so copies carry no
    namespace declarations of their own) and copied into every message that needs it: most of
    a package's elements are the same contacts and owner statements every time."""
    holder = etree.Element(qname(LEXS, "Template"), nsmap=NSMAP)
    build(holder)
    (node,) = holder
    return node


# --- templates with values -------------------------------------------------------------------
#
# A response is a few hundred elements, most of them the same from message to message; the rest
# hold the values of the message and its records. Built element by element, each costs a Python
# call and a namespace lookup, while a C-level copy of a prepared subtree costs a fraction of
# that. So the parts of a message are built once per *shape* (which optional elements they
# have), with a marker wherever a value goes, and every message gets copies of them with its
# values written over the markers.
#
# A builder (`_build_start`, `_build_package`) is the one description of its part: it takes its
# decisions from the shape alone, and every value through a getter, marked where the value goes
# (`v(getter)` returns the marker to put there). Two inputs of one shape therefore get the same
# elements, and each value lands where its getter was marked. Run with `v` returning the values
# themselves, a builder builds the part directly (the tests compare the two).

_MAX_TEMPLATES = 512  # shapes kept per cache; the few in real use stay far below

_Getter = Callable[..., object]
_Mark = Callable[[_Getter], object]


# What the values written into markup are escaped to: what the serialiser writes for them (`\r`
# would be read back as a line end, and white space in an attribute as a space, otherwise).
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                                    "\n": "&#10;", "\t": "&#9;"})
_ESCAPED = re.compile("[&<>\"\r\n\t]")  # what either table escapes
_ROOT_NAME = re.compile(r"<([^\s/>]+)")
_DECLARATION = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')


class _Template:
    """A subtree built with markers, copied with the values of the getters written in (as a
    tree, `copy`, or as markup, `text`)."""

    __slots__ = ("element", "getters", "mask", "writes", "closing_tag", "declared_first", "pieces", "slots")

    def __init__(self, build: Callable[[_Mark], etree._Element]) -> None:
        # A marker is a text no fixed text of the template can be: a random tag of this template
        # between private-use characters, and the getter's index.
        tag = f"\ue000{secrets.token_hex(8)}:"
        marker = re.compile(re.escape(tag) + "([0-9]+)\ue000")
        getters: list[_Getter] = []

        def mark(getter: _Getter) -> str:
            for index, known in enumerate(getters):  # a getter marked twice is evaluated once
                if known is getter:
                    return f"{tag}{index}\ue000"
            getters.append(getter)
            return f"{tag}{len(getters) - 1}\ue000"

        self.element = build(mark)
        self.getters = tuple(getters)
        # For each node in document order: whether it takes values. For each node that does:
        # the getter index of its text (an int), or ((None: the text | an attribute, index), ...).
        mask: list[bool] = []
        writes: list[int | tuple[tuple[str | None, int], ...]] = []
        for node in self.element.iter():
            found = [(None, marker.fullmatch(node.text or ""))]
            found += [(name, marker.fullmatch(value)) for name, value in node.items()]
            taken = [(name, int(match.group(1))) for name, match in found if match]
            mask.append(bool(taken))
            if taken:
                writes.append(taken[0][1] if len(taken) == 1 and taken[0][0] is None else tuple(taken))
        if {index for write in writes for index in ((write,) if isinstance(write, int) else
                                                    (i for _, i in write))} != set(range(len(getters))):
            raise AssertionError("a marker of the template is missing")
        self.mask = tuple(mask)
        self.writes = tuple(writes)
        self._as_text(tag, marker)

    def _as_text(self, tag: str, marker: re.Pattern[str]) -> None:
        """The template serialised, cut at its markers: `pieces` (the text between them, one more
        than there are markers) and `slots` (per marker: its getter's index, and whether it is an
        attribute value). The root's namespace declarations are left out of `pieces`
        (`declared_first` is the first piece with them): a part is written into a message that
        declares them, and every other element of the template uses the root's."""
        text = etree.tostring(self.element, encoding="unicode")
        start = text.index(">") + 1
        self.closing_tag = "</" + _ROOT_NAME.match(text).group(1) + ">"  # type: ignore[union-attr]
        if not text.endswith(self.closing_tag):
            raise AssertionError("a template is one element with content")
        bare = _DECLARATION.sub("", text[:start]) + text[start:]
        if "xmlns" in bare:
            raise AssertionError("a template element declares a namespace of its own")
        cut, declared = marker.split(bare), marker.split(text)
        if cut[1:] != declared[1:]:
            raise AssertionError("a template's root declares its namespaces after a marker")
        self.declared_first = declared[0]
        self.pieces = tuple(cut[0::2])
        self.slots = tuple(
            (int(index), before.endswith('="'))
            for index, before in zip(cut[1::2], cut[0::2])
        )
        if tag in "".join(self.pieces) or any(
                not (after.startswith('"') if attribute else before.endswith(">") and after.startswith("<"))
                for (_, attribute), before, after in zip(self.slots, self.pieces, self.pieces[1:])):
            raise AssertionError("a marker is not a whole text or attribute value")

    def text(self, *args: object, declared: bool = False) -> str:
        """The template's markup with the getters' values for `args` written in, escaped (a text
        as `copy` writes it: None leaves it empty); the root's namespace declarations only if
        `declared`."""
        values = [getter(*args) for getter in self.getters]
        for index, value in enumerate(values):
            if value.__class__ is not str:
                values[index] = "" if value is None else _text(value)
        plain = _ESCAPED.search("".join(values)) is None  # nearly always: one scan, no escaping
        parts = [self.declared_first if declared else self.pieces[0]]
        for (index, attribute), piece in zip(self.slots, self.pieces[1:]):
            value = values[index]
            parts.append(value if plain else value.translate(_ATTRIBUTE_ESCAPES if attribute else _TEXT_ESCAPES))
            parts.append(piece)
        return "".join(parts)

    def copy(self, *args: object) -> etree._Element:
        """A copy with the getters' values for `args` written over the markers (a text as `_el`
        writes it: None leaves none, a value that is not a string goes through `_text`)."""
        values = [getter(*args) for getter in self.getters]
        element = self.element.__copy__()
        for node, write in zip(compress(element.iter(), self.mask), self.writes):
            if write.__class__ is int:
                value = values[write]
                node.text = value if value is None or value.__class__ is str else _text(value)
                continue
            for name, index in write:
                value = values[index]
                if name is None:
                    node.text = value if value is None or value.__class__ is str else _text(value)
                else:
                    node.set(name, value)
        return element


class _Templates:
    """The templates of one builder for one gateway identity, by shape; built on first use."""

    def __init__(self, gateway: GatewayIdentity, build: Callable[..., etree._Element]) -> None:
        self.gateway = gateway
        self.build = build
        self.by_shape: dict[tuple, _Template] = {}

    def get(self, shape: tuple) -> _Template:
        template = self.by_shape.get(shape)
        if template is None:
            template = _Template(lambda mark: self.build(shape, self.gateway, mark))
            if len(self.by_shape) < _MAX_TEMPLATES:
                self.by_shape[shape] = template
        return template


def _sequence_number(header: MessageHeader | None) -> int:
    """InResponseToMessageSequenceNumber is a nonNegativeInteger; 0 when unknown."""
    if header is None:
        return 0
    value = header.message_id.strip()
    return int(value) if value.isdigit() else 0


# --- shared structures ----------------------------------------------------------------------


def _domain_attribute(parent: etree._Element, name: str, value: str, domain: str = "LEIS") -> None:
    attr = _el(parent, LEXS, "DomainAttribute")
    _el(attr, LEXS, "AttributeName", name)
    _el(attr, LEXS, "AttributeValue", value)
    _el(attr, LEXS, "Domain", domain)


def _telephone(parent: etree._Element, local: str, number: str) -> None:
    tel = _el(parent, NC, local)
    full = _el(tel, NC, "FullTelephoneNumber")
    _el(full, NC, "TelephoneNumberFullID", number)


def _contact(parent: etree._Element, local: str, gateway: GatewayIdentity, *,
             deconfliction: bool = False) -> None:
    """A `DataContactType`: the LESC, reachable by telephone."""
    _append_copy(parent, _contact_template(local, gateway, deconfliction))


@functools.lru_cache(maxsize=64)
def _contact_template(local: str, gateway: GatewayIdentity, deconfliction: bool) -> etree._Element:
    return _template(lambda holder: _build_contact(holder, local, gateway, deconfliction))


def _build_contact(parent: etree._Element, local: str, gateway: GatewayIdentity, deconfliction: bool) -> None:
    contact = _el(parent, LEXS, local)
    _el(contact, NC, "PersonSurName", gateway.contact_name)
    _el(contact, NC, "PersonFullName", f"{gateway.contact_name} (LESC)")
    _telephone(contact, "ContactTelephoneNumber", gateway.contact_phone)
    _el(contact, NC, "OrganizationName", gateway.contact_organization)
    if deconfliction:
        _domain_attribute(contact, "Deconfliction", DECONFLICTION_TEXT)


def _system_identifier(parent: etree._Element, local: str, organization: str, system: str,
                       ori: str | None) -> None:
    ident = _el(parent, LEXS, local)
    if ori:
        _el(ident, LEXS, "ORI", ori)
    _el(ident, NC, "OrganizationName", organization)
    _el(ident, LEXS, "SystemID", system)


def _message_metadata(message: etree._Element, gateway: GatewayIdentity,
                      in_response_to: MessageHeader | None, *, sequence: int | None,
                      now: datetime | None) -> None:
    meta = _el(message, LEXS, "SRMessageMetadata")
    _el(meta, LEXS, "LEXSVersion", LEXS_VERSION)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0, tzinfo=None)
    _el(meta, LEXS, "MessageDateTime", stamp.isoformat() + "Z")
    _el(meta, LEXS, "MessageSequenceNumber", next_sequence() if sequence is None else sequence)
    _el(meta, LEXS, "DataSensitivity", gateway.data_sensitivity)
    _append_copy(meta, _origin_template(gateway))
    if in_response_to is not None and in_response_to.origin_organization and in_response_to.origin_system:
        _system_identifier(meta, "MessageDestinationIdentifier", in_response_to.origin_organization,
                           in_response_to.origin_system, in_response_to.origin_ori)
    else:  # the requester could not be read; the element is mandatory
        _system_identifier(meta, "MessageDestinationIdentifier", "Unknown", "Unknown", None)


@functools.lru_cache(maxsize=16)
def _origin_template(gateway: GatewayIdentity) -> etree._Element:
    def build(holder: etree._Element) -> None:
        origin = _el(holder, LEXS, "MessageOriginMetadata")
        _system_identifier(origin, "SystemIdentifier", gateway.organization, gateway.system_id, gateway.ori)
        _contact(origin, "SystemContact", gateway)
    return _template(build)


def _advisory_category(category: AdvisoryCategory, result: ResultCode) -> str:
    """The domain's catch-all `Other` is `OtherError`/`OtherWarning` in the LEXS code list."""
    if category is AdvisoryCategory.OTHER:
        return "OtherError" if result is ResultCode.ERROR else "OtherWarning"
    return category.value


class _StartShape(NamedTuple):
    """What decides the elements of a message's start (`_build_start`)."""

    local: str  # the message element
    destination: int  # 0: unknown requester; 1: its organization and system; 2: and its ORI
    advisory_texts: tuple[bool, ...]  # per advisory: has a text
    search: bool | None  # SearchResponseMetadata: None none; else whether it has a match score


def _start(local: str, gateway: GatewayIdentity, result: ResultCode, advisories: Iterable[Advisory],
           in_response_to: MessageHeader | None, sequence: int | None,
           now: datetime | None, search: SearchOutcome | None = None) -> etree._Element:
    """The message element with SRMessageMetadata and ResponseMetadata (and, given `search`,
    the SearchResponseMetadata of that outcome)."""
    advisories = tuple(advisories)
    shape = _start_shape(local, advisories, in_response_to, search)
    return _start_templates(gateway).get(shape).copy(result, advisories, in_response_to, sequence, now, search)


def _start_shape(local: str, advisories: tuple[Advisory, ...], in_response_to: MessageHeader | None,
                 search: SearchOutcome | None) -> _StartShape:
    destination = 0
    if in_response_to is not None and in_response_to.origin_organization and in_response_to.origin_system:
        destination = 2 if in_response_to.origin_ori else 1
    return _StartShape(local, destination, tuple(bool(advisory.text) for advisory in advisories),
                       None if search is None else bool(search.records))


@functools.lru_cache(maxsize=16)
def _start_templates(gateway: GatewayIdentity) -> _Templates:
    return _Templates(gateway, _build_start)


def _build_start(shape: _StartShape, gateway: GatewayIdentity, v: _Mark) -> etree._Element:
    """`_message_metadata` and `_response_metadata` (and the search metadata) for `shape`; the
    getters take (result, advisories, in_response_to, sequence, now, search outcome)."""
    message = _el(None, LEXS, shape.local)
    meta = _el(message, LEXS, "SRMessageMetadata")
    _el(meta, LEXS, "LEXSVersion", LEXS_VERSION)
    _el(meta, LEXS, "MessageDateTime", v(_message_date_time))
    _el(meta, LEXS, "MessageSequenceNumber", v(_message_sequence_number))
    _el(meta, LEXS, "DataSensitivity", gateway.data_sensitivity)
    _append_copy(meta, _origin_template(gateway))
    if shape.destination:
        _system_identifier(meta, "MessageDestinationIdentifier",
                           v(lambda res, adv, header, seq, now, search: header.origin_organization),
                           v(lambda res, adv, header, seq, now, search: header.origin_system),
                           v(lambda res, adv, header, seq, now, search: header.origin_ori)
                           if shape.destination == 2 else None)
    else:  # the requester could not be read; the element is mandatory
        _system_identifier(meta, "MessageDestinationIdentifier", "Unknown", "Unknown", None)

    response = _el(message, LEXS, "ResponseMetadata")
    _el(response, LEXS, "ResultCode", v(lambda res, adv, header, seq, now, search: res.value))
    for n, has_text in enumerate(shape.advisory_texts):
        advisory = _el(response, LEXS, "Advisory")
        _el(advisory, LEXS, "AdvisoryCategory",
            v(lambda res, adv, header, seq, now, search, n=n: _advisory_category(adv[n].category, res)))
        if has_text:
            _el(advisory, LEXS, "AdvisoryText", v(lambda res, adv, header, seq, now, search, n=n: adv[n].text))
    _el(response, LEXS, "InResponseToMessageSequenceNumber",
        v(lambda res, adv, header, seq, now, search: _sequence_number(header)))

    if shape.search is not None:
        search = _el(message, LEXS, "SearchResponseMetadata")
        if shape.search:
            _el(search, LEXS, "StructuredQueryMatchScore", v(
                lambda res, adv, header, seq, now, o: max(0, min(100, max(r.score for r in o.records)))))
        _el(search, LEXS, "MaxItemMatchesRequested",
            v(lambda res, adv, header, seq, now, o: max(0, o.max_items_requested)))
        _el(search, LEXS, "NumberItemMatches",
            v(lambda res, adv, header, seq, now, o: max(o.matches_found, len(o.records))))
        _el(search, LEXS, "ServerLimitIndicator", v(lambda res, adv, header, seq, now, o: o.server_limit_hit))
    return message


def _message_date_time(result, advisories, in_response_to, sequence, now, search) -> str:
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0, tzinfo=None)
    return stamp.isoformat() + "Z"


def _message_sequence_number(result, advisories, in_response_to, sequence, now, search) -> object:
    return next_sequence() if sequence is None else sequence


def _owner_metadata(parent: etree._Element, gateway: GatewayIdentity, owner_code: str,
                    system: str) -> None:
    _append_copy(parent, _owner_template(gateway, owner_code, system))


@functools.lru_cache(maxsize=64)
def _owner_template(gateway: GatewayIdentity, owner_code: str, system: str) -> etree._Element:
    def build(holder: etree._Element) -> None:
        owner = gateway.owner(owner_code)
        meta = _el(holder, LEXS, "DataOwnerMetadata")
        _system_identifier(meta, "DataOwnerIdentifier", owner.name, system, owner.ori)
        _contact(meta, "DataOwnerContact", gateway)
    return _template(build)


# --- the digest: a package template per record shape --------------------------------------------


class _Residence(NamedTuple):
    """Which parts of a residence address a record has (`_build_location`)."""

    street_number: bool
    street_name: bool
    secondary_unit: bool
    city: bool
    state: bool
    country: bool
    postal_code: bool


class _Shape(NamedTuple):
    """Everything that decides which elements a package has (`_build_package`)."""

    tag: str  # SearchResultPackage | DataItemPackage
    owner: str
    source: str
    birth_date: bool
    eye: bool | None  # None: no colour; True: an NCIC code; False: free text
    hair: bool | None
    height: bool
    given_name: bool
    middle_name: bool
    surname: bool
    identifiers: tuple[int, ...]  # how many of each of _IDENTIFIER_KINDS
    weight: bool
    residence: _Residence | None
    birthplace: bool
    phone: bool
    photo: bool


#: The identifier kinds a person element carries, in the order `_Shape.identifiers` counts them.
_IDENTIFIER_KINDS = (QueryField.ENCOUNTER_ID, QueryField.PASSPORT, QueryField.SSN, QueryField.DRIVER_LICENSE,
                     QueryField.A_NUMBER)
_NO_IDENTIFIERS = (0,) * len(_IDENTIFIER_KINDS)


def _append_package(parent: etree._Element, templates: _Templates, tag: str, record: ReleasedRecord,
                    index: int) -> None:
    """Append `record`'s package (`tag`) to `parent`; its `s:id`s are prefixed `R<index>-`."""
    shape, ids = _package_shape(tag, record)
    parent.append(templates.get(shape).copy(record, f"R{index}-", ids))


def _package_shape(tag: str, record: ReleasedRecord) -> tuple[_Shape, dict[QueryField, list[str]]]:
    """The shape of `record`'s package, and its identifiers by kind: the getters of a package
    template take (record, id prefix, identifiers by kind)."""
    person = record.person
    ids: dict[QueryField, list[str]] = {}
    for query_field, value in person.identifiers:
        ids.setdefault(query_field, []).append(value)
    eye, hair = person.eye_color, person.hair_color
    address = record.address
    residence = None
    if _has_address(address):
        residence = _Residence(bool(address.street_number), bool(address.street_name), bool(address.secondary_unit),
                               bool(address.city), bool(address.state), bool(address.country),
                               bool(address.postal_code))
    shape = _Shape(
        tag, record.owner, record.source.value, person.birth_date is not None,
        (eye.strip().upper() in NCIC_EYE) if eye else None, (hair.strip().upper() in NCIC_HAIR) if hair else None,
        person.height_inches is not None, bool(person.given_name), bool(person.middle_name), bool(person.surname),
        tuple(len(ids.get(kind, ())) for kind in _IDENTIFIER_KINDS) if ids else _NO_IDENTIFIERS,
        person.weight_pounds is not None, residence, bool(person.birthplace_country),
        bool(address is not None and address.phone), bool(record.attachment_uri),
    )
    return shape, ids


@functools.lru_cache(maxsize=16)
def _package_templates(gateway: GatewayIdentity) -> _Templates:
    return _Templates(gateway, _build_package)


def _has_address(address: Address | None) -> bool:
    return address is not None and any(
        (address.street_number, address.street_name, address.secondary_unit, address.city,
         address.state, address.postal_code, address.country))


def _format_phone(digits: str) -> str:
    if len(digits) == 10 and digits.isdigit():
        return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
    return digits


def _full_name(person: ReleasedPerson) -> str:
    return " ".join(p for p in (person.given_name, person.middle_name, person.surname) if p)


def _street_full(address: Address) -> str:
    return " ".join(p for p in (address.street_number, address.street_name) if p)


@functools.lru_cache(maxsize=None)
def _id(suffix: str) -> _Getter:
    """The getter of the package's `s:id` ending in `suffix` (one function per suffix: marked
    twice, it is evaluated once)."""
    return lambda r, p, ids: p + suffix


def _item_id(record: ReleasedRecord, prefix: str, ids: dict) -> str:
    return record.item_id


def _nth(kind: QueryField, n: int) -> _Getter:
    """The getter of the n-th identifier of a kind."""
    return lambda r, p, ids: ids[kind][n]


@functools.lru_cache(maxsize=1)
def _dissemination_template() -> etree._Element:
    def build(holder: etree._Element) -> None:
        criteria = _el(holder, LEXS, "DisseminationCriteriaValue")
        _el(criteria, LEXS, "DisseminationCriteriaDomainText", "DHS")
        _el(criteria, LEXS, "DisseminationCriteriaText", DISSEMINATION_TEXT)
    return _template(build)


def _identification(parent: etree._Element, ns: str, local: str, value: object,
                    category: str | None = None) -> None:
    ident = _el(parent, ns, local)
    _el(ident, NC, "IdentificationID", value)
    if category:
        _el(ident, NC, "IdentificationCategoryText", category)


def _measure(parent: etree._Element, local: str, value: object, unit_local: str, unit: str) -> None:
    measure = _el(parent, NC, local)
    _el(measure, NC, "MeasurePointValue", value)
    _el(measure, NC, unit_local, unit)


def _build_package(shape: _Shape, gateway: GatewayIdentity, v: _Mark) -> etree._Element:
    """The package of `shape`: PackageMetadata, Digest and AttachmentLink (identical for search
    and data item packages). Built inside a root that declares NSMAP, like `_template`."""
    holder = etree.Element(qname(LEXS, "Template"), nsmap=NSMAP)
    package = _el(holder, LEXS, shape.tag)
    meta = _el(package, LEXS, "PackageMetadata")
    _el(meta, LEXS, "DataItemID", v(_item_id))
    _contact(meta, "DataItemContact", gateway, deconfliction=True)
    _el(meta, LEXS, "DataItemReferenceID", v(_item_id))
    _el(meta, LEXS, "DataItemStatus", "Valid")
    _owner_metadata(meta, gateway, shape.owner, shape.source)
    _append_copy(meta, _dissemination_template())
    category = _el(meta, LEXS, "DataItemCategory")
    _el(category, LEXS, "DataItemCategoryText", f"{shape.source} Person Record")
    _domain_attribute(meta, "MatchScore", v(lambda r, p, ids: str(max(0, min(100, r.score)))))

    digest = _el(package, LEXS, "Digest")
    entity = _el(digest, DIGEST, "EntityPerson", id=v(_id("EPerson")))
    _build_person(entity, shape, v)
    if shape.residence is not None:
        _build_location(digest, "EResidence", "Residence", shape.residence, v)
    if shape.birthplace:
        _build_location(digest, "EBirthplace", "Birthplace", None, v)
    if shape.phone:
        tel_entity = _el(digest, DIGEST, "EntityTelephoneNumber", id=v(_id("ETelephone")))
        tel = _el(tel_entity, DIGEST, "TelephoneNumber", id=v(_id("Telephone")))
        full = _el(tel, NC, "FullTelephoneNumber")
        _el(full, NC, "TelephoneNumberFullID", v(lambda r, p, ids: _format_phone(r.address.phone)))

    if shape.residence is not None or shape.birthplace or shape.phone or shape.photo:
        # Order is the official EntityAssociationsType sequence.
        associations = _el(digest, DIGEST, "Associations")
        if shape.photo:
            facial = _el(associations, DIGEST, "EntityPersonFacialImageAssociation")
            _el(facial, DIGEST, "EntityReference", ref=v(_id("EPerson")))
            _el(facial, DIGEST, "AttachmentLinkReference", ref=v(_id("Photo")))
        if shape.phone:
            tel_assoc = _el(associations, DIGEST, "EntityTelephoneNumberAssociation")
            _el(tel_assoc, NC, "PersonReference", ref=v(_id("Person")))
            _el(tel_assoc, DIGEST, "TelephoneNumberReference", ref=v(_id("Telephone")))
        if shape.birthplace:
            born = _el(associations, DIGEST, "PersonBirthLocationAssociation")
            _el(born, NC, "PersonReference", ref=v(_id("Person")))
            _el(born, NC, "LocationReference", ref=v(_id("Birthplace")))
        if shape.residence is not None:
            lives = _el(associations, NC, "ResidenceAssociation")
            _el(lives, NC, "PersonReference", ref=v(_id("Person")))
            _el(lives, NC, "LocationReference", ref=v(_id("Residence")))

    if shape.photo:
        link = _el(package, LEXS, "AttachmentLink", id=v(_id("Photo")))
        _el(link, LEXS, "AttachmentURI", v(lambda r, p, ids: r.attachment_uri))
        _el(link, LEXS, "AttachmentViewableIndicator", True)
        _el(link, NC, "BinaryDescriptionText", "Booking photograph")
        _el(link, NC, "BinaryCategoryText", "Mug Shot")
    return package


def _build_person(entity: etree._Element, shape: _Shape, v: _Mark) -> None:
    """`lexsdigest:Person` in the order of `nc:PersonType` then the two augmentations."""
    node = _el(entity, DIGEST, "Person", id=v(_id("Person")))
    if shape.birth_date:
        birth = _el(node, NC, "PersonBirthDate")
        _el(birth, NC, "Date", v(lambda r, p, ids: r.person.birth_date.isoformat()))
    # an unknown colour code goes out as text rather than making the message invalid
    for local, attribute, is_code in (("PersonEyeColor", "eye_color", shape.eye),
                                      ("PersonHairColor", "hair_color", shape.hair)):
        if is_code is not None:
            _el(node, NC, local + ("Code" if is_code else "Text"), v(_colour(attribute, is_code)))
    if shape.height:
        _measure(node, "PersonHeightMeasure", v(lambda r, p, ids: r.person.height_inches), "LengthUnitCode", "INH")
    if shape.given_name or shape.middle_name or shape.surname:
        name = _el(node, NC, "PersonName")
        if shape.given_name:
            _el(name, NC, "PersonGivenName", v(lambda r, p, ids: r.person.given_name))
        if shape.middle_name:
            _el(name, NC, "PersonMiddleName", v(lambda r, p, ids: r.person.middle_name))
        if shape.surname:
            _el(name, NC, "PersonSurName", v(lambda r, p, ids: r.person.surname))
        _el(name, NC, "PersonFullName", v(lambda r, p, ids: _full_name(r.person)))
    encounters, passports, ssns, licences, a_numbers = shape.identifiers
    for n in range(encounters):
        _identification(node, NC, "PersonOtherIdentification", v(_nth(QueryField.ENCOUNTER_ID, n)),
                        "DHS Encounter ID")
    for n in range(passports):
        _identification(node, NC, "PersonPassportIdentification", v(_nth(QueryField.PASSPORT, n)))
    for n in range(ssns):
        _identification(node, NC, "PersonSSNIdentification", v(_nth(QueryField.SSN, n)))
    if shape.weight:
        _measure(node, "PersonWeightMeasure", v(lambda r, p, ids: r.person.weight_pounds), "WeightUnitCode", "LBR")
    if licences:
        augmentation = _el(node, J, "PersonAugmentation")
        for n in range(licences):
            licence = _el(augmentation, NC, "DriverLicense")
            _identification(licence, NC, "DriverLicenseIdentification", v(_nth(QueryField.DRIVER_LICENSE, n)))
    if a_numbers:
        augmentation = _el(node, DIGEST, "PersonAugmentation")
        for n in range(a_numbers):
            _identification(augmentation, IM, "AlienNumber", v(_nth(QueryField.A_NUMBER, n)))


def _colour(attribute: str, is_code: bool) -> _Getter:
    """The getter of a colour: the NCIC code as the list spells it, else the source's own text."""
    if is_code:
        return lambda r, p, ids: getattr(r.person, attribute).strip().upper()
    return lambda r, p, ids: getattr(r.person, attribute)


def _build_location(digest: etree._Element, entity_id: str, location_id: str, residence: _Residence | None,
                    v: _Mark) -> None:
    """An `EntityLocation`: the residence address (`residence`), or else the birthplace country."""
    entity = _el(digest, DIGEST, "EntityLocation", id=v(_id(entity_id)))
    location = _el(entity, NC, "Location", id=v(_id(location_id)))
    structured = _el(_el(location, NC, "LocationAddress"), NC, "StructuredAddress")
    if residence is None:
        _el(structured, NC, "LocationCountryName", v(lambda r, p, ids: country_name(r.person.birthplace_country)))
        return
    if residence.street_number or residence.street_name:
        street = _el(structured, NC, "LocationStreet")
        _el(street, NC, "StreetFullText", v(lambda r, p, ids: _street_full(r.address)))
        if residence.street_number:
            _el(street, NC, "StreetNumberText", v(lambda r, p, ids: r.address.street_number))
        if residence.street_name:
            _el(street, NC, "StreetName", v(lambda r, p, ids: r.address.street_name))
    if residence.secondary_unit:
        _el(structured, NC, "AddressSecondaryUnitText", v(lambda r, p, ids: r.address.secondary_unit))
    if residence.city:
        _el(structured, NC, "LocationCityName", v(lambda r, p, ids: r.address.city))
    if residence.state:
        _el(structured, NC, "LocationStateName", v(lambda r, p, ids: state_name(r.address.state)))
    if residence.country:
        _el(structured, NC, "LocationCountryName", v(lambda r, p, ids: country_name(r.address.country)))
    if residence.postal_code:
        _el(structured, NC, "LocationPostalCode", v(lambda r, p, ids: r.address.postal_code))


# --- response messages ------------------------------------------------------------------------


def search_response(outcome: SearchOutcome, in_response_to: MessageHeader | None,
                    gateway: GatewayIdentity = GatewayIdentity(), *, sequence: int | None = None,
                    now: datetime | None = None) -> etree._Element:
    """`lexs:SearchResponseMessage`: one `SearchResultPackage` per released record.

    The same elements as `_start` and `_append_package` build, written as markup from the same
    templates and parsed once: copying and filling a tree holds the GIL for every node, while
    lxml parses without it (docs/performance.md, the seventh round).
    """
    advisories = tuple(outcome.advisories)
    shape = _start_shape("SearchResponseMessage", advisories, in_response_to, outcome)
    start = _start_templates(gateway).get(shape)
    message = start.text(outcome.result_code, advisories, in_response_to, sequence, now, outcome, declared=True)
    markup = [message[: -len(start.closing_tag)]]
    if outcome.records:
        templates = _package_templates(gateway)
        for index, record in enumerate(outcome.records, start=1):
            package, ids = _package_shape("SearchResultPackage", record)
            markup.append(templates.get(package).text(record, f"R{index}-", ids))
    markup.append(start.closing_tag)
    return etree.fromstring("".join(markup).encode(), _parser())


_parsers = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser of the markup `search_response` writes (lxml's parsers are not to be
    shared between threads): no DTD, no entities, no network, as everywhere else."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return parser


def data_item_response(item: ReleasedRecord | None | object, in_response_to: MessageHeader | None,
                       gateway: GatewayIdentity = GatewayIdentity(), *,
                       result_code: ResultCode | None = None, advisories: Sequence[Advisory] = (),
                       sequence: int | None = None, now: datetime | None = None) -> etree._Element:
    """`lexs:DataItemResponseMessage` with one `DataItemPackage` (none when there is no record).

    `item` is a `ReleasedRecord`, None, or an outcome object with `record`, `result_code` and
    `advisories` (the service layer's `DataItemOutcome`), whose values then apply.
    """
    record = item
    if item is not None and not isinstance(item, ReleasedRecord):
        record = getattr(item, "record")
        result_code = getattr(item, "result_code", result_code)
        advisories = tuple(getattr(item, "advisories", advisories))
    if result_code is None:
        result_code = ResultCode.SUCCESS if record is not None else ResultCode.ERROR
    message = _start("DataItemResponseMessage", gateway, result_code, advisories, in_response_to,
                     sequence, now)
    if record is not None:
        _append_package(message, _package_templates(gateway), "DataItemPackage", record, 1)
    return message


def attachment_response(attachments: Sequence[AttachmentItem | tuple[str, Photo]] | object,
                        in_response_to: MessageHeader | None,
                        gateway: GatewayIdentity = GatewayIdentity(), *,
                        result_code: ResultCode | None = None, advisories: Sequence[Advisory] = (),
                        sequence: int | None = None, now: datetime | None = None) -> etree._Element:
    """`lexs:AttachmentResponseMessage`: base64 binaries with their MIME type.

    `attachments` holds `AttachmentItem`s or `(uri, Photo)` pairs, or is an outcome object with
    `attachments`, `result_code` and `advisories` (the service layer's `AttachmentOutcome`).
    """
    if not isinstance(attachments, (list, tuple)):
        result_code = getattr(attachments, "result_code", result_code)
        advisories = tuple(getattr(attachments, "advisories", advisories))
        attachments = tuple(getattr(attachments, "attachments"))
    attachments = [a if isinstance(a, AttachmentItem) else AttachmentItem(a[0], a[1]) for a in attachments]
    if result_code is None:
        result_code = ResultCode.SUCCESS if attachments else ResultCode.ERROR
    message = _start("AttachmentResponseMessage", gateway, result_code, advisories, in_response_to,
                     sequence, now)
    for item in attachments:
        attachment = _el(message, LEXS, "Attachment")
        _el(attachment, LEXS, "AttachmentURI", item.uri)
        binary = _el(attachment, NC, "Binary")
        _el(binary, NC, "BinaryBase64Object", base64.b64encode(item.photo.data).decode("ascii"))
        _el(binary, NC, "BinaryDescriptionText", item.description)
        _el(binary, NC, "BinaryFormatID", item.photo.content_type)
        _el(binary, NC, "BinaryFormatStandardName", "MIME")
        _el(binary, NC, "BinarySizeValue", len(item.photo.data))
        _el(binary, NC, "BinaryCategoryText", "Mug Shot")
        if item.owner:
            _owner_metadata(attachment, gateway, item.owner, item.source or "OBIM")
    return message


def capabilities_response(in_response_to: MessageHeader | None,
                          gateway: GatewayIdentity = GatewayIdentity(),
                          capabilities: SearchCapabilities = SearchCapabilities(), *,
                          sequence: int | None = None, now: datetime | None = None) -> etree._Element:
    """`lexs:CapabilitiesResponseMessage`: structured search only (no `TextSearch` element)."""
    message = _start("CapabilitiesResponseMessage", gateway, ResultCode.SUCCESS, (), in_response_to,
                     sequence, now)
    _capabilities(message, capabilities, structured=True)
    return message


def _capabilities(message: etree._Element, capabilities: SearchCapabilities, *, structured: bool) -> None:
    node = _el(message, LEXS, "Capabilities")
    if structured:
        for text in capabilities.categories:
            category = _el(node, LEXS, "DataItemCategory")
            _el(category, LEXS, "DataItemCategoryText", text)
    _el(node, LEXS, "PagingIndicator", capabilities.paging if structured else False)
    _el(node, LEXS, "MaxHitsReturned", capabilities.max_hits if structured else 0)
    if structured:
        search = _el(node, LEXS, "StructuredSearch")
        _el(search, LEXS, "MultipleValueIndicator", capabilities.multiple_values)
        _el(search, LEXS, "WildcardIndicator", capabilities.wildcard)
        _el(search, LEXS, "FuzzySearchIndicator", capabilities.fuzzy)
        _el(search, LEXS, "DateRangeIndicator", capabilities.date_range)
        _el(search, LEXS, "NumericRangeIndicator", capabilities.numeric_range)
        _domain_attribute(node, "SearchPurpose",
                          "CriminalLawEnforcement NationalSecurity EmploymentBackgroundCheck")


def data_owners_response(owners: Iterable[tuple[str, object]] | None, in_response_to: MessageHeader | None,
                         gateway: GatewayIdentity = GatewayIdentity(), *,
                         sequence: int | None = None, now: datetime | None = None) -> etree._Element:
    """`lexs:DataOwnersResponseMessage`: one `DataOwnerInformation` per (owner code, source system).

    `owners` pairs an owner code ("ICE", "CBP") with a system (a `SourceSystem` or its name);
    None reports `gateway.sources`.
    """
    pairs = list(gateway.sources if owners is None else owners)
    if not pairs:
        return error_response("getDataOwners", [], in_response_to, gateway,
                              result_code=ResultCode.WARNING, sequence=sequence, now=now)
    message = _start("DataOwnersResponseMessage", gateway, ResultCode.SUCCESS, (), in_response_to,
                     sequence, now)
    for owner_code, system in pairs:
        system_name = getattr(system, "value", system)
        info = _el(message, LEXS, "DataOwnerInformation")
        _owner_metadata(info, gateway, owner_code, str(system_name))
        _el(info, LEXS, "StructuredSearchIndicator", True)
        _el(info, LEXS, "TextSearchIndicator", False)
        category = _el(info, LEXS, "DataItemCategory")
        _el(category, LEXS, "DataItemCategoryText", f"{system_name} Person Record")
    return message


def availability_response(available: bool, in_response_to: MessageHeader | None,
                          gateway: GatewayIdentity = GatewayIdentity(),
                          statuses: Sequence[SourceStatus] = (), *, sequence: int | None = None,
                          now: datetime | None = None) -> etree._Element:
    """`lexs:AvailabilityResponseMessage`; sources that are down are named in AdditionalInformation."""
    message = _start("AvailabilityResponseMessage", gateway, ResultCode.SUCCESS, (), in_response_to,
                     sequence, now)
    _el(message, LEXS, "ServiceAvailableIndicator", available)
    down = [s.source for s in statuses if not s.ok]
    if down:
        _el(message, LEXS, "AdditionalInformation", "Sources currently unavailable: " + ", ".join(down))
    elif not available:
        _el(message, LEXS, "AdditionalInformation", "The service is temporarily unavailable.")
    return message


def error_response(operation: str, advisories: Sequence[Advisory], in_response_to: MessageHeader | None,
                   gateway: GatewayIdentity = GatewayIdentity(), *,
                   result_code: ResultCode = ResultCode.ERROR, max_items_requested: int = 0,
                   sequence: int | None = None, now: datetime | None = None) -> etree._Element:
    """The operation's own response message carrying `ResultCode` (Error) and the advisories.

    Mandatory content is filled with the emptiest valid value: no packages, no attachments,
    `Capabilities` without `StructuredSearch`, availability `false`, and for getDataOwners
    (which requires one `DataOwnerInformation`) the gateway itself with both search indicators false.
    """
    op = OPERATIONS.get(operation)
    if op is None:
        raise ValueError(f"unknown LEXS SR operation {operation!r}")
    local = op.response_message
    message = _start(local, gateway, result_code, advisories, in_response_to, sequence, now)
    if local == "SearchResponseMessage":
        meta = _el(message, LEXS, "SearchResponseMetadata")
        _el(meta, LEXS, "MaxItemMatchesRequested", max(0, max_items_requested))
        _el(meta, LEXS, "NumberItemMatches", 0)
        _el(meta, LEXS, "ServerLimitIndicator", False)
    elif local == "CapabilitiesResponseMessage":
        _capabilities(message, SearchCapabilities(), structured=False)
    elif local == "DataOwnersResponseMessage":
        info = _el(message, LEXS, "DataOwnerInformation")
        meta = _el(info, LEXS, "DataOwnerMetadata")
        _system_identifier(meta, "DataOwnerIdentifier", gateway.organization, gateway.system_id, gateway.ori)
        _contact(meta, "DataOwnerContact", gateway)
        _el(info, LEXS, "StructuredSearchIndicator", False)
        _el(info, LEXS, "TextSearchIndicator", False)
    elif local == "AvailabilityResponseMessage":
        _el(message, LEXS, "ServiceAvailableIndicator", False)
    return message


def wrap_response(operation: str, message: etree._Element) -> etree._Element:
    """Put a response message in its SR wrapper (`doSearchResponse`, `getDataItemResponse`, ...)."""
    op = OPERATIONS[operation]
    wrapper = etree.Element(qname(SR, op.response_wrapper), nsmap={"sr": SR, **NSMAP})
    wrapper.append(message)
    return wrapper
