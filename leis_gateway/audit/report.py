"""The weekly review: one self-contained HTML page (inline SVG, no scripts) plus a CSV.

Everything shown is metadata. Identifiers come from requests (attacker-controlled), so all
text is HTML-escaped and CSV cells are defused against spreadsheet formula injection.
"""
from __future__ import annotations

import csv
import html
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Sequence

from .types import AuditRow, Direction, VerifyReport

BUSINESS_HOURS = (7, 19)  # local hours [07:00, 19:00)
JUMP_FACTOR = 2.0  # a user's weekly volume at least doubled...
JUMP_MIN = 10  # ...and reached at least this many requests
_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


def week_bounds(iso_week: str, tz: tzinfo = UTC) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) of an ISO week such as 2025-W03, in `tz`."""
    m = _WEEK_RE.match(iso_week.strip())
    if not m:
        raise ValueError(f"expected an ISO week like 2025-W03, got {iso_week!r}")
    try:
        start = datetime.fromisocalendar(int(m.group(1)), int(m.group(2)), 1).replace(tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"no such ISO week: {iso_week!r}") from exc
    return start, start + timedelta(days=7)


@dataclass(frozen=True)
class _UserLine:
    agreement_id: str
    user_id: str
    ori: str
    requests: int
    refusals: int
    off_hours: int
    disclosures: int
    prev_requests: int

    @property
    def jump(self) -> bool:
        return self.requests >= JUMP_MIN and self.requests >= JUMP_FACTOR * self.prev_requests


def _name(value: str | None) -> str:
    return value if value else "(none)"


def _off_hours(row: AuditRow, tz: tzinfo) -> bool:
    hour = row.at.astimezone(tz).hour
    return not (BUSINESS_HOURS[0] <= hour < BUSINESS_HOURS[1])


def _is_refusal(row: AuditRow) -> bool:
    return row.direction == Direction.OUTBOUND and row.result_code not in (None, "Success")


def _summarise(rows: Sequence[AuditRow], prev: Sequence[AuditRow], tz: tzinfo) -> list[_UserLine]:
    def key(r: AuditRow) -> tuple[str, str]:
        return (_name(r.agreement_id), _name(r.user_id))

    inbound = [r for r in rows if r.direction == Direction.INBOUND]
    requests = Counter(key(r) for r in inbound)
    off = Counter(key(r) for r in inbound if _off_hours(r, tz))
    refusals = Counter(key(r) for r in rows if _is_refusal(r))
    disclosed = Counter()
    for r in rows:
        if r.direction == Direction.OUTBOUND and r.disclosures:
            disclosed[key(r)] += len(r.disclosures)
    prev_requests = Counter(key(r) for r in prev if r.direction == Direction.INBOUND)
    oris: dict[tuple[str, str], str] = {key(r): _name(r.ori) for r in inbound}
    keys = sorted(set(requests) | set(refusals) | set(disclosed))
    return [
        _UserLine(a, u, oris.get((a, u), "(none)"), requests[(a, u)], refusals[(a, u)], off[(a, u)],
                  disclosed[(a, u)], prev_requests[(a, u)])
        for a, u in keys
    ]


# --- SVG ---------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _hbars(title: str, items: Sequence[tuple[str, int]], color: str = "#2f6f9f", limit: int = 25) -> str:
    """Horizontal bar chart; labels truncated for layout, full text in a <title> tooltip."""
    items = list(items)[:limit]
    if not items:
        return f'<p class="empty">{_e(title)}: no data this week.</p>'
    width, label_w, bar_h, gap, top = 760, 260, 18, 6, 28
    peak = max(v for _, v in items) or 1
    height = top + len(items) * (bar_h + gap) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{_e(title)}</title>',
        f'<text x="0" y="16" class="t">{_e(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y = top + i * (bar_h + gap)
        w = max(1, round((width - label_w - 60) * value / peak))
        short = label if len(label) <= 36 else label[:35] + "\u2026"
        parts.append(
            f'<g><title>{_e(label)}: {value}</title>'
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(short)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{color}"/>'
            f'<text x="{label_w + w + 4}" y="{y + 13}">{value}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _hours(title: str, counts: Sequence[int]) -> str:
    """24 vertical bars, off-hours in a warning colour."""
    width, height, left, bottom, top = 760, 200, 30, 24, 28
    bar_w = (width - left) / 24
    peak = max(counts) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{_e(title)}</title>',
        f'<text x="0" y="16" class="t">{_e(title)}</text>',
    ]
    for hour, value in enumerate(counts):
        h = round((height - top - bottom) * value / peak)
        x = left + hour * bar_w
        color = "#2f6f9f" if BUSINESS_HOURS[0] <= hour < BUSINESS_HOURS[1] else "#c0392b"
        parts.append(
            f'<g><title>{hour:02d}:00 - {value}</title>'
            f'<rect x="{x + 1:.1f}" y="{height - bottom - h}" width="{bar_w - 2:.1f}" height="{h}" fill="{color}"/>'
            f'<text x="{x + bar_w / 2:.1f}" y="{height - 8}" text-anchor="middle">{hour:02d}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return '<p class="empty">None.</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- output ------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
svg text{font:12px system-ui,sans-serif}svg text.t{font-weight:bold}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
.ok{color:#1e7e34}.bad{color:#c0392b;font-weight:bold}.empty{color:#777}
"""


def _safe_cell(value: object) -> object:
    """Defuse spreadsheet formulas in identifiers that came from requests."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_weekly_report(
    iso_week: str,
    out_dir: Path,
    rows: Sequence[AuditRow],
    prev_rows: Sequence[AuditRow],
    verify: VerifyReport | None,
    tz: tzinfo = UTC,
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = _summarise(rows, prev_rows, tz)
    inbound = [r for r in rows if r.direction == Direction.INBOUND]

    per_agreement = Counter(_name(r.agreement_id) for r in inbound).most_common()
    per_user = Counter(f"{_name(r.agreement_id)} / {_name(r.user_id)}" for r in inbound).most_common()
    causes: Counter[str] = Counter()
    for r in rows:
        if _is_refusal(r):
            for cat in r.advisory_categories or ("(no advisory)",):
                causes[f"{r.result_code}: {cat}"] += 1
    hours = [0] * 24
    for r in inbound:
        hours[r.at.astimezone(tz).hour] += 1
    off_users = sorted(((ln.off_hours, ln) for ln in lines if ln.off_hours), key=lambda t: -t[0])
    jumps = [ln for ln in lines if ln.jump]
    disclosures = Counter()
    for r in rows:
        if r.direction == Direction.OUTBOUND:
            disclosures[_name(r.agreement_id)] += len(r.disclosures)
    reviews = [r for r in rows if r.direction in (Direction.REVIEW, Direction.ADMIN)]

    start, end = week_bounds(iso_week, tz)
    if verify is None:
        chain_html = '<p class="empty">Chain not verified for this report.</p>'
    else:
        css = "ok" if verify.ok else "bad"
        chain_html = (
            f'<p class="{css}">{_e(verify)}</p>'
            f"<p>Chain head: row {verify.head_id}, hash <code>{_e(verify.head_hash)}</code> "
            "(record it: a later report must show the same hash for this row).</p>"
        )
    refusals = sum(1 for r in rows if _is_refusal(r))
    body = [
        f"<h1>LEIS audit: weekly review {_e(iso_week)}</h1>",
        f"<p>{_e(start.isoformat())} to {_e(end.isoformat())}. {len(inbound)} inbound messages, "
        f"{sum(1 for r in rows if r.direction == Direction.OUTBOUND)} outbound, {refusals} refused or partial, "
        f"{sum(disclosures.values())} record disclosures, {len(reviews)} review/admin actions. "
        f"Generated {_e(datetime.now(UTC).isoformat(timespec='seconds'))}.</p>",
        "<h2>Integrity</h2>", chain_html,
        "<h2>Volume per agreement</h2>", _hbars("Inbound requests per agreement", per_agreement),
        "<h2>Volume per user</h2>", _hbars("Inbound requests per user (top 25)", per_user),
        "<h2>Refusals by cause</h2>", _hbars("Non-success responses by advisory", causes.most_common(), "#c0392b"),
        "<h2>Off-hours activity</h2>",
        _hours(f"Inbound requests by hour (off hours outside {BUSINESS_HOURS[0]:02d}:00-{BUSINESS_HOURS[1]:02d}:00)", hours),
        _table(["agreement", "user", "off-hours requests", "all requests"],
               [(ln.agreement_id, ln.user_id, n, ln.requests) for n, ln in off_users]),
        f"<h2>Volume jumps (at least {JUMP_FACTOR:g}\u00d7 last week and \u2265 {JUMP_MIN})</h2>",
        _hbars("Requests this week, users with a jump", [(f"{j.agreement_id} / {j.user_id}", j.requests) for j in jumps], "#d68910"),
        _table(["agreement", "user", "last week", "this week"],
               [(j.agreement_id, j.user_id, j.prev_requests, j.requests) for j in jumps]),
        "<h2>Disclosures per agreement</h2>", _hbars("Source records disclosed per agreement", disclosures.most_common()),
        "<h2>Review and administration of the log</h2>",
        _table(["row", "time", "operation", "by", "detail"],
               [(r.id, r.at.isoformat(timespec="seconds"), r.operation, _name(r.user_id), r.detail or "") for r in reviews]),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>LEIS audit {_e(iso_week)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    html_path = out_dir / f"audit-{iso_week}.html"
    csv_path = out_dir / f"audit-{iso_week}.csv"
    html_path.write_text(page, encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["week", "agreement_id", "user_id", "ori", "requests", "refusals", "off_hours_requests",
                    "records_disclosed", "prev_week_requests", "volume_jump"])
        for ln in lines:
            w.writerow([_safe_cell(v) for v in (iso_week, ln.agreement_id, ln.user_id, ln.ori, ln.requests,
                                                 ln.refusals, ln.off_hours, ln.disclosures, ln.prev_requests,
                                                 "yes" if ln.jump else "no")])
    return html_path, csv_path
