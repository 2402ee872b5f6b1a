"""relay.toml and the deployed (env + Secrets Manager) form: same keys, clear errors."""

from __future__ import annotations

import pytest

from relay.models.config import ConfigError, config_from_env, config_from_mapping
from relay_tools.config_file import load_config

from ..conftest import ROOT


def write(tmp_path, text: str):
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return path


def errors(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    return [str(e) for e in exc.value.errors]


def test_example_config_loads_with_defaults():
    config = load_config(ROOT / "relay.example.toml")
    assert config.enabled_vendors == ["applovin", "appsflyer", "adroll"]
    assert config.ingest.tolerance_seconds == 300 and config.ingest.max_event_age_days == 7
    assert config.applovin.mode == "standard" and config.appsflyer.api == "v3"
    assert config.adroll.dry_run is False


def test_absent_or_disabled_sections_turn_vendors_off(tmp_path):
    config = load_config(write(tmp_path, "[applovin]\nenabled = false\n[adroll]\nenabled = false\n"))
    assert config.enabled_vendors == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[applovin]\npixel_id = "p"\n', ["applovin.api_key: is required when applovin is enabled"]),
        (
            '[applovin]\npixel_id = "p"\napi_key = "k"\nmode = "lite"\n',
            ["applovin.mode: Input should be 'standard' or 'restricted_lead_gen'"],
        ),
        (
            '[appsflyer]\nkey = "k"\nios_app_id = "123456789"\n',
            [
                "appsflyer.ios_app_id: must be 'id' followed by the App Store digits (id123456789): without the prefix "
                "AppsFlyer answers 200 OK and records nothing"
            ],
        ),
        (
            '[appsflyer]\nkey = "k"\n',
            ["appsflyer.ios_app_id: ios_app_id or android_app_id is required when appsflyer is enabled"],
        ),
        (
            '[appsflyer]\nkey = "k"\nandroid_app_id = "not a package"\n',
            ["appsflyer.android_app_id: String should match pattern '^[A-Za-z][\\w]*(\\.[A-Za-z_][\\w]*)+$'"],
        ),
        ('[adroll]\nadvertisable_eid = "a"\npixel_eid = "p"\n', ["adroll.token: is required when adroll is enabled"]),
        (
            '[adroll]\nenabled = false\nendpoint = "srv.adroll.com"\n',
            ["adroll.endpoint: must be an absolute http(s) URL such as https://example.com/page"],
        ),
        ("[ingest]\ntolerance_seconds = 0\n", ["ingest.tolerance_seconds: Input should be greater than or equal to 1"]),
        ('[ingest]\nsecrets = [""]\n', ["ingest.secrets: must not hold an empty secret"]),
        ('[ingest]\nsecret = "x"\n', ["ingest.secret: is not a known field (unknown fields are rejected)"]),
        ('[tiktok]\nkey = "x"\n', ["tiktok: is not a known field (unknown fields are rejected)"]),
        (
            '[events.purchase]\nadroll = "buy"\n',
            [
                "events.purchase.adroll: 'buy' is not an event adroll documents: use one of "
                "['addToCart', 'contactSales', 'demoRequest', 'formFill', 'gatedContent', 'highValuePage', "
                "'homeView', 'liveChat', 'pageView', "
                "'productSearch', 'purchase', 'signupPlan', 'signupTrial'] or \"\""
            ],
        ),
        (
            '[events.purchase]\napplovin = "order"\n',
            [
                "events.purchase.applovin: 'order' is not an event applovin documents: use one of ['add_payment_info', "
                "'add_to_cart', 'app_open', 'begin_checkout', 'generate_lead', 'login', 'page_view', 'purchase', "
                "'sign_up', 'view_item'] or \"\""
            ],
        ),
        (
            '[events.purchase]\ntiktok = "x"\n',
            ["events.purchase.tiktok: is not a known field (unknown fields are rejected)"],
        ),
    ],
)
def test_bad_config_names_key_and_reason(tmp_path, text, expected):
    assert errors(tmp_path, text) == expected


def test_config_errors_never_echo_secrets(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, '[applovin]\napi_key = "very-secret-key"\nmode = 5\n'))
    assert "very-secret-key" not in str(exc.value)
    config = load_config(write(tmp_path, '[applovin]\napi_key = "very-secret-key"\npixel_id = "p"\n'))
    assert "very-secret-key" not in repr(config) and "very-secret-key" not in str(config.model_dump())
    assert config.secret_values() == ["very-secret-key"]


def test_unreadable_and_invalid_toml(tmp_path):
    assert errors(tmp_path, "[applovin\n")[0].endswith(
        "relay.toml: is not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 10)"
    )
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml")


def test_overrides_accept_empty_string_and_custom_canonical_names(tmp_path):
    config = load_config(
        write(tmp_path, '[events.generate_lead]\nadroll = ""\n[events.level_up]\napplovin = "login"\n')
    )
    assert config.event_overrides["generate_lead"]["adroll"] == ""
    assert config.event_overrides["level_up"]["applovin"] == "login"


def test_env_and_secrets_give_the_same_config():
    env = {
        "RELAY_INGEST_TOLERANCE_SECONDS": "120",
        "RELAY_APPLOVIN_MODE": "restricted_lead_gen",
        "RELAY_APPLOVIN_PIXEL_ID": "PIX",
        "RELAY_APPSFLYER_ENABLED": "false",
        "RELAY_ADROLL_DRY_RUN": "true",
        "RELAY_ADROLL_ADVERTISABLE_EID": "ADV",
        "RELAY_ADROLL_PIXEL_EID": "PX",
        "RELAY_EVENTS": '{"generate_lead": {"adroll": "demoRequest"}}',
        "UNRELATED": "x",
    }
    secrets = {"ingest": {"secrets": ["s1", "s2"]}, "applovin": {"api_key": "k"}, "adroll": {"token": "t"}}
    config = config_from_env(env, secrets)
    assert config.ingest.tolerance_seconds == 120
    assert [s.get_secret_value() for s in config.ingest.secrets] == ["s1", "s2"]
    assert config.applovin.mode == "restricted_lead_gen" and config.applovin.api_key.get_secret_value() == "k"
    assert config.enabled_vendors == ["applovin", "adroll"]
    assert config.adroll.dry_run is True
    assert config.event_overrides["generate_lead"]["adroll"] == "demoRequest"


def test_env_refuses_secrets_and_reports_bad_values():
    with pytest.raises(ConfigError) as exc:
        config_from_env({"RELAY_APPLOVIN_API_KEY": "k", "RELAY_EVENTS": "{nope"})
    assert [str(e) for e in exc.value.errors] == [
        "applovin.api_key: is a secret: set it in Secrets Manager, not in RELAY_APPLOVIN_API_KEY",
        "events: RELAY_EVENTS must be a JSON object",
    ]
    with pytest.raises(ConfigError) as exc:
        config_from_env({"RELAY_INGEST_MAX_EVENT_AGE_DAYS": "many"})
    assert [str(e) for e in exc.value.errors] == [
        "ingest.max_event_age_days: Input should be a valid integer, unable to parse string as an integer"
    ]


@pytest.mark.parametrize(
    ("vendor", "settings", "on"),
    [
        ("applovin", {}, False),
        ("applovin", {"pixel_id": "px"}, True),
        ("appsflyer", {"ios_app_id": "id123"}, True),
        ("appsflyer", {}, False),
        ("adroll", {"advertisable_eid": "a"}, False),
        ("adroll", {"advertisable_eid": "a", "pixel_eid": "p"}, True),
    ],
)
def test_enabled_auto_turns_a_vendor_on_exactly_when_its_ids_are_given(vendor, settings, on):
    config = config_from_mapping({vendor: {"enabled": "auto", **settings}}, "test", credentials=False)
    assert config.enabled(vendor) is on


def test_enabled_true_without_the_ids_names_them():
    with pytest.raises(ConfigError, match="applovin.pixel_id: is required when applovin is enabled"):
        config_from_mapping({"applovin": {"enabled": True}}, "test", credentials=False)
