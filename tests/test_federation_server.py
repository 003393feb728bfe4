"""Federation and matching through the real server, with the sources behind the PRIME hub simulator.

The gateway runs as in production (TLS, signatures, audit) with `prime_hub_url` pointing at the
simulator (started on a free port here); the simulator answers from the small demo databases
through the ordinary adapters. Faults are injected on the far side only (the simulator's delay,
failure and hang per source); the request path is never mocked.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
import time
import urllib.request

import pytest

from leis_gateway.config import PROJECT_ROOT
from leis_gateway.domain import QueryField as F, QueryMatch as M, SourceSystem
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.sources.base import open_hub
from leis_gateway.sources.crowd import identity
from leis_gateway.sources.demo import _DEMO_NAMES
from leis_gateway.sources.prime_hub_sim import PrimeHubSimulator
from leis_gateway.sources.remote import query_from_json, query_to_json, record_from_json, record_to_json
from support import NS, Answer, RunningGateway, requester, search

HUB_POOL = 4


@pytest.fixture(scope="module")
def hub_sim(demo_home):
    with PrimeHubSimulator.over(demo_home) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def remote_gateway(demo_home, hub_sim):
    with RunningGateway.start(
        demo_home, prime_hub_url=hub_sim.url, prime_hub_pool=HUB_POOL, source_idle_seconds=0.3
    ) as running:
        yield running


@pytest.fixture
def sim(hub_sim):
    hub_sim.faults.clear()
    yield hub_sim
    hub_sim.faults.clear()


def timed_call(gateway: RunningGateway, message) -> tuple[Answer, float]:
    """One signed search; the time is the round trip of the request alone (signed beforehand)."""
    body = gateway.signed(lexs_requests.soap_envelope(lexs_requests.wrap_request("doStructuredSearch", message)))
    with gateway.session() as session:
        session.get(gateway.base + "/healthz", timeout=10)  # TLS handshake outside the timing
        started = time.monotonic()
        response = session.post(gateway.url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"},
                                timeout=30)
        elapsed = time.monotonic() - started
    return Answer.of(response), elapsed


def results(answer: Answer) -> list[dict[str, object]]:
    """Per package: its source system, match score and person."""
    found = []
    persons = answer.persons()
    for package, person in zip(answer.packages, persons):
        meta = package.find("lexs:PackageMetadata", NS)
        score = next(
            int(a.findtext("lexs:AttributeValue", namespaces=NS))
            for a in meta.iterfind("lexs:DomainAttribute", NS)
            if a.findtext("lexs:AttributeName", namespaces=NS) == "MatchScore"
        )
        system = meta.findtext("lexs:DataOwnerMetadata/lexs:DataOwnerIdentifier/lexs:SystemID", namespaces=NS)
        found.append({"system": system, "score": score, **person})
    assert len(found) == len(answer.packages)
    return found


def metadata(answer: Answer) -> dict[str, str]:
    meta = answer.message.find("lexs:SearchResponseMetadata", NS)
    return {child.tag.split("}")[1]: child.text for child in meta}


MARIA_GARCIA = ((F.SURNAME, "GARCIA"), (F.GIVEN_NAME, "MARIA"))  # S4 in EID, and crowd people in TECS and EID


# --- the deadline and the per-source advisories ---------------------------------------------


def test_a_source_slower_than_the_requested_deadline_does_not_hold_the_answer(remote_gateway, sim):
    baseline = results(remote_gateway.call("doStructuredSearch", search(*MARIA_GARCIA)))
    assert {r["system"] for r in baseline} == {"TECS", "EID"}

    sim.faults.delay["TECS"] = 5.0  # far beyond the requester's 1 s
    answer, elapsed = timed_call(remote_gateway, search(*MARIA_GARCIA, timeout=dt.timedelta(seconds=1)))
    assert elapsed < 1.0 + 0.3, elapsed  # the requester's deadline, not the default 5 s or the source's 5 s
    assert answer.result_code == "Warning"
    assert answer.advisories == [("Timeout", "Source system TECS did not answer within 1 s.")]
    found = results(answer)
    assert found == [r for r in baseline if r["system"] == "EID"]  # everything EID had, nothing else


def test_without_a_requested_deadline_the_configured_default_applies(demo_home, hub_sim, sim):
    with RunningGateway.start(demo_home, prime_hub_url=hub_sim.url, default_timeout_seconds=0.6) as gateway:
        gateway.call("doStructuredSearch", search(*MARIA_GARCIA))  # warm up
        sim.faults.delay["EID"] = 5.0
        answer, elapsed = timed_call(gateway, search(*MARIA_GARCIA))
        assert elapsed < 0.6 + 0.3, elapsed
        assert answer.advisories == [("Timeout", "Source system EID did not answer within 0.6 s.")]
    sim.faults.clear()
    # and a requested deadline above the configured cap is capped
    with RunningGateway.start(demo_home, prime_hub_url=hub_sim.url, max_timeout_seconds=0.5) as gateway:
        gateway.call("doStructuredSearch", search(*MARIA_GARCIA))
        sim.faults.delay["TECS"] = 5.0
        answer, elapsed = timed_call(gateway, search(*MARIA_GARCIA, timeout=dt.timedelta(seconds=30)))
        assert elapsed < 0.5 + 0.3, elapsed
        assert answer.advisories == [("Timeout", "Source system TECS did not answer within 0.5 s.")]


def test_a_failing_source_gives_a_partial_answer_with_its_advisory(remote_gateway, sim):
    sim.faults.fail.add("EID")
    answer = remote_gateway.call("doStructuredSearch", search(*MARIA_GARCIA))
    assert answer.result_code == "Warning"
    assert answer.advisories == [("NetworkFailure", "Source system EID is not available.")]
    found = results(answer)
    assert found and {r["system"] for r in found} == {"TECS"}


def test_when_every_source_fails_the_answer_is_an_error_naming_each(remote_gateway, sim):
    sim.faults.fail.add("EID")
    sim.faults.hang.add("TECS")
    answer, elapsed = timed_call(remote_gateway, search(*MARIA_GARCIA, timeout=dt.timedelta(seconds=0.5)))
    assert elapsed < 0.5 + 0.3
    assert answer.result_code == "Error"
    assert answer.packages == []
    assert answer.advisories == [
        ("Timeout", "Source system TECS did not answer within 0.5 s."),
        ("NetworkFailure", "Source system EID is not available."),
    ]
    assert metadata(answer)["NumberItemMatches"] == "0"


def test_hub_unreachable_is_a_network_failure_per_source(demo_home):
    with RunningGateway.start(demo_home, prime_hub_url="http://127.0.0.1:9") as gateway:  # nothing listens
        answer = gateway.call("doStructuredSearch", search(*MARIA_GARCIA))
    assert answer.result_code == "Error"
    assert answer.advisories == [
        ("NetworkFailure", "Source system TECS is not available."),
        ("NetworkFailure", "Source system EID is not available."),
    ]


def test_many_timeouts_leak_no_thread_and_no_connection(remote_gateway, sim):
    gateway = remote_gateway.gateway
    client = gateway.hub.adapter(SourceSystem.TECS).client  # the hub's one HTTP pool, shared by every adapter
    assert gateway.hub.adapter(SourceSystem.EID).client is client
    remote_gateway.call("doStructuredSearch", search(*MARIA_GARCIA))  # warm: server threads, pool
    settle(gateway)
    baseline_threads = threading.active_count()

    sim.faults.delay["TECS"] = 0.6
    sim.faults.delay["EID"] = 0.05
    message = search(*MARIA_GARCIA, timeout=dt.timedelta(seconds=0.2))
    for _ in range(8):
        answer, _elapsed = timed_call(remote_gateway, message)
        assert answer.advisories == [("Timeout", "Source system TECS did not answer within 0.2 s.")]
        assert gateway.federation.workers <= gateway.settings.source_workers
        assert client.connections_in_use() <= HUB_POOL
    sim.faults.clear()
    settle(gateway)
    assert gateway.federation.in_flight() == {}
    assert client.connections_in_use() == 0
    assert client.connections_made() <= 8 * 2 + HUB_POOL  # every abandoned call closed its own connection
    assert wait_until(lambda: threading.active_count() <= baseline_threads), (threading.active_count(), baseline_threads)
    # and the gateway still answers in full
    assert remote_gateway.call("doStructuredSearch", search(*MARIA_GARCIA)).result_code == "Success"


def settle(gateway) -> None:
    assert wait_until(lambda: gateway.federation.in_flight() == {} and gateway.federation.workers == 0, 5), (
        gateway.federation.in_flight(), gateway.federation.workers)


def wait_until(condition, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- ranking, limits, match modes ------------------------------------------------------------


def test_results_are_ranked_by_score_with_exact_spellings_before_fuzzy_ones(remote_gateway, sim):
    found = results(remote_gateway.call("doStructuredSearch", search((F.SURNAME, "GARCIA", M.FUZZY), max_items=100)))
    scores = [r["score"] for r in found]
    assert scores == sorted(scores, reverse=True)
    exact = [r for r in found if r["surname"] == "GARCIA"]
    others = [r for r in found if r["surname"] != "GARCIA"]
    assert exact and others  # GARCES, GARCIAS, GARZA...: phonetic or close
    assert all(r["score"] == 100 for r in exact) and all(r["score"] < 100 for r in others)
    assert found[: len(exact)] == exact


def test_max_item_matches_number_item_matches_and_server_limit(remote_gateway, sim):
    answer = remote_gateway.call("doStructuredSearch", search((F.SURNAME, "GA*", M.WILDCARD), max_items=3))
    assert len(answer.packages) == 3
    meta = metadata(answer)
    assert (meta["MaxItemMatchesRequested"], meta["NumberItemMatches"], meta["ServerLimitIndicator"]) == ("3", "3", "true")
    assert meta["StructuredQueryMatchScore"] == "90"  # the best score (a wildcard match scores 90)

    answer = remote_gateway.call("doStructuredSearch", search((F.SURNAME, "DOE"), (F.BIRTH_DATE, "1975-04-12")))
    meta = metadata(answer)
    assert (meta["MaxItemMatchesRequested"], meta["NumberItemMatches"], meta["ServerLimitIndicator"]) == ("25", "1", "false")


def test_the_same_person_in_two_sources_is_one_result_per_source_record(remote_gateway, sim):
    """Every fifth EID crowd member is the TECS crowd member of the same number: never merged."""
    for n in range(0, 100, 5):
        person = identity(n, _DEMO_NAMES)
        found = results(remote_gateway.call("doStructuredSearch", search(
            (F.GIVEN_NAME, person["given_name"]), (F.SURNAME, person["surname"]),
            (F.BIRTH_DATE, person["birth_date"].isoformat()))))
        if sorted(r["system"] for r in found) == ["EID", "TECS"]:
            assert found[0] | {"system": "EID"} == found[1] | {"system": "EID"}  # the same person...
            return  # ...twice, once per source record
    pytest.fail("no crowd person released from both sources among the first 100")


@pytest.mark.parametrize(
    "criteria, expected",
    [
        # exact
        (((F.SURNAME, "doe"), (F.GIVEN_NAME, "John"), (F.BIRTH_DATE, "1975-04-12")), [("JOHN", "DOE", "1975-04-12", 100)]),
        # wildcards: * any run, ? one character
        (((F.SURNAME, "D?E", M.WILDCARD), (F.BIRTH_DATE, "1975-04-12")), [("JOHN", "DOE", "1975-04-12", 90)]),
        (((F.SURNAME, "GAR*A", M.WILDCARD), (F.GIVEN_NAME, "MARIA"), (F.BIRTH_DATE, "1988-09-30")),
         [("MARIA", "GARCIA", "1988-09-30", 90)]),
        # fuzzy names: phonetic, edit distance, nicknames - each below an exact match
        (((F.SURNAME, "KARIMY", M.FUZZY), (F.BIRTH_DATE, "1990-01-15")), [("AHMED", "KARIMI", "1990-01-15", None)]),
        (((F.GIVEN_NAME, "JOHNNY", M.FUZZY), (F.SURNAME, "DOE"), (F.BIRTH_DATE, "1975-04-12")),
         [("JOHN", "DOE", "1975-04-12", None)]),
        (((F.FULL_NAME, "MARIA GARSIA", M.FUZZY), (F.BIRTH_DATE, "1988-09-30")), [("MARIA", "GARCIA", "1988-09-30", None)]),
        # birth dates: exact, a range, a fuzzy day/month swap
        (((F.SURNAME, "DOE"), (F.BIRTH_DATE, "1975-01-01", M.GE), (F.BIRTH_DATE, "1976-01-01", M.LT)),
         [("JOHN", "DOE", "1975-04-12", 100)]),
        (((F.SURNAME, "DOE"), (F.BIRTH_DATE, "1976-01-01", M.GT)), []),  # S2 (1980) exists but is never released
        (((F.SURNAME, "GARCIA"), (F.GIVEN_NAME, "MARIA"), (F.BIRTH_DATE, "1988-09-30", M.LE)),
         [("MARIA", "GARCIA", "1988-09-30", 100), ("MARIA", "GARCIA", "1979-10-04", 100),
          ("MARIA", "GARCIA", "1979-10-04", 100)]),  # the crowd's MARIA ANNA GARCIA is in TECS and EID
    ],
    ids=["exact", "wildcard-?", "wildcard-*", "fuzzy-phonetic", "fuzzy-nickname", "fuzzy-full-name",
         "date-range", "date-gt", "date-le"],
)
def test_match_modes_through_the_server(remote_gateway, sim, criteria, expected):
    answer = remote_gateway.call("doStructuredSearch", search(*criteria))
    assert answer.result_code == "Success", answer.advisories
    found = [(r["given"], r["surname"], r["birth_date"], r["score"]) for r in results(answer)]
    # equal scores may come in any order of sources: compare as sets of results
    assert sorted(f[:3] for f in found) == sorted(e[:3] for e in expected)
    for (*_, score), (*_, wanted) in zip(sorted(found), sorted(expected)):
        if wanted is None:
            assert 0 < score < 100
        else:
            assert score == wanted


# --- the remote adapter, the codec and the simulator -------------------------------------------


def test_get_data_item_and_attachment_refetch_through_the_hub(remote_gateway, sim):
    answer = remote_gateway.call("doStructuredSearch", search((F.A_NUMBER, "A099000004")))
    item_id = answer.message.findtext(".//lexs:PackageMetadata/lexs:DataItemID", namespaces=NS)
    uri = answer.message.findtext(".//lexs:AttachmentLink/lexs:AttachmentURI", namespaces=NS)
    requests_before = sim.requests
    item = remote_gateway.call("getDataItem", lexs_requests.data_item_request(requester(), item_id))
    assert item.result_code == "Success" and item.persons()[0]["surname"] == "GARCIA"
    photo = remote_gateway.call("getAttachment", lexs_requests.attachment_request(requester(), uri))
    assert photo.result_code == "Success"
    assert photo.message.findtext(".//nc:BinaryBase64Object", namespaces=NS)
    assert sim.requests > requests_before  # asked live, no copy kept


def test_records_cross_the_wire_unchanged(demo_home):
    with open_hub(demo_home) as hub:
        for system, record_id in ((SourceSystem.TECS, "TS-DEMO-S1"), (SourceSystem.EID, "EA-DEMO-S4"),
                                  (SourceSystem.EID, "EP-DEMO-S5"), (SourceSystem.EID, "EA-DEMO-S7")):
            record = hub.adapter(system).fetch(record_id)
            assert record_from_json(json.loads(json.dumps(record_to_json(record)))) == record
    encoded = record_to_json(record)
    for broken in ({**encoded, "extra": 1}, {**encoded, "score": "100"}, {**encoded, "status": "secret"},
                   {**encoded, "person": {**encoded["person"], "birth_date": "yesterday"}}, [], None):
        with pytest.raises((ValueError, TypeError)):
            record_from_json(broken)
    query = query_from_json(query_to_json(search_query := lexs_query()))
    assert query == search_query


def lexs_query():
    from leis_gateway.domain import Criterion, Query

    return Query((Criterion(F.SURNAME, "GAR*", M.WILDCARD), Criterion(F.BIRTH_DATE, "1988-09-30", M.LE)), max_items=7)


def test_the_simulator_script_injects_faults_per_source(demo_home):
    environment = {**os.environ, "LEIS_HOME": str(demo_home)}
    process = subprocess.Popen(
        [str(PROJECT_ROOT / "scripts" / "prime-hub-sim"), "--port", "0", "--fail", "EID", "--delay", "TECS=0.2"],
        stdout=subprocess.PIPE, text=True, env=environment,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("prime hub simulator at http://127.0.0.1:"), line
        url = line.split()[4]
        with urllib.request.urlopen(url + "/health", timeout=10) as response:
            assert json.load(response) == {"systems": ["TECS", "EID"]}

        def hub_search(system: str):
            body = json.dumps({"system": system, "limit": 5, "query": query_to_json(lexs_query())}).encode()
            request = urllib.request.Request(url + "/search", data=body, headers={"Content-Type": "application/json"})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.load(response), time.monotonic() - started
            except urllib.error.HTTPError as error:
                return error.code, None, time.monotonic() - started

        status, answer, elapsed = hub_search("TECS")
        assert status == 200 and elapsed >= 0.2
        assert {record_from_json(r).source for r in answer["records"]} == {SourceSystem.TECS}
        assert hub_search("EID")[0] == 503
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
    assert process.returncode == 0
