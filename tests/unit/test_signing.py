"""Request signing: round trip, tamper, stale, rotation, malformed headers."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.ingest.signing import SignatureError, sign, verify

from ..conftest import ROOT

T = 1_741_784_485
BODY = b'{"events":[{"event_id":"e1"}]}'


def test_header_format_is_documented_hmac():
    header = sign(BODY, "s3cret", timestamp=T)
    expected = hmac.new(b"s3cret", f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"


@given(st.binary(max_size=2048), st.text(min_size=1, max_size=64))
def test_round_trip(body, secret):
    assert verify(body, sign(body, secret, timestamp=T), [secret], now=T) == T


@given(st.binary(min_size=1, max_size=512), st.integers(min_value=0, max_value=511))
def test_tampered_body_is_refused(body, pos):
    header = sign(body, "k", timestamp=T)
    pos %= len(body)
    tampered = body[:pos] + bytes([body[pos] ^ 1]) + body[pos + 1 :]
    with pytest.raises(SignatureError, match="no active signing secret made this signature over this body"):
        verify(tampered, header, ["k"], now=T)


def test_tampered_timestamp_is_refused():
    header = sign(BODY, "k", timestamp=T).replace(f"t={T}", f"t={T + 1}")
    with pytest.raises(SignatureError, match="no active signing secret made this signature"):
        verify(BODY, header, ["k"], now=T)


T_ONCE = "malformed X-Relay-Signature header: t must appear once, as unix seconds (1 to 12 ASCII digits)"


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_stale_or_future_timestamp_is_refused(skew):
    with pytest.raises(SignatureError, match="outside the 300 s tolerance"):
        verify(BODY, sign(BODY, "k", timestamp=T), ["k"], now=T + skew)


def test_tolerance_boundary_and_setting():
    assert verify(BODY, sign(BODY, "k", timestamp=T), ["k"], now=T + 300) == T
    with pytest.raises(SignatureError, match="outside the 60 s tolerance"):
        verify(BODY, sign(BODY, "k", timestamp=T), ["k"], tolerance_seconds=60, now=T + 61)


def test_rotation_on_both_sides():
    # the relay holds old and new secrets: a client on either verifies
    assert verify(BODY, sign(BODY, "old", timestamp=T), ["new", "old"], now=T)
    assert verify(BODY, sign(BODY, "new", timestamp=T), ["new", "old"], now=T)
    # a client sends one v1 per secret while it rotates: the relay knowing only one verifies
    both = sign(BODY, ["old", "new"], timestamp=T)
    assert both.count("v1=") == 2
    assert verify(BODY, both, ["new"], now=T)
    with pytest.raises(SignatureError, match="no active signing secret made this signature"):
        verify(BODY, both, ["retired"], now=T)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing X-Relay-Signature header"),
        ("", "missing X-Relay-Signature header"),
        ("garbage", "malformed X-Relay-Signature header: expected t=<unix seconds>,v1=<hex>"),
        (f"v1={'a' * 64}", "malformed X-Relay-Signature header: t=<unix seconds> is missing"),
        (f"t={T}", "malformed X-Relay-Signature header: no v1 signature"),
        (f"t=abc,v1={'a' * 64}", T_ONCE),
        (f"t={T},t={T},v1={'a' * 64}", T_ONCE),
        # str.isdigit takes these, int() then fails or takes them: only ASCII digits are unix seconds
        (f"t=\u0661\u0667\u0664\u0661\u0667\u0668\u0664\u0664\u0669\u0660,v1={'a' * 64}", T_ONCE),
        (f"t=\u00b2,v1={'a' * 64}", T_ONCE),
        (f"t={'1' * 5000},v1={'a' * 64}", T_ONCE),
        (f"t={T},v1=xyz", "malformed X-Relay-Signature header: v1 must be 64 lower-case hex characters"),
    ],
)
def test_malformed_headers(header, reason):
    with pytest.raises(SignatureError) as exc:
        verify(BODY, header, ["k"], now=T)
    assert str(exc.value) == reason


def test_unknown_schemes_are_ignored_and_no_secret_refuses():
    header = sign(BODY, "k", timestamp=T) + ",v0=deadbeef"
    assert verify(BODY, header, ["k"], now=T) == T
    with pytest.raises(SignatureError, match="no signing secret is configured"):
        verify(BODY, header, [], now=T)


def test_reasons_never_contain_secret_or_digest():
    header = sign(BODY, "topsecret", timestamp=T)
    with pytest.raises(SignatureError) as exc:
        verify(BODY + b" ", header, ["topsecret"], now=T)
    assert "topsecret" not in str(exc.value) and header.split("v1=")[1] not in str(exc.value)


def test_sign_needs_a_secret():
    with pytest.raises(ValueError, match="at least one non-empty secret"):
        sign(BODY, [])


def test_a_timestamp_in_milliseconds_gets_a_hint_about_the_unit():
    body = b'{"events": []}'
    now = 1_767_225_600
    with pytest.raises(SignatureError, match="t looks like milliseconds"):  # 13 digits: refused as malformed
        verify(body, sign(body, "s", timestamp=now * 1000), ["s"], now=now)
    with pytest.raises(SignatureError, match="t looks like milliseconds; send unix seconds"):  # 12 digits
        verify(body, sign(body, "s", timestamp=now * 100), ["s"], now=now * 100 / 1000)
    with pytest.raises(SignatureError) as caught:  # merely stale: no hint
        verify(body, sign(body, "s", timestamp=now - 3600), ["s"], now=now)
    assert "milliseconds" not in str(caught.value)


def test_the_signature_is_stripes_webhook_scheme_byte_for_byte():
    """X-Relay-Signature is Stripe's webhook signature: Stripe's own library verifies every test vector (and
    the GET vectors), signs as the relay does, and the relay verifies what Stripe's library signs."""
    import stripe

    vectors = json.loads((ROOT / "clients" / "test-vectors.json").read_text())
    for v in vectors["vectors"]:
        assert stripe.WebhookSignature.verify_header(v["body"], v["header"], v["secret"], tolerance=None), v["name"]
        stripes = stripe.WebhookSignature.generate_signature_header(v["body"], v["secret"], v["timestamp"])
        assert stripes == sign(v["body"].encode(), v["secret"], v["timestamp"]) == v["header"], v["name"]
        assert verify(v["body"].encode(), stripes, [v["secret"]], now=v["timestamp"]) == v["timestamp"]
    for v in vectors["get_vectors"]:
        assert stripe.WebhookSignature.verify_header(v["signed"], v["header"], v["secret"], tolerance=None), v["name"]
    v = vectors["vectors"][0]
    with pytest.raises(stripe.SignatureVerificationError):  # and it refuses what the relay refuses
        stripe.WebhookSignature.verify_header(v["body"] + " ", v["header"], v["secret"], tolerance=None)
