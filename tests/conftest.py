"""Shared fixtures: the official schemas, a demo state, and the real gateway on a free port."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from leis_gateway.config import PROJECT_ROOT

OFFICIAL_LEXS = PROJECT_ROOT.parent / "shared" / "lexs-3.1.4"
OFFICIAL_XSD = OFFICIAL_LEXS / "xsd" / "lexs" / "3.1" / "lexs.xsd"


@pytest.fixture(scope="session")
def official_schema():
    """The official LEXS 3.1.4 message schema, or None (loudly) where shared/ is absent."""
    if not OFFICIAL_XSD.exists():
        warnings.warn(
            f"official LEXS schema not found at {OFFICIAL_XSD}: official validation is SKIPPED",
            pytest.PytestWarning,
        )
        return None
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(OFFICIAL_XSD)))


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    from support import build_demo_home

    return build_demo_home(tmp_path_factory.mktemp("leis-home"))


@pytest.fixture(scope="session")
def gateway(demo_home):
    from support import RunningGateway

    with RunningGateway.start(demo_home) as running:
        yield running
