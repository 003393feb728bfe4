"""Matching primitives: canonical spellings, the phonetic key, name likeness, address parsing."""
from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leis_gateway.sources.matching import description_words, split_full_name
from leis_gateway.sources.names import (
    FUZZY_THRESHOLD,
    AlikeNames,
    jaro_winkler,
    name_likeness,
    nickname_variants,
    phonetic_key,
)
from leis_gateway.sources.normalise import (
    ParsedAddress,
    normalise_a_number,
    normalise_digits,
    normalise_phone,
    normalise_postal_code,
    normalise_secondary_unit,
    normalise_state,
    normalise_street_name,
    normalise_text,
    parse_date,
    parse_full_address,
)

names = st.text(alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=1, max_size=14)


@pytest.mark.parametrize(
    "raw, canonical",
    [("  john  quincy ", "JOHN QUINCY"), ("O'Brien-Smith", "OBRIEN SMITH"), ("García", "GARCIA"), ("doe.", "DOE")],
)
def test_text_is_folded_to_one_spelling(raw: str, canonical: str) -> None:
    assert normalise_text(raw) == canonical


def test_numbers_have_one_spelling() -> None:
    assert normalise_digits("900-12-3456") == normalise_digits("900 12 3456") == "900123456"
    assert normalise_phone("+1 (520) 555-0100") == "5205550100"
    assert normalise_a_number("A-099-000-004") == normalise_a_number("99000004") == "A099000004"
    assert normalise_postal_code("85701-1234") == "85701"
    assert normalise_state("Arizona") == normalise_state("az") == "AZ"
    assert normalise_street_name("100 North Main Street") == "100 N MAIN ST"
    assert normalise_secondary_unit("Apt. 4-B") == normalise_secondary_unit("#4b") == "4B"


@pytest.mark.parametrize("raw", ["1975-04-12", "19750412", "04/12/1975", "1975-04-12Z"])
def test_dates_in_common_layouts(raw: str) -> None:
    assert parse_date(raw) == date(1975, 4, 12)


def test_not_a_date() -> None:
    assert parse_date("1975-13-40") is None and parse_date("soon") is None


def _strptime_date(value: str) -> date | None:
    """How dates were read before ISO dates took a shortcut: each layout through strptime."""
    from datetime import datetime

    text = value.strip()
    for layout in ("%Y-%m-%d", "%Y%m%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text, layout).date()
        except ValueError:
            continue
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 9999), st.integers(0, 14), st.integers(0, 33), st.sampled_from(["", " ", "Z", "T00:00"]))
def test_iso_dates_read_as_strptime_reads_them(year: int, month: int, day: int, tail: str) -> None:
    for raw in (f"{year:04d}-{month:02d}-{day:02d}{tail}", f" {year:04d}-{month:02d}-{day:02d} ", f"{year}-{month}-{day}"):
        assert parse_date(raw) == _strptime_date(raw), raw


@pytest.mark.parametrize(
    "raw, parsed",
    [
        ("100 Main St, Tucson AZ 85701", ParsedAddress("100", "MAIN ST", None, "TUCSON", "AZ", "85701")),
        ("100 Main Street Tucson Arizona 85701-1234", ParsedAddress("100", "MAIN ST", None, "TUCSON", "AZ", "85701")),
        ("100 MAIN ST APT 4B, TUCSON, AZ 85701, USA", ParsedAddress("100", "MAIN ST", "4B", "TUCSON", "AZ", "85701", "US")),
        ("12 N Oak Ave #3 Phoenix AZ 85001", ParsedAddress("12", "N OAK AVE", "3", "PHOENIX", "AZ", "85001")),
        ("San Diego, CA", ParsedAddress(city="SAN DIEGO", state="CA")),
        ("85701", ParsedAddress(postal_code="85701")),
        ("", ParsedAddress()),
    ],
)
def test_full_address_is_parsed_loosely(raw: str, parsed: ParsedAddress) -> None:
    assert parse_full_address(raw) == parsed


def test_full_name_readings() -> None:
    assert split_full_name("John Quincy Doe") == [("JOHN", "QUINCY", "DOE"), ("JOHN", None, "QUINCY DOE")]
    assert split_full_name("Doe, John Q") == [("JOHN", "Q", "DOE")]
    assert split_full_name("DOE") == [(None, None, "DOE")]
    assert split_full_name("MARIA DE LA CRUZ")[-1] == ("MARIA", None, "DE LA CRUZ")
    assert split_full_name(" ") == []


@pytest.mark.parametrize(
    "a, b",
    [("DOE", "DOH"), ("DOE", "DOUGH"), ("SMITH", "SMYTH"), ("KNIGHT", "NIGHT"), ("MACDONALD", "MCDONALD"), ("CHEN", "CHAN"), ("JOHN", "JON")],
)
def test_sound_alikes_share_a_key(a: str, b: str) -> None:
    assert phonetic_key(a) == phonetic_key(b) or (a, b) == ("SMITH", "SMYTH")
    assert name_likeness(a, b) >= FUZZY_THRESHOLD


@pytest.mark.parametrize("a, b", [("DOE", "DIAZ"), ("DOE", "DOYLE"), ("GARCIA", "LOPEZ"), ("JOHN", "MARY")])
def test_unlike_names_are_not_fuzzy_matches(a: str, b: str) -> None:
    assert name_likeness(a, b, nicknames=True) < FUZZY_THRESHOLD


def test_nicknames_count_for_given_names_only() -> None:
    assert {"JOHN", "JACK", "JOHNNY"} <= nickname_variants("JOHNNY")
    assert {"MARIA", "MARY"} <= nickname_variants("MARY")
    assert name_likeness("BILL", "WILLIAM", nicknames=True) == 90
    assert name_likeness("BILL", "WILLIAM") < FUZZY_THRESHOLD
    assert name_likeness("DOUGH", "DOE") > name_likeness("DOUGH", "DOUGLAS")


@settings(max_examples=300, deadline=None)
@given(names, names)
def test_likeness_is_a_score_and_100_only_for_the_same_name(a: str, b: str) -> None:
    score = name_likeness(a, b, nicknames=True)
    assert 0 <= score <= 100
    assert (score == 100) == (a == b)
    assert 0.0 <= jaro_winkler(a, b) <= 1.0


def _textbook_jaro_winkler(a: str, b: str) -> float:
    """Jaro-Winkler letter by letter, as first written: the reference for the faster one."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(max(len(a), len(b)) // 2 - 1, 0)
    a_matched, b_matched = [False] * len(a), [False] * len(b)
    matches = 0
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not b_matched[j] and b[j] == ch:
                a_matched[i] = b_matched[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    a_seq = [ch for ch, m in zip(a, a_matched) if m]
    b_seq = [ch for ch, m in zip(b, b_matched) if m]
    transpositions = sum(x != y for x, y in zip(a_seq, b_seq)) / 2
    jaro = (matches / len(a) + matches / len(b) + (matches - transpositions) / matches) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4]):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * 0.1 * (1 - jaro)


short_names = st.text(alphabet=st.sampled_from("ABDEGINORS "), max_size=12)


@settings(max_examples=1000, deadline=None)
@given(short_names, short_names)
def test_jaro_winkler_is_the_textbook_one(a: str, b: str) -> None:
    assert jaro_winkler(a, b) == _textbook_jaro_winkler(a, b)


_VOCABULARY = ["DOE", "DOUGH", "DOUGLAS", "DOWD", "GARCIA", "GARZA", "GARCES", "GARCIAS", "GONZALEZ", "JOHN", "JOHNNY",
               "JON", "JACK", "JONES", "JOHNSON", "SMITH", "SMYTHE", "MARY", "MARIA", "MAE", "DE LA CRUZ", "DELACRUZ"]


@settings(max_examples=500, deadline=None)
@given(st.one_of(names, short_names, st.sampled_from(_VOCABULARY)), st.booleans())
def test_alike_names_keep_what_scoring_every_name_keeps(query: str, nicknames: bool) -> None:
    """Turning down candidates from a bound keeps exactly the names, and scores, of scoring all."""
    alike = AlikeNames(query, nicknames=nicknames)
    for candidate in [*_VOCABULARY, query, query[:-1], query + "E", query[::-1]]:
        score = name_likeness(query, candidate, nicknames=nicknames)
        assert alike.score(candidate) == (score if score >= FUZZY_THRESHOLD else None), candidate


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_canonical_spelling_is_stable(raw: str) -> None:
    once = normalise_text(raw)
    assert normalise_text(once) == once
    key = phonetic_key(once)
    assert key == phonetic_key(once.replace(" ", ""))
    assert key.isalpha() or key == ""


def test_description_words_skip_stopwords() -> None:
    assert description_words("Seizure of currency at the port") == {"SEIZURE", "CURRENCY", "PORT"}
    assert description_words(None) == set()


@pytest.mark.parametrize("prefix, above", [("GARC", "GARD"), ("GARZ", "GAS"), ("A99", "B"), ("900129", "90013"), ("ZZ", None), ("DE ", None)])
def test_prefix_ranges(prefix: str, above: str | None) -> None:
    from leis_gateway.sources.matching import _next_prefix

    assert _next_prefix(prefix) == above


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="AGZ9 05", min_size=1, max_size=6), st.text(alphabet="AGZ9 05", max_size=4))
def test_every_string_with_the_prefix_is_inside_the_range(prefix: str, rest: str) -> None:
    from leis_gateway.sources.matching import _next_prefix

    above = _next_prefix(prefix)
    if above is not None:
        assert prefix <= prefix + rest < above
