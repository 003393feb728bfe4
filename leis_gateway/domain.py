"""Domain objects: what flows between the layers once XML has been left at the edge.

Every layer of DESIGN.md's request path speaks these frozen dataclasses; only `lexs/`
(and `security/` for signatures) ever sees XML.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


# --- vocabulary --------------------------------------------------------------------------


class Purpose(StrEnum):
    """The `SearchPurpose` values of DESIGN.md (a `lexs:DomainAttribute` in `UserAssertion`)."""

    CRIMINAL_LAW_ENFORCEMENT = "CriminalLawEnforcement"
    NATIONAL_SECURITY = "NationalSecurity"
    EMPLOYMENT_BACKGROUND_CHECK = "EmploymentBackgroundCheck"


class ResultCode(StrEnum):
    SUCCESS = "Success"
    WARNING = "Warning"
    ERROR = "Error"


class AdvisoryCategory(StrEnum):
    """The LEXS 3.1 `AdvisoryCategoryCodeSimpleType` values the gateway uses."""

    NETWORK_FAILURE = "NetworkFailure"
    INVALID_RESPONSE = "InvalidResponse"
    INVALID_REQUEST = "InvalidRequest"
    TIMEOUT = "Timeout"
    BUSINESS_RULE_NOT_MET = "BusinessRuleNotMet"
    NEXT_PREVIOUS_NOT_SUPPORTED = "NextPreviousNotSupported"
    STRUCTURED_SEARCH_NOT_SUPPORTED = "StructuredSearchNotSupported"
    UNSTRUCTURED_SEARCH_NOT_SUPPORTED = "UnstructuredSearchNotSupported"
    FUZZY_MATCH_NOT_SUPPORTED = "FuzzyMatchNotSupported"
    WILDCARD_NOT_SUPPORTED = "WildcardNotSupported"
    QUERY_FIELD_NOT_SUPPORTED = "QueryFieldNotSupported"
    OTHER = "Other"


class QueryMatch(StrEnum):
    """`lexs:QueryMatch` codes."""

    EXACT = "exact"
    FUZZY = "fuzzy"
    WILDCARD = "wildcard"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"


@dataclass(frozen=True)
class Advisory:
    category: AdvisoryCategory
    text: str


# --- requests, as parsed from LEXS (lexs.parse -> policy) ---------------------------------


@dataclass(frozen=True)
class MessageHeader:
    """`lexs:SRMessageMetadata` of a request."""

    message_id: str  # MessageSequenceNumber
    sent_at: datetime | None
    origin_organization: str
    origin_system: str
    origin_ori: str | None = None


@dataclass(frozen=True)
class DomainAttribute:
    domain: str
    name: str
    value: str


@dataclass(frozen=True)
class UserAssertion:
    user_id: str
    organization: str
    ori: str | None = None
    attributes: tuple[DomainAttribute, ...] = ()

    def attribute(self, name: str, domain: str = "LEIS") -> tuple[str, ...]:
        return tuple(a.value for a in self.attributes if a.name == name and a.domain == domain)


@dataclass(frozen=True)
class QueryStatement:
    """One `lexs:DigestQueryStatement`: a single queried leaf and its match mode.

    `path` is the chain of local element names from the Digest entity down to the leaf,
    e.g. ("EntityPerson", "Person", "PersonName", "PersonSurName"); `line` is the source line
    of the leaf in the request, for advisories that name the offending element.
    """

    path: tuple[str, ...]
    value: str
    match: QueryMatch
    line: int | None = None

    @property
    def element(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True)
class StructuredQueryBlock:
    """One `lexs:StructuredQuery` (a request with more than one is a batch)."""

    statements: tuple[QueryStatement, ...]
    payload_statements: int = 0  # StructuredPayloadQueryStatement count (never supported)
    line: int | None = None


@dataclass(frozen=True)
class StructuredSearchRequest:
    header: MessageHeader
    user: UserAssertion
    queries: tuple[StructuredQueryBlock, ...]
    max_items: int
    timeout_seconds: float | None = None  # lexs:TimeoutDuration
    data_owners: tuple[str, ...] = ()  # lexs:DataOwnerIdentifier/SystemID values


@dataclass(frozen=True)
class TextSearchRequest:
    header: MessageHeader
    user: UserAssertion
    max_items: int


@dataclass(frozen=True)
class DataItemRequest:
    header: MessageHeader
    user: UserAssertion
    item_id: str


@dataclass(frozen=True)
class AttachmentRequest:
    header: MessageHeader
    user: UserAssertion
    uris: tuple[str, ...]


class ServiceQuestion(StrEnum):
    CAPABILITIES = "capabilities"
    DATA_OWNERS = "data-owners"
    AVAILABILITY = "availability"


@dataclass(frozen=True)
class ServiceProviderRequest:
    header: MessageHeader
    question: ServiceQuestion


LexsRequest = (
    StructuredSearchRequest
    | TextSearchRequest
    | DataItemRequest
    | AttachmentRequest
    | ServiceProviderRequest
)


# --- an authorised query (policy -> federation -> sources) --------------------------------


class QueryField(StrEnum):
    """The only fields that may be queried (issue 3, "Query rules")."""

    # Name
    FULL_NAME = "FullName"
    GIVEN_NAME = "GivenName"
    MIDDLE_NAME = "MiddleName"
    SURNAME = "SurName"
    BIRTH_DATE = "BirthDate"
    # Identifying number
    SSN = "SSN"
    PASSPORT = "Passport"
    A_NUMBER = "ANumber"
    ENCOUNTER_ID = "EncounterID"
    DRIVER_LICENSE = "DriverLicense"
    # Address
    FULL_ADDRESS = "FullAddress"
    STREET_NUMBER = "StreetNumber"
    STREET_NAME = "StreetName"
    SECONDARY_UNIT = "SecondaryUnit"
    CITY = "City"
    STATE = "State"
    COUNTRY = "Country"
    POSTAL_CODE = "PostalCode"
    PHONE = "Phone"
    # Incident
    ACTIVITY_NUMBER = "ActivityNumber"
    ACTIVITY_DESCRIPTION = "ActivityDescription"


@dataclass(frozen=True)
class Criterion:
    field: QueryField
    value: str
    match: QueryMatch = QueryMatch.EXACT


@dataclass(frozen=True)
class Query:
    """A single-subject query the policy layer has authorised; criteria are ANDed.

    BIRTH_DATE may appear twice only as the two ends of a range (GE/GT with LE/LT).
    """

    criteria: tuple[Criterion, ...]
    max_items: int = 100

    def values(self, query_field: QueryField) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.field == query_field)


# --- what sources hold (sources -> release) -----------------------------------------------


class SourceSystem(StrEnum):
    TECS = "TECS"
    EID = "EID"
    OBIM = "OBIM"


class RecordStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class PersonRole(StrEnum):
    SUSPECT = "suspect"
    ARRESTEE = "arrestee"
    SUBJECT = "subject"  # an EID person record's subject
    VICTIM = "victim"
    WITNESS = "witness"
    OTHER = "other"


class RestrictionCategory(StrEnum):
    """Records in any of these categories never leave (issue 3, "Release profiles")."""

    BANK_SECRECY_ACT = "BankSecrecyAct"
    TRADE_SECRETS = "TradeSecrets"
    NATIONAL_SECURITY_INFORMATION = "NationalSecurityInformation"
    THIRD_AGENCY = "ThirdAgency"
    CONFIDENTIAL_SOURCE = "ConfidentialSource"
    UNDERCOVER_OPERATION = "UndercoverOperation"


class ProtectedClass(StrEnum):
    ASYLUM_SEEKER = "AsylumSeeker"
    REFUGEE = "Refugee"
    VICTIM_OR_WITNESS = "VictimOrWitness"
    VAWA = "VAWA"
    U_VISA = "UVisa"
    T_VISA = "TVisa"


@dataclass(frozen=True)
class PersonDetails:
    given_name: str | None = None
    middle_name: str | None = None
    surname: str | None = None
    birth_date: date | None = None
    height_inches: int | None = None
    weight_pounds: int | None = None
    eye_color: str | None = None  # NCIC code, e.g. BRO
    hair_color: str | None = None  # NCIC code, e.g. BLK
    birthplace_country: str | None = None  # ISO 3166 alpha-2, e.g. MX
    ssn: str | None = None  # 9 digits, no dashes
    passport: str | None = None
    a_number: str | None = None  # e.g. A099000004
    driver_license: str | None = None
    driver_license_state: str | None = None
    encounter_id: str | None = None
    sex: str | None = None  # never released: not on the allowlist
    race: str | None = None  # never released: not on the allowlist


@dataclass(frozen=True)
class Address:
    street_number: str | None = None
    street_name: str | None = None
    secondary_unit: str | None = None
    city: str | None = None
    state: str | None = None  # USPS code
    postal_code: str | None = None
    country: str | None = None  # ISO 3166 alpha-2
    phone: str | None = None  # digits only


@dataclass(frozen=True)
class Incident:
    activity_number: str
    description: str | None = None
    activity_date: date | None = None


@dataclass(frozen=True)
class SourceRecord:
    """A record as a source system holds it: everything, released or not."""

    source: SourceSystem
    record_id: str
    owner: str  # "ICE" or "CBP"
    kind: str  # e.g. "subject", "arrest", "person"
    status: RecordStatus
    role: PersonRole
    person: PersonDetails
    address: Address | None = None
    incident: Incident | None = None
    restrictions: frozenset[RestrictionCategory] = frozenset()
    protected_classes: frozenset[ProtectedClass] = frozenset()
    narrative: str | None = None  # free text: never released
    photo_id: str | None = None  # an OBIM booking photograph
    score: int = 100  # how well the record matched the query, 0-100

    @property
    def key(self) -> str:
        return f"{self.source}:{self.record_id}"


@dataclass(frozen=True)
class Photo:
    photo_id: str
    content_type: str
    data: bytes


# --- what may leave (release -> lexs.build) -----------------------------------------------


@dataclass(frozen=True)
class ReleasedPerson:
    """Only allowlisted elements exist on this type: what is not here cannot be emitted."""

    given_name: str | None
    middle_name: str | None
    surname: str | None
    birth_date: date | None
    height_inches: int | None
    weight_pounds: int | None
    eye_color: str | None
    hair_color: str | None
    birthplace_country: str | None
    identifiers: tuple[tuple[QueryField, str], ...] = ()  # only the queried identifiers


@dataclass(frozen=True)
class ReleasedRecord:
    item_id: str  # opaque id for getDataItem, bound to the agreement that received it
    source: SourceSystem
    owner: str
    person: ReleasedPerson
    address: Address | None = None  # street/city/state/postal/country/phone only
    attachment_uri: str | None = None  # opaque URI for getAttachment
    score: int = 100
    disclosed_elements: tuple[str, ...] = ()  # element names, for the audit's disclosure record


@dataclass(frozen=True)
class SourceStatus:
    """Per-source outcome of one fan-out."""

    source: str
    ok: bool
    advisory: Advisory | None = None
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class SearchOutcome:
    result_code: ResultCode
    records: tuple[ReleasedRecord, ...] = ()
    advisories: tuple[Advisory, ...] = ()
    matches_found: int = 0
    server_limit_hit: bool = False
    max_items_requested: int = 0


@dataclass(frozen=True)
class Agreement:
    """A member agreement, as the registry states it (see `policy/`)."""

    id: str
    agency_name: str
    ori: str
    direction: str  # "two-way" | "one-way" | "internal"
    status: str  # "active" | "suspended"
    purposes: frozenset[Purpose]
    release_profile: str
    expires: date | None = None
    certificate_fingerprints: frozenset[str] = field(default_factory=frozenset)
    endpoint: str | None = None  # partner SR endpoint for two-way sharing
    allow_sha1: bool = False  # legacy peers only: accept RSA-SHA1/SHA-1 signatures (registry "allow_sha1": true)
