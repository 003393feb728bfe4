"""Apply a release profile: build, from what sources hold, only what may leave.

Nothing is copied by default: every released value is read from a source record by an
explicit entry of the allowlists in `profiles`, checked for shape, and written onto a fresh
`ReleasedPerson`/`Address`. Every released record comes with its disclosure (who received
which elements of which source record) for the audit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from typing import Any, Callable, Sequence

from ..domain import Address, Agreement, Query, QueryField, ReleasedPerson, ReleasedRecord, SourceRecord
from ..policy.rules import check_agreement
from .profiles import (
    ADDRESS_ELEMENTS,
    ATTACHMENT_ELEMENT,
    ELEMENT_SHAPES,
    IDENTIFIER_ELEMENTS,
    PERSON_ELEMENTS,
    QUERY_GATED_ELEMENTS,
    RELEASABLE_OWNERS,
    RELEASABLE_RECORDS,
    ReleaseProfile,
)
from .tokens import ItemTokens, Ref, TokenKind

log = logging.getLogger(__name__)

ATTACHMENT_CONTENT = "attachment.photo"  # the disclosure name of a getAttachment answer


@dataclass(frozen=True)
class Disclosure:
    """What one agreement received of one source record (the audit's disclosure record).

    `record_id` is the source's own id: for the audit only, it never leaves the gateway.
    """

    agreement_id: str
    source: str
    record_id: str
    elements: tuple[str, ...]
    item_id: str | None = None  # the opaque id the agreement received for this record
    user_id: str | None = None

    @classmethod
    def for_attachment(cls, ref: Ref, agreement_id: str, user_id: str | None = None) -> "Disclosure":
        """A getAttachment answer: the photo of the record named by an opened attachment token."""
        return cls(agreement_id, ref.source, ref.record_id, (ATTACHMENT_CONTENT,), None, user_id)


@dataclass(frozen=True)
class ReleaseResult:
    records: tuple[ReleasedRecord, ...] = ()
    disclosures: tuple[Disclosure, ...] = ()
    withheld: int = 0  # for the audit only: telling the requester would reveal withheld records


def record_releasable(record: SourceRecord, profile: ReleaseProfile) -> bool:
    """The record allowlist: may anything of this record leave under this profile?"""
    rule = RELEASABLE_RECORDS.get(record.source)
    return (
        rule is not None
        and record.source in profile.sources
        and record.kind in rule.kinds
        and record.status in rule.statuses
        and record.role in rule.roles
        and record.owner in RELEASABLE_OWNERS
        and not record.restrictions
        and not (profile.exclude_protected_classes and record.protected_classes)
    )


def release(
    records: Sequence[SourceRecord],
    query: Query,
    agreement: Agreement,
    profile: ReleaseProfile | None,
    tokens: ItemTokens,
    now: datetime,
    *,
    best: int | None = None,
) -> ReleaseResult:
    """The releasable part of `records` for a search by `agreement` (same order, no duplicates).

    With `best`: only the `best` highest-scoring releasable records, best first (equal scores keep
    the given order). Records ranked below them are not released at all, so nothing is sealed or
    disclosed for a record the answer would leave out (a fuzzy search reads twice the records it
    answers with: `best` more from each source)."""
    if not _may_receive(agreement, profile, now):
        return ReleaseResult(withheld=len(records))
    asked = frozenset(criterion.field for criterion in query.criteria)
    first: dict[str, SourceRecord] = {}
    for record in records:
        first.setdefault(record.key, record)
    unique = list(first.values())
    if best is not None:
        unique.sort(key=lambda record: -released_score(record))
    released: list[ReleasedRecord] = []
    disclosures: list[Disclosure] = []
    withheld = len(records) - len(unique)  # duplicates
    for record in unique:
        if best is not None and len(released) >= best:
            break
        outcome = _release_one(record, asked, agreement, profile, tokens, now, None)
        if outcome is None:
            withheld += 1
            continue
        released.append(outcome[0])
        disclosures.append(outcome[1])
    return ReleaseResult(tuple(released), tuple(disclosures), withheld)


def released_score(record: SourceRecord) -> int:
    """The score a released record carries (0-100, whole): what answers are ranked by."""
    return min(max(int(record.score), 0), 100)


def release_single(
    record: SourceRecord,
    ref: Ref,
    agreement: Agreement,
    profile: ReleaseProfile | None,
    tokens: ItemTokens,
    now: datetime,
) -> ReleaseResult:
    """getDataItem: the same rules again, for the record an opened item token names.

    Discloses at most the identifiers the search disclosed, and keeps the search's deadline.
    """
    if (
        ref.kind != TokenKind.ITEM
        or ref.agreement_id != agreement.id
        or (str(record.source), record.record_id) != (ref.source, ref.record_id)
        or now >= ref.expires_at
        or not _may_receive(agreement, profile, now)
    ):
        return ReleaseResult(withheld=1)
    asked = frozenset(QueryField(f) for f in ref.fields if f in QueryField._value2member_map_)
    outcome = _release_one(record, asked, agreement, profile, tokens, now, ref.expires_at)
    if outcome is None:
        return ReleaseResult(withheld=1)
    return ReleaseResult((outcome[0],), (outcome[1],), 0)


def authorise_attachment(
    ref: Ref, record: SourceRecord, agreement: Agreement, profile: ReleaseProfile | None, now: datetime
) -> Disclosure | None:
    """getAttachment: may the photo named by `ref` go to `agreement` now?

    `record` is the source record the attachment was released with (re-fetched); the record
    must still be releasable and still carry that photo. Returns the disclosure to audit.
    """
    if (
        ref.kind != TokenKind.ATTACHMENT
        or ref.agreement_id != agreement.id
        or ref.photo_id is None
        or (str(record.source), record.record_id) != (ref.source, ref.record_id)
        or record.photo_id != ref.photo_id
        or now >= ref.expires_at
        or not _may_receive(agreement, profile, now)
        or profile is None  # (for the type checker: _may_receive refused it already)
        or ATTACHMENT_ELEMENT not in profile.elements
        or not record_releasable(record, profile)
    ):
        return None
    return Disclosure.for_attachment(ref, agreement.id)


# --- internals ----------------------------------------------------------------------------


def _may_receive(agreement: Agreement, profile: ReleaseProfile | None, now: datetime) -> bool:
    """Defence in depth: policy refuses earlier, but release never trusts that it did."""
    if profile is None or agreement.release_profile != profile.name:
        log.error("release profile mismatch for agreement %s: refusing to release", agreement.id)
        return False
    return check_agreement(agreement, now.date()) is None


@dataclass(frozen=True)
class _Plan:
    """The elements one profile releases for one set of asked fields, each with its value's
    attribute and shape check: worked out once, not per record and element."""

    person: tuple[tuple[str, str, Callable[[Any], bool]], ...]
    identifiers: tuple[tuple[str, QueryField, str, Callable[[Any], bool]], ...]
    address: tuple[tuple[str, str, Callable[[Any], bool]], ...]
    attachment: bool


@lru_cache(maxsize=256)
def _plan(profile: ReleaseProfile, asked: frozenset[QueryField]) -> _Plan:
    def allowed(element: str) -> bool:
        gate = QUERY_GATED_ELEMENTS.get(element)
        return element in profile.elements and (gate is None or gate in asked)

    return _Plan(
        person=tuple((e, a, ELEMENT_SHAPES[e]) for e, a in PERSON_ELEMENTS.items() if allowed(e)),
        identifiers=tuple((e, f, a, ELEMENT_SHAPES[e]) for e, (f, a) in IDENTIFIER_ELEMENTS.items() if allowed(e)),
        address=tuple((e, a, ELEMENT_SHAPES[e]) for e, a in ADDRESS_ELEMENTS.items() if allowed(e)),
        attachment=allowed(ATTACHMENT_ELEMENT),
    )


_NO_PERSON_VALUES = dict.fromkeys(PERSON_ELEMENTS.values())


def _release_one(
    record: SourceRecord,
    asked: frozenset[QueryField],
    agreement: Agreement,
    profile: ReleaseProfile,
    tokens: ItemTokens,
    now: datetime,
    expires_at: datetime | None,
) -> tuple[ReleasedRecord, Disclosure] | None:
    if not record_releasable(record, profile):
        return None
    plan = _plan(profile, asked)
    disclosed: list[str] = []
    person = record.person
    person_values: dict[str, object] = dict(_NO_PERSON_VALUES)
    for element, attribute, shaped in plan.person:
        value = getattr(person, attribute)
        if value is not None and shaped(value):
            person_values[attribute] = value
            disclosed.append(element)
    identifiers: list[tuple[QueryField, str]] = []
    for element, query_field, attribute, shaped in plan.identifiers:
        value = getattr(person, attribute)
        if value is not None and shaped(value):
            identifiers.append((query_field, value))
            disclosed.append(element)
    address_values: dict[str, str | None] = {}
    if record.address is not None:
        for element, attribute, shaped in plan.address:
            value = getattr(record.address, attribute)
            if value is not None and shaped(value):
                address_values[attribute] = value
                disclosed.append(element)
    if not disclosed:
        return None  # nothing of this person may leave: do not release an empty shell

    gated_fields = tuple(
        str(QUERY_GATED_ELEMENTS[element]) for element in disclosed if element in QUERY_GATED_ELEMENTS
    )
    item_id = tokens.issue(
        TokenKind.ITEM, str(record.source), record.record_id, agreement.id, now,
        fields=gated_fields, expires_at=expires_at,
    )
    attachment_uri = None
    if record.photo_id and plan.attachment:
        attachment_uri = tokens.attachment_uri(
            tokens.issue(
                TokenKind.ATTACHMENT, str(record.source), record.record_id, agreement.id, now,
                photo_id=record.photo_id, expires_at=expires_at,
            )
        )
        disclosed.append(ATTACHMENT_ELEMENT)

    elements = tuple(disclosed)
    released = ReleasedRecord(
        item_id=item_id,
        source=record.source,
        owner=record.owner,
        person=ReleasedPerson(**person_values, identifiers=tuple(identifiers)),
        address=Address(**address_values) if address_values else None,
        attachment_uri=attachment_uri,
        score=released_score(record),
        disclosed_elements=elements,
    )
    return released, Disclosure(agreement.id, str(record.source), record.record_id, elements, item_id)
