"""`leis-gateway validate`: exit 0 valid, 1 invalid, 2 unusable input."""
from __future__ import annotations

import json

from leis_gateway.lexs.testing import SAMPLES
from leis_gateway.lexs.validate_cli import run_validate


def test_valid_files_and_directories(capsys):
    assert run_validate([str(SAMPLES)]) == 0
    assert "valid" in capsys.readouterr().out


def test_invalid_file_names_line_and_element(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text((SAMPLES / "structured-ssn.xml").read_text().replace(
        "<lexs:QueryMatch>exact", "<lexs:QueryMatch>roughly"))
    assert run_validate([str(bad)], as_json=True) == 1
    (result,) = json.loads(capsys.readouterr().out)
    assert not result["valid"] and result["errors"][0]["element"] == "lexs:QueryMatch"
    assert result["errors"][0]["line"] > 1


def test_soap_envelope_is_unwrapped(tmp_path):
    body = (SAMPLES / "data-item.xml").read_text().split("?>", 1)[1]
    envelope = tmp_path / "envelope.xml"
    envelope.write_text('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
                        '<sr:getDataItemRequest xmlns:sr="http://usdoj.gov/leisp/lexs/searchretrieve/3.1">'
                        f"{body}</sr:getDataItemRequest></soap:Body></soap:Envelope>")
    assert run_validate([str(envelope)]) == 0


def test_unusable_inputs(tmp_path):
    not_xml = tmp_path / "not.xml"
    not_xml.write_text("hello")
    dtd = tmp_path / "dtd.xml"
    dtd.write_text('<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>')
    assert run_validate([str(not_xml)]) == 2
    assert run_validate([str(dtd)]) == 2
    assert run_validate([str(tmp_path / "missing.xml")]) == 2
