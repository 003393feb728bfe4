"""Where each queryable field lives in a LEXS Digest: the one table of that vocabulary.

Requests are built from it (`requests`), parsed statements are read with it (`parse`), and
the policy's query rules are keyed by it, so the three can never drift apart.
"""
from __future__ import annotations

from ..domain import QueryField

_PERSON = ("lexsdigest:EntityPerson", "lexsdigest:Person")
_ADDRESS = ("lexsdigest:EntityLocation", "nc:Location", "nc:LocationAddress")
_STREET = (*_ADDRESS, "nc:StructuredAddress", "nc:LocationStreet")
_ACTIVITY = ("lexsdigest:EntityActivity", "nc:Activity")

#: Where each permitted field lives in a Digest query (NIEM 2.0 / LEXS 3.1 element names).
FIELD_PATHS: dict[QueryField, tuple[str, ...]] = {
    QueryField.FULL_NAME: (*_PERSON, "nc:PersonName", "nc:PersonFullName"),
    QueryField.GIVEN_NAME: (*_PERSON, "nc:PersonName", "nc:PersonGivenName"),
    QueryField.MIDDLE_NAME: (*_PERSON, "nc:PersonName", "nc:PersonMiddleName"),
    QueryField.SURNAME: (*_PERSON, "nc:PersonName", "nc:PersonSurName"),
    QueryField.BIRTH_DATE: (*_PERSON, "nc:PersonBirthDate", "nc:Date"),
    QueryField.SSN: (*_PERSON, "nc:PersonSSNIdentification", "nc:IdentificationID"),
    QueryField.PASSPORT: (*_PERSON, "nc:PersonPassportIdentification", "nc:IdentificationID"),
    QueryField.A_NUMBER: (*_PERSON, "lexsdigest:PersonAugmentation", "im:AlienNumber", "nc:IdentificationID"),
    QueryField.ENCOUNTER_ID: (*_PERSON, "nc:PersonOtherIdentification", "nc:IdentificationID"),
    QueryField.DRIVER_LICENSE: (
        *_PERSON, "j:PersonAugmentation", "nc:DriverLicense", "nc:DriverLicenseIdentification",
        "nc:IdentificationID",
    ),
    QueryField.FULL_ADDRESS: (*_ADDRESS, "nc:AddressFullText"),
    QueryField.STREET_NUMBER: (*_STREET, "nc:StreetNumberText"),
    QueryField.STREET_NAME: (*_STREET, "nc:StreetName"),
    QueryField.SECONDARY_UNIT: (*_ADDRESS, "nc:StructuredAddress", "nc:AddressSecondaryUnitText"),
    QueryField.CITY: (*_ADDRESS, "nc:StructuredAddress", "nc:LocationCityName"),
    QueryField.STATE: (*_ADDRESS, "nc:StructuredAddress", "nc:LocationStateName"),
    QueryField.COUNTRY: (*_ADDRESS, "nc:StructuredAddress", "nc:LocationCountryName"),
    QueryField.POSTAL_CODE: (*_ADDRESS, "nc:StructuredAddress", "nc:LocationPostalCode"),
    QueryField.PHONE: (
        "lexsdigest:EntityTelephoneNumber", "lexsdigest:TelephoneNumber", "nc:FullTelephoneNumber",
        "nc:TelephoneNumberFullID",
    ),
    QueryField.ACTIVITY_NUMBER: (*_ACTIVITY, "nc:ActivityIdentification", "nc:IdentificationID"),
    QueryField.ACTIVITY_DESCRIPTION: (*_ACTIVITY, "nc:ActivityDescriptionText"),
}



def local_path(prefixed_path: tuple[str, ...]) -> tuple[str, ...]:
    """("lexsdigest:EntityPerson", ...) -> ("EntityPerson", ...), as `QueryStatement.path` holds it."""
    return tuple(step.split(":", 1)[1] for step in prefixed_path)


#: QueryField -> local-name path, and back.
LOCAL_PATHS: dict[QueryField, tuple[str, ...]] = {f: local_path(p) for f, p in FIELD_PATHS.items()}
FIELD_BY_LOCAL_PATH: dict[tuple[str, ...], QueryField] = {p: f for f, p in LOCAL_PATHS.items()}
