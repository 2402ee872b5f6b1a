"""What each field may hold, enforced where the event is read (issue #24, items 1, 2 and 10): digits are
the ASCII digits 0-9, numbers are finite, and a phone's extension is not part of the hashed number. Each
case goes through the real IngestFunction on moto and, where a vendor maps it, through that vendor's rule."""

from __future__ import annotations

import json

import pytest

from relay.models import pii
from relay.queued.routing import Router
from relay.vendors import Invalid, Mapped

from ..conftest import AF_ID, FPC, app_event, event, make_config, web_event
from .test_hostile import Ingest

ARABIC_SEVEN = "\u0667"  # ٧, a decimal digit that is not ASCII (str.isdigit() and re's \d take it)
FULLWIDTH_ONE = "\uff11"  # １


@pytest.fixture
def ingest(aws_stack, monkeypatch):
    return Ingest(aws_stack, monkeypatch)


def post(ingest, *events):
    return ingest.post(json.dumps({"events": list(events)}, ensure_ascii=False).encode())


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"user": {"ip": f"203.0.113.{ARABIC_SEVEN}", "user_agent": "UA"}}, "user.ip"),
        ({"user": {"ip": f"203.0.11{FULLWIDTH_ONE}.7", "user_agent": "UA"}}, "user.ip"),
        ({"user": {"ip": "203.0.113.7", "fb_login_id": f"12{ARABIC_SEVEN}4"}}, "user.fb_login_id"),
        ({"user": {"ip": "fe80::1%eth0", "user_agent": "UA"}}, "user.ip"),
    ],
)
def test_non_ascii_digits_are_refused_by_the_field(ingest, patch, field):
    status, body = post(ingest, web_event(**patch))
    assert status == 400 and body["accepted"] == []
    assert [e["field"] for e in body["rejected"][0]["errors"]] == [field]


def test_an_imei_with_non_ascii_digits_is_refused(ingest):
    device = {"os": "android", "os_version": "14", "imei": "35" + ARABIC_SEVEN * 13}
    status, body = post(ingest, app_event("android", device=device))
    assert status == 400
    assert [e["field"] for e in body["rejected"][0]["errors"]] == ["device.imei"]


def test_an_appsflyer_id_with_non_ascii_digits_is_invalid_at_appsflyer_only(ingest):
    af_id = ARABIC_SEVEN * 13 + "-1234567"
    ids = {"appsflyer": {"appsflyer_id": af_id}, "adroll": {"first_party_cookie": FPC}}
    status, body = post(ingest, app_event(vendor_ids=ids))
    assert status == 202
    (entry,) = body["accepted"]
    assert "appsflyer" not in entry["destinations"]
    assert [e["field"] for e in entry["invalid"]["appsflyer"]] == ["vendor_ids.appsflyer.appsflyer_id"]


def test_an_adroll_cookie_with_non_ascii_digits_is_invalid_at_adroll_only(ingest):
    cookie = FPC[:-13] + ARABIC_SEVEN * 13
    status, body = post(ingest, web_event(vendor_ids={"adroll": {"first_party_cookie": cookie}}))
    assert status == 202
    (entry,) = body["accepted"]
    assert entry["destinations"] == ["applovin"]
    assert [e["field"] for e in entry["invalid"]["adroll"]] == ["vendor_ids.adroll.first_party_cookie"]


def test_a_restricted_applovin_user_id_must_be_ascii_digits():
    config = make_config(applovin={"mode": "restricted_lead_gen"})
    user = {"cookie_id": "c", "ip": "203.0.113.7", "user_agent": "UA"}
    lead = web_event(name="generate_lead", value="5", currency="USD", user={**user, "id": "12" + ARABIC_SEVEN})
    outcome = Router(config).route(event(lead))["applovin"]
    assert isinstance(outcome, Invalid)
    assert [e.field for e in outcome.errors] == ["user.id"]
    ascii_lead = web_event(name="generate_lead", value="5", currency="USD", user={**user, "id": "127"})
    assert isinstance(Router(config).route(event(ascii_lead))["applovin"], Mapped)


@pytest.mark.parametrize("where", ["properties", "app.custom_data"])
def test_a_number_too_large_for_a_double_is_refused_naming_the_field(ingest, where):
    raw = app_event()
    if where == "properties":
        raw["properties"] = {"score": "PLACEHOLDER"}
    else:
        raw["app"] = {**raw["app"], "custom_data": {"score": "PLACEHOLDER"}}
    text = json.dumps({"events": [raw, app_event(event_id="fine")]}).replace('"PLACEHOLDER"', "1e400")
    status, body = ingest.post(text.encode())
    assert status == 202
    assert [e["event_id"] for e in body["accepted"]] == ["fine"]
    (rejected,) = body["rejected"]
    assert rejected["errors"] == [
        {"field": f"{where}.score", "message": "must be a finite number (within ±1.8e308): it overflows a double"}
    ]


def test_every_vendor_body_is_strict_json(config):
    """The vendors' own serialisations refuse NaN and Infinity rather than writing them."""
    from relay.vendors.adroll import AdRoll
    from relay.vendors.appsflyer import stringify

    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        stringify([float("inf")])
    bad = event(web_event(properties={"x": 1.0}))
    bad.properties = {"x": float("nan")}
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        AdRoll(config.adroll).map_event(bad, "pageView")


@pytest.mark.parametrize(
    "written",
    [
        "+1 650 555 1212 ext. 12",
        "+1 650 555 1212 x12",
        "+1 (650) 555-1212 #12",
        "+1 650 555 1212;ext=12",
        "001 650 555 1212 extension 12",
    ],
)
def test_a_phone_extension_is_not_part_of_the_number(written):
    assert pii.phone_e164(written) == "+16505551212"
    assert pii.hash_phone_digits(written) == pii.sha256_hex("16505551212")


def test_a_national_number_with_an_extension_keeps_its_country_rule():
    assert pii.phone_e164("06 1234 5678 ext 3", "IT") == "+390612345678"


def test_an_appsflyer_id_of_ascii_digits_still_maps(config):
    outcome = Router(config).route(event(app_event(vendor_ids={"appsflyer": {"appsflyer_id": AF_ID}})))
    assert isinstance(outcome["appsflyer"], Mapped)
