"""Name likeness for fuzzy search: a phonetic key, Jaro-Winkler, and a nickname table.

Kept dependency-free on purpose: the phonetic key is precomputed into an indexed column at load
time, so the same function must give the same key in the loader and in every query.
"""
from __future__ import annotations

import re
from functools import lru_cache

FUZZY_THRESHOLD = 80  # a candidate name below this likeness is not a fuzzy match
NICKNAME_SCORE = 90
PHONETIC_FLOOR = 85  # same phonetic key (and not unlike): at least this likeness
PHONETIC_GATE = 0.7  # short names share keys easily (DIAZ ~ DOE): require some spelling likeness too
FUZZY_CEILING = 95  # a fuzzy match never scores like an exact one

_VOWELS = frozenset("AEIOU")
_NOT_LETTER = re.compile(r"[^A-Z]")

# Groups of names that the same person may be recorded under (formal name first).
_NICKNAME_GROUPS: tuple[tuple[str, ...], ...] = (
    ("JOHN", "JACK", "JOHNNY", "JON", "JOHNNIE", "JACKIE"),
    ("WILLIAM", "BILL", "BILLY", "WILL", "WILLIE", "LIAM"),
    ("ROBERT", "BOB", "BOBBY", "ROB", "ROBBIE", "BERT"),
    ("ELIZABETH", "LIZ", "BETH", "LIZZIE", "BETTY", "ELIZA", "LISA", "BETSY"),
    ("MARIA", "MARY", "MARIE", "MAREE", "MOLLY", "MAE"),
    ("JAMES", "JIM", "JIMMY", "JAMIE"),
    ("MICHAEL", "MIKE", "MICKEY", "MICK"),
    ("RICHARD", "RICK", "RICKY", "DICK", "RICH", "RICHIE"),
    ("THOMAS", "TOM", "TOMMY"),
    ("CHARLES", "CHARLIE", "CHUCK", "CHAS"),
    ("JOSEPH", "JOE", "JOEY", "JOSE", "PEPE"),
    ("DANIEL", "DAN", "DANNY"),
    ("DAVID", "DAVE", "DAVEY"),
    ("ANTHONY", "TONY", "ANTONIO"),
    ("EDWARD", "ED", "EDDIE", "TED", "TEDDY", "NED"),
    ("CHRISTOPHER", "CHRIS", "KIT"),
    ("MATTHEW", "MATT"),
    ("STEVEN", "STEPHEN", "STEVE"),
    ("ALEXANDER", "ALEX", "ALEJANDRO", "SASHA"),
    ("FRANCISCO", "PACO", "FRANK", "FRANCIS", "PANCHO"),
    ("MARGARET", "MAGGIE", "PEGGY", "MEG", "MARGE"),
    ("KATHERINE", "CATHERINE", "KATE", "KATHY", "KATIE", "CATHY"),
    ("PATRICIA", "PATTY", "PAT", "TRISH"),
    ("JENNIFER", "JENNY", "JEN"),
    ("SUSAN", "SUE", "SUZY"),
    ("GUADALUPE", "LUPE", "LUPITA"),
    ("ALEKSANDR", "ALEXANDR", "SASHA"),
    ("MOHAMMED", "MOHAMMAD", "MUHAMMAD", "MOHAMED"),
)


def _nickname_index() -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for group in _NICKNAME_GROUPS:
        for name in group:
            index.setdefault(name, set()).update(group)
    return {name: frozenset(names) for name, names in index.items()}


_NICKNAMES = _nickname_index()


def nickname_variants(name: str) -> frozenset[str]:
    """Every name recorded as the same first name as `name` (itself included)."""
    return _NICKNAMES.get(name, frozenset((name,)))


@lru_cache(maxsize=65536)
def phonetic_key(name: str) -> str:
    """NYSIIS with two refinements (silent GH, trailing silent E), for surname/given keys.

    Input is a normalised upper-case name; spaces and other non-letters are ignored so that
    "DE LA CRUZ" and "DELACRUZ" share a key. Empty input gives "".
    """
    word = _NOT_LETTER.sub("", name.upper())
    if not word:
        return ""
    # First letters (original NYSIIS).
    for old, new in (("MAC", "MCC"), ("KN", "NN"), ("K", "C"), ("PH", "FF"), ("PF", "FF"), ("SCH", "SSS")):
        if word.startswith(old):
            word = new + word[len(old):]
            break
    # Refinement: GH after the first letter is silent (DOUGH ~ DOE, WRIGHT ~ WRITE).
    word = word[0] + word[1:].replace("GH", "H")
    # Last letters.
    for old, new in (("EE", "Y"), ("IE", "Y"), ("DT", "D"), ("RT", "D"), ("RD", "D"), ("NT", "D"), ("ND", "D")):
        if word.endswith(old):
            word = word[: -len(old)] + new
            break
    key = [word[0]]
    chars = list(word)
    i = 1
    while i < len(chars):
        c = chars[i]
        if c == "E" and i + 1 < len(chars) and chars[i + 1] == "V":
            chars[i : i + 2] = ["A", "F"]
        elif c in _VOWELS:
            chars[i] = "A"
        elif c == "Q":
            chars[i] = "G"
        elif c == "Z":
            chars[i] = "S"
        elif c == "M":
            chars[i] = "N"
        elif c == "K":
            chars[i] = "N" if i + 1 < len(chars) and chars[i + 1] == "N" else "C"
        elif c == "S" and chars[i + 1 : i + 3] == ["C", "H"]:
            chars[i : i + 3] = ["S", "S", "S"]
        elif c == "P" and i + 1 < len(chars) and chars[i + 1] == "H":
            chars[i : i + 2] = ["F", "F"]
        elif c == "H":
            before = chars[i - 1]
            after = chars[i + 1] if i + 1 < len(chars) else ""
            if before not in _VOWELS or after not in _VOWELS:
                chars[i] = before
        elif c == "W" and chars[i - 1] in _VOWELS:
            chars[i] = chars[i - 1]
        if chars[i] != key[-1]:
            key.append(chars[i])
        i += 1
    if len(key) > 1 and key[-1] == "S":
        key.pop()
    if len(key) > 1 and key[-2:] == ["A", "Y"]:
        key[-2:] = ["Y"]
    if len(key) > 1 and key[-1] == "A":
        key.pop()
    return "".join(key)[:10]


def jaro_winkler(a: str, b: str) -> float:
    """Jaro-Winkler likeness in [0, 1] (prefix scale 0.1, up to 4 letters)."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(len(a), len(b)) // 2 - 1
    window = max(window, 0)
    a_matched = [False] * len(a)
    b_matched = [False] * len(b)
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


def name_likeness(query: str, candidate: str, *, nicknames: bool = False) -> int:
    """0-100: how likely `candidate` is the name the searcher meant by `query` (both normalised).

    Jaro-Winkler, less 3 points per letter of length difference (it overrates a short name that
    is the start of a long one: DOUGH is nearer DOE than DOUGLAS); a shared phonetic key lifts a
    plausible candidate to PHONETIC_FLOOR; nicknames (JOHNNY/JOHN) score NICKNAME_SCORE.
    """
    if query == candidate:
        return 100
    likeness = jaro_winkler(query, candidate)
    score = round(likeness * 100) - 3 * abs(len(query) - len(candidate))
    key = phonetic_key(query)
    if key and likeness >= PHONETIC_GATE and key == phonetic_key(candidate):
        score = max(score, PHONETIC_FLOOR)
    score = min(score, FUZZY_CEILING)
    if nicknames and candidate in nickname_variants(query):
        score = max(score, NICKNAME_SCORE)
    return max(score, 0)
