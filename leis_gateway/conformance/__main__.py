"""`python -m leis_gateway.conformance` (and `scripts/conformance`): run the suite, print the table.

Exit status: 0 every check passed, 1 at least one failed, 2 the suite could not start (a missing
certificate or key, an unusable schema directory).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leis_gateway.config import PROJECT_ROOT, Settings

#: The official release next to the repository (DESIGN.md: `../shared/lexs-3.1.4`).
OFFICIAL_XSD = PROJECT_ROOT.parent / "shared" / "lexs-3.1.4" / "xsd"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conformance",
        description="LEXS 3.1 Search/Retrieve conformance checks against any SR endpoint (this gateway or a "
                    "partner's), through zeep with mutual TLS and WS-Security.")
    parser.add_argument("--endpoint", help="the SR endpoint URL; its WSDL is at URL?wsdl")
    parser.add_argument("--cert", type=Path, help="client certificate (PEM); default with --agreement: "
                                                   "$LEIS_HOME/pki/agencies/<ID>.crt")
    parser.add_argument("--key", type=Path, help="client private key (PEM); default with --agreement: "
                                                  "$LEIS_HOME/pki/agencies/<ID>.key")
    parser.add_argument("--ca", type=Path, help="CA certificate(s) for the endpoint's TLS certificate; "
                                                 "default with --agreement: $LEIS_HOME/pki/ca.crt")
    parser.add_argument("--agreement", metavar="ID",
                        help="the agreement the client certificate belongs to (reported; picks demo PKI files "
                             "under $LEIS_HOME when --cert/--key/--ca are not given)")
    parser.add_argument("--server-cert", type=Path,
                        help="pin the answers' signer to this certificate (default: any valid signer, reported)")
    parser.add_argument("--schema-dir", type=Path, default=None,
                        help=f"schemas the answers must validate against (default: {OFFICIAL_XSD} if present, "
                             f"else the project's xsd/)")
    who = parser.add_argument_group("the requester named in every LEXS request (UserAssertion, origin)")
    who.add_argument("--organization", default="LEIS conformance suite")
    who.add_argument("--system-id", default=None, help="default: the agreement id, else CONFORMANCE")
    who.add_argument("--ori", default="XX0000000")
    who.add_argument("--user", default="conformance.suite")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML to FILE")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--only", action="append", metavar="CHECK", help="run only this check (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the details of failed checks")
    return parser


def main(argv: list[str] | None = None, *, out=None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)

    from leis_gateway.lexs.requests import Requester
    from leis_gateway.lexs.validate_cli import SchemaDirError, load_schema_set
    from leis_gateway.security.pki import load_certificate

    from .core import CHECKS, Target
    from .junit import write_junit
    from .runner import print_table, run_suite

    if args.list:
        for check in CHECKS:
            print(f"{check.name:28} {check.description}", file=out)
        return 0

    if not args.endpoint:
        print("conformance: error: --endpoint is required", file=sys.stderr)
        return 2
    pki = Settings.from_env().pki_dir
    agency = pki / "agencies" / (args.agreement or "")
    cert = args.cert or (agency.with_suffix(".crt") if args.agreement else None)
    key = args.key or (agency.with_suffix(".key") if args.agreement else None)
    ca = args.ca or (pki / "ca.crt" if args.agreement else None)
    problems = [f"{flag} is required" for flag, value in (("--cert", cert), ("--key", key), ("--ca", ca))
                if value is None]
    problems += [f"{path} does not exist" for path in (cert, key, ca, args.server_cert)
                 if path is not None and not path.is_file()]
    if problems:
        for problem in problems:
            print(f"conformance: error: {problem}", file=sys.stderr)
        return 2

    schema_dir = args.schema_dir or (OFFICIAL_XSD if (OFFICIAL_XSD / "lexs" / "3.1" / "lexs.xsd").is_file() else None)
    try:
        schemas = load_schema_set(schema_dir)
    except SchemaDirError as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
        return 2
    if args.schema_dir is None:
        described = ("the official LEXS release" if schema_dir is not None else
                     f"the project's own schemas, as the official release is not at {OFFICIAL_XSD}")
    elif schemas.is_project:
        described = "the project's own schemas (--schema-dir)"
    else:
        described = f"--schema-dir schemas, lexs.xsd version {schemas.version}"
    server_cert = load_certificate(args.server_cert) if args.server_cert else None

    target = Target(endpoint=args.endpoint, certificate=cert, key=key, ca=ca, schemas=schemas,
                    schemas_description=described, server_cert=server_cert, server_cert_path=args.server_cert,
                    agreement=args.agreement, timeout=args.timeout,
                    requester=Requester(args.organization, args.system_id or args.agreement or "CONFORMANCE",
                                        args.ori, args.user))
    unknown = [name for name in args.only or () if name not in {c.name for c in CHECKS}]
    if unknown:
        print(f"conformance: error: unknown check(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    report = run_suite(target, only=args.only)
    print_table(report, out, verbose=args.verbose)
    if args.junit:
        write_junit(report, args.junit)
        print(f"JUnit XML written to {args.junit}", file=out)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
