"""`relay preview`: human and JSON output, exit codes 0 / 1 / 2, masking, no tracebacks."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relay_tools.cli import main

from ..conftest import NOW_MS, ROOT, SECRETS, app_event, web_event

SAMPLES = ROOT / "events" / "samples"
CONFIG_TOML = f"""
[ingest]
secrets = ["{SECRETS["signing"]}"]
[applovin]
pixel_id = "PIXEL123"
api_key = "{SECRETS["applovin"]}"
[appsflyer]
key = "{SECRETS["appsflyer"]}"
ios_app_id = "id123456789"
android_app_id = "com.example.app"
[adroll]
advertisable_eid = "ADV_EID"
pixel_eid = "PIX_EID"
token = "{SECRETS["adroll"]}"
app_url_domain = "app.example.com"
"""


@pytest.fixture
def cfg(tmp_path) -> str:
    path = tmp_path / "relay.toml"
    path.write_text(CONFIG_TOML)
    return str(path)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def write_json(tmp_path, data, name="event.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def fresh(data: dict) -> dict:
    """Sample-style events carry no timestamp (default: time received); tests use a recent one."""
    data = dict(data)
    data.pop("timestamp", None)
    return data


def test_human_output_shows_exact_requests_with_secrets_masked(cfg):
    code, out, err = run("preview", str(SAMPLES / "web_purchase.json"), "--config", cfg)
    assert code == 0, err
    assert "event 1/1: purchase (event_id web-purchase-0001)" in out
    applovin = "  applovin: ok (identifiers: email, phone, click_id, cookie, ip, user_agent)\n"
    assert applovin + "    POST https://b.applovin.com/v1/event?pixel_id=PIXEL123\n    Authorization: ***\n" in out
    adroll = "  adroll: ok (identifiers: email, cookie, ip, user_agent)\n"
    assert adroll + "    POST https://srv.adroll.com/api?advertisable=ADV_EID\n    Authorization: ***\n" in out
    assert "  appsflyer: skipped: AppsFlyer's S2S in-app events API takes app events only" in out
    assert '"dedupe_id": "web-purchase-0001"' in out
    for secret in SECRETS.values():
        assert secret not in out and secret not in err
    # the sample's clear-text email and phone never appear in what would be sent
    assert "jane.doe" not in out.lower() and "555-1212" not in out and "6505551212" not in out


def test_json_output_one_object_per_event(cfg, tmp_path):
    body = {"events": [fresh(web_event(event_id="a")), fresh(app_event("android", event_id="b"))]}
    code, out, _ = run("preview", write_json(tmp_path, body), "--config", cfg, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["event_id"] for line in lines] == ["a", "b"]
    first = lines[0]["vendors"]
    assert first["applovin"]["status"] == "ok"
    assert first["applovin"]["request"]["method"] == "POST"
    assert first["applovin"]["request"]["headers"] == {"Authorization": "***", "Content-Type": "application/json"}
    assert first["applovin"]["request"]["json"]["events"][0]["dedupe_id"] == "a"
    assert first["appsflyer"] == {"status": "skipped", "reason": "no appsflyer event is mapped to 'page_view'"}
    second = lines[1]["vendors"]
    assert second["appsflyer"]["request"]["url"] == "https://api3.appsflyer.com/inappevent/com.example.app"
    assert second["appsflyer"]["request"]["headers"]["authentication"] == "***"
    assert code == 0


def test_vendor_invalid_exits_1_with_field_errors(cfg, tmp_path):
    data = fresh(web_event(vendor_ids={}))  # no AdRoll first-party cookie
    code, out, _ = run("preview", write_json(tmp_path, data), "--config", cfg, "--json", "--vendor", "adroll")
    line = json.loads(out)
    assert code == 1
    assert list(line["vendors"]) == ["adroll"]
    assert line["vendors"]["adroll"] == {
        "status": "invalid",
        "errors": [
            {
                "field": "vendor_ids.adroll.first_party_cookie",
                "message": "is required: AdRoll needs identifiers.first_party_cookie",
            }
        ],
    }
    code, out, _ = run("preview", write_json(tmp_path, data), "--config", cfg, "--vendor", "applovin")
    assert code == 0 and "applovin: ok" in out and "adroll" not in out


def test_schema_errors_exit_2_with_field_paths(cfg):
    code, out, _ = run("preview", str(SAMPLES / "invalid.json"), "--config", cfg)
    assert code == 2
    assert "rejected: the event does not match the canonical schema" in out
    assert "    - user.email: must be an email address or its SHA-256 hex digest" in out
    assert "    - colour: is not a known field (unknown fields are rejected)" in out


def test_mixed_body_reports_every_event_and_exits_2(cfg, tmp_path):
    body = {"events": [fresh(web_event(event_id="ok")), {"event_id": "bad", "name": "x"}]}
    code, out, _ = run("preview", write_json(tmp_path, body), "--config", cfg, "--json")
    ok, bad = (json.loads(line) for line in out.splitlines())
    assert code == 2
    assert ok["vendors"]["applovin"]["status"] == "ok"
    assert bad == {"index": 1, "event_id": "bad", "errors": [{"field": "source", "message": "is required"}]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b'{"events": []}', "events: must hold 1 to 100 events, not 0"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    ],
)
def test_unusable_input_exits_2_without_traceback(cfg, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, out, err = run("preview", str(path), "--config", cfg)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_missing_file_and_bad_config_exit_2(cfg, tmp_path):
    code, _, err = run("preview", str(tmp_path / "nope.json"), "--config", cfg)
    assert code == 2 and "cannot read" in err and "No such file or directory" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('[appsflyer]\nkey = "k"\nios_app_id = "123"\n')
    code, _, err = run("preview", str(SAMPLES / "page_view.json"), "--config", str(bad))
    assert code == 2
    assert "relay: invalid configuration" in err
    assert "  - appsflyer.ios_app_id: must be 'id' followed by the App Store digits" in err


def test_default_config_is_relay_toml_else_the_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run("preview", str(SAMPLES / "page_view.json"))
    assert code == 0 and "using the example configuration" in err
    assert "pixel_id=your-axon-event-key" in out
    (tmp_path / "relay.toml").write_text(CONFIG_TOML)
    code, out, err = run("preview", str(SAMPLES / "page_view.json"))
    assert code == 0 and err == "" and "pixel_id=PIXEL123" in out


def test_stdin_input(cfg, monkeypatch):
    data = json.dumps(fresh(web_event())).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run("preview", "-", "--config", cfg, "--json")
    assert code == 0 and json.loads(out)["event_id"] == "evt-1"


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("page_view.json", {"applovin": "ok", "appsflyer": "skipped", "adroll": "ok"}),
        ("lead.json", {"applovin": "ok", "appsflyer": "skipped", "adroll": "ok"}),
        ("web_purchase.json", {"applovin": "ok", "appsflyer": "skipped", "adroll": "ok"}),
        ("ios_app_purchase.json", {"applovin": "skipped", "appsflyer": "ok", "adroll": "ok"}),
        ("android_add_to_cart.json", {"applovin": "skipped", "appsflyer": "ok", "adroll": "ok"}),
        ("restricted_lead.json", {"applovin": "ok", "appsflyer": "skipped", "adroll": "skipped"}),
        ("b2b_demo_request.json", {"applovin": "skipped", "appsflyer": "skipped", "adroll": "ok"}),
    ],
)
def test_samples_preview_as_documented(cfg, sample, expected):
    code, out, _ = run("preview", str(SAMPLES / sample), "--config", cfg, "--json")
    line = json.loads(out)
    assert {v: o["status"] for v, o in line["vendors"].items()} == expected
    assert code == 0


def test_console_script_is_installed(cfg):
    exe = shutil.which("relay", path=str(Path(sys.executable).parent)) or shutil.which("relay")
    assert exe, "the project installs a `relay` console script"
    proc = subprocess.run(
        [exe, "preview", str(SAMPLES / "invalid.json"), "--config", cfg, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["errors"][0]["field"] == "user.email"
    usage = subprocess.run([exe, "preview"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "EVENT.json" in usage.stderr


def test_timestamps_outside_the_window_are_schema_errors(cfg, tmp_path):
    data = web_event(timestamp=NOW_MS)  # March 2025: older than max_event_age_days today
    code, out, _ = run("preview", write_json(tmp_path, data), "--config", cfg, "--json")
    assert code == 2
    assert json.loads(out)["errors"][0]["field"] == "timestamp"


def test_lambda_event_holds_the_queued_messages_the_ingest_would_publish(cfg):
    code, out, err = run("lambda-event", "adroll", str(SAMPLES / "page_view.json"), "--config", cfg)
    assert (code, err) == (0, "")
    (record,) = json.loads(out)["Records"]
    message = json.loads(record["body"])
    assert sorted(message) == ["event_id", "name", "payloads"]
    assert message["payloads"]["adroll"]["event_name"] == "pageView"
    assert json.loads(record["messageAttributes"]["destinations"]["stringValue"]) == ["adroll"]


def test_lambda_event_refuses_an_event_the_vendor_does_not_get(cfg):
    code, out, err = run("lambda-event", "appsflyer", str(SAMPLES / "page_view.json"), "--config", cfg)
    assert (code, out) == (2, "")
    assert "does not go to appsflyer: no appsflyer event is mapped to 'page_view'" in err


def test_preview_shows_which_identifiers_each_vendor_can_match_on(capsys):
    code = main(["preview", str(ROOT / "events" / "samples" / "web_purchase.json"), "--json"])
    assert code == 0
    vendors = json.loads(capsys.readouterr().out)["vendors"]
    assert vendors["applovin"]["identifiers"] == ["email", "phone", "click_id", "cookie", "ip", "user_agent"]
    assert vendors["adroll"]["identifiers"] == ["email", "cookie", "ip", "user_agent"]
