"""The agreement registry: the demo file, certificate binding, reload, and broken files."""
from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from leis_gateway.domain import Purpose
from leis_gateway.policy.agreements import AgreementRegistry, RegistryError, load_registry
from leis_gateway.release.profiles import RELEASABLE_ELEMENTS

DEMO_REGISTRY = Path(__file__).resolve().parent.parent / "fixtures" / "agreements.json"

TWO_WAY = {"ndex", "azlink", "tdex", "linx-nw", "linx-hr", "linx-ncr", "linx-socal", "arjis", "lasd"}
DESIGN_AGREEMENTS = TWO_WAY | {"nlets", "afi", "suspended-demo"}


def demo_document() -> dict:
    return json.loads(DEMO_REGISTRY.read_text())


def write(path: Path, document: dict | str) -> None:
    path.write_text(document if isinstance(document, str) else json.dumps(document))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def certificate(cn: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


# --- the demo registry ----------------------------------------------------------------------


def test_demo_registry_lists_every_agreement_of_the_design() -> None:
    registry = AgreementRegistry(DEMO_REGISTRY)
    assert registry.last_error is None and registry.version
    ids = {a.id for a in registry.all()}
    assert DESIGN_AGREEMENTS <= ids and ids - DESIGN_AGREEMENTS == {"expired-demo"}
    for agreement in registry.all():
        assert len(agreement.ori) == 9 and agreement.agency_name
        assert registry.profile(agreement) is not None
        assert registry.subject_cn(agreement.id) == agreement.id  # the demo PKI makes certs by id
    assert len({a.ori for a in registry.all()}) == len(ids)


def test_demo_agreements_say_what_the_design_says() -> None:
    registry = AgreementRegistry(DEMO_REGISTRY)
    for agreement_id in TWO_WAY:
        agreement = registry.get(agreement_id)
        assert (agreement.direction, agreement.status, agreement.release_profile) == ("two-way", "active", "standard")
        assert agreement.endpoint and agreement.endpoint.startswith("https://")
    nlets = registry.get("nlets")
    assert (nlets.direction, nlets.release_profile, nlets.endpoint) == ("one-way", "no-protected-classes", None)
    assert registry.profile(nlets).exclude_protected_classes
    assert not registry.profile("standard").exclude_protected_classes
    assert registry.get("afi").direction == "internal"
    assert registry.get("suspended-demo").status == "suspended"
    assert registry.get("expired-demo").expires == dt.date(2024, 12, 31)
    # a "purpose not allowed by the agreement" case exists in the demo
    assert Purpose.EMPLOYMENT_BACKGROUND_CHECK not in registry.get("linx-nw").purposes
    assert registry.get("ndex").purposes == frozenset(Purpose)


def test_binding_by_subject_cn_and_by_fingerprint(tmp_path) -> None:
    pinned = certificate("ndex")
    fingerprint = pinned.fingerprint(hashes.SHA256()).hex()
    document = demo_document()
    for entry in document["agreements"]:
        if entry["id"] == "ndex":  # pinned by fingerprint: a CN alone no longer binds
            entry["certificate"] = {"sha256": ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2)).upper(),
                                    "subject_cn": "ndex"}
    path = tmp_path / "agreements.json"
    write(path, document)
    registry = AgreementRegistry(path)
    assert registry.last_error is None

    assert registry.by_certificate(fingerprint).id == "ndex"
    assert registry.by_certificate(pinned).id == "ndex"
    assert registry.by_certificate(certificate("ndex")) is None  # another key with the same CN
    assert registry.by_certificate("ndex") is None
    assert registry.by_certificate("azlink").id == "azlink"
    assert registry.by_certificate(certificate("azlink")).id == "azlink"
    assert registry.by_certificate("unregistered") is None
    assert registry.by_certificate("0" * 64) is None
    assert registry.by_certificate(object()) is None


# --- reload ------------------------------------------------------------------------------------


def test_reload_when_the_file_changes_at_most_once_per_interval(tmp_path) -> None:
    path = tmp_path / "agreements.json"
    document = demo_document()
    write(path, document)
    clock = FakeClock()
    registry = AgreementRegistry(path, clock=clock)
    assert registry.get("lasd").status == "active"

    document["version"] = "2025.2"
    next(a for a in document["agreements"] if a["id"] == "lasd")["status"] = "suspended"
    write(path, document)
    assert registry.get("lasd").status == "active"  # within the interval: not looked at
    clock.now += 1.0
    assert registry.get("lasd").status == "suspended"
    assert registry.version == "2025.2" and registry.last_error is None


def test_a_broken_file_keeps_the_last_good_registry_and_says_why(tmp_path) -> None:
    path = tmp_path / "agreements.json"
    write(path, demo_document())
    clock = FakeClock()
    registry = AgreementRegistry(path, clock=clock)
    good_version = registry.version

    broken_cases = {
        "not json": ("{ not json", "not valid JSON"),
        "unknown purpose": (_with(lambda d: d["agreements"][0].update(purposes=["Curiosity"])), "'purposes'"),
        "widening profile": (
            _with(lambda d: d["release_profiles"]["standard"].update(elements=sorted(RELEASABLE_ELEMENTS) + ["narrative"])),
            "outside the allowlist",
        ),
        "duplicate id": (_with(lambda d: d["agreements"].append(dict(d["agreements"][0]))), "listed twice"),
        "unknown profile": (_with(lambda d: d["agreements"][0].update(release_profile="everything")), "not defined"),
        "bad expiry": (_with(lambda d: d["agreements"][0].update(expires="someday")), "'expires'"),
        "no version": (_with(lambda d: d.pop("version")), "'version'"),
        "shared CN": (_with(lambda d: d["agreements"][1].update(certificate={"subject_cn": "ndex"})), "subject CN 'ndex'"),
        "bad ORI": (_with(lambda d: d["agreements"][0].update(ori="x")), "'ori'"),
    }
    for name, (content, reason) in broken_cases.items():
        write(path, content)
        clock.now += 1.0
        agreements = registry.all()  # never raises
        assert registry.version == good_version, name
        assert len(agreements) == 13 and registry.get("ndex") is not None, name
        assert registry.last_error and reason in registry.last_error, (name, registry.last_error)

    path.unlink()
    clock.now += 1.0
    assert registry.get("ndex") is not None and "cannot read" in registry.last_error

    fixed = demo_document()
    fixed["version"] = "2025.3"
    write(path, fixed)
    clock.now += 1.0
    assert registry.version == "2025.3" and registry.last_error is None


def _with(change) -> dict:
    document = demo_document()
    change(document)
    return document


def test_a_registry_that_never_loaded_refuses_everyone_without_raising(tmp_path) -> None:
    registry = AgreementRegistry(tmp_path / "missing.json")
    assert registry.all() == () and registry.get("ndex") is None and registry.by_certificate("ndex") is None
    assert "cannot read" in registry.last_error
    with pytest.raises(RegistryError):
        load_registry(tmp_path / "missing.json")


def test_profiles_in_the_file_may_narrow(tmp_path) -> None:
    document = demo_document()
    document["release_profiles"]["names-only"] = {
        "elements": ["person.given_name", "person.surname"], "sources": ["TECS"]}
    document["agreements"][0]["release_profile"] = "names-only"
    path = tmp_path / "agreements.json"
    write(path, document)
    registry = AgreementRegistry(path)
    profile = registry.profile(registry.get(document["agreements"][0]["id"]))
    assert profile.elements == {"person.given_name", "person.surname"}
    assert {str(s) for s in profile.sources} == {"TECS"}


def test_concurrent_readers_see_whole_registries_while_the_file_changes(tmp_path) -> None:
    path = tmp_path / "agreements.json"
    write(path, demo_document())
    registry = AgreementRegistry(path, check_interval=0.0)
    seen: set[int] = set()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(300):
                seen.add(len(registry.all()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for i in range(20):
        write(path, _with(lambda d: d.update(version=f"v{i}")) if i % 2 else "{ broken")
    for thread in readers:
        thread.join()
    assert not errors and seen == {13}
