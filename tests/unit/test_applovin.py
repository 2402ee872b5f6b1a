"""AppLovin Axon Conversion API: seed examples, EventData rules, restricted lead-gen flow."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from relay.queued.routing import Router
from relay.vendors import Invalid, Mapped, Skipped
from relay.vendors.applovin import AppLovin, domain_url

from ..conftest import SECRETS, event, load_fixture, make_config, web_event

IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
IDFV = "5D1D3D2C-8E8B-4C5A-9C1B-2F0A2B3C4D5E"


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def seed_event(name: str, **extra) -> dict:
    """The canonical event behind the examples of seed 001."""
    return {
        "event_id": f"seed-{name}",
        "name": name,
        "source": "web",
        "timestamp": 1741784485001,
        "page_url": "https://applovin.com",
        "session_id": "sid",
        "user": {
            "ip": "172.59.8.172",
            "user_agent": "chrome/123.456 android mobile",
            "id": "_user_id",
            "phone": "+1123456789",
            "email": "user@example.com",
            "cookie_id": "_first_party_identifier",
            "zip": "12345",
            "country": "US",
        },
        "device": {"os": "macos", "idfa": IDFA, "idfv": IDFV},
        "vendor_ids": {"applovin": {"aleid": "_aleid-query-param", "axwrt": "_axwrt-cookie-value"}},
        **extra,
    }


def expected_from_seed(fixture: str, event_id: str) -> dict:
    """The seed example with the relay's documented differences applied:
    email/phone hashed (clear text never leaves the relay), os from the field table
    (ios|android|desktop_os; the example's "macos" is not one of them), the placeholder ifa/idfv
    filled with real UUIDs, and dedupe_id = event_id."""
    body = copy.deepcopy(load_fixture(fixture))
    ud = body["events"][0]["user_data"]
    ud["email"] = sha("user@example.com")
    ud["phone"] = sha("1123456789")
    ud["os"] = "desktop_os"
    ud["ifa"], ud["idfv"] = IDFA, IDFV
    body["events"][0]["dedupe_id"] = event_id
    return body


@pytest.mark.parametrize(
    ("name", "fixture", "extra"),
    [
        ("page_view", "seed_examples/applovin_page_view.json", {}),
        ("generate_lead", "seed_examples/applovin_generate_lead.json", {"value": 30, "currency": "USD"}),
    ],
)
def test_seed_examples_are_reproduced(router, name, fixture, extra):
    outcome = router.route(event(seed_event(name, **extra)))["applovin"]
    assert isinstance(outcome, Mapped)
    request = router.adapters["applovin"].request_for(outcome)
    assert request.method == "POST"
    assert request.url == "https://b.applovin.com/v1/event?pixel_id=PIXEL123"
    assert request.headers == {"Authorization": SECRETS["applovin"], "Content-Type": "application/json"}
    assert request.json == expected_from_seed(fixture, f"seed-{name}")
    assert json.loads(request.content) == request.json


def al(config=None) -> Router:
    return Router(config or make_config())


def outcome_for(data, config=None):
    return al(config).route(event(data))["applovin"]


ITEMS = [
    {
        "id": "SKU-1",
        "name": "Shirt",
        "variant_id": "SKU-1-B",
        "category": "tops",
        "brand": "Ex",
        "price": "19.50",
        "quantity": 2,
        "discount": "1.5",
    }
]
AL_ITEMS = [
    {
        "item_id": "SKU-1",
        "item_name": "Shirt",
        "item_variant_id": "SKU-1-B",
        "item_category_id": "tops",
        "item_brand": "Ex",
        "price": 19.5,
        "quantity": 2,
        "discount": 1.5,
    }
]


@pytest.mark.parametrize(
    ("fields", "data"),
    [
        ({"name": "page_view"}, None),
        ({"name": "home_view"}, None),
        ({"name": "login"}, None),
        ({"name": "sign_up"}, None),
        ({"name": "sign_up", "value": 0, "currency": "EUR"}, {"currency": "EUR", "value": 0}),
        ({"name": "generate_lead", "value": "12.5", "currency": "EUR"}, {"currency": "EUR", "value": 12.5}),
        ({"name": "view_item", "items": ITEMS}, {"items": AL_ITEMS}),
        (
            {"name": "add_to_cart", "items": ITEMS, "value": 39, "currency": "USD"},
            {"items": AL_ITEMS, "currency": "USD", "value": 39},
        ),
        (
            {"name": "begin_checkout", "items": ITEMS, "value": 39, "currency": "USD"},
            {"items": AL_ITEMS, "currency": "USD", "value": 39},
        ),
        ({"name": "add_payment_info", "items": ITEMS}, {"items": AL_ITEMS}),
        (
            {"name": "purchase", "items": ITEMS, "value": 39, "currency": "USD", "order_id": "T-1"},
            {"items": AL_ITEMS, "currency": "USD", "value": 39, "transaction_id": "T-1"},
        ),
    ],
)
def test_event_data_per_event(fields, data):
    outcome = outcome_for(web_event(**fields))
    assert isinstance(outcome, Mapped), outcome
    assert outcome.payload["data"] == data
    assert "data" in outcome.payload  # data is required for every event, null included


def test_app_open_has_null_data():
    data = web_event(
        name="app_open", source="app", page_url="https://app.example.com/", device={"os": "ios", "idfa": IDFA}
    )
    outcome = outcome_for(data)
    assert outcome.payload["data"] is None
    assert outcome.payload["user_data"]["esi"] == "app"
    assert outcome.payload["user_data"]["os"] == "ios"
    assert outcome.payload["user_data"]["ifa"] == IDFA


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {"name": "generate_lead"},
            {
                "currency": "is required: AppLovin's generate_lead needs data.currency",
                "value": "is required: AppLovin's generate_lead needs data.value",
            },
        ),
        ({"name": "view_item"}, {"items": "is required: AppLovin's view_item needs data.items"}),
        (
            {"name": "purchase", "items": ITEMS, "value": 1, "currency": "USD"},
            {"order_id": "is required: AppLovin's purchase needs data.transaction_id"},
        ),
        (
            {"name": "begin_checkout", "items": ITEMS},
            {
                "currency": "is required: AppLovin's begin_checkout needs data.currency",
                "value": "is required: AppLovin's begin_checkout needs data.value",
            },
        ),
        (
            {"user": {"cookie_id": "c"}},
            {
                "user.ip": "is required: AppLovin's client_ip_address",
                "user.user_agent": "is required: AppLovin's client_user_agent",
            },
        ),
        (
            {"user": {"ip": "203.0.113.7", "user_agent": "ua"}},
            {
                "user": "AppLovin needs at least one identifier: vendor_ids.applovin.aleid, vendor_ids.applovin.axwrt, "
                "vendor_ids.applovin.alart, user.cookie_id, user.id, user.email or user.phone"
            },
        ),
    ],
)
def test_rules_fail_with_field_errors(fields, errors):
    outcome = outcome_for(web_event(**fields))
    assert isinstance(outcome, Invalid)
    assert {e.field: e.message for e in outcome.errors} == errors


def test_app_events_without_page_url_are_skipped():
    outcome = outcome_for(web_event(source="app", page_url=None, device={"os": "ios"}))
    assert outcome == Skipped("AppLovin needs event_source_url: send page_url with app events to include AppLovin")


def test_zip_is_five_digits_in_the_us_only():
    us = outcome_for(
        web_event(user={"ip": "1.2.3.4", "user_agent": "u", "cookie_id": "c", "zip": "94103-1234", "country": "US"})
    )
    de = outcome_for(
        web_event(user={"ip": "1.2.3.4", "user_agent": "u", "cookie_id": "c", "zip": "10115-AB", "country": "DE"})
    )
    assert us.payload["user_data"]["zip"] == "94103"
    assert de.payload["user_data"]["zip"] == "10115-AB"


def test_ad_user_data_denied_sends_no_email_or_phone():
    data = web_event(
        user={"ip": "1.2.3.4", "user_agent": "u", "cookie_id": "c", "email": "a@b.co", "phone": "+15551234567"},
        consent={"ad_user_data": False},
    )
    ud = outcome_for(data).payload["user_data"]
    assert "email" not in ud and "phone" not in ud and ud["client_id"] == "c"


RESTRICTED = make_config(applovin={"mode": "restricted_lead_gen"})


def test_restricted_mode_exact_payload():
    data = web_event(
        name="generate_lead",
        value="25",
        currency="USD",
        page_url="https://leads.example.com:8443/signup/step-2?email=jane%40example.com#form",
        session_id="s-1",
        user={
            "ip": "203.0.113.7",
            "user_agent": "UA",
            "id": "12345",
            "cookie_id": "fp-1",
            "email": "jane@example.com",
            "phone": "+16505551212",
            "zip": "94103",
            "country": "US",
            "first_name": "Jane",
        },
        device={"os": "ios", "idfa": IDFA, "idfv": IDFV},
        vendor_ids={"applovin": {"aleid": "al-1", "alart": "art-1", "axwrt": "wrt-1"}},
        properties={"form": "demo"},
    )
    outcome = outcome_for(data, RESTRICTED)
    assert outcome.payload == {
        "name": "generate_lead",
        "event_time": data["timestamp"],
        "event_source_url": "https://leads.example.com:8443/",
        "user_data": {
            "alart": "art-1",
            "aleid": "al-1",
            "esi": "web",
            "client_id": "fp-1",
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "UA",
            "user_id": "12345",
        },
        "data": {"currency": "USD", "value": 25},
        "dedupe_id": "evt-1",
    }
    body = Router(RESTRICTED).adapters["applovin"].request_for(outcome).content.decode()
    for forbidden in ("jane", sha("jane@example.com"), "6505551212", sha("16505551212"), sha("+16505551212")):
        assert forbidden not in body


@pytest.mark.parametrize("name", ["purchase", "view_item", "sign_up", "app_open"])
def test_restricted_mode_skips_other_events(name):
    outcome = outcome_for(web_event(name=name), RESTRICTED)
    assert isinstance(outcome, Skipped)
    assert outcome.reason.startswith("AppLovin restricted lead-gen mode sends only page_view and generate_lead")


def test_restricted_mode_home_view_maps_to_page_view():
    outcome = outcome_for(web_event(name="home_view", page_url="https://example.com/"), RESTRICTED)
    assert outcome.payload["name"] == "page_view" and outcome.payload["data"] is None


def test_restricted_mode_needs_numeric_user_id_and_an_allowed_identifier():
    bad_id = outcome_for(web_event(user={"ip": "1.2.3.4", "user_agent": "u", "id": "u-42"}), RESTRICTED)
    assert [str(e) for e in bad_id.errors] == [
        "user.id: must be numeric in AppLovin restricted lead-gen mode (user_id)"
    ]
    only_email = outcome_for(
        web_event(
            user={"ip": "1.2.3.4", "user_agent": "u", "email": "a@b.co"}, vendor_ids={"applovin": {"axwrt": "w"}}
        ),
        RESTRICTED,
    )
    assert [str(e) for e in only_email.errors] == [
        "user: AppLovin restricted lead-gen mode needs user.cookie_id (client_id), vendor_ids.applovin.alart "
        "or a numeric user.id"
    ]


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://applovin.com/signup", "https://applovin.com/"),
        ("http://a.example.com/x?y=1#z", "http://a.example.com/"),
        ("https://user:pw@example.com/", "https://example.com/"),
        ("https://[2001:db8::1]:8080/p", "https://[2001:db8::1]:8080/"),
    ],
)
def test_domain_url(url, domain):
    assert domain_url(url) == domain


def test_batches_carry_up_to_100_events():
    adapter = AppLovin(make_config().applovin)
    payloads = [outcome_for(web_event(event_id=f"e{i}")).payload for i in range(100)]
    request = adapter.build_request("", payloads)
    assert [e["dedupe_id"] for e in request.json["events"]] == [f"e{i}" for i in range(100)]
    for n in (0, 101):
        with pytest.raises(ValueError, match=f"AppLovin takes 1 to 100 events per request, not {n}"):
            adapter.build_request("", payloads[:1] * n)


def test_endpoint_override_and_masking():
    adapter = AppLovin(make_config(applovin={"endpoint": "http://127.0.0.1:9000/v1/event"}).applovin)
    request = adapter.request_for(outcome_for(web_event()))
    assert request.url == "http://127.0.0.1:9000/v1/event?pixel_id=PIXEL123"
    assert request.describe()["headers"] == {"Authorization": "***", "Content-Type": "application/json"}
    assert SECRETS["applovin"] not in json.dumps(request.describe())
