"""Run the registered checks against a target, print the pass/fail table."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TextIO

from . import checks as _checks  # noqa: F401 - registers the suite
from .core import CHECKS, Check, CheckFailed, CheckResult, Context, Target

__all__ = ["Report", "print_table", "run_suite"]

REASON_WIDTH = 200


@dataclass
class Report:
    target: Target
    results: list[CheckResult] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0
    header: list[str] = field(default_factory=list)  # what was tested, with which schemas and pinning

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]


def describe_target(target: Target) -> list[str]:
    from leis_gateway.security.pki import load_certificate

    client = load_certificate(target.certificate).subject.rfc4514_string()
    if target.server_cert is not None:
        pinning = f"pinned to --server-cert {target.server_cert_path} ({target.server_cert.subject.rfc4514_string()})"
    else:
        pinning = "not pinned (no --server-cert): any signer whose signature verifies is accepted and reported"
    lines = [
        f"endpoint:   {target.endpoint} (WSDL {target.wsdl_url})",
        f"client:     {client} ({target.certificate})" + (f", agreement {target.agreement}" if target.agreement else ""),
        f"schemas:    {target.schemas_description}: {target.schemas.label}",
        f"signatures: {pinning}",
    ]
    return lines


def _run_one(check: Check, ctx: Context) -> CheckResult:
    start = time.perf_counter()
    try:
        reason = check.run(ctx)
        passed, details = True, []
    except CheckFailed as exc:
        passed, reason, details = False, exc.reason, exc.details
    except Exception as exc:  # noqa: BLE001 - a check that crashes fails, the suite goes on
        passed, reason, details = False, f"check crashed: {type(exc).__name__}: {exc}", []
    return CheckResult(check.name, check.description, passed, " ".join(str(reason).split()), details,
                       time.perf_counter() - start)


def run_suite(target: Target, only: list[str] | None = None) -> Report:
    """Run every registered check (or those named in `only`) in order."""
    report = Report(target, started=time.time(), header=describe_target(target))
    ctx = Context(target)
    start = time.perf_counter()
    try:
        for check in CHECKS:
            if only and check.name not in only:
                continue
            report.results.append(_run_one(check, ctx))
    finally:
        if ctx.client is not None:
            ctx.client.close()
    report.seconds = time.perf_counter() - start
    return report


def print_table(report: Report, out: TextIO, *, verbose: bool = False) -> None:
    print("LEXS 3.1 Search/Retrieve conformance", file=out)
    for line in report.header:
        print(f"  {line}", file=out)
    print(file=out)
    width = max([len("CHECK")] + [len(r.name) for r in report.results])
    print(f"{'CHECK'.ljust(width)}  RESULT  REASON", file=out)
    for r in report.results:
        reason = r.reason if len(r.reason) <= REASON_WIDTH else r.reason[: REASON_WIDTH - 3] + "..."
        print(f"{r.name.ljust(width)}  {'PASS' if r.passed else 'FAIL':<6}  {reason}", file=out)
        if verbose and not r.passed:
            for detail in r.details:
                print(f"{'':{width}}          {detail}", file=out)
    failed = len(report.failures)
    print(file=out)
    verdict = "CONFORMANT" if report.passed else "NOT CONFORMANT"
    print(f"{len(report.results)} checks: {len(report.results) - failed} passed, {failed} failed "
          f"({report.seconds:.1f} s): {verdict}", file=out)
