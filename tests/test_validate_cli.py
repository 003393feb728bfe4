"""`leis-gateway validate`: the official N-DEx samples' verdicts, corrupted copies, envelopes, wrappers, exits.

The official release (`../shared/lexs-3.1.4`) is reference data; tests that need it skip loudly
when it is absent. Two cases run the real console script in a subprocess; the rest call `cli.main`.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from leis_gateway import cli
from leis_gateway.config import PROJECT_ROOT
from leis_gateway.lexs import requests as lexs_requests
from leis_gateway.lexs.testing import SAMPLES as REQUEST_SAMPLES

SHARED = PROJECT_ROOT.parent / "shared" / "lexs-3.1.4"
OFFICIAL_SAMPLES = SHARED / "samples"
OFFICIAL_XSD = SHARED / "xsd"
CONSOLE = Path(sys.executable).parent / "leis-gateway"
SCHEMA_DIRS = {"official": OFFICIAL_XSD, "project": None}
ERROR_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<path>/\S+): (?P<message>.+)$")


def needs_official() -> None:
    if not (OFFICIAL_XSD / "lexs" / "3.1" / "lexs.xsd").is_file() or not OFFICIAL_SAMPLES.is_dir():
        pytest.skip(f"OFFICIAL LEXS 3.1.4 RELEASE NOT FOUND at {SHARED}: the official samples' verdicts and "
                    f"official-schema validation are NOT CHECKED")


def validate(capsys, *args: str) -> tuple[int, str]:
    status = cli.main(["validate", *args])
    return status, capsys.readouterr().out


def schema_args(which: str) -> list[str]:
    if which == "official":
        needs_official()
        return ["--schema-dir", str(OFFICIAL_XSD)]
    return []


def errors_in(out: str) -> list[re.Match]:
    return [m for m in map(ERROR_LINE.match, out.splitlines()) if m]


# --- the official samples -------------------------------------------------------------------------


def test_console_script_gives_the_official_samples_their_true_verdict_valid():
    """Nine real N-DEx doPublish messages: valid against the official publish-discover.xsd (and xmlschema agrees)."""
    needs_official()
    run = subprocess.run([str(CONSOLE), "validate", str(OFFICIAL_SAMPLES), "--schema-dir", str(SHARED)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    samples = sorted(OFFICIAL_SAMPLES.glob("*.xml"))
    assert len(samples) == 9
    for sample in samples:
        assert f"{sample}: valid (lexs:PublishMessageContainer in lexspd:doPublish)" in run.stdout
    assert "9 files: 9 valid, 0 invalid, 0 unusable" in run.stdout
    assert "publish-discover/3.1/publish-discover.xsd" in run.stdout  # the right entry point was chosen


def test_project_schemas_agree_with_the_official_verdict_on_every_sample(capsys):
    needs_official()
    verdicts = {}
    for which in ("official", "project"):
        status, out = validate(capsys, str(OFFICIAL_SAMPLES), "--json", *schema_args(which))
        verdicts[which] = {Path(r["file"]).name: r for r in json.loads(out)}
        assert status == 0
    assert verdicts["official"].keys() == verdicts["project"].keys() and len(verdicts["official"]) == 9
    for name, official in verdicts["official"].items():
        ours = verdicts["project"][name]
        assert official["verdict"] == ours["verdict"] == "valid", name
        # official: the whole doPublish against publish-discover.xsd; ours (SR only): its DataItemPackages
        assert official["validated"] == ["/lexspd:doPublish against publish-discover/3.1/publish-discover.xsd"]
        assert ours["validated"] and all("/lexs:DataItemPackage" in v and "lexs/3.1/lexs.xsd" in v
                                         for v in ours["validated"])
        assert official["note"] is None and "partial check" in ours["note"]


def corrupt(tmp_path: Path, sample: str, transform) -> tuple[Path, list[str]]:
    lines = (OFFICIAL_SAMPLES / sample).read_text(encoding="utf-8").split("\n")
    changed = transform(lines)
    path = tmp_path / f"corrupt-{sample}"
    path.write_text("\n".join(changed), encoding="utf-8")
    return path, changed


def first_line(lines: list[str], text: str, after: int = 0) -> int:
    return next(i for i, line in enumerate(lines) if i >= after and text in line) + 1


@pytest.mark.parametrize("which", ["official", "project"])
def test_a_renamed_element_is_named_with_its_line_column_and_path(tmp_path, capsys, which):
    needs_official()
    sample = "burglary-incident-w-arrest-basic-lexs.xml"
    original = (OFFICIAL_SAMPLES / sample).read_text(encoding="utf-8").split("\n")
    package = first_line(original, "<lexs:DataItemPackage")
    target = first_line(original, "<nc:PersonSurName>Duck", after=package)

    def rename(lines):
        lines = list(lines)
        lines[target - 1] = lines[target - 1].replace("nc:PersonSurName", "nc:PersonSurNam")
        return lines

    path, lines = corrupt(tmp_path, sample, rename)
    status, out = validate(capsys, str(path), *schema_args(which))
    assert status == 1, out
    (error,) = errors_in(out)
    assert error["file"] == str(path) and int(error["line"]) == target
    assert lines[target - 1][int(error["column"]) - 1:].startswith("<nc:PersonSurNam>")
    assert error["path"].startswith("/lexspd:doPublish/lexs:PublishMessageContainer/lexs:PublishMessage/"
                                    "lexs:DataItemPackage/")
    assert error["path"].endswith("/nc:PersonName/nc:PersonSurNam")
    assert "nc:PersonSurNam" in error["message"] and "not expected" in error["message"]
    assert f"{path}: invalid, 1 error" in out


@pytest.mark.parametrize("which", ["official", "project"])
def test_a_removed_required_element_is_reported_where_it_is_missing(tmp_path, capsys, which):
    needs_official()
    sample = "missing-person-lexs.xml"
    original = (OFFICIAL_SAMPLES / sample).read_text(encoding="utf-8").split("\n")
    removed = first_line(original, "<lexs:DataItemID>")
    following = removed + 1  # the next element, which libxml2 finds where DataItemID was required

    def remove(lines):
        lines = list(lines)
        lines[removed - 1] = ""  # keep the line numbering
        return lines

    path, lines = corrupt(tmp_path, sample, remove)
    status, out = validate(capsys, str(path), *schema_args(which))
    assert status == 1, out
    (error,) = errors_in(out)
    assert int(error["line"]) == following
    assert "lexs:DataItemID" in error["message"]
    assert lines[following - 1][int(error["column"]) - 1:].startswith("<lexs:")


def test_publish_metadata_is_checked_only_by_a_schema_set_that_declares_publish_discover(tmp_path, capsys):
    needs_official()
    sample = "service-call-lexs.xml"
    original = (OFFICIAL_SAMPLES / sample).read_text(encoding="utf-8").split("\n")
    version = first_line(original, "<lexs:LEXSVersion>")

    def rename(lines):
        lines = list(lines)
        lines[version - 1] = lines[version - 1].replace("LEXSVersion", "LexsVersion")
        return lines

    path, _ = corrupt(tmp_path, sample, rename)
    status, out = validate(capsys, str(path), *schema_args("official"))
    assert status == 1 and int(errors_in(out)[0]["line"]) == version
    # The project's schemas are SR-only: they cannot see it, and say so rather than pretend.
    status, out = validate(capsys, str(path))
    assert status == 0 and "note: partial check" in out


# --- SOAP envelopes and SR wrappers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def capabilities_answer(gateway) -> bytes:
    """A real signed answer of the gateway: one line of XML, a SOAP envelope, an SR wrapper."""
    message = lexs_requests.service_provider_request(
        lexs_requests.Requester("Test Agency", "TESTSYS", "AZ0000000", "det.smith"))
    response = gateway.post(lexs_requests.soap_envelope(lexs_requests.wrap_request("getCapabilities", message)),
                            sign=True)
    assert response.status_code == 200
    return response.content


@pytest.mark.parametrize("which", ["official", "project"])
def test_a_signed_soap_answer_is_unwrapped_to_its_lexs_message(tmp_path, capsys, capabilities_answer, which):
    path = tmp_path / "answer.xml"
    path.write_bytes(capabilities_answer)
    status, out = validate(capsys, str(path), "--json", *schema_args(which))
    (result,) = json.loads(out)
    assert status == 0 and result["valid"], result
    assert result["message"].startswith("lexs:CapabilitiesResponseMessage in ")
    assert result["message"].endswith(":getCapabilitiesResponse in soap11env:Envelope")
    expected = "search-retrieve.xsd" if which == "project" else "lexs/3.1/lexs.xsd"
    assert expected in result["validated"][0]


@pytest.mark.parametrize("which", ["official", "project"])
def test_errors_on_a_one_line_envelope_have_exact_columns(tmp_path, capsys, capabilities_answer, which):
    bad = capabilities_answer.replace(b"<lexs:ResultCode>Success<", b"<lexs:ResultCode>Splendid<")
    assert bad != capabilities_answer
    path = tmp_path / "bad-answer.xml"
    path.write_bytes(bad)
    status, out = validate(capsys, str(path), *schema_args(which))
    assert status == 1
    errors = errors_in(out)
    assert errors, out
    text = bad.decode().split("\n")
    for error in errors:
        assert text[int(error["line"]) - 1][int(error["column"]) - 1:].startswith("<lexs:ResultCode>Splendid")
        assert error["path"].startswith("/soap11env:Envelope/soap11env:Body/")
        assert error["path"].endswith("/lexs:CapabilitiesResponseMessage/lexs:ResponseMetadata/lexs:ResultCode")


@pytest.mark.parametrize("which", ["official", "project"])
def test_an_sr_wrapper_holding_the_wrong_message_is_invalid(tmp_path, capsys, which):
    """The official release has no SR wrapper schema: the wrapper's shape is checked from the operation table."""
    body = (REQUEST_SAMPLES / "data-item.xml").read_text().split("?>", 1)[1]
    wrong = tmp_path / "wrong.xml"
    wrong.write_text('<sr:getAttachmentRequest xmlns:sr="http://usdoj.gov/leisp/lexs/searchretrieve/3.1">'
                     f"{body}</sr:getAttachmentRequest>")
    status, out = validate(capsys, str(wrong), *schema_args(which))
    assert status == 1, out
    assert "lexs:DataItemRequestMessage" in out and "AttachmentRequestMessage" in out
    right = tmp_path / "right.xml"
    right.write_text('<sr:getDataItemRequest xmlns:sr="http://usdoj.gov/leisp/lexs/searchretrieve/3.1">'
                     f"{body}</sr:getDataItemRequest>")
    assert validate(capsys, str(right), *schema_args(which))[0] == 0


# --- inputs and exit statuses ------------------------------------------------------------------------


def test_stdin_through_the_console_script_names_the_line():
    text = (REQUEST_SAMPLES / "structured-ssn.xml").read_text()
    line = first_line(text.split("\n"), "<lexs:QueryMatch>exact")
    run = subprocess.run([str(CONSOLE), "validate", "-"], input=text.replace("<lexs:QueryMatch>exact",
                                                                               "<lexs:QueryMatch>roughly"),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    (error,) = errors_in(run.stdout)
    assert error["file"] == "<stdin>" and int(error["line"]) == line
    assert error["path"].endswith("/lexs:DigestQueryStatement/lexs:QueryMatch") and "'roughly'" in error["message"]


def test_a_directory_is_walked_and_summarised(tmp_path, capsys):
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "ok.xml").write_bytes((REQUEST_SAMPLES / "text-search.xml").read_bytes())
    (tmp_path / "bad.xml").write_text((REQUEST_SAMPLES / "structured-ssn.xml").read_text().replace(
        "<lexs:QueryMatch>exact", "<lexs:QueryMatch>roughly"))
    (tmp_path / "notes.txt").write_text("not looked at")
    status, out = validate(capsys, str(tmp_path))
    assert status == 1
    assert f"{tmp_path / 'nested' / 'ok.xml'}: valid (lexs:TextSearchRequestMessage)" in out
    assert "2 files: 1 valid, 1 invalid, 0 unusable" in out
    (tmp_path / "broken.xml").write_text("<lexs:Oops")
    status, out = validate(capsys, str(tmp_path))
    assert status == 2 and "3 files: 1 valid, 1 invalid, 1 unusable" in out


@pytest.mark.parametrize("content, reason", [
    (None, "No such file or directory"),
    ("hello", "not well-formed XML"),
    ('<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "DOCTYPE"),
    ("<html><body>500</body></html>", "no LEXS message found"),
    ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Server'
     "</faultcode><faultstring>boom</faultstring></s:Fault></s:Body></s:Envelope>", "SOAP Fault"),
    ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>', "holds 0 elements"),
])
def test_unusable_inputs_exit_2(tmp_path, capsys, content, reason):
    path = tmp_path / "input.xml"
    if content is not None:
        path.write_text(content)
    status, out = validate(capsys, str(path), str(REQUEST_SAMPLES / "text-search.xml"))
    assert status == 2, out  # unusable wins over valid
    assert f"{path}" in out and "unusable" in out and reason in out


def test_not_well_formed_xml_is_located(tmp_path, capsys):
    path = tmp_path / "truncated.xml"
    path.write_text("<a>\n  <b>\n</a>\n")
    status, out = validate(capsys, str(path))
    assert status == 2 and re.search(rf"^{re.escape(str(path))}:3:\d+: unusable: not well-formed XML", out, re.M)


def test_schema_dir_layouts_and_a_bad_schema_dir(tmp_path, capsys):
    sample = str(REQUEST_SAMPLES / "data-item.xml")
    assert validate(capsys, sample, "--schema-dir", str(PROJECT_ROOT / "xsd"))[0] == 0
    status = cli.main(["validate", sample, "--schema-dir", str(tmp_path)])
    assert status == 2 and "no lexs/3.1/lexs.xsd" in capsys.readouterr().err
    if (OFFICIAL_XSD / "lexs" / "3.1" / "lexs.xsd").is_file():
        for layout in (SHARED, OFFICIAL_XSD):  # a release folder or its xsd/ folder
            assert validate(capsys, sample, "--schema-dir", str(layout))[0] == 0


def test_json_output_carries_every_field(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text((REQUEST_SAMPLES / "structured-ssn.xml").read_text().replace(
        "<lexs:QueryMatch>exact", "<lexs:QueryMatch>roughly"))
    status, out = validate(capsys, str(bad), "--json")
    (result,) = json.loads(out)
    assert status == 1 and result["verdict"] == "invalid" and result["valid"] is False
    (error,) = result["errors"]
    assert set(error) == {"line", "column", "path", "element", "message"}
    assert error["element"] == "lexs:QueryMatch" and error["line"] > 1 and error["column"] >= 1
