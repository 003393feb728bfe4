"""`python -m leis_gateway.bench [--federation] [--scale] [--throughput] [--requests N] [--duration S] [--clients N] [--bench-dir DIR]`

Runs the chosen sections (all of them when none is named) and prints every figure with its target
and whether it holds. Exit status 0 when every target holds, 1 otherwise.
"""
from __future__ import annotations

import argparse
import platform
import os
import sys
import time
from pathlib import Path
from typing import Callable

from . import federation, scale, throughput
from .harness import BENCH_DIR, Context, Figure

# flag -> (what it measures, the section's run function); add a section here (e.g. "throughput").
SECTIONS: dict[str, tuple[str, Callable[[Context], list[Figure]]]] = {
    "federation": ("slow and hung sources behind the PRIME hub (latency vs. the injected delay, the deadline)", federation.run),
    # --scale is the whole of "federation at scale": the delayed and hung sources too
    "scale": ("federation at scale: slow and hung sources, 10k vs 1M people per source (exact and fuzzy "
              "search latency), gateway memory", lambda context: federation.run(context) + scale.run(context)),
    "throughput": ("requests/s under load: full path vs the signed-echo floor, p99/p50, 1 vs 2 workers", throughput.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, (text, _run) in SECTIONS.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    parser.add_argument("--requests", type=int, default=40, help="searches per measured point (default 40)")
    parser.add_argument("--duration", type=float, default=throughput.DURATION,
                        help=f"seconds per timed throughput phase (default {throughput.DURATION:g})")
    parser.add_argument("--clients", type=int, default=throughput.CLIENTS,
                        help=f"concurrent connections of the throughput load (default {throughput.CLIENTS})")
    parser.add_argument("--rounds", type=int, default=throughput.ROUNDS,
                        help=f"alternating rounds of the throughput phases (default {throughput.ROUNDS})")
    parser.add_argument("--bench-dir", type=Path, default=BENCH_DIR,
                        help=f"where the demo states are built and kept (default {BENCH_DIR})")
    return parser


def report(figures: list[Figure]) -> str:
    rows = [("figure", "measured", "target", "holds")]
    for f in figures:
        rows.append((f.name, f.measured, f.target, "-" if f.holds is None else ("yes" if f.holds else "NO")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    details = [f"  {f.name}: {f.detail}" for f in figures if f.detail]
    return "\n".join(lines + ([""] + details if details else []))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chosen = [name for name in SECTIONS if getattr(args, name)] or [n for n in SECTIONS if n != "federation"]  # --scale has it
    context = Context(bench_dir=args.bench_dir, requests_per_point=args.requests, duration=args.duration,
                      clients=args.clients, rounds=args.rounds)
    started = time.monotonic()
    load_before = "/".join(f"{x:.1f}" for x in os.getloadavg())  # other work on the machine skews latency
    figures: list[Figure] = []
    for name in chosen:
        figures.extend(SECTIONS[name][1](context))
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"leis-gateway bench ({', '.join(chosen)}): {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{args.requests} searches per point, {time.monotonic() - started:.0f} s, load average {load} "
          f"(at start {load_before})")
    print(report(figures))
    for note in context.notes:
        print(f"note: {note}")
    return 0 if all(f.holds is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
