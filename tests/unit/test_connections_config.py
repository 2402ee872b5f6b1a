"""Sources and connections in the configuration (docs/connections.md): errors name the key, a single-connection
configuration keeps working unchanged, the deployed form holds no secret, limits hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from relay.ingest.bundling import MAX_EVENT_MESSAGE_BYTES
from relay.models.config import ConfigError, config_from_env, config_from_mapping
from relay.models.connections_file import deployed_errors
from relay.models.event import parse_event
from relay.models.names import ledger_name, namespace_parts, normal_connection
from relay.models.sections import MAX_CONNECTIONS
from relay.queued.message import queued_body
from relay.queued.routing import Router
from relay_tools.cli import main
from relay_tools.connections import deployed_file, ingest_secret, toml_text, vendor_secret

from ..conftest import CONFIG, ROOT


def errors(data: dict, credentials=True) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(data, credentials=credentials)
    return [str(e) for e in exc.value.errors]


def test_a_single_connection_configuration_is_the_default_source_and_connections():
    config = config_from_mapping(CONFIG)
    assert config.connection_ids == ["applovin", "appsflyer", "adroll"]
    assert list(config.source_configs()) == ["default"]
    assert config.reachable("default") == ["applovin", "appsflyer", "adroll"]
    assert [s.get_secret_value() for s in config.source("default").secrets] == CONFIG["ingest"]["secrets"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"sources": {"eu": {"connections": ["applovin.eu"]}}},
            "sources.eu.connections: 'applovin.eu' is not a declared connection",
        ),
        ({"sources": {"EU": {}}}, "sources.EU"),
        ({"sources": {"eu": {"connections": ["tiktok.eu"]}}}, "sources.eu.connections[0]"),
        (
            {
                "sources": {"eu": {"connections": ["applovin", "applovin.default"]}},
                "applovin": {"pixel_id": "p", "api_key": "k"},
            },
            "sources.eu.connections: must not name a connection twice",
        ),
        (
            {"connections": {"applovin": {"eu": {"pixel_id": "p"}}}},
            "connections.applovin.eu.api_key: is required when applovin is enabled",
        ),
        ({"connections": {"applovin": {"eu": {"pixel": "p"}}}}, "connections.applovin.eu.pixel: is not a known field"),
        (
            {"connections": {"appsflyer": {"eu": {"key": "k", "ios_app_id": "123"}}}},
            "connections.appsflyer.eu.ios_app_id: must be 'id' followed",
        ),
        (
            {
                "applovin": {"pixel_id": "p", "api_key": "k"},
                "connections": {"applovin": {"default": {"pixel_id": "q", "api_key": "k"}}},
            },
            "connections.applovin.default: is the [applovin] section",
        ),
        (
            {"ingest": {"secrets": ["s"]}, "sources": {"eu": {"secrets": ["t"]}}},
            "ingest.secrets: are the default source's",
        ),
        ({"sources": {"eu": {"secrets": [""]}}}, "sources.eu.secrets: must not hold an empty secret"),
        (
            {"connections": {"applovin": {"eu": {"pixel_id": "p", "api_key": "k", "retry_window_hours": 100}}}},
            "connections.applovin.eu.retry_window_hours",
        ),
    ],
)
def test_errors_name_the_key(data, expected):
    assert any(e.startswith(expected) for e in errors(data)), errors(data)


def test_limits_on_connections_and_sources():
    many = {f"c{i:03d}": {"pixel_id": "p", "api_key": "k"} for i in range(MAX_CONNECTIONS + 1)}
    assert any(e.startswith("connections.applovin:") for e in errors({"connections": {"applovin": many}}))
    sources = {f"s{i:03d}": {} for i in range(101)}
    assert any(e.startswith("sources:") for e in errors({"sources": sources}))


def test_connection_ids_and_ledger_namespaces():
    assert normal_connection("applovin.default") == "applovin"
    assert ledger_name("applovin") == "applovin"  # what a single-connection relay wrote: an upgrade keeps it
    assert ledger_name("applovin.eu", "us") == "applovin.eu@us"
    assert ledger_name("ingest", "eu") == "ingest@eu"
    for connection, source in (("applovin", "default"), ("applovin.eu", "us"), ("ingest", "eu")):
        assert namespace_parts(ledger_name(connection, source)) == (connection, source)


def test_the_deployed_form_moves_every_secret_to_its_secret_and_back():
    local = config_from_mapping(json.loads(json.dumps(_example())))
    shipped = deployed_file(local)
    assert deployed_errors(shipped) == []
    assert not any(secret in toml_text(shipped) for secret in local.secret_values())
    secrets = {"ingest": ingest_secret(local), "applovin": vendor_secret(local, "applovin")}
    assert secrets["ingest"] == {
        "sources": {"eu": {"secret": "eu-sig"}, "us": {"secret": "us-sig", "previous": "us-old"}}
    }
    assert secrets["applovin"] == {"connections": {"eu": {"api_key": "k-eu"}}}
    environ = {"RELAY_APPLOVIN_ENABLED": "auto"}
    ingest = config_from_env(
        environ,
        {"sources": {"eu": {"secrets": ["eu-sig"]}, "us": {"secrets": ["us-sig", "us-old"]}}},
        credentials=False,
        shipped=shipped,
    )
    assert ingest.reachable("eu") == ingest.reachable("us") == ["applovin.eu"]
    assert ingest.reachable("default") == []  # not declared: not a source
    vendor = config_from_env(
        environ, {"connections": {"applovin": secrets["applovin"]["connections"]}}, shipped=shipped
    )
    assert vendor.connection("applovin.eu").api_key.get_secret_value() == "k-eu"


def test_a_deployed_file_holding_a_secret_or_another_section_is_refused():
    data = {"ingest": {}, "sources": {"eu": {"secrets": ["x"]}}, "connections": {"adroll": {"eu": {"token": "t"}}}}
    assert [str(e).split(":")[0] for e in deployed_errors(data)] == [
        "ingest",
        "sources.eu.secrets",
        "connections.adroll.eu.token",
    ]


def test_relay_config_check_names_the_key_and_exits_non_zero(tmp_path, capsys):
    assert main(["config", "check", str(ROOT / "relay.connections.example.toml")]) == 0
    assert "source eu: 3 connection(s): applovin.eu, appsflyer.eu, adroll.eu" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[sources.eu]\nconnections = ["applovin.nowhere"]\n')
    assert main(["config", "check", str(bad)]) == 1
    assert "sources.eu.connections: 'applovin.nowhere' is not a declared connection" in capsys.readouterr().err
    assert main(["config", "check", "--deployed", str(ROOT / "relay.connections.example.toml")]) == 1
    assert "connections.applovin.eu.api_key: is a secret" in capsys.readouterr().err


def test_an_event_reaching_every_applovin_and_adroll_connection_fits_in_its_message():
    """One web purchase to MAX_CONNECTIONS pixels and MAX_CONNECTIONS advertisables: its message stays within
    what SNS and a dead letter take (relay.ingest.bundling)."""
    names = [f"c{i:03d}" for i in range(MAX_CONNECTIONS)]
    connections = {
        "applovin": {n: {"pixel_id": f"pixel-{n}"} for n in names},
        "adroll": {n: {"advertisable_eid": f"ADV_{n}", "pixel_eid": f"PIX_{n}"} for n in names},
    }
    config = config_from_mapping({"connections": connections}, credentials=False)
    raw = json.loads((ROOT / "events" / "samples" / "web_purchase.json").read_text())
    raw.pop("timestamp", None)
    event = parse_event(raw, now=datetime.now(UTC))
    outcomes = Router(config).route(event)
    assert sum(1 for o in outcomes.values() if type(o).__name__ == "Mapped") == 2 * MAX_CONNECTIONS
    assert len(queued_body(event, outcomes).encode()) < MAX_EVENT_MESSAGE_BYTES


def _example() -> dict:
    return {
        "sources": {
            "eu": {"secrets": ["eu-sig"], "connections": ["applovin.eu"]},
            "us": {"secrets": ["us-sig", "us-old"], "connections": ["applovin.eu"]},
        },
        "connections": {"applovin": {"eu": {"pixel_id": "eu-pixel", "api_key": "k-eu"}}},
    }


def test_relay_preview_shows_each_connection_of_a_source(capsys):
    example = str(ROOT / "relay.connections.example.toml")
    sample = str(ROOT / "events" / "samples" / "web_purchase.json")
    assert main(["preview", sample, "--config", example, "--source", "us", "--json"]) == 0
    vendors = json.loads(capsys.readouterr().out)["vendors"]
    assert sorted(vendors) == ["adroll.us", "applovin.us", "appsflyer.us"]
    assert "pixel_id=us-pixel" in vendors["applovin.us"]["request"]["url"]
    assert vendors["appsflyer.us"]["status"] == "skipped"
    assert main(["preview", sample, "--config", example, "--source", "eu", "--connection", "adroll.eu", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["vendors"]) == ["adroll.eu"]
    assert main(["preview", sample, "--config", example]) == 2  # two sources, no default: name one
    assert "--source: the configuration has several sources (eu, us)" in capsys.readouterr().err
