"""AppsFlyer S2S in-app events (v3 and legacy v2): exact bodies and every documented trap."""

from __future__ import annotations

import hashlib
import json

import pytest

from relay.queued.routing import Router
from relay.vendors import Invalid, Mapped, Skipped
from relay.vendors.appsflyer import MAX_BODY_BYTES, AppsFlyer

from ..conftest import AF_ID, SECRETS, app_event, event, make_config, web_event

IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
IDFV = "5D1D3D2C-8E8B-4C5A-9C1B-2F0A2B3C4D5E"
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def af(data, config=None):
    router = Router(config or make_config())
    outcome = router.route(event(data))["appsflyer"]
    request = router.adapters["appsflyer"].request_for(outcome) if isinstance(outcome, Mapped) else None
    return outcome, request


def test_ios_purchase_exact_request():
    data = app_event(
        "ios",
        timestamp="2025-03-12T13:01:25.001Z",
        order_id="O-9",
        items=[{"id": "sku-1", "price": "4.99", "quantity": 2}],
        user={
            "id": "cust-7",
            "ip": "203.0.113.7",
            "user_agent": "ExampleApp/2.1",
            "email": " Jane@Example.com",
            "phone": "(650)555-1212",
            "country": "US",
            "first_name": "Jane",
            "last_name": "Doe",
        },
        device={"os": "ios", "os_version": "17.4", "idfa": IDFA, "idfv": IDFV, "att": 3},
        app={"bundle_id": "com.example.app", "version": "2.1.0", "store": "app_store"},
    )
    outcome, request = af(data)
    assert request.method == "POST"
    assert request.url == "https://api3.appsflyer.com/inappevent/id123456789"
    assert request.headers == {"authentication": SECRETS["appsflyer"], "Content-Type": "application/json"}
    assert request.json == {
        "appsflyer_id": AF_ID,
        "eventName": "af_purchase",
        "eventValue": json.dumps(
            {
                "af_currency": "USD",
                "af_order_id": "O-9",
                "af_content_id": "sku-1",
                "af_quantity": "2",
                "af_revenue": "9.99",
            },
            separators=(",", ":"),
        ),
        "eventTime": "2025-03-12 13:01:25.001",
        "eventCurrency": "USD",
        "customer_user_id": "cust-7",
        "ip": "203.0.113.7",
        "os": "17.4",
        "bundleIdentifier": "com.example.app",
        "app_version_name": "2.1.0",
        "app_store": "app_store",
        "ua": "ExampleApp/2.1",
        "att": 3,
        "idfa": IDFA,
        "idfv": IDFV,
        "email_hashed": sha("jane@example.com"),
        "phone_number_hashed": sha("16505551212"),
        "phone_number_e164_hashed": sha("+16505551212"),
        "first_name_hashed": sha("jane"),
        "last_name_hashed": sha("doe"),
    }
    # eventValue is a string holding JSON whose values are all strings
    assert all(isinstance(v, str) for v in json.loads(request.json["eventValue"]).values())
    body = request.content.decode()
    for clear in ("Jane@", "jane@example.com", "650", "Doe"):
        assert clear not in body


def test_android_event_uses_package_name_and_android_ids_only():
    data = app_event(
        "android",
        name="add_to_cart",
        value="12.00",
        device={
            "os": "android",
            "os_version": "14",
            "advertising_id": GAID,
            "oaid": "oaid-1",
            "imei": "490154203237518",
            "app_set_id": {"scope": 2, "id": GAID},
            "ad_tracking_enabled": False,
        },
    )
    _, request = af(data)
    assert request.url == "https://api3.appsflyer.com/inappevent/com.example.app"
    body = request.json
    assert body["eventName"] == "af_add_to_cart"
    assert json.loads(body["eventValue"]) == {"af_currency": "USD", "af_price": "12.00"}  # not revenue
    assert body["advertising_id"] == GAID and body["oaid"] == "oaid-1" and body["imei"] == "490154203237518"
    assert body["app_set_id"] == {"scope": 2, "id": GAID}
    assert body["aie"] is False
    assert not {"idfa", "idfv", "att"} & set(body)


def test_event_value_is_empty_string_when_there_is_nothing():
    outcome, _ = af(app_event(name="login", value=None, currency=None))
    assert outcome.payload["eventValue"] == ""
    assert "eventCurrency" not in outcome.payload


def test_custom_events_pass_unchanged_with_stringified_properties():
    data = app_event(
        name="level_up",
        value=None,
        currency=None,
        properties={"level": 7, "ratio": 0.5, "hard": True, "tags": ["a", "b"], "who": "x", "n": None},
    )
    outcome, _ = af(data)
    assert outcome.payload["eventName"] == "level_up"
    assert json.loads(outcome.payload["eventValue"]) == {
        "level": "7",
        "ratio": "0.5",
        "hard": "true",
        "tags": '["a","b"]',
        "who": "x",
        "n": "",
    }


def test_multiple_items_become_lists_and_search_string():
    data = app_event(
        name="search",
        value=None,
        currency=None,
        search_query="red shoes",
        items=[{"id": "a", "price": "1.50", "quantity": 1}, {"id": "b", "price": "2", "quantity": 3}],
    )
    ev = json.loads(af(data)[0].payload["eventValue"])
    assert ev == {
        "af_search_string": "red shoes",
        "af_content_id": ["a", "b"],
        "af_quantity": ["1", "3"],
        "af_price": ["1.50", "2"],
    }


def test_properties_may_not_override_relay_fields():
    outcome, _ = af(app_event(properties={"af_revenue": "1000"}))
    assert isinstance(outcome, Invalid)
    assert [str(e) for e in outcome.errors] == [
        "properties.af_revenue: is set by the relay from the event's own fields: remove it"
    ]


def test_negative_revenue_is_a_plain_decimal():
    outcome, _ = af(app_event(value="-5.10"))
    assert json.loads(outcome.payload["eventValue"])["af_revenue"] == "-5.10"


@pytest.mark.parametrize(
    ("vendor_ids", "message"),
    [
        ({}, "vendor_ids.appsflyer.appsflyer_id: is required: AppsFlyer's appsflyer_id is mandatory"),
        (
            {"appsflyer": {"appsflyer_id": "12345"}},
            "vendor_ids.appsflyer.appsflyer_id: must be 13 digits, '-', digits (1541234567890-1234567)",
        ),
    ],
)
def test_appsflyer_id_is_mandatory_and_patterned(vendor_ids, message):
    outcome, _ = af(app_event(vendor_ids=vendor_ids))
    assert [str(e) for e in outcome.errors] == [message]


def test_ip_is_ipv4_only():
    v6 = app_event(user={"ip": "2001:db8::1", "cookie_id": "c"})
    assert "ip" not in af(v6)[0].payload
    assert af(app_event())[0].payload["ip"] == "203.0.113.7"


def test_web_events_are_skipped_and_os_chooses_the_app():
    outcome, _ = af(web_event(name="purchase", value=1, currency="USD"))
    assert outcome == Skipped("AppsFlyer's S2S in-app events API takes app events only (source is 'web')")
    outcome, _ = af(app_event("other", device={"os": "other"}))
    assert [str(e) for e in outcome.errors] == [
        "device.os: must be 'ios' or 'android' for AppsFlyer (it chooses the app id)"
    ]
    no_ios = make_config(appsflyer={"ios_app_id": None})
    assert af(app_event("ios"), no_ios)[0] == Skipped("no [appsflyer] ios_app_id configured")


def test_page_view_is_not_sent_to_appsflyer():
    outcome, _ = af(app_event(name="page_view"))
    assert outcome == Skipped("no appsflyer event is mapped to 'page_view'")


def test_consent_denied_still_sends_with_consent_data_and_sharing_filter():
    outcome, _ = af(
        app_event(consent={"ad_storage": False, "gdpr_applies": True}, user={"email": "a@b.co", "ip": "1.2.3.4"})
    )
    assert outcome.payload["sharing_filter"] == "all"
    assert outcome.payload["consent_data"] == {
        "manual": {"gdpr_applies": True, "ad_user_data_enabled": False, "ad_personalization_enabled": False}
    }
    assert outcome.payload["email_hashed"] == sha("a@b.co")  # ad_user_data not refused


def test_ad_user_data_refused_sends_no_hashed_pii():
    outcome, _ = af(
        app_event(consent={"ad_user_data": False}, user={"email": "a@b.co", "phone": "+15551234567", "first_name": "A"})
    )
    assert not {"email_hashed", "phone_number_hashed", "phone_number_e164_hashed", "first_name_hashed"} & set(
        outcome.payload
    )
    assert outcome.payload["consent_data"]["manual"]["ad_user_data_enabled"] is False


def test_tcf_consent_and_partner_sharing_filter():
    tcf = {"policy_version": 4, "gdpr_applies": True, "cmp_sdk_id": 7, "cmp_sdk_version": 2, "tcstring": "CPX"}
    outcome, _ = af(app_event(consent={"tcf": tcf, "sharing_filter": ["googleadwords_int"]}))
    assert outcome.payload["consent_data"] == {"tcf": tcf}
    assert outcome.payload["sharing_filter"] == ["googleadwords_int"]
    assert "consent_data" not in af(app_event())[0].payload


def test_app_clip_custom_data_and_fb_login():
    outcome, _ = af(
        app_event(
            app={"bundle_id": "com.example.app", "app_clip": True, "custom_data": {"k": 1}},
            user={"fb_login_id": "1234567890", "ip": "1.2.3.4"},
        )
    )
    assert outcome.payload["app_type"] == "app_clip"
    assert outcome.payload["custom_data"] == '{"k":1}'
    assert outcome.payload["fb_login_id"] == "1234567890"


def _padded(n: int):
    return app_event(properties={"pad": "x" * n})


def test_one_kilobyte_limit_is_checked_on_the_serialized_body():
    base = len(af(_padded(0))[1].content)
    exact = MAX_BODY_BYTES - base
    outcome, request = af(_padded(exact))
    assert isinstance(outcome, Mapped) and len(request.content) == MAX_BODY_BYTES
    outcome, _ = af(_padded(exact + 1))
    assert isinstance(outcome, Invalid)
    assert [str(e) for e in outcome.errors] == [
        "(body): AppsFlyer takes a JSON body of at most 1024 bytes; this event is 1025 bytes "
        "(largest fields: eventValue, idfv, eventTime)"
    ]


def test_multibyte_text_counts_in_bytes():
    outcome, request = af(app_event(properties={"pad": "é" * 400}))  # 800 bytes, 400 characters
    assert isinstance(outcome, Invalid)


def test_legacy_v2():
    config = make_config(appsflyer={"api": "v2"})
    outcome, request = af(app_event(), config)
    assert request.url == "https://api2.appsflyer.com/inappevent/id123456789"
    assert request.json["af_events_api"] == "true"
    assert request.headers["authentication"] == SECRETS["appsflyer"]


def test_one_event_per_request_and_endpoint_override():
    adapter = AppsFlyer(make_config(appsflyer={"endpoint": "http://127.0.0.1:9001/"}).appsflyer)
    outcome, _ = af(app_event())
    assert adapter.request_for(outcome).url == "http://127.0.0.1:9001/inappevent/id123456789"
    with pytest.raises(ValueError, match="exactly one event per request, not 2"):
        adapter.build_request("id123456789", [outcome.payload, outcome.payload])
