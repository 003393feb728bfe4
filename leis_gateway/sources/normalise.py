"""One canonical spelling per value, used both when loading a source and when querying it.

Exact matching is equality of canonical spellings: upper case, accents dropped, punctuation
and runs of whitespace folded into single spaces, identifiers reduced to letters and digits.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

from ..places import COUNTRY_BY_NAME, STATE_BY_NAME

WILDCARDS = "*?"

_APOSTROPHES = re.compile(r"['\u2019`\u00b4]")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_NOT_ALNUM_OR_WILDCARD = re.compile(r"[^A-Z0-9*?]+")
_NOT_DIGIT = re.compile(r"[^0-9]")
_NOT_ALNUM_OR_HASH = re.compile(r"[^A-Z0-9#]+")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _fold(value: str) -> str:
    if value.isascii():
        return value.upper()
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


@lru_cache(maxsize=8192)  # the loader meets the same names, streets and cities again and again
def normalise_text(value: str) -> str:
    """Names, cities, words: "  o'Brien-smith " -> "OBRIEN SMITH"."""
    return _NOT_ALNUM.sub(" ", _APOSTROPHES.sub("", _fold(value))).strip()


def normalise_text_pattern(value: str) -> str:
    """As `normalise_text`, keeping the wildcards `*` and `?`."""
    return _NOT_ALNUM_OR_WILDCARD.sub(" ", _APOSTROPHES.sub("", _fold(value))).strip()


def normalise_identifier(value: str) -> str:
    """Passport, licence, encounter and activity numbers: letters and digits only."""
    return _NOT_ALNUM.sub("", _fold(value))


def normalise_identifier_pattern(value: str) -> str:
    return _NOT_ALNUM_OR_WILDCARD.sub("", _fold(value))


def normalise_digits(value: str) -> str:
    """SSN: "900-12-3456" and "900123456" are the same number."""
    return _NOT_DIGIT.sub("", value)


def normalise_digits_pattern(value: str) -> str:
    return re.sub(r"[^0-9*?]", "", value)


def normalise_phone(value: str) -> str:
    """Digits only, without the North American country code 1."""
    digits = normalise_digits(value)
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def normalise_a_number(value: str) -> str:
    """Alien registration number: "A-099-000-004", "99000004", "a099000004" -> "A099000004"."""
    ident = normalise_identifier(value)
    digits = ident[1:] if ident.startswith("A") else ident
    if digits.isdigit() and 7 <= len(digits) <= 9:
        return "A" + digits.zfill(9)
    return ident


def normalise_postal_code(value: str) -> str:
    """US ZIP+4 is matched on its five-digit ZIP; other postal codes on letters and digits."""
    ident = normalise_identifier(value)
    return ident[:5] if ident.isdigit() and len(ident) == 9 else ident


_STATES = STATE_BY_NAME
STATE_CODES = frozenset(_STATES.values())

_COUNTRIES = COUNTRY_BY_NAME


def normalise_state(value: str) -> str:
    text = normalise_text(value)
    return _STATES.get(text, text)


def normalise_country(value: str) -> str:
    text = normalise_text(value)
    return _COUNTRIES.get(text, text)


_STREET_WORDS = {
    "STREET": "ST", "STR": "ST", "AVENUE": "AVE", "AV": "AVE", "AVEN": "AVE", "ROAD": "RD",
    "DRIVE": "DR", "DRV": "DR", "BOULEVARD": "BLVD", "BOUL": "BLVD", "LANE": "LN", "COURT": "CT",
    "PLACE": "PL", "TERRACE": "TER", "CIRCLE": "CIR", "PARKWAY": "PKWY", "HIGHWAY": "HWY",
    "TRAIL": "TRL", "WAY": "WAY", "SQUARE": "SQ", "PLAZA": "PLZ", "LOOP": "LOOP",
    "NORTH": "N", "SOUTH": "S", "EAST": "E", "WEST": "W",
    "NORTHEAST": "NE", "NORTHWEST": "NW", "SOUTHEAST": "SE", "SOUTHWEST": "SW",
}
STREET_SUFFIXES = frozenset(
    {"ST", "AVE", "RD", "DR", "BLVD", "LN", "CT", "PL", "TER", "CIR", "PKWY", "HWY", "TRL", "WAY",
     "SQ", "PLZ", "LOOP"}
)


@lru_cache(maxsize=8192)
def normalise_street_name(value: str) -> str:
    """"Main Street" and "MAIN ST." -> "MAIN ST" (USPS suffix and direction abbreviations)."""
    return " ".join(_STREET_WORDS.get(word, word) for word in normalise_text(value).split())


def normalise_street_name_pattern(value: str) -> str:
    return " ".join(_STREET_WORDS.get(w, w) for w in normalise_text_pattern(value).split())


_UNIT_DESIGNATORS = frozenset(
    {"APT", "APARTMENT", "UNIT", "STE", "SUITE", "RM", "ROOM", "FL", "FLOOR", "BLDG", "BUILDING",
     "NO", "NUMBER", "SPC", "SPACE", "LOT", "TRLR"}
)


def normalise_secondary_unit(value: str) -> str:
    """"Apt. 4B", "#4b", "Unit 4-B" -> "4B": the unit is matched on its number, not its designator."""
    words = [w for w in normalise_text(value.replace("#", " ")).split() if w not in _UNIT_DESIGNATORS]
    return "".join(words)


def parse_date(value: str) -> date | None:
    """ISO (1975-04-12), compact (19750412) or US (04/12/1975) dates; None when not a date."""
    text = value.strip()
    if _ISO_DATE.fullmatch(text):  # the common case, without strptime (what it would return)
        try:
            return date(int(text[:4]), int(text[5:7]), int(text[8:]))
        except ValueError:
            pass  # not a real day: the layouts below decide, as they always did
    for layout in ("%Y-%m-%d", "%Y%m%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text, layout).date()
        except ValueError:
            continue
    try:  # an xs:dateTime or date with zone, e.g. 1975-04-12Z
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


@dataclass(frozen=True)
class ParsedAddress:
    """The parts found in a one-line address, each already canonical; None when absent."""

    street_number: str | None = None
    street_name: str | None = None
    secondary_unit: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


_ZIP = re.compile(r"^\d{5}$")
_ZIP4 = re.compile(r"^\d{4}$")
_UNIT_TOKENS = frozenset({"#"}) | _UNIT_DESIGNATORS


def parse_full_address(value: str) -> ParsedAddress:
    """Loosely split "100 Main St, Apt 4, Tucson AZ 85701" into its canonical parts.

    Commas help but are not needed: without them the street ends at its last suffix word
    (ST, AVE...), the state is a USPS code or name and the postal code a ZIP at the end.
    """
    tokens: list[tuple[str, int]] = []  # (word, comma-separated segment number)
    for segment_number, segment in enumerate(_APOSTROPHES.sub("", _fold(value)).split(",")):
        for word in _NOT_ALNUM_OR_HASH.sub(" ", segment.replace("#", " # ")).split():
            tokens.append((word, segment_number))
    words = [w for w, _ in tokens]

    def take_last(count: int) -> None:
        del tokens[-count:], words[-count:]

    country = postal = state = number = unit = None
    for width in (4, 3, 2, 1):
        name = " ".join(words[-width:])
        if len(words) > width + 1 and name in _COUNTRIES and (width > 1 or len(name) > 2):
            country = _COUNTRIES[name]
            take_last(width)
            break
    if len(words) >= 2 and _ZIP4.match(words[-1]) and _ZIP.match(words[-2]):
        take_last(1)
    if words and _ZIP.match(words[-1]):
        postal = words[-1]
        take_last(1)
    for width in (3, 2, 1):
        name = " ".join(words[-width:])
        if len(words) > width and (name in _STATES or (width == 1 and name in STATE_CODES)):
            state = _STATES.get(name, name)
            take_last(width)
            break
    if words and words[0][0].isdigit():
        number = words[0]
        del tokens[0], words[0]
    for i, word in enumerate(words):
        if word in _UNIT_TOKENS and i + 1 < len(words) and i > 0:
            unit = normalise_secondary_unit(words[i + 1])
            del tokens[i : i + 2], words[i : i + 2]
            break
    segments = {segment for _, segment in tokens}
    if len(segments) > 1:
        first = min(segments)
        street_words = [w for w, s in tokens if s == first]
        city_words = [w for w, s in tokens if s != first]
    else:
        suffix_at = max(
            (i for i, w in enumerate(words) if _STREET_WORDS.get(w, w) in STREET_SUFFIXES),
            default=-1,
        )
        if suffix_at >= 0:
            street_words, city_words = words[: suffix_at + 1], words[suffix_at + 1 :]
        elif number is not None:
            street_words, city_words = words, []
        else:
            street_words, city_words = [], words
    return ParsedAddress(
        street_number=number,
        street_name=normalise_street_name(" ".join(street_words)) or None,
        secondary_unit=unit or None,
        city=" ".join(city_words) or None,
        state=state,
        postal_code=postal,
        country=country,
    )
