"""`leis-gateway`: init the demo state, serve, validate messages, list agreements."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    """File ($LEIS_CONFIG or --config), then environment, then the global flags."""
    settings = Settings.load(getattr(args, "config", None))
    if getattr(args, "home", None):
        settings = settings.with_(home=Path(args.home))
    return settings


def cmd_init(args: argparse.Namespace) -> int:
    from .policy.agreements import AgreementRegistry
    from .security.pki import ensure_demo_pki
    from .sources.demo import build_demo_sources

    settings = _settings(args)
    settings.home.mkdir(parents=True, exist_ok=True)
    registry = AgreementRegistry(settings.registry_path)
    from .config import GATEWAY_CLIENT_ID  # the gateway's own client certificate (two-way sharing)

    pki = ensure_demo_pki(settings.pki_dir, [a.id for a in registry.all()] + [GATEWAY_CLIENT_ID])
    people = args.people if args.people is not None else settings.demo_people
    progress = _progress_bar("people") if sys.stderr.isatty() else None
    build_demo_sources(settings.home, people=people, progress=progress)
    from .app import load_or_create_secret

    load_or_create_secret(settings.token_key_path)
    print(f"demo state ready in {settings.home} ({len(pki.created)} PKI files created, {people} people per source)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .workers import serve

    settings = _settings(args).with_(
        **{k: v for k, v in (("host", args.host), ("port", args.port), ("internal_port", args.internal_port),
                             ("workers", args.workers), ("metrics_port", args.metrics_port),
                             ("log_format", getattr(args, "log_format", None))) if v is not None}
    )
    if settings.workers < 1:
        print("leis-gateway serve: --workers must be at least 1", file=sys.stderr)
        return 2
    # One process, or a pre-fork supervisor of `workers` processes (workers.py). SIGTERM ends the
    # serving loop the way Ctrl-C does (cheroot's stop() cannot run inside a signal handler).
    return serve(settings)


def cmd_config_check(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .observability.checks import check, print_report

    try:
        settings = _settings(args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"PROBLEM  {line}")
        print("1 problem(s)" if "\n" not in str(exc) else f"{len(str(exc).splitlines())} problem(s)")
        return 1
    report = check(settings, bind_ports=not args.no_ports)
    print_report(settings, report, sys.stdout)
    return 0 if report.ok else 1


def cmd_validate(args: argparse.Namespace) -> int:
    from .lexs.validate_cli import run_validate

    return run_validate(args.files, schema_dir=args.schema_dir, as_json=args.json)


def cmd_agreements_list(args: argparse.Namespace) -> int:
    from .policy.agreements import AgreementRegistry

    registry = AgreementRegistry(_settings(args).registry_path)
    rows = [("ID", "AGENCY", "ORI", "DIRECTION", "STATUS", "PURPOSES", "PROFILE")]
    for a in registry.all():
        rows.append(
            (a.id, a.agency_name, a.ori, a.direction, a.status,
             ",".join(sorted(p.value for p in a.purposes)), a.release_profile)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_partners_list(args: argparse.Namespace) -> int:
    from .twoway.demo import list_partners

    return list_partners(_settings(args))


def cmd_partners_search(args: argparse.Namespace) -> int:
    from .twoway.demo import search

    return search(_settings(args), url=args.url, surname=args.surname, given=args.given,
                  birth_date=args.birth_date, owners=args.owner, purpose=args.purpose, timeout=args.timeout,
                  user=args.user)


def _progress_bar(label: str):
    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r{label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leis-gateway", description=__doc__)
    parser.add_argument("--home", help="state directory (default $LEIS_HOME or ./var)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="settings file (TOML; default $LEIS_CONFIG); the environment overrides it, flags both")
    parser.add_argument("--log-format", choices=["text", "json"], default=None,
                        help="log lines as text or one JSON object each (default $LEIS_LOG_FORMAT or text)")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create the demo state (idempotent)")
    init.add_argument("--people", type=int, default=None, help="generated people per source")
    init.set_defaults(func=cmd_init)

    serve = commands.add_parser("serve", help="serve HTTPS with mutual TLS")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--internal-port", type=int, default=None,
                       help="also serve the internal analysts' endpoint (two-way sharing) on this port "
                            "(default $LEIS_INTERNAL_PORT; none: not served)")
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes (default $LEIS_WORKERS or 1); more than one: a pre-fork supervisor")
    serve.add_argument("--metrics-port", type=int, default=None,
                       help="also serve /metrics in plain HTTP on this port of 127.0.0.1 ($LEIS_METRICS_HOST) "
                            "(default $LEIS_METRICS_PORT; none: only on the endpoint port, mutual TLS)")
    _add_common(serve)
    serve.set_defaults(func=cmd_serve)

    config = commands.add_parser("config", help="the settings: file, environment, flags")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_check = config_commands.add_parser(
        "check", help="load the settings, check them (PKI, registry, sources, audit store, CRL, URLs, ports), "
                      "print them; exit 0 when fine, 1 when not")
    config_check.add_argument("--no-ports", action="store_true", help="do not check that the ports are free")
    _add_common(config_check)
    config_check.set_defaults(func=cmd_config_check)

    validate = commands.add_parser("validate", help="validate LEXS 3.1 messages against the schemas")
    validate.add_argument("files", nargs="+",
                          help="files or directories (every *.xml under it); - for stdin. Exit 0 valid, "
                               "1 invalid, 2 unusable input")
    validate.add_argument("--schema-dir", type=Path, default=None,
                          help="an xsd/ folder or a release holding one, e.g. ../shared/lexs-3.1.4 "
                               "(default: the project's xsd/)")
    validate.add_argument("--json", action="store_true", help="print the results as JSON")
    validate.set_defaults(func=cmd_validate)

    agreements = commands.add_parser("agreements", help="the agreements registry")
    agreement_commands = agreements.add_subparsers(dest="agreements_command", required=True)
    listing = agreement_commands.add_parser("list", help="print every agreement")
    listing.set_defaults(func=cmd_agreements_list)

    partners = commands.add_parser("partners", help="two-way sharing: the partners analysts can query")
    partner_commands = partners.add_subparsers(dest="partners_command", required=True)
    partner_list = partner_commands.add_parser("list", help="which agreements a search would query, and why not")
    partner_list.set_defaults(func=cmd_partners_list)
    partner_search = partner_commands.add_parser(
        "search", help="search the partners through the internal endpoint, as the analysts' system (afi)")
    partner_search.add_argument("--surname")
    partner_search.add_argument("--given")
    partner_search.add_argument("--birth-date", help="YYYY-MM-DD")
    partner_search.add_argument("--owner", action="append", default=[],
                                help="ask only this partner (an agreement id; repeatable)")
    partner_search.add_argument("--purpose", default="CriminalLawEnforcement",
                                choices=["CriminalLawEnforcement", "NationalSecurity", "EmploymentBackgroundCheck"])
    partner_search.add_argument("--timeout", type=float, default=None, help="TimeoutDuration in seconds")
    partner_search.add_argument("--user", default="analyst.demo")
    partner_search.add_argument("--url", default=None, help="the internal endpoint (default from the settings, port 8444)")
    partner_search.set_defaults(func=cmd_partners_search)

    from .audit.cli import add_audit_commands

    def open_audit_log(args: argparse.Namespace):
        from .app import open_audit

        return open_audit(_settings(args))

    add_audit_commands(commands, open_audit_log)
    return parser


def _add_common(subparser: argparse.ArgumentParser) -> None:
    """--config and --log-format after the subcommand too (SUPPRESS: not given keeps the global value)."""
    subparser.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                           help="settings file (TOML; default $LEIS_CONFIG)")
    subparser.add_argument("--log-format", choices=["text", "json"], default=argparse.SUPPRESS,
                           help="text or json (default $LEIS_LOG_FORMAT or text)")


def _setup_logging(args: argparse.Namespace) -> None:
    from .config import ConfigError
    from .observability.logs import setup_logging

    log_format, level = "text", "INFO"
    try:
        settings = Settings.load(getattr(args, "config", None))
        log_format, level = settings.log_format, settings.log_level
    except (ConfigError, ValueError):  # `config check` says what is wrong; logging must still work
        pass
    if getattr(args, "log_format", None):
        log_format = args.log_format
    try:
        setup_logging(log_format, level)
    except ValueError:
        setup_logging("text", "INFO")


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError

    args = build_parser().parse_args(argv)
    _setup_logging(args)
    try:
        return args.func(args)
    except ConfigError as exc:  # a settings file that cannot be used: said plainly (`config check` says more)
        print(f"leis-gateway: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
