"""Test helpers: the official LEXS 3.1.4 schema next to the repository, request fixtures.

Lives in the package (not in tests/) so any test module can import it however pytest is run.
"""
from __future__ import annotations

from pathlib import Path

from lxml import etree

from leis_gateway.lexs.schema import official_schema

REPO = Path(__file__).resolve().parents[2]
#: `<repo>/../shared/lexs-3.1.4`, where DESIGN.md says the reference material lives (CI too).
SHARED = REPO.parent / "shared" / "lexs-3.1.4"
#: Official-shaped request fixtures.
SAMPLES = REPO / "tests" / "lexs_samples"


def sample(name: str) -> etree._Element:
    return etree.parse(str(SAMPLES / name)).getroot()


def official() -> etree.XMLSchema:
    """The official lexs.xsd, or a loud pytest skip when the reference folder is absent."""
    if not (SHARED / "xsd" / "lexs" / "3.1" / "lexs.xsd").exists():
        import pytest

        pytest.skip(f"official LEXS 3.1.4 schemas not found at {SHARED}: conformance NOT checked")
    return official_schema(SHARED)


def official_errors(element: etree._Element) -> list[str]:
    """Violations of the official schema (skips the calling test when it is absent)."""
    schema = official()
    if schema.validate(element):
        return []
    return [str(e) for e in schema.error_log]
