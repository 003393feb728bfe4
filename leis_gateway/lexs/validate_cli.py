"""`leis-gateway validate FILE...`: schema validation of LEXS SR messages from the command line.

Accepts a bare LEXS message, an SR wrapper or a whole SOAP envelope (the Body's child is
validated), from files, directories (every *.xml inside) or `-` (stdin). Exit status: 0 all
valid, 1 at least one invalid, 2 at least one unusable input (unreadable, not XML, DTD).
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from lxml import etree

from leis_gateway.lexs.schema import SchemaError, errors_from_log, gateway_schema

SOAP_NS = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")

__all__ = ["run_validate", "schema_for"]


def schema_for(schema_dir: Path | None) -> etree.XMLSchema:
    """Our schema, or the one under `schema_dir`: its SR wrapper schema if present, else lexs.xsd."""
    if schema_dir is None:
        return gateway_schema()
    for entry in (schema_dir / "searchretrieve" / "3.1" / "search-retrieve.xsd",
                  schema_dir / "lexs" / "3.1" / "lexs.xsd",
                  schema_dir / "xsd" / "lexs" / "3.1" / "lexs.xsd"):
        if entry.exists():
            return etree.XMLSchema(etree.parse(str(entry), etree.XMLParser(no_network=True)))
    raise FileNotFoundError(f"no LEXS schema under {schema_dir}")


def _inputs(names: list[str]) -> list[tuple[str, bytes | None, str | None]]:
    found: list[tuple[str, bytes | None, str | None]] = []
    for name in names:
        if name == "-":
            found.append(("<stdin>", sys.stdin.buffer.read(), None))
            continue
        path = Path(name)
        paths = sorted(path.rglob("*.xml")) if path.is_dir() else [path]
        for item in paths:
            try:
                found.append((str(item), item.read_bytes(), None))
            except OSError as exc:
                found.append((str(item), None, exc.strerror or str(exc)))
    return found


def _parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    root = etree.fromstring(data, parser)
    if root.getroottree().docinfo.doctype:
        raise ValueError("a DOCTYPE is not allowed")
    return root


def _target(root: etree._Element) -> etree._Element:
    qname = etree.QName(root)
    if qname.localname == "Envelope" and qname.namespace in SOAP_NS:
        body = root.find(f"{{{qname.namespace}}}Body")
        children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
        if len(children) != 1:
            raise ValueError("the SOAP Body must hold exactly one element")
        return children[0]
    return root


def run_validate(files: list[str], *, schema_dir: Path | None = None, as_json: bool = False) -> int:
    try:
        schema = schema_for(schema_dir)
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        print(f"error: cannot load schema: {exc}", file=sys.stderr)
        return 2
    results = []
    status = 0
    for name, data, problem in _inputs(files):
        errors: list[SchemaError] = []
        if problem is None and data is not None:
            try:
                target = _target(_parse(data))
                if not schema.validate(target):
                    errors = errors_from_log(schema.error_log)
            except (etree.XMLSyntaxError, ValueError) as exc:
                problem = str(exc)
        if problem is not None:
            status = 2
        elif errors and status == 0:
            status = 1
        results.append({"file": name, "valid": problem is None and not errors, "unusable": problem,
                        "errors": [asdict(e) for e in errors]})
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if result["unusable"]:
                print(f"{result['file']}: unusable: {result['unusable']}")
            elif result["valid"]:
                print(f"{result['file']}: valid")
            else:
                for error in result["errors"]:
                    print(f"{result['file']}:{error['line']}: {error['message']}")
    return status
