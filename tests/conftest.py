from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relay.config import RelayConfig, config_from_mapping
from relay.model import Event, parse_event
from relay.routing import Router

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 3, 12, 13, 1, 30, tzinfo=UTC)  # just after the seed examples' event_time
NOW_MS = 1741784490000

SECRETS = {
    "signing": "sig-secret-9f8e7d6c5b4a",
    "applovin": "al-key-SECRET-1234567890",
    "appsflyer": "af-key-SECRET-abcdef",
    "adroll": "ar-token-SECRET-zyxwv",
}

CONFIG: dict[str, Any] = {
    "ingest": {"secrets": [SECRETS["signing"]]},
    "applovin": {"pixel_id": "PIXEL123", "api_key": SECRETS["applovin"]},
    "appsflyer": {"key": SECRETS["appsflyer"], "ios_app_id": "id123456789", "android_app_id": "com.example.app"},
    "adroll": {
        "advertisable_eid": "ADV_EID",
        "pixel_eid": "PIX_EID",
        "token": SECRETS["adroll"],
        "app_url_domain": "app.example.com",
    },
}
FPC = "0123456789abcdef0123456789abcdef-1741784485001"
AF_ID = "1541234567890-1234567"


def make_config(**sections: Any) -> RelayConfig:
    """The test config with sections merged over (None removes a section)."""
    data = copy.deepcopy(CONFIG)
    for name, values in sections.items():
        if values is None:
            data.pop(name, None)
        elif isinstance(values, dict) and isinstance(data.get(name), dict):
            data[name].update(values)
        else:
            data[name] = values
    return config_from_mapping(data)


def web_event(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": "evt-1",
        "name": "page_view",
        "source": "web",
        "timestamp": NOW_MS - 5000,
        "page_url": "https://shop.example.com/products/shirt?color=blue",
        "user": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 test", "cookie_id": "fp-1"},
        "vendor_ids": {"adroll": {"first_party_cookie": FPC}},
    }
    data.update(fields)
    return data


def app_event(os_name: str = "ios", **fields: Any) -> dict[str, Any]:
    device: dict[str, Any] = {"os": os_name, "os_version": "17.4" if os_name == "ios" else "14"}
    if os_name == "ios":
        device["idfv"] = "5D1D3D2C-8E8B-4C5A-9C1B-2F0A2B3C4D5E"
    data: dict[str, Any] = {
        "event_id": "app-1",
        "name": "purchase",
        "source": "app",
        "timestamp": NOW_MS - 5000,
        "value": "9.99",
        "currency": "USD",
        "user": {"ip": "203.0.113.7", "user_agent": "ExampleApp/2.1", "cookie_id": "fp-1"},
        "device": device,
        "app": {"bundle_id": "com.example.app", "version": "2.1.0"},
        "vendor_ids": {"appsflyer": {"appsflyer_id": AF_ID}, "adroll": {"first_party_cookie": FPC}},
    }
    data.update(fields)
    return data


def event(data: dict[str, Any], now: datetime = NOW, **kw: Any) -> Event:
    return parse_event(data, now=now, **kw)


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def config() -> RelayConfig:
    return make_config()


@pytest.fixture
def router(config: RelayConfig) -> Router:
    return Router(config)
