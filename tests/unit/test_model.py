"""The canonical event: every rule has a failing case that names the field and the rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay.ingest import jsonbody
from relay.models.event import EventParseError, event_id_of, events_of, parse_event

from ..conftest import NOW, NOW_MS, app_event, event, web_event


def errors_of(data, **kw) -> dict[str, str]:
    with pytest.raises(EventParseError) as exc:
        parse_event(data, now=NOW, **kw)
    return {e.field: e.message for e in exc.value.errors}


def test_minimal_web_event_parses_and_defaults():
    ev = event(web_event())
    assert ev.event_id == "evt-1"
    assert ev.epoch_ms == NOW_MS - 5000
    assert ev.user.ip == "203.0.113.7"
    assert ev.destinations is None


def test_timestamp_defaults_to_time_received():
    data = web_event()
    del data["timestamp"]
    assert event(data).event_time == NOW


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-12T13:01:25.001Z", datetime(2025, 3, 12, 13, 1, 25, 1000, tzinfo=UTC)),
        ("2025-03-12T15:01:25.001+02:00", datetime(2025, 3, 12, 13, 1, 25, 1000, tzinfo=UTC)),
        (1741784485001, datetime(2025, 3, 12, 13, 1, 25, 1000, tzinfo=UTC)),
    ],
)
def test_timestamp_accepts_iso_with_offset_and_epoch_ms(value, expected):
    assert event(web_event(timestamp=value)).event_time == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2025-03-12T13:01:25", "ISO-8601 timestamp needs a UTC offset (Z or +hh:mm)"),
        ("yesterday", "must be an ISO-8601 date-time such as 2025-03-12T13:01:25.001Z"),
        (True, "must be an ISO-8601 string with a UTC offset or epoch milliseconds"),
        (1.5, "must be an ISO-8601 string with a UTC offset or epoch milliseconds"),
        (-1, "epoch milliseconds out of range"),
        ("0001-01-01T01:00:00+03:04", "is out of range once converted to UTC"),
        ("9999-12-31T23:00:00-03:00", "is out of range once converted to UTC"),
        (NOW_MS + 6 * 60 * 1000, "is more than 5 minutes in the future"),
        (NOW_MS - 8 * 86400 * 1000, "is older than max_event_age_days (7 days)"),
    ],
)
def test_timestamp_rules(value, message):
    assert errors_of(web_event(timestamp=value)) == {"timestamp": message}


def test_max_event_age_is_configurable():
    old = NOW_MS - 8 * 86400 * 1000
    assert event(web_event(timestamp=old), max_event_age_days=30).epoch_ms == old
    assert errors_of(web_event(timestamp=old), max_event_age_days=2) == {
        "timestamp": "is older than max_event_age_days (2 days)"
    }


def test_four_minutes_ahead_is_accepted():
    assert event(web_event(timestamp=NOW_MS + 4 * 60 * 1000)).epoch_ms == NOW_MS + 240000


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        ({"event_id": ""}, "event_id", "String should have at least 1 character"),
        ({"event_id": "x" * 129}, "event_id", "String should have at most 128 characters"),
        ({"name": ""}, "name", "String should have at least 1 character"),
        ({"source": "email"}, "source", "Input should be 'web' or 'app'"),
        ({"page_url": "/relative"}, "page_url", "must be an absolute http(s) URL such as https://example.com/page"),
        (
            {"page_url": "ftp://x.example/"},
            "page_url",
            "must be an absolute http(s) URL such as https://example.com/page",
        ),
        ({"page_url": None}, "page_url", "is required when source is 'web'"),
        ({"value": "12.5"}, "currency", "is required when value is set"),
        ({"value": "NaN", "currency": "USD"}, "value", "must be a finite decimal number"),
        ({"value": "1e400", "currency": "USD"}, "value", "must be less than 10^15 in absolute value"),
        (
            {"value": True, "currency": "USD"},
            "value",
            "must be a decimal number such as 12.34 (a JSON number or a string)",
        ),
        ({"value": "12", "currency": "XYZ"}, "currency", "must be an ISO 4217 currency code such as USD or EUR"),
        ({"items": [{"name": "no id"}]}, "items[0].id", "is required"),
        ({"items": [{"id": "a", "quantity": 0}]}, "items[0].quantity", "Input should be greater than or equal to 1"),
        (
            {"items": [{"id": "a", "price": "abc"}]},
            "items[0].price",
            "must be a decimal number such as 12.34 (a JSON number or a string)",
        ),
        ({"colour": "red"}, "colour", "is not a known field (unknown fields are rejected)"),
        ({"user": {"ip": "300.1.1.1"}}, "user.ip", "must be an IPv4 or IPv6 address"),
        ({"user": {"country": "USA"}}, "user.country", "must be an ISO 3166-1 alpha-2 country code such as US or DE"),
        ({"user": {"email": "not-an-email"}}, "user.email", "must be an email address or its SHA-256 hex digest"),
        ({"user": {"email_md5": "abc"}}, "user.email_md5", "String should match pattern '^[0-9a-f]{32}$'"),
        (
            {"user": {"phone": "12"}},
            "user.phone",
            "must be a phone number of 7 to 15 digits including the country code (E.164)",
        ),
        ({"user": {"fb_login_id": "abc"}}, "user.fb_login_id", "String should match pattern '^[0-9]{1,32}$'"),
        ({"user": {"nickname": "x"}}, "user.nickname", "is not a known field (unknown fields are rejected)"),
        (
            {"device": {"os": "symbian"}},
            "device.os",
            "Input should be 'ios', 'android', 'macos', 'windows', 'linux' or 'other'",
        ),
        ({"device": {"os": "ios", "att": 4}}, "device.att", "Input should be less than or equal to 3"),
        (
            {"device": {"os": "android", "idfa": "5D1D3D2C-8E8B-4C5A-9C1B-2F0A2B3C4D5E"}},
            "device.idfa",
            "is an Apple identifier: set only when device.os is 'ios' or 'macos'",
        ),
        (
            {"device": {"os": "ios", "advertising_id": "5D1D3D2C-8E8B-4C5A-9C1B-2F0A2B3C4D5E"}},
            "device.advertising_id",
            "is an Android identifier: set only when device.os is 'android'",
        ),
        (
            {"device": {"os": "android", "app_set_id": {"scope": 3, "id": "5D1D3D2C-8E8B-4C5A-9C1B-2F0A2B3C4D5E"}}},
            "device.app_set_id.scope",
            "Input should be 1 or 2",
        ),
        ({"device": {"os": "ios", "idfa": "not-a-uuid"}}, "device.idfa", None),
        ({"app": {"app_clip": True}}, "app.app_clip", "App Clips exist on iOS only: set device.os to 'ios'"),
        (
            {"destinations": ["applovin", "tiktok"]},
            "destinations[1]",
            "Input should be 'applovin', 'appsflyer' or 'adroll'",
        ),
        ({"destinations": ["adroll", "adroll"]}, "destinations", "must not name a vendor twice"),
        ({"consent": {"tcf": {"policy_version": 4}}}, "consent.tcf.gdpr_applies", "is required"),
        ({"consent": {"sharing_filter": "none"}}, "consent.sharing_filter", None),
        ({"vendor_ids": {"tiktok": {}}}, "vendor_ids.tiktok", "is not a known field (unknown fields are rejected)"),
    ],
)
def test_field_rules_name_the_field_and_the_rule(patch, field, message):
    errors = errors_of(web_event(**patch))
    assert field in errors, errors
    if message is not None:
        assert errors[field] == message


def test_errors_never_echo_the_input_value():
    with pytest.raises(EventParseError) as exc:
        parse_event(web_event(user={"email": "secret@@example.com", "phone": "+1 (555) 12"}), now=NOW)
    assert "secret" not in str(exc.value) and "555" not in str(exc.value)


def test_values_are_normalised():
    ev = event(web_event(value=30, currency="usd", user={"ip": "2001:0db8::0001", "country": "de"}))
    assert ev.value == Decimal("30") and ev.currency == "USD"
    assert ev.user.ip == "2001:db8::1" and ev.user.country == "DE"


def test_full_app_event_parses():
    ev = event(
        app_event(
            "android",
            device={
                "os": "android",
                "os_version": "14",
                "type": "phone",
                "advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d",
                "oaid": "oaid-1",
                "amazon_aid": "38400000-8cf0-11bd-b23e-10b96e40000e",
                "imei": "490154203237518",
                "app_set_id": {"scope": 1, "id": "38400000-8cf0-11bd-b23e-10b96e40000f"},
                "ad_tracking_enabled": True,
            },
            consent={
                "tcf": {
                    "policy_version": 4,
                    "gdpr_applies": True,
                    "cmp_sdk_id": 7,
                    "cmp_sdk_version": 2,
                    "tcstring": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
                }
            },
        )
    )
    assert ev.device.app_set_id.scope == 1
    assert ev.consent.tcf.cmp_sdk_id == 7


def test_ingest_body_and_single_event_inputs():
    assert events_of({"events": [1, 2]}) == [1, 2]
    assert events_of({"event_id": "x"}) == [{"event_id": "x"}]
    for bad, message in [
        ({"events": []}, "events: must hold 1 to 100 events, not 0"),
        ({"events": [{}] * 101}, "events: must hold 1 to 100 events, not 101"),
        ({"events": {}}, "events: must be a list of events"),
        ({"events": [], "extra": 1}, "extra: is not a known field (unknown fields are rejected)"),
    ]:
        with pytest.raises(EventParseError) as exc:
            events_of(bad)
        assert str(exc.value) == message


def test_non_object_event_is_rejected_with_its_position():
    with pytest.raises(EventParseError) as exc:
        parse_event([1], now=NOW, prefix=("events", 3))
    assert str(exc.value) == "events[3]: must be a JSON object"


def test_event_id_of_raw_input():
    assert event_id_of({"event_id": "abc"}) == "abc"
    assert event_id_of({"event_id": 5}) is None
    assert event_id_of("x") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": Infinity}', "Infinity is not valid JSON"),
        (b"\xff\xfe", "body is not valid UTF-8"),
        (b"[" * 10000 + b"]" * 10000, "JSON is nested deeper than 32 levels"),
        (b'{"a": ', "not valid JSON: Expecting value at line 1 column 7"),
    ],
)
def test_strict_json(raw, message):
    with pytest.raises(jsonbody.JsonBodyError) as exc:
        jsonbody.loads(raw)
    assert str(exc.value) == message


def test_event_time_property_is_utc():
    ev = event(web_event(timestamp="2025-03-12T14:01:25+01:00"))
    assert ev.event_time.utcoffset() == timedelta(0)


@given(
    st.from_regex(r"-?(0|[1-9][0-9]{0,400})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,5})?", fullmatch=True),
)
@example("1" + "0" * 308 + ".5")
@example("1E+0400")
def test_every_number_that_overflows_a_double_is_flagged(number):
    """Every number that overflows a double is flagged as it is read, and no other (the body is then walked
    to name the field)."""
    found: list[bool] = []
    value = jsonbody.loads(f'{{"n": {number}}}', non_finite=found)["n"]
    overflows = isinstance(value, float) and value in (float("inf"), float("-inf"))
    assert bool(found) == overflows
