"""JUnit XML for CI systems: one testsuite, one testcase per check, a <failure> per failed check."""
from __future__ import annotations

import datetime as dt
import re
import socket
from pathlib import Path

from lxml import etree

from .runner import Report

__all__ = ["junit_xml", "write_junit"]

SUITE = "lexs-sr-conformance"
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _safe(text: str) -> str:
    """Answers from a broken endpoint may hold characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("\ufffd", text)


def junit_xml(report: Report) -> bytes:
    failures = len(report.failures)
    suites = etree.Element("testsuites", name="LEXS 3.1 SR conformance", tests=str(len(report.results)),
                           failures=str(failures), errors="0", time=f"{report.seconds:.3f}")
    suite = etree.SubElement(
        suites, "testsuite", name=SUITE, tests=str(len(report.results)), failures=str(failures), errors="0",
        skipped="0", time=f"{report.seconds:.3f}", hostname=socket.gethostname(),
        timestamp=dt.datetime.fromtimestamp(report.started, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
    )
    properties = etree.SubElement(suite, "properties")
    for line in report.header:
        name, _, value = line.partition(":")
        etree.SubElement(properties, "property", name=name.strip(), value=_safe(value.strip()))
    for result in report.results:
        case = etree.SubElement(suite, "testcase", classname=f"{SUITE}.{result.name.split(':')[0]}",
                                name=result.name, time=f"{result.seconds:.3f}")
        if not result.passed:
            failure = etree.SubElement(case, "failure", message=_safe(result.reason), type="ConformanceFailure")
            failure.text = _safe("\n".join([result.description, result.reason, *result.details]))
        etree.SubElement(case, "system-out").text = _safe(f"{result.description}: {result.reason}")
    return etree.tostring(suites, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_junit(report: Report, path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(report))
