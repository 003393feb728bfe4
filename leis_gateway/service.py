"""The business core of the LEIS Service: policy, then sources in parallel, then release.

No XML here: requests arrive as `domain` objects from `lexs.parse`, and decisions leave as
`domain` outcomes for `lexs.build`. Every refusal happens before any source is asked.
"""
from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from dataclasses import dataclass, field
from typing import Callable

from .domain import (
    Advisory,
    AdvisoryCategory,
    Agreement,
    AttachmentRequest,
    DataItemRequest,
    Photo,
    Purpose,
    ReleasedRecord,
    ResultCode,
    SearchOutcome,
    SourceRecord,
    SourceSystem,
    StructuredSearchRequest,
    TextSearchRequest,
    UserAssertion,
)
from .federation import Federation
from .observability import metrics
from .policy import rules
from .policy.agreements import AgreementRegistry
from .release.release import Disclosure, authorise_attachment, release, release_single
from .release.tokens import ItemTokens, Ref, TokenKind
from .sources.base import PrimeHub

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditFacts:
    """What the audit log records about a decision: metadata, never queried values."""

    user_id: str | None = None
    purpose: str | None = None
    query_categories: tuple[str, ...] = ()
    disclosures: tuple[Disclosure, ...] = ()


@dataclass(frozen=True)
class Refusal:
    advisory: Advisory
    facts: AuditFacts = field(default_factory=AuditFacts)


@dataclass(frozen=True)
class DataItemOutcome:
    result_code: ResultCode
    record: ReleasedRecord | None = None
    advisories: tuple[Advisory, ...] = ()


@dataclass(frozen=True)
class AttachmentOutcome:
    result_code: ResultCode
    attachments: tuple[tuple[str, Photo], ...] = ()  # (attachment URI, photo)
    advisories: tuple[Advisory, ...] = ()


class SearchRetrieveService:
    """One instance per process; safe to call from many server threads at once."""

    def __init__(
        self,
        *,
        registry: AgreementRegistry,
        hub: PrimeHub,
        federation: Federation,
        tokens: ItemTokens,
        default_timeout_seconds: float,
        max_timeout_seconds: float,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self.registry = registry
        self.hub = hub
        self.federation = federation
        self.tokens = tokens
        self.default_timeout_seconds = default_timeout_seconds
        self.max_timeout_seconds = max_timeout_seconds
        self.clock = clock

    # --- admission: agreement (every operation) and purpose (every user operation) ----------
    def admit_system(self, agreement_id: str) -> Agreement | Refusal:
        agreement = self.registry.get(agreement_id)
        problem = rules.check_agreement(agreement, self.clock().date())
        if problem is not None:
            return Refusal(problem)
        return agreement

    def admit(self, agreement_id: str, user: UserAssertion) -> tuple[Agreement, Purpose] | Refusal:
        agreement = self.admit_system(agreement_id)
        facts = AuditFacts(user_id=user.user_id)
        if isinstance(agreement, Refusal):
            return Refusal(agreement.advisory, facts)
        purpose = rules.check_purpose(user, agreement)
        if isinstance(purpose, Advisory):
            return Refusal(purpose, facts)
        return agreement, purpose

    # --- operations --------------------------------------------------------------------------
    def structured_search(
        self, agreement_id: str, request: StructuredSearchRequest
    ) -> tuple[SearchOutcome, AuditFacts]:
        admitted = self.admit(agreement_id, request.user)
        if isinstance(admitted, Refusal):
            return _refused_search(admitted.advisory, request.max_items), admitted.facts
        agreement, purpose = admitted
        facts = AuditFacts(user_id=request.user.user_id, purpose=purpose.value)
        query = rules.authorise_query(request)
        if isinstance(query, Advisory):
            return _refused_search(query, request.max_items), facts
        categories = rules.query_categories(query)
        facts = AuditFacts(facts.user_id, facts.purpose, categories)

        deadline = self.search_deadline(request)
        limit = query.max_items + 1  # one more than asked tells whether the limit was hit
        fanned = self.federation.fan_out(
            [(a.system.value, partial(a.search, query, limit)) for a in self.hub.adapters],
            deadline - response_reserve(deadline),
            stated_seconds=deadline,
            on_caller={a.system.value for a in self.hub.adapters if a.ends_by_deadline},
        )
        metrics.observe_sources(fanned.statuses)
        found = [record for _, records in fanned.results for record in records]
        # A source that filled its limit may hold more matches than it sent, released or not.
        source_limit_hit = any(len(records) >= limit for _, records in fanned.results)
        # Best first; equal scores keep the sources' order (TECS, EID) and each source's own order.
        # Every source record stays its own result: the same person in two sources is two results.
        # One more than asked tells whether releasable records were left out.
        released = release(
            found, query, agreement, self.registry.profile(agreement), self.tokens, self.clock(),
            best=limit,
        )
        kept = released.records[: query.max_items]
        disclosures = released.disclosures[: query.max_items]
        if fanned.all_failed:
            code = ResultCode.ERROR
        elif fanned.advisories:
            code = ResultCode.WARNING
        else:
            code = ResultCode.SUCCESS
        outcome = SearchOutcome(
            result_code=code,
            records=kept,
            advisories=fanned.advisories,
            matches_found=len(kept),
            server_limit_hit=len(released.records) > query.max_items or source_limit_hit,
            max_items_requested=request.max_items,
        )
        return outcome, AuditFacts(facts.user_id, facts.purpose, categories, disclosures)

    def search_deadline(self, request: StructuredSearchRequest) -> float:
        """The requester's `TimeoutDuration` when given (and positive), else the default; capped."""
        wanted = request.timeout_seconds
        if wanted is None or wanted <= 0:
            wanted = self.default_timeout_seconds
        return min(wanted, self.max_timeout_seconds)

    def text_search(self, agreement_id: str, request: TextSearchRequest) -> tuple[SearchOutcome, AuditFacts]:
        advisory = Advisory(
            AdvisoryCategory.UNSTRUCTURED_SEARCH_NOT_SUPPORTED,
            "This service supports structured search only (doStructuredSearch).",
        )
        return _refused_search(advisory, request.max_items), AuditFacts(user_id=request.user.user_id)

    def data_item(self, agreement_id: str, request: DataItemRequest) -> tuple[DataItemOutcome, AuditFacts]:
        admitted = self.admit(agreement_id, request.user)
        if isinstance(admitted, Refusal):
            return DataItemOutcome(ResultCode.ERROR, advisories=(admitted.advisory,)), admitted.facts
        agreement, purpose = admitted
        facts = AuditFacts(user_id=request.user.user_id, purpose=purpose.value)
        now = self.clock()
        ref = self.tokens.open(request.item_id, agreement.id, now, TokenKind.ITEM)
        fetched = self._refetch(ref)
        if isinstance(fetched, Advisory):
            return DataItemOutcome(ResultCode.ERROR, advisories=(fetched,)), facts
        released = release_single(fetched, ref, agreement, self.registry.profile(agreement), self.tokens, now)
        if not released.records:
            return DataItemOutcome(ResultCode.ERROR, advisories=(_unknown_item(),)), facts
        return DataItemOutcome(ResultCode.SUCCESS, record=released.records[0]), AuditFacts(
            facts.user_id, facts.purpose, (), released.disclosures
        )

    def attachment(
        self, agreement_id: str, request: AttachmentRequest
    ) -> tuple[AttachmentOutcome, AuditFacts]:
        admitted = self.admit(agreement_id, request.user)
        if isinstance(admitted, Refusal):
            return AttachmentOutcome(ResultCode.ERROR, advisories=(admitted.advisory,)), admitted.facts
        agreement, purpose = admitted
        facts = AuditFacts(user_id=request.user.user_id, purpose=purpose.value)
        now = self.clock()
        profile = self.registry.profile(agreement)
        found: list[tuple[str, Photo]] = []
        advisories: list[Advisory] = []
        disclosures: list[Disclosure] = []
        for uri in request.uris:
            ref = self.tokens.open_attachment_uri(uri, agreement.id, now)
            fetched = self._refetch(ref)
            if isinstance(fetched, Advisory):
                advisories.append(fetched)
                continue
            disclosure = authorise_attachment(ref, fetched, agreement, profile, now)
            photo = self._photo(ref.photo_id) if disclosure and ref.photo_id else _unknown_item()
            if isinstance(photo, Advisory):
                advisories.append(photo)
                continue
            found.append((uri, photo))
            disclosures.append(disclosure)
        code = ResultCode.SUCCESS if not advisories else (
            ResultCode.WARNING if found else ResultCode.ERROR
        )
        return AttachmentOutcome(code, tuple(found), tuple(advisories)), AuditFacts(
            facts.user_id, facts.purpose, (), tuple(disclosures)
        )

    def _refetch(self, ref: Ref | None) -> SourceRecord | Advisory:
        """The record a token names, asked of its source again (no copy was kept)."""
        adapter = self.hub.adapter(ref.source) if ref is not None else None
        if adapter is None:
            return _unknown_item()
        fanned = self.federation.fan_out(
            [(adapter.system.value, partial(adapter.fetch, ref.record_id))], self.default_timeout_seconds
        )
        metrics.observe_sources(fanned.statuses)
        if fanned.all_failed:
            return fanned.advisories[0]
        record = fanned.results[0][1]
        return record if record is not None else _unknown_item()

    def _photo(self, photo_id: str) -> Photo | Advisory:
        """An OBIM photograph, asked under the same deadline and limits as every source call."""
        fanned = self.federation.fan_out(
            [(SourceSystem.OBIM.value, partial(self.hub.photos.photo, photo_id))], self.default_timeout_seconds
        )
        metrics.observe_sources(fanned.statuses)
        if fanned.all_failed:
            return fanned.advisories[0]
        photo = fanned.results[0][1]
        return photo if photo is not None else _unknown_item()

    def available(self) -> bool:
        fanned = self.federation.fan_out(
            [(a.system.value, a.ping) for a in self.hub.adapters], self.default_timeout_seconds
        )
        return not fanned.advisories

    def data_owners(self) -> tuple[tuple[str, SourceSystem], ...]:
        return tuple((a.owner, a.system) for a in self.hub.adapters)


def response_reserve(deadline: float) -> float:
    """What the fan-out leaves of a deadline for the rest of the request's way (the inbound audit
    and signature check before it, release, build, signature and outbound audit after it:
    20-70 ms measured on 2 cores, more under load), so the answer itself arrives by the
    requester's deadline: 10 %, at most 250 ms."""
    return min(0.1 * deadline, 0.25)


def _refused_search(advisory: Advisory, max_items: int) -> SearchOutcome:
    return SearchOutcome(ResultCode.ERROR, advisories=(advisory,), max_items_requested=max_items)


def _unknown_item() -> Advisory:
    return Advisory(
        AdvisoryCategory.BUSINESS_RULE_NOT_MET,
        "The requested item is unknown, expired, or was not released to this agreement.",
    )
