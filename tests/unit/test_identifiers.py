"""Identifiers read where the vendors say to read them, and fields sent only where the vendors take them."""

from __future__ import annotations

import json

import pytest

from relay.queued.routing import Router
from relay.vendors import Mapped, Skipped

from ..conftest import app_event, event, make_config, web_event


def route(data: dict, vendor: str, **config):
    return Router(make_config(**config)).route(event(data))[vendor]


def test_aleid_and_alart_come_from_the_landing_url_when_the_event_does_not_carry_them():
    data = web_event(page_url="https://shop.example.com/landing?utm_source=x&aleid=AL-123&alart=AR-9")
    user_data = route(data, "applovin").payload["user_data"]
    assert (user_data["aleid"], user_data["alart"]) == ("AL-123", "AR-9")


def test_an_explicit_click_id_wins_over_the_url():
    data = web_event(
        page_url="https://shop.example.com/?aleid=from-url&adct=url-adct",
        vendor_ids={
            "applovin": {"aleid": "explicit"},
            "adroll": {"first_party_cookie": web_event()["vendor_ids"]["adroll"]["first_party_cookie"], "adct": "mine"},
        },
    )
    assert route(data, "applovin").payload["user_data"]["aleid"] == "explicit"
    assert route(data, "adroll").payload["identifiers"]["adct"] == "mine"


def test_restricted_mode_keeps_the_urls_click_ids_though_it_cuts_the_url_to_its_domain():
    data = web_event(
        name="generate_lead", value="1", currency="USD", page_url="https://leads.example.com/form?alart=AR-1&aleid=AL-1"
    )
    outcome = route(data, "applovin", applovin={"mode": "restricted_lead_gen"})
    assert isinstance(outcome, Mapped)
    assert outcome.payload["event_source_url"] == "https://leads.example.com/"
    assert (outcome.payload["user_data"]["alart"], outcome.payload["user_data"]["aleid"]) == ("AR-1", "AL-1")


def test_adroll_adct_comes_from_the_landing_url():
    data = web_event(page_url="https://shop.example.com/?adct=CLICK-1")
    assert route(data, "adroll").payload["identifiers"]["adct"] == "CLICK-1"


def test_no_click_id_in_the_url_sends_none():
    outcome = route(web_event(), "applovin")
    assert "aleid" not in outcome.payload["user_data"] and "alart" not in outcome.payload["user_data"]


def test_applovin_app_open_is_for_app_events_only():
    outcome = route(web_event(name="app_open"), "applovin")
    assert isinstance(outcome, Skipped) and "mobile app integrations only" in outcome.reason
    app = app_event(name="app_open", page_url="https://app.example.com/")
    app.pop("value"), app.pop("currency")
    mapped = route(app, "applovin")
    assert isinstance(mapped, Mapped) and mapped.payload["name"] == "app_open"


@pytest.mark.parametrize(
    ("os_name", "version", "sent"),
    [
        ("android", "14", True),
        ("ios", "13.7", True),
        ("ios", "14.5", False),
        ("ios", "17.4", False),
        ("ios", None, False),
    ],
)
def test_appsflyer_aie_only_for_android_and_ios_before_14(os_name, version, sent):
    data = app_event(os_name)
    data["device"] = {**data["device"], "ad_tracking_enabled": True, "os_version": version}
    if version is None:
        data["device"].pop("os_version")
    outcome = route(data, "appsflyer")
    body = json.loads(Router(make_config()).adapters["appsflyer"].request_for(outcome).content)
    assert ("aie" in body) is sent
    if sent:
        assert body["aie"] is True
