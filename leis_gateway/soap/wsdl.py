"""The static WSDL and the schemas it imports, served at `?wsdl` and `?xsd=<path>`.

spyne cannot describe external-XSD bodies, so the gateway serves its own hand-written WSDL.
Everything is prepared once at start-up: the public address is written into `soap:address`
and every relative `schemaLocation` becomes a `?xsd=` link to the same endpoint, so a client
can load the whole contract from the endpoint alone.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from lxml import etree

SOAP_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"


class ContractDocuments:
    def __init__(self, wsdl_path: Path, public_url: str) -> None:
        self.root_dir = wsdl_path.resolve().parent.parent
        self.public_url = public_url
        self.documents: dict[str, bytes] = {}
        self.wsdl = self._rewrite(wsdl_path.resolve(), is_wsdl=True)

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root_dir).as_posix()

    def _rewrite(self, path: Path, is_wsdl: bool = False) -> bytes:
        tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
        for element in tree.iter(f"{{{XSD_NS}}}import", f"{{{XSD_NS}}}include"):
            location = element.get("schemaLocation")
            if not location or "://" in location:
                continue
            target = (path.parent / location).resolve()
            key = self._key(target)  # raises for anything outside the project's folders
            element.set("schemaLocation", f"{self.public_url}?xsd={key}")
            if key not in self.documents:
                self.documents[key] = b""  # mark before recursing: imports may be cyclic
                self.documents[key] = self._rewrite(target)
        if is_wsdl:
            for address in tree.iter(f"{{{SOAP_BINDING_NS}}}address"):
                address.set("location", self.public_url)
        return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")

    def serve(self, environ: dict) -> tuple[str, list[tuple[str, str]], bytes] | None:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if "wsdl" in query or environ.get("QUERY_STRING", "").lower() == "wsdl":
            body = self.wsdl
        elif "xsd" in query and query["xsd"][0] in self.documents:
            body = self.documents[query["xsd"][0]]
        else:
            return None
        return "200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))], body
