"""The LEXS SR conformance suite: all checks pass against the gateway, and fail clearly against broken endpoints.

The broken endpoint is a small WSGI app behind the same mutual-TLS server: it serves the gateway's
real WSDL (so zeep loads it) and answers every operation badly, in one of three ways.
"""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from leis_gateway.conformance import CHECKS
from leis_gateway.conformance.__main__ import OFFICIAL_XSD, main
from leis_gateway.config import PROJECT_ROOT
from leis_gateway.lexs.namespaces import LEXS, OPERATION_BY_REQUEST_WRAPPER, SR
from leis_gateway.security.tls import serving
from leis_gateway.soap.wsdl import ContractDocuments

SCRIPT = PROJECT_ROOT / "scripts" / "conformance"
ALL_CHECKS = [c.name for c in CHECKS]


def client_args(home: Path, endpoint: str, agreement: str = "ndex") -> list[str]:
    pki = home / "pki"
    return ["--endpoint", endpoint, "--cert", str(pki / "agencies" / f"{agreement}.crt"),
            "--key", str(pki / "agencies" / f"{agreement}.key"), "--ca", str(pki / "ca.crt")]


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(args), out=out)
    return status, out.getvalue()


def table(out: str) -> dict[str, tuple[str, str]]:
    """CHECK -> (PASS|FAIL, reason) from the printed table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ALL_CHECKS and parts[1] in ("PASS", "FAIL"):
            rows[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return rows


def junit_failures(path: Path) -> dict[str, str]:
    root = etree.parse(str(path)).getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ALL_CHECKS
    failures = {c.get("name"): c.find("failure").get("message") for c in cases if c.find("failure") is not None}
    assert suite.get("failures") == str(len(failures)) and suite.get("tests") == str(len(ALL_CHECKS))
    return failures


# --- against the gateway --------------------------------------------------------------------------


def test_the_script_passes_every_check_against_the_gateway(gateway, tmp_path):
    """scripts/conformance (the bash wrapper, the project's venv) against the real TLS gateway."""
    junit = tmp_path / "junit.xml"
    result = subprocess.run(
        [str(SCRIPT), *client_args(gateway.home, gateway.url), "--agreement", "ndex",
         "--server-cert", str(gateway.home / "pki" / "server.crt"), "--junit", str(junit)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result.stdout)
    assert list(rows) == ALL_CHECKS
    assert all(verdict == "PASS" for verdict, _ in rows.values()), result.stdout
    assert f"{len(ALL_CHECKS)} checks: {len(ALL_CHECKS)} passed, 0 failed" in result.stdout
    assert "pinned to --server-cert" in result.stdout
    if (OFFICIAL_XSD / "lexs" / "3.1" / "lexs.xsd").is_file():
        assert "schemas:    the official LEXS release" in result.stdout
    else:
        assert "the official release is not at" in result.stdout  # said, not hidden
    assert junit_failures(junit) == {}
    # what the checks saw is what the brief asks for
    assert "UnstructuredSearchNotSupported" in rows["search:text"][1]
    assert "BusinessRuleNotMet" in rows["refusal:no-purpose"][1]
    assert "InvalidRequest" in rows["refusal:schema-invalid"][1]
    assert "NumberItemMatches 0" in rows["search:no-hit"][1]


def test_without_a_pinned_certificate_the_signer_is_reported(gateway):
    status, out = run(*client_args(gateway.home, gateway.url), "--schema-dir", str(PROJECT_ROOT / "xsd"))
    assert status == 0, out
    assert "not pinned (no --server-cert)" in out and "the project's own schemas (--schema-dir)" in out
    verdict, reason = table(out)["signed"]
    assert verdict == "PASS" and "any valid signer accepted" in reason and "CN=localhost" in reason


def test_answers_signed_by_someone_else_fail_the_signature_check(gateway, tmp_path):
    junit = tmp_path / "junit.xml"
    status, out = run(*client_args(gateway.home, gateway.url), "--junit", str(junit),
                      "--server-cert", str(gateway.home / "pki" / "agencies" / "azlink.crt"))
    assert status == 1
    assert table(out)["signed"][0] == "FAIL" and "WrongSigner" in table(out)["signed"][1]
    assert [name for name, (verdict, _) in table(out).items() if verdict == "FAIL"] == ["signed"]
    assert list(junit_failures(junit)) == ["signed"]


# --- against broken endpoints -----------------------------------------------------------------------


def _broken_answer(mode: str, request: bytes) -> tuple[str, str, bytes]:
    if mode == "html-500":
        return "500 Internal Server Error", "text/html", b"<html><body><h1>Internal Server Error</h1></body></html>"
    body = etree.fromstring(request).find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    operation = OPERATION_BY_REQUEST_WRAPPER[etree.QName(body[0]).localname]
    if mode == "fault":
        return "500 Internal Server Error", "text/xml", (
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
            b"<faultcode>s:Server</faultcode><faultstring>not implemented</faultstring></s:Fault></s:Body></s:Envelope>")
    # "unsigned-invalid": the right wrapper and message, no WS-Security, no SRMessageMetadata, always Success
    return "200 OK", "text/xml; charset=utf-8", (
        f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        f'<sr:{operation.response_wrapper} xmlns:sr="{SR}"><lexs:{operation.response_message} xmlns:lexs="{LEXS}">'
        f"<lexs:ResponseMetadata><lexs:ResultCode>Success</lexs:ResultCode></lexs:ResponseMetadata>"
        f"</lexs:{operation.response_message}></sr:{operation.response_wrapper}></s:Body></s:Envelope>").encode()


@pytest.fixture(scope="module")
def broken(gateway):
    """A mutual-TLS endpoint serving the real WSDL and answering badly; `broken.mode` picks how."""

    class Broken:
        mode = "unsigned-invalid"
        url = ""
        contract: ContractDocuments | None = None

        def __call__(self, environ, start_response):
            if self.contract is None:
                self.contract = ContractDocuments(PROJECT_ROOT / "wsdl" / "lexs-sr.wsdl", self.url)
            if environ["REQUEST_METHOD"] == "GET":
                served = self.contract.serve(environ)
                if served is None:
                    start_response("404 Not Found", [("Content-Type", "text/plain")])
                    return [b"not found"]
                status, headers, body = served
                start_response(status, headers)
                return [body]
            request = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            status, content_type, body = _broken_answer(self.mode, request)
            start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body]

    app = Broken()
    pki = gateway.home / "pki"
    with serving(app, cert=pki / "server.crt", key=pki / "server.key", ca=pki / "ca.crt") as base:
        app.url = base + "/lexs/sr/3.1"
        yield app


def test_unsigned_schema_invalid_answers_fail_by_name(broken, gateway, tmp_path):
    broken.mode = "unsigned-invalid"
    junit = tmp_path / "junit.xml"
    status, out = run(*client_args(gateway.home, broken.url), "--junit", str(junit), "-v")
    assert status == 1, out
    rows = table(out)
    assert list(rows) == ALL_CHECKS
    failed = {name for name, (verdict, _) in rows.items() if verdict == "FAIL"}
    assert {"schema-valid", "signed", "refusal:no-purpose", "refusal:schema-invalid", "search:no-hit",
            "capabilities"} <= failed
    assert rows["wsdl-loads"][0] == rows["wsdl-operations"][0] == "PASS"  # the contract itself is fine
    assert "NoSignature" in rows["signed"][1]
    assert "SRMessageMetadata" in rows["schema-valid"][1] or "Missing child" in rows["schema-valid"][1]
    assert "expected ResultCode Error + BusinessRuleNotMet, got ResultCode Success" in rows["refusal:no-purpose"][1]
    assert "NOT CONFORMANT" in out
    failures = junit_failures(junit)
    assert set(failures) == failed and "NoSignature" in failures["signed"]


def test_html_500_answers_fail_every_operation(broken, gateway, tmp_path):
    broken.mode = "html-500"
    junit = tmp_path / "junit.xml"
    status, out = run(*client_args(gateway.home, broken.url), "--junit", str(junit))
    assert status == 1
    rows = table(out)
    for name in ALL_CHECKS:
        if name.startswith("answers:"):
            assert rows[name][0] == "FAIL" and "HTTP 500 text/html: not a SOAP envelope" in rows[name][1], name
    assert rows["schema-valid"][0] == rows["signed"][0] == "FAIL"
    assert len(junit_failures(junit)) >= len(ALL_CHECKS) - 2


def test_soap_faults_for_business_refusals_fail_the_refusal_checks(broken, gateway):
    broken.mode = "fault"
    status, out = run(*client_args(gateway.home, broken.url))
    assert status == 1
    rows = table(out)
    for name in ("refusal:no-purpose", "refusal:schema-invalid"):
        assert rows[name][0] == "FAIL" and "SOAP Fault s:Server: not implemented" in rows[name][1]


def test_an_unreachable_endpoint_fails_every_check_without_crashing(gateway, tmp_path):
    junit = tmp_path / "junit.xml"
    status, out = run(*client_args(gateway.home, "https://127.0.0.1:9/lexs/sr/3.1"), "--junit", str(junit),
                      "--timeout", "5")
    assert status == 1
    rows = table(out)
    assert all(verdict == "FAIL" for verdict, _ in rows.values())
    assert "ConnectionError" in rows["wsdl-loads"][1]
    assert "not sent: the WSDL did not load" in rows["answers:getCapabilities"][1]
    assert len(junit_failures(junit)) == len(ALL_CHECKS)


def test_usage_errors_exit_2(gateway, tmp_path):
    assert run("--endpoint", gateway.url, "--cert", str(tmp_path / "missing.crt"), "--key", "k", "--ca", "c")[0] == 2
    args = client_args(gateway.home, gateway.url)
    assert run(*args, "--schema-dir", str(tmp_path))[0] == 2
    assert run(*args, "--only", "no-such-check")[0] == 2
    status, out = run("--list")
    assert status == 0 and all(name in out for name in ALL_CHECKS)


def test_an_agreement_picks_the_demo_pki_files_under_leis_home(gateway, monkeypatch):
    monkeypatch.setenv("LEIS_HOME", str(gateway.home))
    status, out = run("--endpoint", gateway.url, "--agreement", "azlink", "--only", "wsdl-loads",
                      "--only", "answers:getCapabilities", "--only", "signed")
    assert status == 0, out
    assert "CN=azlink" in out and "agreement azlink" in out
    assert list(table(out)) == ["wsdl-loads", "answers:getCapabilities", "signed"]
