"""Policy: may this agreement ask, for this purpose, this question? Before any source is asked.

Each check returns an `Advisory` (the caller answers ResultCode Error with it) or the
authorised thing. Advisory texts name the offending element and its line but never echo a
queried or stated value: advisories are logged and audited, and must hold no PII.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Mapping

from ..domain import (
    Advisory,
    AdvisoryCategory,
    Agreement,
    Criterion,
    Purpose,
    Query,
    QueryField,
    QueryMatch,
    QueryStatement,
    StructuredSearchRequest,
    UserAssertion,
)
from .query_fields import (
    ANCHORS,
    FIELDS_BY_PATH,
    LOWER_BOUNDS,
    MIN_LITERAL_CHARACTERS,
    QUALIFIERS_BY_PATH,
    RULES_BY_FIELD,
    UPPER_BOUNDS,
    WILDCARD_CHARACTERS,
    WRAPPER_ELEMENTS,
    FieldRule,
)

SEARCH_PURPOSE_ATTRIBUTE = "SearchPurpose"
SEARCH_PURPOSE_DOMAIN = "LEIS"
MEMBER_DIRECTIONS = frozenset({"two-way", "one-way"})  # may use the member endpoint
ACTIVE = "active"


def _refuse(text: str, category: AdvisoryCategory = AdvisoryCategory.BUSINESS_RULE_NOT_MET) -> Advisory:
    return Advisory(category, text)


# --- agreement ----------------------------------------------------------------------------

def lapsed(agreement: Agreement, today: date) -> str | None:
    """Why an agreement is not in force today ("is suspended", "expired on ..."), or None."""
    if isinstance(today, datetime):  # a clock's now() is accepted for today
        today = today.date()
    if agreement.status == "suspended":
        return "is suspended"
    if agreement.status != ACTIVE:
        return "is not active"
    if agreement.expires is not None and today > agreement.expires:
        return f"expired on {agreement.expires}"
    return None


def check_agreement(agreement: Agreement | None, today: date) -> Advisory | None:
    """None when the agreement may search and retrieve on the member endpoint today.

    One-way members (Nlets) may query; they are only never queried. `expires` is the last
    day the agreement is valid.
    """
    if agreement is None:
        return _refuse("The caller's certificate is bound to no member agreement: the request is refused.")
    why = lapsed(agreement, today)
    if why is not None:
        return _refuse(f"Agreement '{agreement.id}' {why}: no search or retrieval is permitted.")
    if agreement.direction == "internal":
        return _refuse(
            f"Agreement '{agreement.id}' is an internal system agreement, not a member agreement: "
            "it may not use the member endpoint."
        )
    if agreement.direction not in MEMBER_DIRECTIONS:
        return _refuse(f"Agreement '{agreement.id}' has no sharing direction that permits this endpoint.")
    return None


# --- purpose ------------------------------------------------------------------------------

_PURPOSE_NAMES = ", ".join(p.value for p in Purpose)


def check_purpose(user: UserAssertion, agreement: Agreement) -> Purpose | Advisory:
    """Exactly one known SearchPurpose (Domain LEIS) that the agreement permits."""
    stated = user.attribute(SEARCH_PURPOSE_ATTRIBUTE, SEARCH_PURPOSE_DOMAIN)
    where = (
        f"UserAssertion/DomainAttribute with AttributeName '{SEARCH_PURPOSE_ATTRIBUTE}' "
        f"and Domain '{SEARCH_PURPOSE_DOMAIN}'"
    )
    if not stated:
        return _refuse(f"No search purpose was stated: {where} is required, one of {_PURPOSE_NAMES}.")
    if len(stated) > 1:
        return _refuse(f"{len(stated)} search purposes were stated in {where}: state exactly one.")
    try:
        purpose = Purpose(stated[0].strip())
    except ValueError:
        return _refuse(f"The search purpose stated in {where} is not one of {_PURPOSE_NAMES}.")
    if purpose not in agreement.purposes:
        allowed = ", ".join(sorted(p.value for p in agreement.purposes)) or "none"
        return _refuse(
            f"Search purpose {purpose.value} is not permitted by agreement '{agreement.id}' "
            f"(permitted: {allowed})."
        )
    return purpose


# --- query --------------------------------------------------------------------------------

_MATCH_REFUSAL_CATEGORY = {
    QueryMatch.FUZZY: AdvisoryCategory.FUZZY_MATCH_NOT_SUPPORTED,
    QueryMatch.WILDCARD: AdvisoryCategory.WILDCARD_NOT_SUPPORTED,
}

_QUERYABLE = (
    "names (full, given, middle, surname), birth date, SSN, passport, A-number, encounter "
    "identifier, driver licence, address (full, street number, street name, secondary unit, "
    "city, state, country, postal code), telephone number, activity number and description"
)


def _where(statement: QueryStatement) -> str:
    element = statement.element[:300]
    return f"{element} (line {statement.line})" if statement.line is not None else element


def _lines(statements: list[QueryStatement]) -> str:
    lines = [str(s.line) for s in statements if s.line is not None]
    return f" (lines {', '.join(lines)})" if lines else ""


def _path(statement: QueryStatement) -> tuple[str, ...]:
    path = statement.path
    while path and path[0] in WRAPPER_ELEMENTS:
        path = path[1:]
    return path


def _criterion(statement: QueryStatement, rule: FieldRule) -> Criterion | Advisory:
    where = _where(statement)
    if statement.match not in rule.matches:
        supported = ", ".join(sorted(m.value for m in rule.matches))
        return _refuse(
            f"{where}: QueryMatch '{statement.match.value}' is not supported on the {rule.label}; "
            f"supported: {supported}.",
            _MATCH_REFUSAL_CATEGORY.get(statement.match, AdvisoryCategory.BUSINESS_RULE_NOT_MET),
        )
    value = statement.value
    has_wildcard = any(c in WILDCARD_CHARACTERS for c in value)
    if statement.match == QueryMatch.WILDCARD:
        literal = [c for c in value if c not in WILDCARD_CHARACTERS and not c.isspace()]
        if len(literal) < MIN_LITERAL_CHARACTERS:
            return _refuse(
                f"{where}: a wildcard value needs at least {MIN_LITERAL_CHARACTERS} characters "
                "besides wildcards; a bare wildcard would return everyone (a batch query)."
            )
    elif has_wildcard:
        return _refuse(
            f"{where}: the value holds a wildcard character but QueryMatch is "
            f"'{statement.match.value}'; use 'wildcard'."
        )
    normalised = rule.normalise(value) if value.strip() else None
    if normalised is None:
        if not value.strip():
            return _refuse(f"{where}: the value is empty.")
        return _refuse(f"{where}: the value is not a well-formed {rule.label}.")
    if statement.match == QueryMatch.FUZZY and len(normalised) < MIN_LITERAL_CHARACTERS:
        return _refuse(f"{where}: a fuzzy value needs at least {MIN_LITERAL_CHARACTERS} characters.")
    return Criterion(rule.field, normalised, statement.match)


def _check_birth_dates(criteria: list[tuple[QueryStatement, Criterion]]) -> Advisory | None:
    """One exact birth date, or the two ends of one range (a lower and an upper bound)."""
    if len(criteria) < 2:
        return None
    statements = [s for s, _ in criteria]
    matches = [c.match for _, c in criteria]
    where = f"{statements[0].element}{_lines(statements)}"
    if not (
        len(criteria) == 2
        and sum(m in LOWER_BOUNDS for m in matches) == 1
        and sum(m in UPPER_BOUNDS for m in matches) == 1
    ):
        return _refuse(
            f"{where}: more than one birth date is refused unless the two are the lower "
            "(gt/ge) and upper (lt/le) ends of one range; a query describes one person."
        )
    low = next(c for _, c in criteria if c.match in LOWER_BOUNDS)
    high = next(c for _, c in criteria if c.match in UPPER_BOUNDS)
    if low.value > high.value:
        return _refuse(f"{where}: the birth date range is empty (its lower end is after its upper end).")
    return None


def authorise_query(request: StructuredSearchRequest) -> Query | Advisory:
    """The single-subject Query the request asks, or why it may not run.

    Refused: no or several StructuredQuery blocks (a batch), any StructuredPayloadQueryStatement,
    any element outside the table in `query_fields`, a match mode that makes no sense for the
    field, a value that is malformed or a bare wildcard, two values of one field (two persons),
    and a query that pins no person or record down.
    """
    if not request.queries:
        return _refuse("The request holds no StructuredQuery.")
    if len(request.queries) > 1:
        lines = [str(b.line) for b in request.queries if b.line is not None]
        at = f" (lines {', '.join(lines)})" if lines else ""
        return _refuse(
            f"The request holds {len(request.queries)} StructuredQuery blocks{at}: a batch query "
            "is refused; send one StructuredQuery, for one person, per request."
        )
    block = request.queries[0]
    if block.payload_statements:
        at = f" at line {block.line}" if block.line is not None else ""
        return _refuse(
            f"The StructuredQuery{at} holds {block.payload_statements} "
            "StructuredPayloadQueryStatement(s): only Digest fields are queryable.",
            AdvisoryCategory.QUERY_FIELD_NOT_SUPPORTED,
        )
    if request.max_items < 1:
        return _refuse("MaxItemMatches must be at least 1.")

    by_field: dict[QueryField, list[tuple[QueryStatement, Criterion]]] = defaultdict(list)
    criteria: list[Criterion] = []  # in statement order
    for statement in block.statements:
        path = _path(statement)
        qualifier = QUALIFIERS_BY_PATH.get(path)
        if qualifier is not None:
            if statement.match != QueryMatch.EXACT or statement.value.strip().casefold() not in qualifier.values:
                return _refuse(
                    f"{_where(statement)}: only the category that makes this the "
                    f"{RULES_BY_FIELD[qualifier.qualifies].label} may be queried, with QueryMatch 'exact'.",
                    AdvisoryCategory.QUERY_FIELD_NOT_SUPPORTED,
                )
            continue
        rule = FIELDS_BY_PATH.get(path)
        if rule is None:
            return _refuse(
                f"{_where(statement)} is not a queryable field. Queryable: {_QUERYABLE}.",
                AdvisoryCategory.QUERY_FIELD_NOT_SUPPORTED,
            )
        outcome = _criterion(statement, rule)
        if isinstance(outcome, Advisory):
            return outcome
        by_field[rule.field].append((statement, outcome))
        criteria.append(outcome)

    if not by_field:
        return _refuse("The StructuredQuery queries no field.")
    for query_field, found in by_field.items():
        if query_field == QueryField.BIRTH_DATE:
            refusal = _check_birth_dates(found)
            if refusal is not None:
                return refusal
        elif len(found) > 1:
            statements = [s for s, _ in found]
            return _refuse(
                f"{statements[0].element}{_lines(statements)}: {len(found)} values of the "
                f"{RULES_BY_FIELD[query_field].label} were given; more than one value of a field "
                "describes more than one person, and a query describes one person."
            )
    asked = frozenset(by_field)
    if not any(anchor <= asked for anchor in ANCHORS):
        return _refuse(
            "The query pins no person or record down; it needs at least a surname, a full name, "
            "an identifying number, a telephone number, a full address, a street number with its "
            "street name, an activity number, or a given name with a birth date."
        )
    return Query(criteria=tuple(criteria), max_items=request.max_items)


QUERY_CATEGORIES: Mapping[QueryField, str] = {
    **dict.fromkeys(
        (QueryField.FULL_NAME, QueryField.GIVEN_NAME, QueryField.MIDDLE_NAME, QueryField.SURNAME,
         QueryField.BIRTH_DATE),
        "Name",
    ),
    **dict.fromkeys(
        (QueryField.SSN, QueryField.PASSPORT, QueryField.A_NUMBER, QueryField.ENCOUNTER_ID,
         QueryField.DRIVER_LICENSE),
        "IdentifyingNumber",
    ),
    **dict.fromkeys(
        (QueryField.FULL_ADDRESS, QueryField.STREET_NUMBER, QueryField.STREET_NAME,
         QueryField.SECONDARY_UNIT, QueryField.CITY, QueryField.STATE, QueryField.COUNTRY,
         QueryField.POSTAL_CODE, QueryField.PHONE),
        "Address",
    ),
    **dict.fromkeys((QueryField.ACTIVITY_NUMBER, QueryField.ACTIVITY_DESCRIPTION), "Incident"),
}


def query_categories(query: Query) -> tuple[str, ...]:
    """The categories a query used (for the audit: what kind of question, never its values)."""
    used = {QUERY_CATEGORIES[c.field] for c in query.criteria}
    return tuple(category for category in dict.fromkeys(QUERY_CATEGORIES.values()) if category in used)


# --- all three, in order ------------------------------------------------------------------


@dataclass(frozen=True)
class Authorisation:
    agreement: Agreement
    purpose: Purpose
    query: Query


def authorise_search(
    agreement: Agreement | None, request: StructuredSearchRequest, today: date
) -> Authorisation | Advisory:
    """Agreement, then purpose, then query: the first refusal is the answer."""
    refusal = check_agreement(agreement, today)
    if refusal is not None:
        return refusal
    assert agreement is not None
    purpose = check_purpose(request.user, agreement)
    if isinstance(purpose, Advisory):
        return purpose
    query = authorise_query(request)
    if isinstance(query, Advisory):
        return query
    return Authorisation(agreement, purpose, query)
