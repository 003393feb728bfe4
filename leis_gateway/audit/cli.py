"""`leis-gateway audit ...` sub-commands; the top-level CLI supplies how to open the log.

    parser = argparse.ArgumentParser(prog="leis-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    add_audit_commands(sub, lambda args: AuditLog.open(url, *load_or_create_key(key_path)))
    args = parser.parse_args(); sys.exit(args.func(args))

Exit codes: 0 success, 1 chain broken (verify) or refused request, 2 audit store unavailable
or unusable input.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Callable

from .log import AuditLog
from .types import AuditFilter, AuditIntegrityError, AuditNotFound, AuditRow, AuditUnavailable, Direction

OpenAudit = Callable[[argparse.Namespace], AuditLog]  # from the parsed command line


def parse_when(value: str) -> datetime:
    """ISO date (midnight UTC) or date-time; a time without zone is taken as UTC."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): make the operator say who they are
        return os.environ.get("USER", "")


def add_audit_commands(subparsers: Any, open_audit: OpenAudit) -> argparse.ArgumentParser:
    """Attach `audit search|show|purge|report|verify` to the top-level sub-parsers.

    Each leaf parser sets `func(args) -> int` (the exit code).
    """
    audit = subparsers.add_parser("audit", help="search, review, verify and purge the audit log")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="{search,show,purge,report,verify}")

    p = sub.add_parser("search", help="search messages by metadata (never by content)")
    p.add_argument("--since", type=parse_when, help="from this ISO date/time (inclusive, UTC if no zone)")
    p.add_argument("--until", type=parse_when, help="up to this ISO date/time (exclusive)")
    p.add_argument("--agreement")
    p.add_argument("--ori")
    p.add_argument("--user")
    p.add_argument("--operation")
    p.add_argument("--direction", choices=[d.value for d in Direction])
    p.add_argument("--result", help="result code, e.g. Success, Warning, Error")
    p.add_argument("--correlation")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--newest-first", action="store_true")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=lambda a: _run(open_audit, _search, a))

    p = sub.add_parser("show", help="decrypt one stored message (audited; a reason is required)")
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--reviewer", default=None, help="default: the login name")
    p.set_defaults(func=lambda a: _run(open_audit, _show, a))

    p = sub.add_parser("purge", help="destroy messages older than a date (retention; audited)")
    p.add_argument("--before", type=parse_when, required=True)
    p.add_argument("--operator", default=None, help="default: the login name")
    p.set_defaults(func=lambda a: _run(open_audit, _purge, a))

    p = sub.add_parser("report", help="weekly review: HTML with charts, and CSV")
    p.add_argument("--week", required=True, help="ISO week, e.g. 2025-W03")
    p.add_argument("--out", type=Path, default=Path("."), help="output directory")
    p.add_argument("--reviewer", default=None, help="default: the login name")
    p.set_defaults(func=lambda a: _run(open_audit, _report, a))

    p = sub.add_parser("verify", help="check the hash chain (exit 0 intact, 1 broken)")
    p.set_defaults(func=lambda a: _run(open_audit, _verify, a))
    return audit


def _run(open_audit: OpenAudit, handler: Callable[[AuditLog, argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        audit = open_audit(args)
    except AuditUnavailable as exc:
        print(f"audit store unavailable: {exc}", file=sys.stderr)
        return 2
    try:
        return handler(audit, args)
    except AuditUnavailable as exc:
        print(f"audit store unavailable: {exc}", file=sys.stderr)
        return 2
    except (AuditNotFound, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AuditIntegrityError as exc:
        print(f"integrity error: {exc}", file=sys.stderr)
        return 1
    finally:
        audit.close()


_COLUMNS = (
    ("id", 6), ("time (UTC)", 19), ("dir", 8), ("operation", 20), ("agreement", 12), ("ori", 10),
    ("user", 16), ("purpose", 24), ("query", 24), ("result", 8), ("bytes", 7), ("ms", 8),
)


def _cells(r: AuditRow) -> list[str]:
    return [
        str(r.id), r.at.strftime("%Y-%m-%d %H:%M:%S"), r.direction, r.operation, r.agreement_id or "-",
        r.ori or "-", r.user_id or "-", r.purpose or "-", ",".join(r.query_categories) or "-",
        r.result_code or "-", str(r.size_bytes), "-" if r.latency_ms is None else f"{r.latency_ms:.1f}",
    ]


def _search(audit: AuditLog, a: argparse.Namespace) -> int:
    rows = audit.search(
        AuditFilter(
            since=a.since, until=a.until, agreement_id=a.agreement, ori=a.ori, user_id=a.user,
            operation=a.operation, direction=a.direction, result_code=a.result, correlation_id=a.correlation,
            limit=a.limit, newest_first=a.newest_first,
        )
    )
    if a.json:
        json.dump([r.as_dict() for r in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print("  ".join(name.ljust(width) for name, width in _COLUMNS).rstrip())
    for r in rows:
        print("  ".join(c.ljust(width) for c, (_, width) in zip(_cells(r), _COLUMNS)).rstrip())
    print(f"({len(rows)} rows)", file=sys.stderr)
    return 0


def _show(audit: AuditLog, a: argparse.Namespace) -> int:
    reviewer = a.reviewer or _default_reviewer()
    data = audit.show(a.id, reviewer, a.reason)
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    if out is not None:
        out.write(data)
        if not data.endswith(b"\n"):
            out.write(b"\n")
        out.flush()
    else:  # a text-only stdout (e.g. captured in tests)
        sys.stdout.write(data.decode("utf-8", "replace") + "\n")
    return 0


def _purge(audit: AuditLog, a: argparse.Namespace) -> int:
    count = audit.purge(a.before, a.operator or _default_reviewer())
    print(f"purged {count} rows before {a.before.isoformat()}")
    return 0


def _report(audit: AuditLog, a: argparse.Namespace) -> int:
    html_path, csv_path = audit.weekly_report(a.week, a.out, reviewer=a.reviewer or _default_reviewer())
    print(html_path)
    print(csv_path)
    return 0


def _verify(audit: AuditLog, a: argparse.Namespace) -> int:
    report = audit.verify()
    print(report)
    return 0 if report.ok else 1
