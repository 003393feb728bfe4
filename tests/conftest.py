"""Shared fixtures: the official schemas, a demo state, and the real gateway on a free port."""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_terminal_summary(terminalreporter):
    from support import OFFICIAL_LEXS

    if not OFFICIAL_LEXS.exists():
        terminalreporter.write_line(
            f"!!! official LEXS schemas not found at {OFFICIAL_LEXS}: validation of the gateway's "
            "messages against the official lexs.xsd was SKIPPED !!!", red=True, bold=True,
        )


@pytest.fixture(scope="session")
def official_schema():
    """The official LEXS 3.1.4 message schema, or None where shared/ is absent (said at the end)."""
    from support import official_schema

    return official_schema()


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    from support import build_demo_home

    return build_demo_home(tmp_path_factory.mktemp("leis-home"))


@pytest.fixture(scope="session")
def gateway(demo_home):
    from support import RunningGateway

    with RunningGateway.start(demo_home) as running:
        yield running
