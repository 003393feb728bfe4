"""The two-way core: admit the analyst, pick the partners, ask them in parallel, merge.

Returns LEXS response elements (built by messages.py) and the audit facts of the analyst's
exchange. Partner failures are per-partner advisories; the answer as a whole fails only when
no partner could answer at all.
"""
from __future__ import annotations

import datetime as dt
import logging
from functools import partial
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from lxml import etree

from ..domain import (
    Advisory,
    AdvisoryCategory,
    Agreement,
    AttachmentRequest,
    DataItemRequest,
    Purpose,
    ResultCode,
    StructuredSearchRequest,
    UserAssertion,
)
from ..federation import Federation
from ..lexs import build
from ..policy import rules
from ..policy.agreements import AgreementRegistry
from ..service import AuditFacts
from . import messages, partners
from .client import CallContext, PartnerCall, PartnerClient
from .ids import PartnerIds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admitted:
    agreement: Agreement
    purpose: Purpose


class TwoWayService:
    def __init__(self, *, registry: AgreementRegistry, client: PartnerClient, ids: PartnerIds,
                 gateway: build.GatewayIdentity, default_timeout_seconds: float, max_timeout_seconds: float,
                 partner_timeout_seconds: float, federation: Federation | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.registry = registry
        self.client = client
        self.ids = ids
        self.gateway = gateway
        self.default_timeout_seconds = default_timeout_seconds
        self.max_timeout_seconds = max_timeout_seconds
        self.partner_timeout_seconds = partner_timeout_seconds
        self.federation = federation or Federation(max_workers=32)
        self.clock = clock
        self.dhs_oris = frozenset({gateway.ori, *(owner.ori for owner in gateway.owners)})

    def close(self) -> None:
        self.federation.close()
        self.client.close()

    # --- admission ----------------------------------------------------------------------------
    def admit(self, agreement_id: str, user: UserAssertion) -> Admitted | Advisory:
        agreement = self.registry.get(agreement_id)
        today = self.clock().date()
        if agreement is None or agreement.direction != "internal":
            return Advisory(AdvisoryCategory.BUSINESS_RULE_NOT_MET,
                            "Only the internal analysts' system may query partners through this endpoint.")
        why = rules.lapsed(agreement, today)
        if why is not None:
            return Advisory(AdvisoryCategory.BUSINESS_RULE_NOT_MET,
                            f"Agreement '{agreement.id}' {why}: no partner may be queried.")
        purpose = rules.check_purpose(user, agreement)
        if isinstance(purpose, Advisory):
            return purpose
        return Admitted(agreement, purpose)

    def _deadline(self, requested: float | None) -> tuple[float, float]:
        seconds = min(requested or self.default_timeout_seconds, self.max_timeout_seconds)
        return seconds, time.monotonic() + seconds

    def _fan_out(self, calls: list[tuple[Agreement, Callable[[], PartnerCall]]], seconds: float,
                 deadline: float) -> list[PartnerCall]:
        """Every partner's outcome, in the order given; a call the pool could not finish is a Timeout."""
        fanned = self.federation.fan_out([(p.id, call) for p, call in calls],
                                         max(deadline - time.monotonic(), 0) + 0.5)
        done = dict(fanned.results)
        outcomes = []
        for partner, _ in calls:
            outcome = done.get(partner.id)
            if outcome is None:
                status = next((s for s in fanned.statuses if s.source == partner.id), None)
                category = AdvisoryCategory.TIMEOUT if status is None or status.advisory is None \
                    or status.advisory.category is AdvisoryCategory.TIMEOUT else AdvisoryCategory.NETWORK_FAILURE
                text = f"did not answer within {seconds:g} s" if category is AdvisoryCategory.TIMEOUT \
                    else "could not be queried"
                outcome = PartnerCall(partner, advisory=Advisory(category, f"Partner {partners.describe(partner)} {text}."))
            outcomes.append(outcome)
        return outcomes

    def _context(self, correlation_id: str, user: UserAssertion, purpose: Purpose,
                 categories: tuple[str, ...] = ()) -> CallContext:
        return CallContext(correlation_id, user.user_id, purpose.value, categories)

    # --- doStructuredSearch -------------------------------------------------------------------
    def search(self, agreement_id: str, request: StructuredSearchRequest,
               correlation_id: str) -> tuple[etree._Element, AuditFacts]:
        header = request.header
        admitted = self.admit(agreement_id, request.user)
        facts = AuditFacts(user_id=request.user.user_id)
        if isinstance(admitted, Advisory):
            return self._search_error(header, (admitted,), request.max_items), facts
        facts = AuditFacts(request.user.user_id, admitted.purpose.value)
        query = rules.authorise_query(request)
        if isinstance(query, Advisory):
            return self._search_error(header, (query,), request.max_items), facts
        categories = rules.query_categories(query)
        facts = AuditFacts(facts.user_id, facts.purpose, categories)
        selection = partners.select(self.registry.all(), request.data_owners, admitted.purpose, self.clock().date())
        if not selection.partners:
            advisories = selection.advisories or (Advisory(
                AdvisoryCategory.BUSINESS_RULE_NOT_MET, "No partner agreement permits this query."),)
            return self._search_error(header, advisories, request.max_items), facts

        seconds, deadline = self._deadline(request.timeout_seconds)
        context = self._context(correlation_id, request.user, admitted.purpose, categories)
        calls = []
        for partner in selection.partners:
            budget = min(seconds, self.partner_timeout_seconds)
            message = messages.search_request(self.gateway, request.user, partner, query.criteria,
                                              query.max_items, budget)
            partner_deadline = min(deadline, time.monotonic() + budget)
            calls.append((partner, partial(self.client.call, partner, "doStructuredSearch", message,
                                         partner_deadline, context)))
        outcomes = self._fan_out(calls, seconds, deadline)

        advisories = list(selection.advisories)
        per_partner: list[list[etree._Element]] = []
        answered = 0
        limit_hit = False
        for outcome in outcomes:
            if outcome.answer is None:
                advisories.append(outcome.advisory)
                continue
            advisories.extend(messages.partner_advisories(outcome.partner, outcome.answer))
            if outcome.answer.result_code == ResultCode.ERROR.value:
                continue
            answered += 1
            limit_hit = limit_hit or outcome.answer.server_limit
            per_partner.append(self._adopt(outcome, agreement_id, advisories))
        merged = _round_robin(per_partner)
        if len(merged) > request.max_items:
            merged, limit_hit = merged[: request.max_items], True
        packages = [self._renumber(p, i) for i, p in enumerate(merged, start=1)]
        code = ResultCode.ERROR if not answered else (ResultCode.WARNING if advisories else ResultCode.SUCCESS)
        return messages.search_answer(self.gateway, header, code, tuple(advisories), packages,
                                      request.max_items, limit_hit), facts

    def _adopt(self, outcome: PartnerCall, audience: str, advisories: list[Advisory]) -> list[etree._Element]:
        adopted = []
        partner = outcome.partner
        for package in outcome.answer.items:
            try:
                adopted.append(messages.adopt_package(
                    package, partner,
                    lambda kind, value: self.ids.seal(kind, partner.id, value, audience), self.dhs_oris))
            except messages.UnusableAnswer as exc:
                advisories.append(Advisory(AdvisoryCategory.INVALID_RESPONSE,
                                           f"Partner {partners.describe(partner)}: a package was dropped: {exc}."))
        return adopted

    @staticmethod
    def _renumber(package: etree._Element, index: int) -> etree._Element:
        return messages.prefix_ids(package, f"P{index}-")

    def _search_error(self, header, advisories, max_items: int) -> etree._Element:
        return messages.search_answer(self.gateway, header, ResultCode.ERROR, tuple(advisories), [], max_items, False)

    # --- getDataItem --------------------------------------------------------------------------
    def data_item(self, agreement_id: str, request: DataItemRequest,
                  correlation_id: str) -> tuple[etree._Element, AuditFacts]:
        header = request.header
        admitted = self.admit(agreement_id, request.user)
        facts = AuditFacts(user_id=request.user.user_id)
        if isinstance(admitted, Advisory):
            return messages.data_item_answer(self.gateway, header, ResultCode.ERROR, (admitted,), None), facts
        facts = AuditFacts(request.user.user_id, admitted.purpose.value)
        ref = self.ids.open(request.item_id, agreement_id, "item")
        partner = self._routable(ref.partner_id if ref else None, admitted.purpose)
        if isinstance(partner, Advisory):
            return messages.data_item_answer(self.gateway, header, ResultCode.ERROR, (partner,), None), facts
        seconds, deadline = self._deadline(None)
        message = messages.data_item_request(self.gateway, request.user, partner, ref.partner_value)
        context = self._context(correlation_id, request.user, admitted.purpose)
        deadline = min(deadline, time.monotonic() + self.partner_timeout_seconds)
        (outcome,) = self._fan_out(
            [(partner, partial(self.client.call, partner, "getDataItem", message, deadline, context))], seconds, deadline)
        if outcome.answer is None:
            return messages.data_item_answer(self.gateway, header, ResultCode.ERROR, (outcome.advisory,), None), facts
        advisories = list(messages.partner_advisories(partner, outcome.answer))
        packages = self._adopt(outcome, agreement_id, advisories)
        package = self._renumber(packages[0], 1) if packages else None
        code = ResultCode.ERROR if package is None else (ResultCode.WARNING if advisories else ResultCode.SUCCESS)
        if package is None and not advisories:
            advisories.append(_unknown_item())
        return messages.data_item_answer(self.gateway, header, code, tuple(advisories), package), facts

    # --- getAttachment ------------------------------------------------------------------------
    def attachment(self, agreement_id: str, request: AttachmentRequest,
                   correlation_id: str) -> tuple[etree._Element, AuditFacts]:
        header = request.header
        admitted = self.admit(agreement_id, request.user)
        facts = AuditFacts(user_id=request.user.user_id)
        if isinstance(admitted, Advisory):
            return messages.attachment_answer(self.gateway, header, ResultCode.ERROR, (admitted,), []), facts
        facts = AuditFacts(request.user.user_id, admitted.purpose.value)
        advisories: list[Advisory] = []
        wanted: dict[str, list[tuple[str, str]]] = defaultdict(list)  # partner -> [(analyst uri, partner uri)]
        chosen: dict[str, Agreement] = {}
        for uri in request.uris:
            ref = self.ids.open(uri, agreement_id, "attachment")
            partner = self._routable(ref.partner_id if ref else None, admitted.purpose)
            if isinstance(partner, Advisory):
                advisories.append(partner)
                continue
            chosen[partner.id] = partner
            wanted[partner.id].append((uri, ref.partner_value))
        found: list[etree._Element] = []
        if chosen:
            seconds, deadline = self._deadline(None)
            deadline = min(deadline, time.monotonic() + self.partner_timeout_seconds)
            context = self._context(correlation_id, request.user, admitted.purpose)
            calls = []
            for partner_id, pairs in wanted.items():
                partner = chosen[partner_id]
                message = messages.attachment_request(self.gateway, request.user, partner,
                                                      tuple(dict.fromkeys(p for _, p in pairs)))
                calls.append((partner, partial(self.client.call, partner, "getAttachment", message, deadline, context)))
            for outcome in self._fan_out(calls, seconds, deadline):
                if outcome.answer is None:
                    advisories.append(outcome.advisory)
                    continue
                advisories.extend(messages.partner_advisories(outcome.partner, outcome.answer))
                by_partner_uri = {}
                for attachment in outcome.answer.items:
                    by_partner_uri[(attachment.findtext("{http://usdoj.gov/leisp/lexs/3.1}AttachmentURI") or "").strip()] = attachment
                for analyst_uri, partner_uri in wanted[outcome.partner.id]:
                    attachment = by_partner_uri.get(partner_uri)
                    if attachment is not None:
                        found.append(messages.adopt_attachment(attachment, analyst_uri))
        if not found and not advisories:
            advisories.append(_unknown_item())
        code = ResultCode.ERROR if not found else (ResultCode.WARNING if advisories else ResultCode.SUCCESS)
        return messages.attachment_answer(self.gateway, header, code, tuple(advisories), found), facts

    def _routable(self, partner_id: str | None, purpose: Purpose) -> Agreement | Advisory:
        partner = self.registry.get(partner_id) if partner_id else None
        if partner is None:
            return _unknown_item()
        reason = partners.why_not(partner, purpose, self.clock().date())
        if reason is not None:
            return Advisory(AdvisoryCategory.BUSINESS_RULE_NOT_MET,
                            f"Partner {partners.describe(partner)} was not queried: {reason}.")
        return partner

    # --- service provider questions -----------------------------------------------------------
    def partners(self) -> tuple[Agreement, ...]:
        """The partners a search without DataOwnerIdentifier would ask (any purpose)."""
        today = self.clock().date()
        return tuple(a for a in self.registry.all() if partners.why_not(a, None, today) is None)


def _round_robin(lists: list[list[etree._Element]]) -> list[etree._Element]:
    merged = []
    for row in range(max((len(x) for x in lists), default=0)):
        merged.extend(x[row] for x in lists if row < len(x))
    return merged


def _unknown_item() -> Advisory:
    return Advisory(AdvisoryCategory.BUSINESS_RULE_NOT_MET,
                    "The requested item is unknown, expired, or was not issued to this system.")
