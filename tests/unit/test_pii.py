"""PII normalisation and hashing (VENDORS.md: AppsFlyer, AppLovin/Stape, AdRoll)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay.models import pii
from relay.models.codes import CALLING_CODES  # the countries to draw from


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def test_appsflyer_documented_phone_example():
    assert pii.phone_digits("(650)555-1212", "US") == "16505551212"
    assert pii.phone_e164("(650)555-1212", "US") == "+16505551212"
    assert pii.hash_phone_digits("(650)555-1212", "US") == sha("16505551212")
    assert pii.hash_phone_e164("(650)555-1212", "US") == sha("+16505551212")


@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("+1 (650) 555-1212", None, "+16505551212"),
        ("001 650 555 1212", None, "+16505551212"),
        ("16505551212", "US", "+16505551212"),
        ("16505551212", None, "+16505551212"),
        ("07911 123456", "GB", "+447911123456"),
        ("447911123456", "GB", "+447911123456"),
        ("+44 (0)7911 123456".replace("(0)", ""), None, "+447911123456"),
        ("0151 1234 5678", "DE", "+4915112345678"),
        ("tel: +33 6 12 34 56 78", None, "+33612345678"),
    ],
)
def test_phone_e164(raw, country, e164):
    assert pii.phone_e164(raw, country) == e164
    assert pii.phone_digits(raw, country) == e164[1:]


@pytest.mark.parametrize("raw", ["", "123", "+0123456789", "+1234567890123456"])
def test_phone_errors_do_not_echo_the_number(raw):
    with pytest.raises(pii.PhoneError) as exc:
        pii.phone_e164(raw)
    assert str(exc.value) == "must be a phone number of 7 to 15 digits including the country code (E.164)"


def test_email_normalisation_and_hash():
    assert pii.normalize_email("  Jane.Doe@Example.COM ") == "jane.doe@example.com"
    assert pii.hash_email("  Jane.Doe@Example.COM ") == sha("jane.doe@example.com")


def test_hashes_pass_through_unchanged():
    digest = sha("user@example.com")
    assert pii.hash_email(digest) == digest
    assert pii.hash_email(digest.upper()) == digest
    assert pii.hash_phone_digits(digest) == digest
    assert pii.hash_phone_e164(digest) is None  # a hashed phone cannot be re-formatted
    assert pii.hash_name(digest) == digest


def test_name_hash_is_lower_case_and_trimmed():
    assert pii.hash_name(" Jane ") == sha("jane")


emails = st.builds(
    lambda local, domain, pad: f"{pad}{local}@{domain}.com{pad}",
    st.text(alphabet="abcXYZ019._%+-", min_size=1, max_size=20),
    st.text(alphabet="abcDEF019-", min_size=1, max_size=20),
    st.sampled_from(["", " ", "  \t"]),
)


@given(emails)
def test_email_normaliser_is_idempotent(email):
    once = pii.normalize_email(email)
    assert pii.normalize_email(once) == once
    assert pii.hash_email(email) == pii.hash_email(once) == pii.hash_email(pii.hash_email(email))


national = st.text(alphabet="0123456789", min_size=6, max_size=10).filter(lambda d: d.lstrip("0"))
decoration = st.sampled_from(["{}", "({}", "{}-", " {} ", "tel:{}", "{}."])


@given(national, st.sampled_from(sorted(CALLING_CODES)), decoration)
def test_phone_normaliser_is_idempotent(digits, country, fmt):
    raw = fmt.format(digits)
    try:
        e164 = pii.phone_e164(raw, country)
    except pii.PhoneError:
        return
    assert pii.phone_e164(e164, country) == e164
    assert pii.phone_e164(e164) == e164
    assert pii.phone_digits(e164, country) == e164[1:]
    assert e164[1:].isdigit() and 7 <= len(e164) - 1 <= 15


@given(st.text(alphabet="0123456789 ()-.", min_size=0, max_size=30))
@example("2700000000")  # South Africa's trunk 0, left in twice: each reading drops one
def test_phone_normaliser_never_crashes(raw):
    try:
        out = pii.phone_digits("+" + raw)
    except pii.PhoneError:
        return
    assert out.isdigit() and 7 <= len(out) <= 15
    assert pii.phone_digits("+" + out) == out  # normalised once and for all


@given(st.text(alphabet="0123456789", min_size=10, max_size=10).filter(lambda d: d[0] not in "01"))
def test_us_numbers_get_country_code_1(digits):  # North American numbers never start with 0 or 1
    assert pii.phone_digits(digits, "US") == "1" + digits


@pytest.mark.parametrize(
    ("national", "country", "international"),
    [
        ("06 1234 5678", "IT", "+39 06 1234 5678"),  # Italy keeps its leading 0
        ("030 123456", "DE", "+49 30 123456"),  # Germany's trunk prefix 0 goes
        ("(11) 91234-5678", "BR", "+55 11 91234-5678"),
        ("020 7946 0958", "GB", "+44 20 7946 0958"),
        ("(650) 555-1212", "US", "+1 650 555 1212"),
    ],
)
def test_a_national_number_hashes_as_its_international_form(national, country, international):
    assert pii.phone_e164(national, country) == pii.phone_e164(international)
    assert pii.hash_phone_digits(national, country) == pii.hash_phone_digits(international, None)
    assert pii.hash_phone_e164(national, country) == pii.hash_phone_e164(international, None)


@pytest.mark.parametrize("phone", ["٠٦١٢٣٤٥٦٧٨", "+３９０６１２３４５６７８", "06 1234 ５６７８"])
def test_digits_outside_ascii_are_an_input_error(phone):
    with pytest.raises(pii.PhoneError, match="ASCII digits"):
        pii.phone_e164(phone, "IT")


def test_a_phone_is_read_once_per_event_whatever_the_vendors(monkeypatch):
    from relay.queued.routing import Router
    from relay.vendors import Mapped

    from ..conftest import app_event, event, make_config

    reads: list[str] = []
    real = pii.phone_e164
    monkeypatch.setattr(pii, "phone_e164", lambda value, country=None: (reads.append(value), real(value, country))[1])
    items = [{"id": "sku-1", "price": "9.99", "quantity": 1}]
    raw = app_event("ios", page_url="https://shop.example.com/app", items=items, order_id="o-1")
    raw["user"] = {**raw["user"], "phone": "(650) 555-1212", "country": "US"}
    outcomes = Router(make_config()).route(event(raw))
    assert reads == ["(650) 555-1212"]  # the validator's parse, kept for every vendor
    applovin, appsflyer = outcomes["applovin"], outcomes["appsflyer"]
    assert isinstance(applovin, Mapped) and isinstance(appsflyer, Mapped)
    assert applovin.payload["user_data"]["phone"] == sha("16505551212")
    assert appsflyer.payload["phone_number_hashed"] == sha("16505551212")
    assert appsflyer.payload["phone_number_e164_hashed"] == sha("+16505551212")
