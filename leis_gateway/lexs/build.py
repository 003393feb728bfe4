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
"""
from __future__ import annotations

import base64
import copy
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

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


def _response_metadata(message: etree._Element, result: ResultCode, advisories: Iterable[Advisory],
                       in_response_to: MessageHeader | None) -> None:
    meta = _el(message, LEXS, "ResponseMetadata")
    _el(meta, LEXS, "ResultCode", result.value)
    for advisory in advisories:
        adv = _el(meta, LEXS, "Advisory")
        _el(adv, LEXS, "AdvisoryCategory", _advisory_category(advisory.category, result))
        if advisory.text:
            _el(adv, LEXS, "AdvisoryText", advisory.text)
    _el(meta, LEXS, "InResponseToMessageSequenceNumber", _sequence_number(in_response_to))


def _start(local: str, gateway: GatewayIdentity, result: ResultCode, advisories: Iterable[Advisory],
           in_response_to: MessageHeader | None, sequence: int | None,
           now: datetime | None) -> etree._Element:
    message = _el(None, LEXS, local)
    _message_metadata(message, gateway, in_response_to, sequence=sequence, now=now)
    _response_metadata(message, result, advisories, in_response_to)
    return message


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


# --- the digest -------------------------------------------------------------------------------



def _identification(parent: etree._Element, ns: str, local: str, value: str,
                    category: str | None = None) -> None:
    ident = _el(parent, ns, local)
    _el(ident, NC, "IdentificationID", value)
    if category:
        _el(ident, NC, "IdentificationCategoryText", category)


def _measure(parent: etree._Element, local: str, value: int, unit_local: str, unit: str) -> None:
    measure = _el(parent, NC, local)
    _el(measure, NC, "MeasurePointValue", value)
    _el(measure, NC, unit_local, unit)


def _person(entity: etree._Element, person: ReleasedPerson, person_id: str) -> None:
    """`lexsdigest:Person` in the order of `nc:PersonType` then the two augmentations."""
    node = _el(entity, DIGEST, "Person", id=person_id)
    ids: dict[QueryField, list[str]] = {}
    for query_field, value in person.identifiers:
        ids.setdefault(query_field, []).append(value)
    if person.birth_date is not None:
        birth = _el(node, NC, "PersonBirthDate")
        _el(birth, NC, "Date", person.birth_date.isoformat())
    if person.eye_color:  # an unknown code goes out as text rather than making the message invalid
        eye = person.eye_color.strip().upper()
        _el(node, NC, "PersonEyeColorCode" if eye in NCIC_EYE else "PersonEyeColorText",
            eye if eye in NCIC_EYE else person.eye_color)
    if person.hair_color:
        hair = person.hair_color.strip().upper()
        _el(node, NC, "PersonHairColorCode" if hair in NCIC_HAIR else "PersonHairColorText",
            hair if hair in NCIC_HAIR else person.hair_color)
    if person.height_inches is not None:
        _measure(node, "PersonHeightMeasure", person.height_inches, "LengthUnitCode", "INH")
    if person.given_name or person.middle_name or person.surname:
        name = _el(node, NC, "PersonName")
        if person.given_name:
            _el(name, NC, "PersonGivenName", person.given_name)
        if person.middle_name:
            _el(name, NC, "PersonMiddleName", person.middle_name)
        if person.surname:
            _el(name, NC, "PersonSurName", person.surname)
        full = " ".join(p for p in (person.given_name, person.middle_name, person.surname) if p)
        _el(name, NC, "PersonFullName", full)
    for value in ids.get(QueryField.ENCOUNTER_ID, ()):
        _identification(node, NC, "PersonOtherIdentification", value, "DHS Encounter ID")
    for value in ids.get(QueryField.PASSPORT, ()):
        _identification(node, NC, "PersonPassportIdentification", value)
    for value in ids.get(QueryField.SSN, ()):
        _identification(node, NC, "PersonSSNIdentification", value)
    if person.weight_pounds is not None:
        _measure(node, "PersonWeightMeasure", person.weight_pounds, "WeightUnitCode", "LBR")
    licences = ids.get(QueryField.DRIVER_LICENSE, ())
    if licences:
        augmentation = _el(node, J, "PersonAugmentation")
        for value in licences:
            licence = _el(augmentation, NC, "DriverLicense")
            _identification(licence, NC, "DriverLicenseIdentification", value)
    a_numbers = ids.get(QueryField.A_NUMBER, ())
    if a_numbers:
        augmentation = _el(node, DIGEST, "PersonAugmentation")
        for value in a_numbers:
            _identification(augmentation, IM, "AlienNumber", value)


def _location(digest: etree._Element, entity_id: str, location_id: str, *,
              address: Address | None = None, country_only: str | None = None) -> None:
    entity = _el(digest, DIGEST, "EntityLocation", id=entity_id)
    location = _el(entity, NC, "Location", id=location_id)
    structured = _el(_el(location, NC, "LocationAddress"), NC, "StructuredAddress")
    if country_only is not None:
        _el(structured, NC, "LocationCountryName", country_name(country_only))
        return
    assert address is not None
    if address.street_number or address.street_name:
        street = _el(structured, NC, "LocationStreet")
        full = " ".join(p for p in (address.street_number, address.street_name) if p)
        _el(street, NC, "StreetFullText", full)
        if address.street_number:
            _el(street, NC, "StreetNumberText", address.street_number)
        if address.street_name:
            _el(street, NC, "StreetName", address.street_name)
    if address.secondary_unit:
        _el(structured, NC, "AddressSecondaryUnitText", address.secondary_unit)
    if address.city:
        _el(structured, NC, "LocationCityName", address.city)
    if address.state:
        _el(structured, NC, "LocationStateName", state_name(address.state))
    if address.country:
        _el(structured, NC, "LocationCountryName", country_name(address.country))
    if address.postal_code:
        _el(structured, NC, "LocationPostalCode", address.postal_code)


def _has_address(address: Address | None) -> bool:
    return address is not None and any(
        (address.street_number, address.street_name, address.secondary_unit, address.city,
         address.state, address.postal_code, address.country))


def _format_phone(digits: str) -> str:
    if len(digits) == 10 and digits.isdigit():
        return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
    return digits


@functools.lru_cache(maxsize=1)
def _dissemination_template() -> etree._Element:
    def build(holder: etree._Element) -> None:
        criteria = _el(holder, LEXS, "DisseminationCriteriaValue")
        _el(criteria, LEXS, "DisseminationCriteriaDomainText", "DHS")
        _el(criteria, LEXS, "DisseminationCriteriaText", DISSEMINATION_TEXT)
    return _template(build)


def _package_body(package: etree._Element, record: ReleasedRecord, gateway: GatewayIdentity,
                  index: int) -> None:
    """PackageMetadata, Digest and AttachmentLink: identical for search and data item packages."""
    prefix = f"R{index}-"
    meta = _el(package, LEXS, "PackageMetadata")
    _el(meta, LEXS, "DataItemID", record.item_id)
    _contact(meta, "DataItemContact", gateway, deconfliction=True)
    _el(meta, LEXS, "DataItemReferenceID", record.item_id)
    _el(meta, LEXS, "DataItemStatus", "Valid")
    _owner_metadata(meta, gateway, record.owner, record.source.value)
    _append_copy(meta, _dissemination_template())
    category = _el(meta, LEXS, "DataItemCategory")
    _el(category, LEXS, "DataItemCategoryText", f"{record.source.value} Person Record")
    _domain_attribute(meta, "MatchScore", str(max(0, min(100, record.score))))

    digest = _el(package, LEXS, "Digest")
    entity_person, person_id = prefix + "EPerson", prefix + "Person"
    entity = _el(digest, DIGEST, "EntityPerson", id=entity_person)
    _person(entity, record.person, person_id)

    address = record.address
    residence = _has_address(address)
    if residence:
        _location(digest, prefix + "EResidence", prefix + "Residence", address=address)
    birthplace = record.person.birthplace_country
    if birthplace:
        _location(digest, prefix + "EBirthplace", prefix + "Birthplace", country_only=birthplace)
    phone = address.phone if address is not None else None
    if phone:
        tel_entity = _el(digest, DIGEST, "EntityTelephoneNumber", id=prefix + "ETelephone")
        tel = _el(tel_entity, DIGEST, "TelephoneNumber", id=prefix + "Telephone")
        full = _el(tel, NC, "FullTelephoneNumber")
        _el(full, NC, "TelephoneNumberFullID", _format_phone(phone))

    photo = record.attachment_uri
    if residence or birthplace or phone or photo:
        # Order is the official EntityAssociationsType sequence.
        associations = _el(digest, DIGEST, "Associations")
        if photo:
            facial = _el(associations, DIGEST, "EntityPersonFacialImageAssociation")
            _el(facial, DIGEST, "EntityReference", ref=entity_person)
            _el(facial, DIGEST, "AttachmentLinkReference", ref=prefix + "Photo")
        if phone:
            tel_assoc = _el(associations, DIGEST, "EntityTelephoneNumberAssociation")
            _el(tel_assoc, NC, "PersonReference", ref=person_id)
            _el(tel_assoc, DIGEST, "TelephoneNumberReference", ref=prefix + "Telephone")
        if birthplace:
            born = _el(associations, DIGEST, "PersonBirthLocationAssociation")
            _el(born, NC, "PersonReference", ref=person_id)
            _el(born, NC, "LocationReference", ref=prefix + "Birthplace")
        if residence:
            lives = _el(associations, NC, "ResidenceAssociation")
            _el(lives, NC, "PersonReference", ref=person_id)
            _el(lives, NC, "LocationReference", ref=prefix + "Residence")

    if photo:
        link = _el(package, LEXS, "AttachmentLink", id=prefix + "Photo")
        _el(link, LEXS, "AttachmentURI", photo)
        _el(link, LEXS, "AttachmentViewableIndicator", True)
        _el(link, NC, "BinaryDescriptionText", "Booking photograph")
        _el(link, NC, "BinaryCategoryText", "Mug Shot")


# --- response messages ------------------------------------------------------------------------


def search_response(outcome: SearchOutcome, in_response_to: MessageHeader | None,
                    gateway: GatewayIdentity = GatewayIdentity(), *, sequence: int | None = None,
                    now: datetime | None = None) -> etree._Element:
    """`lexs:SearchResponseMessage`: one `SearchResultPackage` per released record."""
    message = _start("SearchResponseMessage", gateway, outcome.result_code, outcome.advisories,
                     in_response_to, sequence, now)
    meta = _el(message, LEXS, "SearchResponseMetadata")
    if outcome.records:
        _el(meta, LEXS, "StructuredQueryMatchScore", max(0, min(100, max(r.score for r in outcome.records))))
    _el(meta, LEXS, "MaxItemMatchesRequested", max(0, outcome.max_items_requested))
    _el(meta, LEXS, "NumberItemMatches", max(outcome.matches_found, len(outcome.records)))
    _el(meta, LEXS, "ServerLimitIndicator", outcome.server_limit_hit)
    for index, record in enumerate(outcome.records, start=1):
        package = _el(message, LEXS, "SearchResultPackage")
        _package_body(package, record, gateway, index)
    return message


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
        package = _el(message, LEXS, "DataItemPackage")
        _package_body(package, record, gateway, 1)
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
