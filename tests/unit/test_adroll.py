"""AdRoll S2S events: every example of seed 003 rebuilt, mobile URLs, identifiers, batching."""

from __future__ import annotations

import hashlib

import pytest

from relay.queued.routing import Router
from relay.vendors import Invalid, Mapped, Skipped
from relay.vendors.adroll import AdRoll

from ..conftest import FPC, SECRETS, app_event, event, load_fixture, make_config, web_event

PAGE = "https://www.example.com/womens/tops?utm_source=adroll"
IP = "198.51.100.23"
PRODUCT = {"id": "ABCDEF-12345", "group": "womens-fashion", "quantity": 1, "price": "56.78", "category": "top-sellers"}
PLACEHOLDERS = {
    "<ADVERTISABLE_EID>": "ADV_EID",
    "<PIXEL_EID>": "PIX_EID",
    "<PAGE_LOCATION>": PAGE,
    "<IP>": IP,
    "<FIRST_PARTY_COOKIE>": FPC,
}

# AdRoll event name -> (canonical event name, canonical fields that produce the seed's example)
SEED_EVENTS = {
    "pageView": ("page_view", {"items": [PRODUCT]}),
    "homeView": ("home_view", {}),
    "productSearch": (
        "search",
        {
            "search_query": "shoes",
            "items": [
                {"id": "ABCDEF-12345", "group": "womens-fashion", "price": "56.78", "category": "top-sellers"},
                {"id": "GHIJKL-67890", "group": "womens-fashion", "price": "61.23", "category": "new-items"},
                {"id": "MNOPQR-98765", "group": "womens-fashion", "price": "57.89"},
                {"id": "STUVWX-43210", "group": "womens-fashion", "price": "63.45", "category": "new-items"},
            ],
        },
    ),
    "addToCart": (
        "add_to_cart",
        {
            "currency": "USD",
            "items": [
                {**PRODUCT, "quantity": 2},
                {
                    "id": "UVWXYZ-98765",
                    "group": "electronics",
                    "quantity": 1,
                    "price": "123.45",
                    "category": "new-items",
                },
            ],
        },
    ),
    "purchase": (
        "purchase",
        {
            "value": "113.56",
            "currency": "USD",
            "order_id": "ABCDEFGH-1234-5678-9012-IJKLMNOPQRST",
            "items": [{**PRODUCT, "quantity": 2}],
            "properties": {"foo": "bar"},
        },
    ),
    "highValuePage": ("high_value_page", {}),
    "gatedContent": ("gated_content", {}),
    "demoRequest": ("demo_request", {}),
    "signupPlan": ("subscribe", {}),
    "signupTrial": ("start_trial", {}),
    "contactSales": ("contact_sales", {}),
    "liveChat": ("live_chat", {}),
    "formFill": ("form_fill", {}),
}


def fill(value):
    if isinstance(value, dict):
        return {k: fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v) for v in value]
    return PLACEHOLDERS.get(value, value)


def adroll(data, config=None):
    router = Router(config or make_config())
    outcome = router.route(event(data))["adroll"]
    request = router.adapters["adroll"].request_for(outcome) if isinstance(outcome, Mapped) else None
    return outcome, request


@pytest.mark.parametrize("adroll_name", sorted(SEED_EVENTS))
def test_seed_examples_are_reproduced(adroll_name):
    canonical, fields = SEED_EVENTS[adroll_name]
    data = {
        "event_id": f"seed-{adroll_name}",
        "name": canonical,
        "source": "web",
        "timestamp": 1741784485001,
        "page_url": PAGE,
        "user": {"ip": IP},
        "vendor_ids": {"adroll": {"first_party_cookie": FPC}},
        **fields,
    }
    outcome, request = adroll(data)
    body = request.json
    assert isinstance(body, list) and len(body) == 1
    sent = dict(body[0])
    # The relay always sends the event time (AdRoll: "current time if omitted"); the examples omit it.
    assert sent.pop("timestamp") == 1741784485.001
    assert sent == fill(load_fixture(f"seed_examples/adroll_{adroll_name}.json"))


def test_every_adroll_event_type_has_a_seed_example():
    from relay.models.event_names import ADROLL_EVENT_NAMES

    assert set(SEED_EVENTS) == ADROLL_EVENT_NAMES


def test_request_shape_auth_and_dry_run():
    outcome, request = adroll(web_event())
    assert request.url == "https://srv.adroll.com/api?advertisable=ADV_EID"
    assert request.headers == {"Authorization": f"Token {SECRETS['adroll']}", "Content-Type": "application/json"}
    assert request.masked_headers()["Authorization"] == "***"
    dry = make_config(adroll={"dry_run": True})
    assert adroll(web_event(), dry)[1].url == "https://srv.adroll.com/api?advertisable=ADV_EID&dry_run=true"


def test_mobile_app_url_is_built_like_the_documented_example():
    data = app_event(
        "ios",
        name="page_view",
        value=None,
        currency=None,
        device={"os": "ios", "type": "phone", "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
        app={"bundle_id": "com.example.TradingApp", "version": "14.1.3"},
    )
    outcome, _ = adroll(data)
    p = outcome.payload
    assert p["page_location"] == (
        "https://app.example.com?device_os=iOS&device_type=phone&package_app_name=com.example.TradingApp"
        "&package_app_version=14.1.3"
    )
    assert (p["device_os"], p["device_type"], p["package_app_name"], p["package_app_version"]) == (
        "iOS",
        "phone",
        "com.example.TradingApp",
        "14.1.3",
    )
    assert p["identifiers"]["device_id"] == "6D92078A-8246-4BA4-AE5B-76104861E7DC"


def test_app_events_need_an_app_url_domain():
    outcome, _ = adroll(app_event(), make_config(adroll={"app_url_domain": None}))
    assert outcome == Skipped("AdRoll app events need a page URL domain: set [adroll] app_url_domain")


def test_timestamp_in_seconds():
    assert adroll(web_event(timestamp=1741784485000))[0].payload["timestamp"] == 1741784485
    assert adroll(web_event(timestamp=1741784485250))[0].payload["timestamp"] == 1741784485.25


def test_identifiers_hash_email_and_never_send_it_clear():
    md5 = "0" * 31 + "1"
    data = web_event(
        user={"ip": IP, "id": "u-1", "email": " Jane@Example.com ", "email_md5": md5},
        vendor_ids={"adroll": {"first_party_cookie": FPC, "adct": "click-1"}},
    )
    outcome, request = adroll(data)
    assert outcome.payload["identifiers"] == {
        "first_party_cookie": FPC,
        "adct": "click-1",
        "email_sha256": hashlib.sha256(b"jane@example.com").hexdigest(),
        "email_md5": md5,
        "user_id": "u-1",
    }
    assert "jane" not in request.content.decode().lower()


@pytest.mark.parametrize(
    ("patch", "errors"),
    [
        (
            {"vendor_ids": {}},
            ["vendor_ids.adroll.first_party_cookie: is required: AdRoll needs identifiers.first_party_cookie"],
        ),
        (
            {"vendor_ids": {"adroll": {"first_party_cookie": "abc"}}},
            [
                "vendor_ids.adroll.first_party_cookie: must be the __adroll_fpc value: 32 hex characters, '-', "
                "epoch milliseconds"
            ],
        ),
        ({"user": {"cookie_id": "x"}}, ["user.ip: is required: AdRoll's ip"]),
    ],
)
def test_required_fields(patch, errors):
    outcome, _ = adroll(web_event(**patch))
    assert isinstance(outcome, Invalid)
    assert [str(e) for e in outcome.errors] == errors


def test_ipv6_is_accepted():
    assert adroll(web_event(user={"ip": "2001:db8::1"}))[0].payload["ip"] == "2001:db8::1"


def test_consent_and_unmapped_events_are_skipped():
    assert adroll(web_event(consent={"ad_storage": False}))[0] == Skipped("consent.ad_storage is false")
    assert adroll(web_event(name="login"))[0] == Skipped("no adroll event is mapped to 'login'")
    assert adroll(web_event(name="my_custom"))[0] == Skipped("no adroll event is mapped to 'my_custom'")


def test_batch_is_an_array_of_up_to_100():
    adapter = AdRoll(make_config().adroll)
    payload = adroll(web_event())[0].payload
    assert adapter.build_request("", [payload] * 100).json == [payload] * 100
    with pytest.raises(ValueError, match="AdRoll takes 1 to 100 events per request, not 101"):
        adapter.build_request("", [payload] * 101)
