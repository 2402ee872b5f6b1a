"""openapi.json is generated from the models and committed; it must not drift."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from relay_tools.cli import main
from relay_tools.openapi import openapi, openapi_json

from ..conftest import ROOT

SAMPLES = ROOT / "events" / "samples"


def test_committed_openapi_matches_the_models():
    committed = (ROOT / "openapi.json").read_text()
    assert committed == openapi_json(), "openapi.json is stale: run `make openapi`"


def test_cli_prints_the_same_document(capsys, tmp_path):
    assert main(["openapi", "--output", str(tmp_path / "o.json")]) == 0
    assert (tmp_path / "o.json").read_text() == openapi_json()


def _validator(name: str) -> Draft202012Validator:
    doc = openapi()
    text = json.dumps(doc["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    defs = json.loads(text)
    return Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": defs})


def test_document_shape():
    doc = openapi()
    post = doc["paths"]["/v1/events"]["post"]
    headers = {p["name"]: p for p in post["parameters"]}
    assert headers["X-Relay-Signature"]["required"] is True
    assert headers["X-Relay-Source"]["required"] is False  # a source other than default names itself
    assert set(post["responses"]) == {"202", "400", "401", "413", "415", "503"}
    Draft202012Validator.check_schema(doc["components"]["schemas"]["IngestRequest"])


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.json") if p.name != "invalid.json"))
def test_samples_match_the_request_schema(sample):
    event = json.loads((SAMPLES / sample).read_text())
    errors = list(_validator("IngestRequest").iter_errors({"events": [event]}))
    assert errors == []


def test_invalid_sample_breaks_the_schema():
    event = json.loads((SAMPLES / "invalid.json").read_text())
    assert list(_validator("IngestRequest").iter_errors({"events": [event]}))  # unknown field "colour"
