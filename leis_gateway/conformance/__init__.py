"""LEXS 3.1 Search/Retrieve conformance suite: run against any SR endpoint with zeep.

`core` holds the check table and the shared context, `checks` the checks (registered in the
order they run), `runner` runs them and prints the table, `junit` writes JUnit XML, and
`__main__` is the command line (`scripts/conformance`).
"""
from __future__ import annotations

from .core import CHECKS, Check, CheckFailed, CheckResult, Context, Target, check
from .junit import junit_xml, write_junit
from .runner import Report, print_table, run_suite

__all__ = [
    "CHECKS",
    "Check",
    "CheckFailed",
    "CheckResult",
    "Context",
    "Report",
    "Target",
    "check",
    "junit_xml",
    "print_table",
    "run_suite",
    "write_junit",
]
