"""Which partners an analyst's request goes to: the registry decides, never the request alone.

A partner is an agreement that is `two-way`, `active`, not expired, permits the stated purpose
and has a usable endpoint (an `https://` URL whose port is not 0: the demo registry ships
`:0` placeholders for members whose service is not known yet). With no `DataOwnerIdentifier`
in the request every such partner is asked; naming one asks only those named, and naming one
that may not be queried (one-way like Nlets, suspended, expired, internal, unknown, without an
endpoint or without the purpose) is refused with an advisory naming it. Nothing is contacted
for a refused name.
"""
from __future__ import annotations


import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from ..domain import Advisory, AdvisoryCategory, Agreement, Purpose
from ..policy import rules


@dataclass(frozen=True)
class Selection:
    partners: tuple[Agreement, ...]
    advisories: tuple[Advisory, ...] = ()


def usable_endpoint(agreement: Agreement) -> bool:
    if not agreement.endpoint:
        return False
    try:
        parts = urlsplit(agreement.endpoint)
        return parts.scheme == "https" and bool(parts.hostname) and parts.port not in (0,)
    except ValueError:
        return False


def why_not(agreement: Agreement, purpose: Purpose | None, today: date) -> str | None:
    """None when the agreement may be queried for `purpose` today, else the reason (no PII)."""
    if agreement.direction == "one-way":
        return "its agreement is one-way: it may query DHS but is never queried"
    if agreement.direction != "two-way":
        return f"its agreement is {agreement.direction}, not two-way"
    why = rules.lapsed(agreement, today)
    if why is not None:
        return f"its agreement {why}"
    if not usable_endpoint(agreement):
        return "no service endpoint is registered for it"
    if purpose is not None and purpose not in agreement.purposes:
        return f"its agreement does not permit the purpose {purpose.value}"
    return None


def describe(agreement: Agreement) -> str:
    return f"{agreement.id} ({agreement.agency_name})"


def select(agreements: tuple[Agreement, ...], named: tuple[str, ...], purpose: Purpose | None,
           today: date) -> Selection:
    if not named:
        return Selection(tuple(a for a in agreements if why_not(a, purpose, today) is None))
    by_id = {a.id.lower(): a for a in agreements}
    chosen: list[Agreement] = []
    advisories: list[Advisory] = []
    for name in dict.fromkeys(n.strip().lower() for n in named if n.strip()):
        agreement = by_id.get(name)
        if agreement is None:
            shown = f" '{name}'" if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name) else ""
            advisories.append(Advisory(
                AdvisoryCategory.BUSINESS_RULE_NOT_MET,
                f"DataOwnerIdentifier{shown} names no partner agreement known to the gateway "
                "(its SystemID must be a partner's agreement id, e.g. azlink).",
            ))
            continue
        reason = why_not(agreement, purpose, today)
        if reason is not None:
            advisories.append(Advisory(
                AdvisoryCategory.BUSINESS_RULE_NOT_MET,
                f"Partner {describe(agreement)} was not queried: {reason}.",
            ))
            continue
        chosen.append(agreement)
    return Selection(tuple(chosen), tuple(advisories))
