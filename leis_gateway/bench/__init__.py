"""Benchmarks of the running gateway (`scripts/bench`, `python -m leis_gateway.bench`).

Each section is a module with `run(context) -> list[Figure]`, registered in `__main__.SECTIONS`
under its command-line flag; `harness` holds what sections share (cached demo homes under
`var/bench/`, the gateway and the PRIME hub simulator as processes, a signing member client).
A new section (e.g. `--throughput`) is one module and one line in `SECTIONS`.
"""
