"""Release profiles: what may leave the gateway, stated as allowlists enforced in code.

The registry file names a profile per agreement and may *narrow* a profile (fewer elements,
fewer sources, exclude protected classes); it can never widen what this module allows.

Record rules (which records may leave at all), by source:

* TECS: only closed subject records whose person is annotated as a suspect.
* EID (ICE ENFORCE person/arrest records): only closed records whose person is the arrestee,
  the record's subject or a suspect. Never open records, never victims, witnesses or others.
* OBIM and anything else: never a record (OBIM photos leave only as an attachment of a
  released record).

For every profile: never a record in a restricted category; never a person in a protected
class when the profile says so (the Nlets profile); never free text (the narrative, incident
descriptions and every element not in RELEASABLE_ELEMENTS simply have no way out).

Element names are the dotted field names of `ReleasedRecord` (`person.surname`,
`person.identifiers.SSN`, `address.city`, `attachment_uri`); the same names go to the audit's
disclosure record.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Mapping

from ..domain import PersonRole, QueryField, RecordStatus, SourceSystem

# --- the code-level allowlist of elements -------------------------------------------------

PERSON_ELEMENTS: Mapping[str, str] = {
    # element name -> PersonDetails attribute it is copied from
    "person.given_name": "given_name",
    "person.middle_name": "middle_name",
    "person.surname": "surname",
    "person.birth_date": "birth_date",
    "person.height_inches": "height_inches",
    "person.weight_pounds": "weight_pounds",
    "person.eye_color": "eye_color",
    "person.hair_color": "hair_color",
    "person.birthplace_country": "birthplace_country",
}

IDENTIFIER_ELEMENTS: Mapping[str, tuple[QueryField, str]] = {
    # element name -> (the query field that must have been asked, PersonDetails attribute)
    "person.identifiers.SSN": (QueryField.SSN, "ssn"),
    "person.identifiers.Passport": (QueryField.PASSPORT, "passport"),
    "person.identifiers.ANumber": (QueryField.A_NUMBER, "a_number"),
    "person.identifiers.EncounterID": (QueryField.ENCOUNTER_ID, "encounter_id"),
    "person.identifiers.DriverLicense": (QueryField.DRIVER_LICENSE, "driver_license"),
}

ADDRESS_ELEMENTS: Mapping[str, str] = {
    # element name -> Address attribute
    "address.street_number": "street_number",
    "address.street_name": "street_name",
    "address.secondary_unit": "secondary_unit",
    "address.city": "city",
    "address.state": "state",
    "address.postal_code": "postal_code",
    "address.country": "country",
    "address.phone": "phone",
}

ATTACHMENT_ELEMENT = "attachment_uri"

# Elements that leave only when the query asked for that field: they confirm what the
# requester already holds and disclose nothing new. The phone number is a contact detail,
# not part of a postal address, so it is treated like an identifier.
QUERY_GATED_ELEMENTS: Mapping[str, QueryField] = {
    **{name: query_field for name, (query_field, _) in IDENTIFIER_ELEMENTS.items()},
    "address.phone": QueryField.PHONE,
}

RELEASABLE_ELEMENTS: frozenset[str] = frozenset(
    {*PERSON_ELEMENTS, *IDENTIFIER_ELEMENTS, *ADDRESS_ELEMENTS, ATTACHMENT_ELEMENT}
)


# --- the code-level allowlist of records --------------------------------------------------


@dataclass(frozen=True)
class RecordRule:
    """The kinds, statuses and person roles of one source's records that may leave."""

    kinds: frozenset[str]
    statuses: frozenset[RecordStatus]
    roles: frozenset[PersonRole]


RELEASABLE_RECORDS: Mapping[SourceSystem, RecordRule] = {
    SourceSystem.TECS: RecordRule(
        kinds=frozenset({"subject"}),
        statuses=frozenset({RecordStatus.CLOSED}),
        roles=frozenset({PersonRole.SUSPECT}),
    ),
    SourceSystem.EID: RecordRule(
        kinds=frozenset({"person", "arrest"}),
        statuses=frozenset({RecordStatus.CLOSED}),
        roles=frozenset({PersonRole.ARRESTEE, PersonRole.SUBJECT, PersonRole.SUSPECT}),
    ),
}

RELEASABLE_OWNERS: frozenset[str] = frozenset({"ICE", "CBP"})


# --- value shapes: a value that does not look like its element is withheld ------------------
# Defence in depth against free text smuggled into a structured element by a source.

_LETTERS = r"[^\W\d_]"
_NAME = re.compile(rf"{_LETTERS}(?:{_LETTERS}|[ '\-.]){{0,49}}")
_PLACE = re.compile(rf"{_LETTERS}(?:{_LETTERS}|[ '\-.]){{0,39}}")
_STREET = re.compile(rf"(?:{_LETTERS}|\d)(?:{_LETTERS}|\d|[ '\-.#/]){{0,63}}")
_UNIT = re.compile(r"[A-Za-z0-9#][A-Za-z0-9 #\-./]{0,19}")
_STREET_NUMBER = re.compile(r"\d[0-9A-Za-z\-/ ]{0,9}")
_CODE2 = re.compile(r"[A-Z]{2}")
_CODE3 = re.compile(r"[A-Z]{3}")
_POSTAL = re.compile(r"[0-9A-Z][0-9A-Z \-]{2,9}")
_PHONE = re.compile(r"\d{7,15}")
_SSN = re.compile(r"\d{9}")
_A_NUMBER = re.compile(r"A?\d{8,9}")
_DOCUMENT_ID = re.compile(r"[A-Z0-9][A-Z0-9\-]{0,24}")


def _matches(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None


def _int_between(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and low <= value <= high


def _birth_date(value: Any) -> bool:
    return type(value) is date and 1880 <= value.year <= 2200


ELEMENT_SHAPES: Mapping[str, Callable[[Any], bool]] = {
    "person.given_name": _matches(_NAME),
    "person.middle_name": _matches(_NAME),
    "person.surname": _matches(_NAME),
    "person.birth_date": _birth_date,
    "person.height_inches": _int_between(12, 108),
    "person.weight_pounds": _int_between(1, 999),
    "person.eye_color": _matches(_CODE3),
    "person.hair_color": _matches(_CODE3),
    "person.birthplace_country": _matches(_CODE2),
    "person.identifiers.SSN": _matches(_SSN),
    "person.identifiers.Passport": _matches(_DOCUMENT_ID),
    "person.identifiers.ANumber": _matches(_A_NUMBER),
    "person.identifiers.EncounterID": _matches(_DOCUMENT_ID),
    "person.identifiers.DriverLicense": _matches(_DOCUMENT_ID),
    "address.street_number": _matches(_STREET_NUMBER),
    "address.street_name": _matches(_STREET),
    "address.secondary_unit": _matches(_UNIT),
    "address.city": _matches(_PLACE),
    "address.state": _matches(_CODE2),
    "address.postal_code": _matches(_POSTAL),
    "address.country": _matches(_CODE2),
    "address.phone": _matches(_PHONE),
}


# --- profiles -----------------------------------------------------------------------------


class ProfileError(ValueError):
    """A profile definition that would widen the allowlist or is malformed."""


@dataclass(frozen=True)
class ReleaseProfile:
    """What one agreement may receive: always a subset of the code-level allowlists."""

    name: str
    exclude_protected_classes: bool = False
    elements: frozenset[str] = RELEASABLE_ELEMENTS
    sources: frozenset[SourceSystem] = frozenset(RELEASABLE_RECORDS)
    description: str = ""

    def __post_init__(self) -> None:
        wider = self.elements - RELEASABLE_ELEMENTS
        if wider:
            raise ProfileError(
                f"release profile {self.name!r} names elements outside the allowlist: "
                f"{', '.join(sorted(wider))}"
            )
        wider_sources = self.sources - frozenset(RELEASABLE_RECORDS)
        if wider_sources:
            raise ProfileError(
                f"release profile {self.name!r} names sources whose records never leave: "
                f"{', '.join(sorted(wider_sources))}"
            )

    @classmethod
    def from_config(cls, name: str, spec: Mapping[str, Any]) -> "ReleaseProfile":
        """Build from the registry file's `release_profiles` entry (strict keys)."""
        if not isinstance(spec, Mapping):
            raise ProfileError(f"release profile {name!r} must be an object")
        unknown = set(spec) - {"description", "exclude_protected_classes", "elements", "sources"}
        if unknown:
            raise ProfileError(
                f"release profile {name!r} has unknown keys: {', '.join(sorted(unknown))}"
            )
        exclude = spec.get("exclude_protected_classes", False)
        if not isinstance(exclude, bool):
            raise ProfileError(f"release profile {name!r}: exclude_protected_classes must be true/false")
        elements = spec.get("elements")
        sources = spec.get("sources")
        try:
            return cls(
                name=name,
                exclude_protected_classes=exclude,
                elements=RELEASABLE_ELEMENTS if elements is None else _string_set(elements, "elements", name),
                sources=(
                    frozenset(RELEASABLE_RECORDS)
                    if sources is None
                    else frozenset(SourceSystem(s) for s in _string_set(sources, "sources", name))
                ),
                description=str(spec.get("description", "")),
            )
        except ValueError as exc:  # SourceSystem(...) of an unknown source
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"release profile {name!r}: {exc}") from None


def _string_set(values: Any, key: str, name: str) -> frozenset[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ProfileError(f"release profile {name!r}: {key} must be a list of strings")
    return frozenset(values)


STANDARD = ReleaseProfile(
    name="standard",
    description="Two-way members: every allowlisted element and record.",
)
NO_PROTECTED_CLASSES = ReleaseProfile(
    name="no-protected-classes",
    exclude_protected_classes=True,
    description="As standard, but never a person in a protected class (Nlets).",
)

BUILTIN_PROFILES: Mapping[str, ReleaseProfile] = {
    profile.name: profile for profile in (STANDARD, NO_PROTECTED_CLASSES)
}
