"""The queryable fields: one declarative table from LEXS Digest paths to `QueryField`s.

A `QueryStatement.path` holds the local element names from the Digest entity down to the
queried leaf (LEXS 3.1 Digest over NIEM 2.0: `lexsdigest:EntityPerson/lexsdigest:Person/
nc:PersonName/nc:PersonSurName` is ("EntityPerson", "Person", "PersonName", "PersonSurName")).
Only the paths below are queryable; anything else (a photo, hair colour, a vehicle...) is
refused by name. Each row says which `QueryMatch` modes make sense for the field and how its
value is normalised for the sources (None = not a well-formed value of that field).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Callable, Mapping

from ..domain import QueryField, QueryMatch
from ..lexs.digest_paths import LOCAL_PATHS

WILDCARD_CHARACTERS = frozenset("*?")
MIN_LITERAL_CHARACTERS = 2  # a wildcard with fewer literal characters would be a batch

_PERSON = ("EntityPerson", "Person")
_ACTIVITY = ("EntityActivity", "Activity")

NAME_MATCHES = frozenset({QueryMatch.EXACT, QueryMatch.FUZZY, QueryMatch.WILDCARD})
DATE_MATCHES = frozenset({QueryMatch.EXACT, QueryMatch.GT, QueryMatch.GE, QueryMatch.LT, QueryMatch.LE})
TEXT_MATCHES = frozenset({QueryMatch.EXACT, QueryMatch.WILDCARD})
EXACT_ONLY = frozenset({QueryMatch.EXACT})

LOWER_BOUNDS = frozenset({QueryMatch.GT, QueryMatch.GE})
UPPER_BOUNDS = frozenset({QueryMatch.LT, QueryMatch.LE})


# --- value normalisers ------------------------------------------------------------------


def _text(max_length: int) -> Callable[[str], str | None]:
    def normalise(value: str) -> str | None:
        text = " ".join(value.split())
        if not text or len(text) > max_length or any(ord(c) < 32 for c in text):
            return None
        return text

    return normalise


def _upper_pattern(pattern: str, strip: str = "") -> Callable[[str], str | None]:
    compiled = re.compile(pattern)

    def normalise(value: str) -> str | None:
        text = value.strip().upper()
        for character in strip:
            text = text.replace(character, "")
        return text if compiled.fullmatch(text) else None

    return normalise


def _birth_date(value: str) -> str | None:
    try:
        return date.fromisoformat(value.strip()).isoformat() if len(value.strip()) == 10 else None
    except ValueError:
        return None


def _a_number(value: str) -> str | None:
    text = value.strip().upper().replace("-", "").replace(" ", "")
    digits = text[1:] if text.startswith("A") else text
    return "A" + digits.zfill(9) if re.fullmatch(r"\d{7,9}", digits) else None


_DOCUMENT_ID = _upper_pattern(r"[A-Z0-9][A-Z0-9\-]{1,24}", strip=" ")


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRule:
    field: QueryField
    label: str  # what the advisory calls it
    matches: frozenset[QueryMatch]
    normalise: Callable[[str], str | None]

    @property
    def path(self) -> tuple[str, ...]:
        return LOCAL_PATHS[self.field]  # the Digest vocabulary is lexs's; the rules are ours


@dataclass(frozen=True)
class QualifierRule:
    """A leaf that only qualifies a queried field (e.g. the category of an identification).

    It adds no criterion; a value outside `values` (compared case-insensitively) is refused,
    because it would ask for a field that is not queryable.
    """

    path: tuple[str, ...]
    qualifies: QueryField
    values: frozenset[str]


FIELD_RULES: tuple[FieldRule, ...] = (
    # Name
    FieldRule(QueryField.FULL_NAME, "full name", NAME_MATCHES, _text(100)),
    FieldRule(QueryField.GIVEN_NAME, "given name", NAME_MATCHES, _text(50)),
    FieldRule(QueryField.MIDDLE_NAME, "middle name", NAME_MATCHES, _text(50)),
    FieldRule(QueryField.SURNAME, "surname", NAME_MATCHES, _text(50)),
    FieldRule(QueryField.BIRTH_DATE, "birth date (YYYY-MM-DD)", DATE_MATCHES, _birth_date),
    # Identifying number
    FieldRule(QueryField.SSN, "SSN (9 digits)", EXACT_ONLY, _upper_pattern(r"\d{9}", strip="- ")),
    FieldRule(QueryField.PASSPORT, "passport number", EXACT_ONLY, _DOCUMENT_ID),
    FieldRule(QueryField.A_NUMBER, "A-number", EXACT_ONLY, _a_number),
    FieldRule(QueryField.ENCOUNTER_ID, "encounter identifier", EXACT_ONLY, _DOCUMENT_ID),
    FieldRule(QueryField.DRIVER_LICENSE, "driver licence number", EXACT_ONLY, _DOCUMENT_ID),
    # Address
    FieldRule(QueryField.FULL_ADDRESS, "full address", TEXT_MATCHES, _text(200)),
    FieldRule(QueryField.STREET_NUMBER, "street number", EXACT_ONLY, _upper_pattern(r"\d[0-9A-Z\-/ ]{0,9}")),
    FieldRule(QueryField.STREET_NAME, "street name", TEXT_MATCHES, _text(64)),
    FieldRule(QueryField.SECONDARY_UNIT, "secondary unit", TEXT_MATCHES, _text(20)),
    FieldRule(QueryField.CITY, "city", TEXT_MATCHES, _text(40)),
    FieldRule(QueryField.STATE, "state (USPS code)", EXACT_ONLY, _upper_pattern(r"[A-Z]{2}")),
    FieldRule(QueryField.COUNTRY, "country (ISO 3166 alpha-2)", EXACT_ONLY, _upper_pattern(r"[A-Z]{2}")),
    FieldRule(QueryField.POSTAL_CODE, "postal code", TEXT_MATCHES, _upper_pattern(r"[0-9A-Z*?][0-9A-Z \-*?]{1,9}")),
    FieldRule(QueryField.PHONE, "telephone number (7-15 digits)", EXACT_ONLY, _upper_pattern(r"\d{7,15}", strip=" -().+")),
    # Incident
    FieldRule(QueryField.ACTIVITY_NUMBER, "activity number", EXACT_ONLY, _upper_pattern(r"[A-Z0-9][A-Z0-9\-/ ]{0,29}")),
    FieldRule(QueryField.ACTIVITY_DESCRIPTION, "activity description", TEXT_MATCHES, _text(200)),
)

QUALIFIER_RULES: tuple[QualifierRule, ...] = (
    QualifierRule(_PERSON + ("PersonOtherIdentification", "IdentificationCategoryText"), QueryField.ENCOUNTER_ID, frozenset({"encounter", "encounter id", "encounterid", "encounter identifier"})),
    QualifierRule(_ACTIVITY + ("ActivityCategoryText",), QueryField.ACTIVITY_NUMBER, frozenset({"incident"})),
)

FIELDS_BY_PATH: Mapping[tuple[str, ...], FieldRule] = {rule.path: rule for rule in FIELD_RULES}
QUALIFIERS_BY_PATH: Mapping[tuple[str, ...], QualifierRule] = {rule.path: rule for rule in QUALIFIER_RULES}
RULES_BY_FIELD: Mapping[QueryField, FieldRule] = {rule.field: rule for rule in FIELD_RULES}

# Wrappers a parser may leave above the Digest entity; they carry no meaning here.
WRAPPER_ELEMENTS = frozenset({"DigestQueryField", "Digest"})

# A query must pin one person or record down: at least one of these combinations, or it
# would sweep up a population (every Tucson resident, every JOHN) -- a batch in disguise.
ANCHORS: tuple[frozenset[QueryField], ...] = (
    frozenset({QueryField.SURNAME}),
    frozenset({QueryField.FULL_NAME}),
    frozenset({QueryField.SSN}),
    frozenset({QueryField.PASSPORT}),
    frozenset({QueryField.A_NUMBER}),
    frozenset({QueryField.ENCOUNTER_ID}),
    frozenset({QueryField.DRIVER_LICENSE}),
    frozenset({QueryField.PHONE}),
    frozenset({QueryField.FULL_ADDRESS}),
    frozenset({QueryField.STREET_NUMBER, QueryField.STREET_NAME}),
    frozenset({QueryField.ACTIVITY_NUMBER}),
    frozenset({QueryField.GIVEN_NAME, QueryField.BIRTH_DATE}),
)
