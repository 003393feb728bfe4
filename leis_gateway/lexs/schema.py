"""Schema validation of LEXS SR messages against the project's own `xsd/`.

The schema is compiled once per process (a few milliseconds) from the SR wrapper schema, which
imports everything else; it validates a bare LEXS message, an SR wrapper, or any element of a
larger document (a SOAP body child keeps its source line numbers).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lxml import etree

from leis_gateway.lexs.namespaces import prefixed

__all__ = [
    "SCHEMA_ENTRY",
    "SchemaError",
    "XSD_DIR",
    "gateway_schema",
    "official_schema",
    "validate_message",
]

#: The project's schemas, `<repo>/xsd`.
XSD_DIR = Path(__file__).resolve().parents[2] / "xsd"
#: The one entry point that imports every other schema file.
SCHEMA_ENTRY = XSD_DIR / "searchretrieve" / "3.1" / "search-retrieve.xsd"


@dataclass(frozen=True)
class SchemaError:
    """One schema violation, in terms an advisory can repeat to the sender."""

    line: int | None
    column: int | None
    element: str | None  # prefixed name of the offending element, e.g. "lexs:MaxItemMatches"
    path: str | None  # XPath of the offending node as libxml2 reports it
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "unknown line"
        return f"{where}: {self.message}"

    def advisory_text(self) -> str:
        """For an InvalidRequest advisory: where and what, never the value that was sent."""
        return f"Line {self.line}: {self.element}: {without_values(self.message)}"[:500]


# libxml2 quotes the offending value: "'X' is not a valid value ...", "The value 'X' is not ...",
# "The value 'X' has a length of ...". A value may be a queried name: it must not be echoed.
_QUOTED_VALUE = re.compile(r"(?:(?<=: )|The value )'.*?'(?= is not | has a length )", re.S)


def without_values(message: str) -> str:
    return _QUOTED_VALUE.sub("the value", message)


_lock = threading.Lock()
_ELEMENT = re.compile(r"Element '([^']+)'")


def _load(entry: Path) -> etree.XMLSchema:
    # Schema documents are our own files; no network access, no entity expansion.
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(entry), parser))


@lru_cache(maxsize=1)
def gateway_schema() -> etree.XMLSchema:
    """The compiled project schema (cached for the life of the process)."""
    return _load(SCHEMA_ENTRY)


@lru_cache(maxsize=4)
def official_schema(shared_dir: str | Path) -> etree.XMLSchema:
    """The official LEXS 3.1.4 `lexs.xsd` under `shared_dir` (e.g. `../shared/lexs-3.1.4`), for tests."""
    return _load(Path(shared_dir) / "xsd" / "lexs" / "3.1" / "lexs.xsd")


def _friendly(message: str) -> tuple[str | None, str]:
    """libxml2 says `Element '{uri}Name': ...`; return (`prefix:Name`, message with that name)."""
    match = _ELEMENT.search(message)
    if not match:
        return None, message
    name = prefixed(match.group(1))
    return name, message.replace(match.group(1), name)


def errors_from_log(log: etree._ListErrorLog) -> list[SchemaError]:
    errors = []
    for entry in log:
        element, text = _friendly(entry.message)
        errors.append(SchemaError(
            line=entry.line or None,
            column=entry.column or None,
            element=element,
            path=getattr(entry, "path", None) or None,
            message=text,
        ))
    return errors


def validate_message(element: etree._Element | etree._ElementTree,
                     schema: etree.XMLSchema | None = None) -> list[SchemaError]:
    """Validate a LEXS message (or SR wrapper); an empty list means valid."""
    schema = schema if schema is not None else gateway_schema()
    with _lock:  # an XMLSchema's error_log belongs to its last validate() call
        if schema.validate(element):
            return []
        return errors_from_log(schema.error_log)
