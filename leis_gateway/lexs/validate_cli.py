"""`leis-gateway validate FILE...`: schema validation of LEXS 3.1 messages from the command line.

What "the LEXS message" of a document is, and what it is validated against:

| document (root, or the one child of a SOAP 1.1/1.2 Body) | validated element -> schema entry |
|---|---|
| a bare LEXS message (`lexs:*`) | the message -> `lexs/3.1/lexs.xsd` |
| an SR wrapper (`sr:doSearchResponse`, ...) | the wrapper -> `searchretrieve/3.1/search-retrieve.xsd` when the schema directory has it (the project's does); otherwise (the official release has no SR wrapper schema) the wrapper's shape is checked here against DESIGN.md's operation table (exactly one child, the right `lexs:` message) and that child -> `lexs.xsd` |
| `lexspd:doPublish` (Publish/Discover, as in the official N-DEx samples) | the `doPublish` -> `publish-discover/3.1/publish-discover.xsd` when present (official); else its one `lexs:PublishMessageContainer` -> `lexs.xsd` if that declares it; else (the project's SR-only schemas) every `lexs:DataItemPackage` inside -> `lexs.xsd`, reported as a partial check |

A schema directory is either an `xsd/` folder (holding `lexs/3.1/lexs.xsd`) or a release folder
holding `xsd/` (e.g. `../shared/lexs-3.1.4`). Default: the project's own `xsd/`.

Errors print as `file:line:column: element path: message` (the path from the document root, the
column of the offending element's start tag). Exit status: 0 all valid, 1 at least one invalid,
2 at least one unusable input (missing or unreadable file, not well-formed XML, a DTD, no LEXS
message found) or an unusable schema directory. `-` reads stdin; a directory validates every
`*.xml` under it. lxml (libxml2) does the validation: 0.4 s to compile the official schema set,
milliseconds per message (xmlschema needs 8 s to compile the official set).
"""
from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from lxml import etree

from leis_gateway.lexs.namespaces import LEXS, OPERATIONS, PREFIXES, SR
from leis_gateway.lexs.schema import XSD_DIR

__all__ = [
    "PUBLISH_DISCOVER",
    "Problem",
    "SchemaDirError",
    "SchemaSet",
    "Unusable",
    "Verdict",
    "check_bytes",
    "element_path",
    "load_schema_set",
    "parse_document",
    "run_validate",
    "validate_document",
]

SOAP_NS = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")
PUBLISH_DISCOVER = "http://usdoj.gov/leisp/lexs/publishdiscover/3.1"
XSD_NS = "http://www.w3.org/2001/XMLSchema"

_LEXS_ENTRY = Path("lexs", "3.1", "lexs.xsd")
_SR_ENTRY = Path("searchretrieve", "3.1", "search-retrieve.xsd")
_PD_ENTRY = Path("publish-discover", "3.1", "publish-discover.xsd")

#: SR wrapper local name -> the LEXS message local name it must hold (from DESIGN.md's table).
SR_WRAPPERS: dict[str, str] = {}
for _op in OPERATIONS.values():
    SR_WRAPPERS[_op.request_wrapper] = _op.request_message
    SR_WRAPPERS[_op.response_wrapper] = _op.response_message

_EXTRA_PREFIXES = {PUBLISH_DISCOVER: "lexspd", SOAP_NS[0]: "soap", SOAP_NS[1]: "soap12"}


# --- schema sets -----------------------------------------------------------------------------


class SchemaDirError(Exception):
    """The schema directory cannot be used (no lexs.xsd, or a schema that does not compile)."""


@lru_cache(maxsize=8)
def _compile(entry: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        return etree.XMLSchema(etree.parse(entry, parser))
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise SchemaDirError(f"cannot compile {entry}: {exc}") from exc


@dataclass(frozen=True)
class SchemaSet:
    """A directory of LEXS schemas and the entry points it offers."""

    root: Path
    lexs_entry: Path
    sr_entry: Path | None
    pd_entry: Path | None
    lexs_globals: frozenset[str]  # local names of the global elements lexs.xsd declares
    version: str

    @property
    def is_project(self) -> bool:
        return self.root == XSD_DIR.resolve()

    @property
    def label(self) -> str:
        kind = "project schemas" if self.is_project else "schemas"
        entries = ", ".join(str(e.relative_to(self.root)) for e in
                            (self.lexs_entry, self.sr_entry, self.pd_entry) if e is not None)
        return f"{kind} {self.root} (lexs.xsd version {self.version}; entry points: {entries})"

    def schema(self, kind: str) -> etree.XMLSchema:
        entry = {"lexs": self.lexs_entry, "sr": self.sr_entry, "pd": self.pd_entry}[kind]
        if entry is None:  # pragma: no cover - callers check the entry first
            raise SchemaDirError(f"{self.root} has no {kind} schema")
        return _compile(str(entry))


def load_schema_set(schema_dir: Path | str | None = None) -> SchemaSet:
    """The schemas under `schema_dir` (an `xsd/` folder or a release folder holding one)."""
    base = Path(schema_dir) if schema_dir is not None else XSD_DIR
    if not base.is_dir():
        raise SchemaDirError(f"schema directory {base} does not exist")
    for root in (base, base / "xsd"):
        lexs_entry = root / _LEXS_ENTRY
        if lexs_entry.is_file():
            break
    else:
        raise SchemaDirError(f"no {_LEXS_ENTRY.as_posix()} under {base} (nor under {base / 'xsd'})")
    root = root.resolve()
    try:
        lexs_doc = etree.parse(str(lexs_entry), etree.XMLParser(resolve_entities=False, no_network=True))
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SchemaDirError(f"cannot read {lexs_entry}: {exc}") from exc
    names = frozenset(e.get("name") for e in lexs_doc.getroot().iterfind(f"{{{XSD_NS}}}element") if e.get("name"))
    sr_entry, pd_entry = root / _SR_ENTRY, root / _PD_ENTRY
    return SchemaSet(
        root=root,
        lexs_entry=root / _LEXS_ENTRY,
        sr_entry=sr_entry if sr_entry.is_file() else None,
        pd_entry=pd_entry if pd_entry.is_file() else None,
        lexs_globals=names,
        version=lexs_doc.getroot().get("version", "unknown"),
    )


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One schema (or wrapper shape) violation."""

    line: int | None
    column: int | None
    path: str | None  # element path from the document root, e.g. /soap:Envelope/soap:Body/...
    element: str | None  # prefixed name of the offending element, e.g. "lexs:MaxItemMatches"
    message: str

    def location(self, name: str) -> str:
        where = name
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return where

    def format(self, name: str) -> str:
        return f"{self.location(name)}: {self.path or '?'}: {self.message}"


@dataclass
class Verdict:
    """What was validated in one document, and what is wrong with it."""

    message: str  # e.g. "lexs:SearchResponseMessage in sr:doSearchResponse in soap:Envelope"
    validated: list[str]  # element paths validated, each with its schema entry
    errors: list[Problem] = field(default_factory=list)
    note: str | None = None

    @property
    def valid(self) -> bool:
        return not self.errors


class Unusable(Exception):
    """No LEXS message can be validated in this input."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column


# --- documents ---------------------------------------------------------------------------------


def parse_document(data: bytes) -> etree._Element:
    """Parse untrusted XML: no DTD, no entities, no network."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line, column = getattr(exc, "position", (None, None)) or (None, None)
        raise Unusable(f"not well-formed XML: {exc.msg}", line, column) from None
    if root is None:
        raise Unusable("not XML")
    if root.getroottree().docinfo.doctype or root.getroottree().docinfo.internalDTD is not None:
        raise Unusable("a DOCTYPE is not allowed in a LEXS message")
    return root


def _prefixed(element: etree._Element) -> str:
    qname = etree.QName(element)
    if element.prefix:
        return f"{element.prefix}:{qname.localname}"
    prefix = PREFIXES.get(qname.namespace or "") or _EXTRA_PREFIXES.get(qname.namespace or "")
    return f"{prefix}:{qname.localname}" if prefix else qname.localname


def element_path(element: etree._Element) -> str:
    """`/a:Root/b:Child[2]/...` from the document root; indexes only where siblings share a name."""
    steps = []
    node = element
    while node is not None:
        step = _prefixed(node)
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                step += f"[{same.index(node) + 1}]"
        steps.append(step)
        node = parent
    return "/" + "/".join(reversed(steps))


def _children(element: etree._Element) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str)]


def _in(element: etree._Element, namespace: str) -> bool:
    return etree.QName(element).namespace == namespace


@dataclass
class _Plan:
    message: str
    targets: list[tuple[etree._Element, str]]  # (element, schema kind)
    problems: list[tuple[etree._Element, str]] = field(default_factory=list)  # shape errors
    note: str | None = None


def _plan(root: etree._Element, schemas: SchemaSet) -> _Plan:
    node, context = root, ""
    qname = etree.QName(root)
    if qname.namespace in SOAP_NS:
        if qname.localname != "Envelope":
            raise Unusable(f"{_prefixed(root)} is not a SOAP Envelope: no LEXS message found")
        bodies = [c for c in _children(root) if etree.QName(c).localname == "Body" and _in(c, qname.namespace)]
        if len(bodies) != 1:
            raise Unusable(f"the SOAP Envelope holds {len(bodies)} Body elements: no LEXS message found")
        content = _children(bodies[0])
        if len(content) != 1:
            raise Unusable(f"the SOAP Body holds {len(content)} elements, not one: no LEXS message found")
        node, context = content[0], f" in {_prefixed(root)}"
        if etree.QName(node).localname == "Fault" and _in(node, qname.namespace):
            code = node.findtext("faultcode") or node.findtext(f".//{{{qname.namespace}}}Value") or "?"
            text = node.findtext("faultstring") or node.findtext(f".//{{{qname.namespace}}}Text") or ""
            raise Unusable(f"a SOAP Fault ({code}: {text.strip()[:200]}), not a LEXS message")

    namespace, local = etree.QName(node).namespace, etree.QName(node).localname
    if namespace == SR:
        return _plan_sr(node, context, schemas)
    if namespace == PUBLISH_DISCOVER and local == "doPublish":
        return _plan_publish(node, context, schemas)
    if namespace == LEXS:
        if local == "PublishMessageContainer" and local not in schemas.lexs_globals:
            return _publish_packages(node, f"{_prefixed(node)}{context}", schemas)
        return _Plan(f"{_prefixed(node)}{context}", [(node, "lexs")])
    raise Unusable(f"no LEXS message found: {_prefixed(node)}{context} is neither a LEXS message, "
                   f"an SR wrapper nor a Publish/Discover doPublish")


def _plan_sr(wrapper: etree._Element, context: str, schemas: SchemaSet) -> _Plan:
    local = etree.QName(wrapper).localname
    children = _children(wrapper)
    inner = ", ".join(_prefixed(c) for c in children) or "nothing"
    message = f"{inner} in {_prefixed(wrapper)}{context}"
    if schemas.sr_entry is not None:
        return _Plan(message, [(wrapper, "sr")])
    # No SR wrapper schema (the official release): check the wrapper's shape, validate the message.
    plan = _Plan(message, [(c, "lexs") for c in children if _in(c, LEXS)])
    expected = SR_WRAPPERS.get(local)
    if expected is None:
        plan.problems.append((wrapper, f"{_prefixed(wrapper)} is not a LEXS 3.1 SR wrapper "
                                       f"(known: {', '.join(sorted(SR_WRAPPERS))})"))
    elif len(children) != 1 or etree.QName(children[0]).localname != expected or not _in(children[0], LEXS):
        where = children[1] if len(children) > 1 else (children[0] if children else wrapper)
        plan.problems.append((where, f"{_prefixed(wrapper)} must hold exactly one lexs:{expected}, "
                                     f"found {inner}"))
    return plan


def _plan_publish(do_publish: etree._Element, context: str, schemas: SchemaSet) -> _Plan:
    children = _children(do_publish)
    message = f"{', '.join(_prefixed(c) for c in children) or 'nothing'} in {_prefixed(do_publish)}{context}"
    if schemas.pd_entry is not None:
        return _Plan(message, [(do_publish, "pd")])
    if "PublishMessageContainer" in schemas.lexs_globals:
        plan = _Plan(message, [(c, "lexs") for c in children if _in(c, LEXS)])
        if len(children) != 1 or etree.QName(children[0]).localname != "PublishMessageContainer":
            plan.problems.append((children[1] if len(children) > 1 else do_publish,
                                  "lexspd:doPublish must hold exactly one lexs:PublishMessageContainer"))
        return plan
    return _publish_packages(do_publish, message, schemas)


def _publish_packages(node: etree._Element, message: str, schemas: SchemaSet) -> _Plan:
    packages = list(node.iter(f"{{{LEXS}}}DataItemPackage"))
    if "DataItemPackage" not in schemas.lexs_globals or not packages:
        raise Unusable(f"{message}: the schemas under {schemas.root} declare no Publish/Discover message "
                       f"(no publish-discover.xsd, no lexs:PublishMessageContainer)")
    return _Plan(message, [(p, "lexs") for p in packages], note=(
        f"partial check: these schemas declare no Publish/Discover message, so only the {len(packages)} "
        f"lexs:DataItemPackage(s) were validated (--schema-dir <official release> checks the whole doPublish)"))


# --- validation and error locations -------------------------------------------------------------

_lock = threading.Lock()
_CLARK = re.compile(r"\{([^}]*)\}([A-Za-z_][\w.-]*)")
_ELEMENT = re.compile(r"^Element '\{([^}]*)\}([^']+)'")
_STEP = re.compile(r"^(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)(?:\[(\d+)\])?$")


def _prefix_map(root: etree._Element) -> dict[str, str]:
    mapping = {uri: prefix for prefix, uri in root.nsmap.items() if prefix}
    for element in root.iter():
        if isinstance(element.tag, str) and element.prefix:
            mapping.setdefault(etree.QName(element).namespace, element.prefix)
    return {**PREFIXES, **_EXTRA_PREFIXES, **mapping}


def _pretty(message: str, prefixes: dict[str, str]) -> str:
    def name(match: re.Match) -> str:
        prefix = prefixes.get(match.group(1))
        return f"{prefix}:{match.group(2)}" if prefix else match.group(0)

    return _CLARK.sub(name, message.strip())


def _resolve(target: etree._Element, libxml_path: str | None) -> etree._Element | None:
    """The element a libxml2 error path (relative to the validated element) names."""
    if not libxml_path:
        return None
    steps = [s for s in libxml_path.split("/") if s]
    if not steps:
        return None
    first = _STEP.match(steps[0])
    if not first or first.group(2) != etree.QName(target).localname:
        return None
    node = target
    for step in steps[1:]:
        match = _STEP.match(step)
        if not match:
            return None  # text(), attributes: stay with the element found so far
        prefix, local, index = match.group(1), match.group(2), int(match.group(3) or 1)
        same = [c for c in _children(node) if etree.QName(c).localname == local]
        with_prefix = [c for c in same if c.prefix == prefix]
        candidates = with_prefix or same
        if len(candidates) < index:
            return None
        node = candidates[index - 1]
    return node


def _by_line(target: etree._Element, line: int | None, message: str) -> etree._Element | None:
    match = _ELEMENT.match(message)
    if not match or not line:
        return None
    tag = f"{{{match.group(1)}}}{match.group(2)}"
    for element in target.iter(tag):
        if element.sourceline == line:
            return element
    return None


class _Source:
    """The raw lines of the document, to find the column of an element's start tag."""

    def __init__(self, data: bytes | None, root: etree._Element):
        self.lines: list[str] = []
        self.root = root
        if data is None:
            return
        encoding = root.getroottree().docinfo.encoding or "utf-8"
        try:
            text = data.decode(encoding, errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        self.lines = re.split(r"\r\n|\r|\n", text)

    def column(self, element: etree._Element) -> int | None:
        line = element.sourceline
        if not self.lines or not line or line > len(self.lines):
            return None
        qualified = f"{element.prefix}:{etree.QName(element).localname}" if element.prefix else \
            etree.QName(element).localname
        pattern = re.compile("<" + re.escape(qualified) + r"(?=[\s/>])")
        # which occurrence on its line: count same-named elements starting on that line before it
        nth = 0
        for other in self.root.iter(element.tag):
            if other is element:
                break
            if other.sourceline == line and other.prefix == element.prefix:
                nth += 1
        found = list(pattern.finditer(self.lines[line - 1]))
        if len(found) > nth:
            return found[nth].start() + 1
        for back in range(line - 2, max(line - 40, -1), -1):  # a start tag spanning several lines
            found = list(pattern.finditer(self.lines[back]))
            if found:
                return found[-1].start() + 1
        return None


def _problem(element: etree._Element | None, line: int | None, message: str, source: _Source,
             fallback_path: str | None = None) -> Problem:
    if element is not None:
        return Problem(line=element.sourceline or line, column=source.column(element),
                       path=element_path(element), element=_prefixed(element), message=message)
    return Problem(line=line, column=None, path=fallback_path, element=None, message=message)


def validate_document(root: etree._Element, schemas: SchemaSet, source: bytes | None = None) -> Verdict:
    """Find the LEXS message in `root` and validate it (raises `Unusable` when there is none).

    `source`, the bytes `root` was parsed from, lets errors carry a column.
    """
    plan = _plan(root, schemas)
    lines = _Source(source, root)
    prefixes = _prefix_map(root)
    verdict = Verdict(message=plan.message, validated=[], note=plan.note)
    for element, message in plan.problems:
        verdict.errors.append(_problem(element, element.sourceline, message, lines))
    for target, kind in plan.targets:
        schema = schemas.schema(kind)
        entry = {"lexs": schemas.lexs_entry, "sr": schemas.sr_entry, "pd": schemas.pd_entry}[kind]
        verdict.validated.append(f"{element_path(target)} against {entry.relative_to(schemas.root).as_posix()}")
        with _lock:  # an XMLSchema's error_log belongs to its last validate() call
            if schema.validate(target):
                continue
            entries = list(schema.error_log)
        for entry_ in entries:
            element = _resolve(target, getattr(entry_, "path", None))
            if element is None:
                element = _by_line(target, entry_.line, entry_.message)
            fallback = getattr(entry_, "path", None)
            verdict.errors.append(_problem(element, entry_.line or None, _pretty(entry_.message, prefixes),
                                           lines, fallback))
    return verdict


# --- the command ---------------------------------------------------------------------------------


def _inputs(names: list[str]) -> list[tuple[str, bytes | None, str | None]]:
    found: list[tuple[str, bytes | None, str | None]] = []
    for name in names:
        if name == "-":
            found.append(("<stdin>", sys.stdin.buffer.read(), None))
            continue
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".xml")
            if not files:
                found.append((name, None, "a directory holding no *.xml file"))
        else:
            files = [path]
        for item in files:
            try:
                found.append((str(item), item.read_bytes(), None))
            except OSError as exc:
                found.append((str(item), None, exc.strerror or str(exc)))
    return found


def check_bytes(name: str, data: bytes | None, problem: str | None, schemas: SchemaSet) -> dict:
    """One input's result as a JSON-able dict (`verdict`: valid | invalid | unusable)."""
    result: dict = {"file": name, "verdict": "unusable", "valid": False, "unusable": problem,
                    "unusable_line": None, "unusable_column": None, "message": None, "validated": [],
                    "note": None, "schema": str(schemas.root), "errors": []}
    if problem is not None or data is None:
        return result
    try:
        verdict = validate_document(parse_document(data), schemas, data)
    except Unusable as exc:
        result.update(unusable=exc.reason, unusable_line=exc.line, unusable_column=exc.column)
        return result
    result.update(verdict="valid" if verdict.valid else "invalid", valid=verdict.valid, unusable=None,
                  message=verdict.message, validated=verdict.validated, note=verdict.note,
                  errors=[asdict(e) for e in verdict.errors])
    return result


def run_validate(files: list[str], *, schema_dir: Path | str | None = None, as_json: bool = False) -> int:
    """Validate `files` (paths, directories, `-`); print the results; return the exit status."""
    try:
        schemas = load_schema_set(schema_dir)
    except SchemaDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = []
    try:
        for name, data, problem in _inputs(files):
            results.append(check_bytes(name, data, problem, schemas))
    except SchemaDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = {v: sum(r["verdict"] == v for r in results) for v in ("valid", "invalid", "unusable")}
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            _print_result(r)
        total = len(results)
        print(f"{total} file{'s' if total != 1 else ''}: {counts['valid']} valid, {counts['invalid']} invalid, "
              f"{counts['unusable']} unusable; against {schemas.label}")
    return 2 if counts["unusable"] else 1 if counts["invalid"] else 0


def _print_result(r: dict) -> None:
    name = r["file"]
    if r["verdict"] == "unusable":
        where = name
        if r["unusable_line"]:
            where += f":{r['unusable_line']}" + (f":{r['unusable_column']}" if r["unusable_column"] else "")
        print(f"{where}: unusable: {r['unusable']}")
        return
    for error in r["errors"]:
        print(Problem(**error).format(name))
    if r["note"]:
        print(f"{name}: note: {r['note']}")
    if r["valid"]:
        print(f"{name}: valid ({r['message']})")
    else:
        count = len(r["errors"])
        print(f"{name}: invalid, {count} error{'s' if count != 1 else ''} ({r['message']})")
