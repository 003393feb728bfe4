"""Federation at scale, part 2: the same searches at 10,000 and at 1,000,000 people per source.

Two gateways run side by side (local SQL sources, as deployed with the demo databases), one per
size, and are asked the same searches in alternation, so drift on the machine hits both alike:

* an exact name + birth date search (crowd people who exist at both sizes);
* a fuzzy surname search (misspelt surnames: phonetic + edit distance over the name vocabulary).

Targets: median at 1M <= 1.3 x median at 10k for each kind; the 1M gateway's RSS <= 200 MB.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..domain import Criterion, Query, QueryField, QueryMatch
from ..sources.base import open_hub
from ..sources.crowd import identity
from ..sources.demo import _DEMO_NAMES
from .harness import Context, Figure, Member, ensure_home, gateway, median, ms

SMALL, LARGE = 10_000, 1_000_000
RSS_LIMIT_MB = 200
MISSPELT_SURNAMES = (
    "GARSIA", "SMYTH", "JONSON", "MARTINES", "NGUEN", "KOWALSKY", "RODRIGES", "WILLIAMSEN", "PETERSEN",
    "HERNANDES", "ANDERSEN", "JAKSON", "TOMPSON", "ROBINSEN", "GONSALEZ", "SANCHES", "RAMIRES", "MORISS",
    "MITCHEL", "CAMBELL",
)


def exact_queries(count: int) -> list[list[Criterion]]:
    picks = [(n * 2_654_435_761) % SMALL for n in range(count)]  # spread over the people both sizes hold
    queries = []
    for n in picks:
        person = identity(n, _DEMO_NAMES)
        queries.append([
            Criterion(QueryField.GIVEN_NAME, person["given_name"]),
            Criterion(QueryField.SURNAME, person["surname"]),
            Criterion(QueryField.BIRTH_DATE, person["birth_date"].isoformat()),
        ])
    return queries


def fuzzy_queries(count: int) -> list[list[Criterion]]:
    return [[Criterion(QueryField.SURNAME, MISSPELT_SURNAMES[i % len(MISSPELT_SURNAMES)], QueryMatch.FUZZY)]
            for i in range(count)]


def run(context: Context) -> list[Figure]:
    small_home = ensure_home(context, SMALL)
    large_home = ensure_home(context, LARGE)
    count = context.requests_per_point
    kinds = {"exact name + birth date": exact_queries(count), "fuzzy surname": fuzzy_queries(count)}
    timings: dict[tuple[str, int], list[float]] = {(kind, size): [] for kind in kinds for size in (SMALL, LARGE)}
    found: dict[tuple[str, int], int] = {key: 0 for key in timings}
    context.say(f"[bench] scale: {SMALL:,} and {LARGE:,} people per source side by side, "
                f"{count} searches of each kind on each ...")
    with gateway(small_home) as small, gateway(large_home) as large:
        members = {SMALL: Member(small_home, small.url), LARGE: Member(large_home, large.url)}
        for kind, queries in kinds.items():
            for criteria in queries[:3]:  # warm up both
                for member in members.values():
                    member.search(criteria)
            for criteria in queries:
                for size, member in members.items():
                    outcome, elapsed = member.search(criteria)
                    if outcome.result_code != "Success":
                        raise RuntimeError(f"{kind} at {size:,}: {outcome.result_code} {outcome.advisories}")
                    timings[(kind, size)].append(elapsed)
                    found[(kind, size)] += outcome.packages
        memory = large.memory_kb()
        for member in members.values():
            member.close()

    alone = sources_alone(context, {SMALL: small_home, LARGE: large_home}, kinds)
    figures = []
    for kind in kinds:
        at_small, at_large = median(timings[(kind, SMALL)]), median(timings[(kind, LARGE)])
        ratio = at_large / at_small
        figures.append(Figure(
            f"median {kind}, 1M vs 10k people", f"{ratio:.2f} x", "<= 1.30 x", ratio <= 1.30,
            f"{ms(at_large)} at {LARGE:,} vs {ms(at_small)} at {SMALL:,}; results per search "
            f"{found[(kind, LARGE)] / count:.1f} vs {found[(kind, SMALL)] / count:.1f}; "
            f"the sources alone (both adapters in turn, in-process): "
            f"{alone[(kind, LARGE)] * 1000:.1f} ms vs {alone[(kind, SMALL)] * 1000:.1f} ms",
        ))
    rss_mb, peak_mb = memory.get("VmRSS", 0) / 1024, memory.get("VmHWM", 0) / 1024
    figures.append(Figure(
        "gateway RSS, 1M-people sources", f"{rss_mb:.0f} MB (peak {peak_mb:.0f} MB)", f"<= {RSS_LIMIT_MB} MB",
        peak_mb <= RSS_LIMIT_MB, f"leis-gateway serve, after {2 * count} searches",
    ))
    return figures


def sources_alone(context: Context, homes: dict[int, Path], kinds: dict[str, list[list[Criterion]]]
                  ) -> dict[tuple[str, int], float]:
    """Median time of the same searches asked of the SQL adapters directly (no gateway around
    them): what the volume itself costs, without the request path's constant share."""
    hubs = {size: open_hub(home) for size, home in homes.items()}
    timings: dict[tuple[str, int], list[float]] = {(kind, size): [] for kind in kinds for size in hubs}
    try:
        for kind, queries in kinds.items():
            for criteria in queries:
                query = Query(tuple(criteria), max_items=25)
                for size, hub in hubs.items():
                    started = time.perf_counter()
                    for adapter in hub.adapters:
                        adapter.search(query, 26)
                    timings[(kind, size)].append(time.perf_counter() - started)
    finally:
        for hub in hubs.values():
            hub.close()
    return {key: median(values[len(values) // 4:]) for key, values in timings.items()}  # first quarter: warm-up
