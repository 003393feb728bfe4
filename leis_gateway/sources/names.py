"""Name likeness for fuzzy search: a phonetic key, Jaro-Winkler, and a nickname table.

Kept dependency-free on purpose: the phonetic key is precomputed into an indexed column at load
time, so the same function must give the same key in the loader and in every query.
"""
from __future__ import annotations

import re
from functools import lru_cache
from itertools import compress
from operator import ne

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
    """Jaro-Winkler likeness in [0, 1] (prefix scale 0.1, up to 4 letters).

    Each letter of `a` takes the first letter of `b` equal to it, not yet taken, within the
    match window (found with `str.find`: fuzzy search scores every candidate name with this).
    """
    if a == b:
        return 1.0
    la, lb = len(a), len(b)
    if not la or not lb:
        return 0.0
    window = max(max(la, lb) // 2 - 1, 0)
    b_matched = [False] * lb
    a_seq = []  # the letters of `a` that matched, in order
    find = b.find
    for i, ch in enumerate(a):
        hi = i + window + 1
        j = find(ch, i - window if i > window else 0, hi)
        while j >= 0 and b_matched[j]:
            j = find(ch, j + 1, hi)
        if j >= 0:
            b_matched[j] = True
            a_seq.append(ch)
    matches = len(a_seq)
    if not matches:
        return 0.0
    transpositions = sum(map(ne, a_seq, compress(b, b_matched))) / 2
    return _winkler((matches / la + matches / lb + (matches - transpositions) / matches) / 3, a, b)


def _winkler(jaro: float, a: str, b: str) -> float:
    """Winkler's lift of a Jaro similarity for a common prefix (up to 4 letters)."""
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


class AlikeNames:
    """The candidates alike enough to one query name: `name_likeness` when it reaches `floor`.

    Fuzzy search scores every name of the vocabulary that shares the query's phonetic key or
    initial, and keeps few of them. A candidate whose likeness cannot reach `floor` even at
    best is turned down before Jaro-Winkler runs: the letters it shares with the query bound
    the matches, and the matches bound the likeness. Every other candidate gets its exact
    `name_likeness`, so the kept names and their scores are those of scoring every one.
    """

    def __init__(self, query: str, *, nicknames: bool = False, floor: int = FUZZY_THRESHOLD) -> None:
        if floor > min(PHONETIC_FLOOR, NICKNAME_SCORE, FUZZY_CEILING):
            raise ValueError("the bound assumes a floor that a phonetic or nickname match reaches")
        self.query, self.floor, self._nicknames = query, floor, nicknames
        self._key = phonetic_key(query)
        self._variants = nickname_variants(query) if nicknames else frozenset()
        self._letters = frozenset(query).__contains__

    def score(self, candidate: str) -> int | None:
        """`name_likeness(query, candidate)` when at least `floor`, else None."""
        query = self.query
        if candidate != query and candidate not in self._variants:  # a nickname always scores enough
            # Below the floor unless Jaro-Winkler reaches `needed` (its score less 3 a letter of
            # length difference, rounded; or PHONETIC_GATE for a candidate with the query's key).
            la, lb = len(query), len(candidate)
            needed = (self.floor + 3 * abs(la - lb) - 0.5) / 100
            if self._key and self._key == phonetic_key(candidate):
                needed = min(needed, PHONETIC_GATE)
            if _jaro_winkler_bound(query, candidate, sum(map(self._letters, candidate))) < needed - 1e-9:
                return None
        score = name_likeness(query, candidate, nicknames=self._nicknames)
        return score if score >= self.floor else None


def _jaro_winkler_bound(a: str, b: str, shared: int) -> float:
    """At least `jaro_winkler(a, b)`, given that at most `shared` letters of `b` occur in `a`."""
    la, lb = len(a), len(b)
    matches = min(la, lb, shared)  # each match pairs a letter of `a` with an equal one of `b`
    if not matches:
        return 0.0
    return _winkler((matches / la + matches / lb + 1) / 3, a, b)  # no transpositions at best
