"""Federation at scale, part 1: slow and hung sources behind the PRIME hub.

* Every source delayed by D (the simulator's `--delay`): asked in parallel, a search costs one D
  plus the gateway's own work, not the sum of the delays. Target: median <= 1.25 x D.
* One source hung (`--hang EID`) and a requested deadline T: the answer arrives by T + 10 % and
  names the late source; the other source's records are in it.
"""
from __future__ import annotations

from ..domain import Criterion, QueryField, QueryMatch
from ..sources.crowd import identity
from ..sources.demo import _DEMO_NAMES
from .harness import Context, Figure, Member, ensure_home, gateway, hub_simulator, median, ms

DELAY = 0.200  # D
HUNG_DEADLINE = 1.0  # T, the requester's TimeoutDuration with a hung source
HOME_PEOPLE = 10_000


def both_sources_query(n: int) -> list[Criterion]:
    """Name and birth date of crowd person n (every fifth is in TECS and in EID)."""
    person = identity(n, _DEMO_NAMES)
    return [
        Criterion(QueryField.GIVEN_NAME, person["given_name"]),
        Criterion(QueryField.SURNAME, person["surname"]),
        Criterion(QueryField.BIRTH_DATE, person["birth_date"].isoformat(), QueryMatch.EXACT),
    ]


def run(context: Context) -> list[Figure]:
    home = ensure_home(context, HOME_PEOPLE)
    count = context.requests_per_point
    queries = [both_sources_query(5 * i) for i in range(count)]
    figures = []

    context.say(f"[bench] federation: every source delayed by {ms(DELAY)}, {count} searches ...")
    delays = [arg for system in ("TECS", "EID", "OBIM") for arg in ("--delay", f"{system}={DELAY}")]
    with hub_simulator(home, *delays) as hub, gateway(home, LEIS_PRIME_HUB_URL=hub.url) as served:
        member = Member(home, served.url)
        for criteria in queries[:5]:  # warm up: connections, caches
            member.search(criteria)
        times, codes = [], set()
        for criteria in queries:
            outcome, elapsed = member.search(criteria)
            times.append(elapsed)
            codes.add(outcome.result_code)
        member.close()
    typical = median(times)
    figures.append(Figure(
        "median search, every source delayed by D", f"{ms(typical)} = {typical / DELAY:.2f} x D",
        "<= 1.25 x D", typical <= 1.25 * DELAY and codes == {"Success"},
        f"D = {ms(DELAY)}; two sources one after the other would take >= {ms(2 * DELAY)}; "
        f"min {ms(min(times))}, max {ms(max(times))}; result codes {sorted(codes)}",
    ))

    hung_count = max(5, count // 4)
    context.say(f"[bench] federation: EID hung, TimeoutDuration {HUNG_DEADLINE:g} s, {hung_count} searches ...")
    with hub_simulator(home, "--hang", "EID") as hub, gateway(home, LEIS_PRIME_HUB_URL=hub.url) as served:
        member = Member(home, served.url)
        member.search(queries[0], timeout=HUNG_DEADLINE)  # warm up
        times, named, tecs_records = [], True, True
        for criteria in queries[1: hung_count + 1]:
            outcome, elapsed = member.search(criteria, timeout=HUNG_DEADLINE)
            times.append(elapsed)
            named &= outcome.result_code == "Warning" and any(
                category == "Timeout" and "EID" in text for category, text in outcome.advisories)
            tecs_records &= set(outcome.systems) <= {"TECS"}
        member.close()
    worst = max(times)
    figures.append(Figure(
        "slowest answer, EID hung, deadline T", f"{ms(worst)} = {worst / HUNG_DEADLINE:.2f} x T",
        "<= 1.10 x T, names EID", worst <= 1.10 * HUNG_DEADLINE and named,
        f"T = {HUNG_DEADLINE:g} s; median {ms(median(times))}; every answer Warning + Timeout naming EID: {named}; "
        f"TECS records kept: {tecs_records}",
    ))
    return figures
