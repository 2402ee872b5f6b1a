"""Hostile input at the ingest (issue #7, item 3, in part): schemathesis over openapi.json and hypothesis
over raw bodies, plus targeted cases. Every answer is a documented 4xx (never >= 500), every refusal
enqueues nothing, and no log line or metric carries clear-text PII or the signing secret.
`make reliability` runs the same tests with HYPOTHESIS_PROFILE=long (1,000 examples each)."""

from __future__ import annotations

import json
import os

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.aws.sns import SnsPublisher
from relay.ingest.signing import sign
from relay_tools.apigw import http_api_event, response_body
from relay_tools.functions import ingest_handler

from ..conftest import NOW_MS, ROOT, SECRETS, FakeLambdaContext, answered, use_function_env, web_event

NOW_S = NOW_MS // 1000
SCHEMA = schemathesis.openapi.from_path(str(ROOT / "openapi.json"))
CASES = SCHEMA["/v1/events"]["POST"].as_strategy()
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Ingest:
    """The real IngestFunction handler on moto, counting what reaches SNS."""

    def __init__(self, stack, monkeypatch):
        env = use_function_env(monkeypatch, stack, "IngestFunction")
        self.published = 0  # messages for the vendors' queues
        self.archived = 0  # archive messages (relay.archive.outgoing)
        client = boto3.client("sns")

        def count(params, **_):
            for entry in params["PublishBatchRequestEntries"]:
                if "archive" in entry["MessageAttributes"]:
                    self.archived += 1
                else:
                    self.published += 1

        client.meta.events.register("before-parameter-build.sns.PublishBatch", count)
        self.publisher = SnsPublisher(env["RELAY_TOPIC_ARN"], client)
        self.handler = ingest_handler(clock=lambda: NOW_S, publisher=self.publisher)

    def guard(self, replay_guard) -> None:
        self.handler = ingest_handler(clock=lambda: NOW_S, publisher=self.publisher, replay_guard=replay_guard)

    def post(self, raw: bytes, headers: dict | None = None, signed: bool = True) -> tuple[int, dict]:
        hdrs = {"content-type": "application/json", **(headers or {})}
        if signed:
            hdrs["x-relay-signature"] = sign(raw, SECRETS["signing"], NOW_S)
        before, archived = self.published, self.archived
        event = http_api_event("POST", "/v1/events", hdrs, raw)
        response = self.handler(event, FakeLambdaContext())
        status, body = response["statusCode"], answered(response, event)
        assert status < 500, (status, body)
        if status >= 400:
            assert self.published == before, "a refused request enqueued events"
            assert self.archived == archived, "a refused request archived events"
            assert set(body) in ({"error"}, {"accepted", "rejected"}), body
        if status == 202:
            assert body["accepted"], body
        return status, body


@pytest.fixture
def ingest(aws_stack, monkeypatch):
    return Ingest(aws_stack, monkeypatch)


@FIXTURE_OK
@given(case=CASES)
def test_schemathesis_cases_never_get_a_5xx(ingest, case):
    ingest.post(json.dumps(case.body).encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
event_like = st.fixed_dictionaries(
    {"event_id": st.text(max_size=140), "name": st.text(max_size=110), "source": st.sampled_from(["web", "app", "x"])},
    optional={
        "page_url": st.text(max_size=50),
        "value": json_values,
        "currency": st.text(max_size=4),
        "timestamp": json_values,
        "user": json_values,
        "device": json_values,
        "items": json_values,
        "consent": json_values,
        "destinations": json_values,
        "properties": json_values,
    },
)


@FIXTURE_OK
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_never_get_a_5xx(ingest, body):
    ingest.post(body)


@FIXTURE_OK
@given(events=st.lists(event_like, min_size=1, max_size=5))
def test_event_shaped_garbage_is_accepted_or_refused_field_by_field(ingest, events):
    status, body = ingest.post(json.dumps({"events": events}).encode())
    if status in (202, 400) and "rejected" in body:
        assert len(body["accepted"]) + len(body["rejected"]) == len(events)
        for rejected in body["rejected"]:
            assert all(e["field"] and e["message"] for e in rejected["errors"])


@FIXTURE_OK
@given(event_id=st.text(max_size=200), raw=st.booleans())
def test_any_event_status_path_gets_a_4xx_or_its_journey_never_a_5xx(ingest, event_id, raw):
    """GET /v1/events/{event_id}, signed as a client signs it, or with the id pasted into the path unencoded."""
    from urllib.parse import quote

    from relay.ingest.status import signed_message

    path = "/v1/events/" + (event_id if raw else quote(event_id, safe=""))
    headers = {"x-relay-signature": sign(signed_message(event_id), SECRETS["signing"], NOW_S)}
    response = ingest.handler(http_api_event("GET", path, headers, b""), FakeLambdaContext())
    assert response["statusCode"] in (400, 401, 404), response
    assert json.loads(response_body(response))["error"]


def nested(depth: int) -> bytes:
    return b'{"events": [' + b"[" * depth + b"]" * depth + b"]}"


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (nested(10_000), 400, "JSON is nested deeper than 32 levels"),
        (b'{"events": [{"event_id": "\xff\xfe"}]}', 400, "body is not valid UTF-8"),
        (b'{"events": [], "events": []}', 400, "duplicate key 'events'"),
        (b'{"events": [{"value": NaN}]}', 400, "NaN is not valid JSON"),
        (b'{"events": [{"value": Infinity}]}', 400, "Infinity is not valid JSON"),
    ],
)
def test_malformed_bodies(ingest, raw, status, error):
    assert ingest.post(raw) == (status, {"error": error})


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        ({"value": 10**400, "currency": "USD"}, "value", "must be less than 10^15 in absolute value"),
        ({"value": "1e999999999", "currency": "USD"}, "value", "must be less than 10^15 in absolute value"),
        ({"value": "1e-999999999", "currency": "USD"}, "value", "must have at most 20 decimal places"),
        ({"items": [{"id": "a", "price": 1e-300}]}, "items[0].price", "must have at most 20 decimal places"),
        ({"timestamp": 10**400}, "timestamp", "epoch milliseconds out of range"),
        ({"event_id": "x" * 129}, "event_id", "String should have at most 128 characters"),
        ({"items": [{"id": "a"}] * 101}, "items", "List should have at most 100 items after validation, not 101"),
        ({"items": [{"id": "a", "quantity": 0}]}, "items[0].quantity", "Input should be greater than or equal to 1"),
        ({"device": {"os": "ios", "att": 4}}, "device.att", "Input should be less than or equal to 3"),
        ({"timestamp": NOW_MS + 5 * 60 * 1000 + 1}, "timestamp", "is more than 5 minutes in the future"),
        (
            {"user": {"ip": "203.0.113.7", "email": "a@" + "b" * 400 + ".com"}},
            "user.email",
            "String should have at most 320 characters",
        ),
    ],
)
def test_fields_past_their_boundary_are_rejected(ingest, patch, field, message):
    status, body = ingest.post(json.dumps({"events": [web_event(**patch)]}).encode())
    assert status == 400 and body["accepted"] == []
    assert {"field": field, "message": message} in body["rejected"][0]["errors"]


@pytest.mark.parametrize(
    "patch",
    [
        {"event_id": "x" * 128},
        {"items": [{"id": "a", "quantity": 1}] * 100},
        {"device": {"os": "ios", "att": 3}},
        {"timestamp": NOW_MS + 5 * 60 * 1000},
        {"value": "999999999999999.99", "currency": "USD"},
    ],
)
def test_fields_at_their_boundary_are_accepted(ingest, patch):
    status, body = ingest.post(json.dumps({"events": [web_event(**patch)]}).encode())
    assert status == 202 and body["rejected"] == []


def test_signature_attacks_and_pii_never_reach_logs_or_metrics(ingest, output):
    event = web_event(
        user={
            "ip": "198.51.100.99",
            "user_agent": "UA",
            "email": "victim@example.org",
            "phone": "+14155550199",
            "cookie_id": "c",
        }
    )
    raw = json.dumps({"events": [event]}).encode()
    other = json.dumps({"events": [{**event, "event_id": "forged"}]}).encode()
    good = sign(raw, SECRETS["signing"], NOW_S)
    attempts = {
        "garbled": "t=abc,v1=zzz",
        "stale": sign(raw, SECRETS["signing"], NOW_S - 301),
        "other body": sign(other, SECRETS["signing"], NOW_S),
        "wrong secret": sign(raw, "guess", NOW_S),
        "no v1": f"t={NOW_S}",
    }
    for name, header in attempts.items():
        status, body = ingest.post(raw, {"x-relay-signature": header}, signed=False)
        assert status == 401, name
    assert ingest.post(raw, {"x-relay-signature": good}, signed=False)[0] == 202
    assert ingest.post(json.dumps({"events": [{**event, "user": {"email": "not@@mail"}}]}).encode())[0] == 400
    text = output.text()
    assert '"ingest request"' in text
    for secret in ("victim@example.org", "4155550199", "198.51.100.99", "not@@mail", SECRETS["signing"], good):
        assert secret not in text


def test_a_replayed_request_enqueues_nothing_its_events_are_duplicates(ingest):
    """ReplayGuard=false (the default): the ledger is the replay protection (docs/decisions/0011)."""
    raw = json.dumps({"events": [web_event(event_id="once"), web_event(event_id="twice")]}).encode()
    header = {"x-relay-signature": sign(raw, SECRETS["signing"], NOW_S)}
    status, first = ingest.post(raw, header, signed=False)
    assert status == 202 and not any(a.get("duplicate") for a in first["accepted"])
    published = ingest.published
    status, again = ingest.post(raw, header, signed=False)
    assert status == 202 and [(a["event_id"], a.get("duplicate")) for a in again["accepted"]] == [
        ("once", True),
        ("twice", True),
    ]
    assert ingest.published == published


def test_with_the_replay_guard_a_replayed_request_is_refused_and_enqueues_nothing(ingest):
    from relay.aws.replay import ReplayGuard

    ingest.guard(ReplayGuard(os.environ["RELAY_IDEMPOTENCY_TABLE"]))  # ReplayGuard=true
    raw = json.dumps({"events": [web_event(event_id="once")]}).encode()
    header = {"x-relay-signature": sign(raw, SECRETS["signing"], NOW_S)}
    assert ingest.post(raw, header, signed=False)[0] == 202
    published = ingest.published
    assert ingest.post(raw, header, signed=False) == (
        401,
        {"error": "signature already used: sign every request anew (replayed requests are refused)"},
    )
    assert ingest.published == published
    # the same body signed anew (another second) is a new request
    assert ingest.post(raw, {"x-relay-signature": sign(raw, SECRETS["signing"], NOW_S - 1)}, signed=False)[0] == 202


def test_a_request_refused_with_503_can_be_resent_as_is(aws_stack, monkeypatch):
    from relay.aws.replay import ReplayGuard

    env = use_function_env(monkeypatch, aws_stack, "IngestFunction")

    class FlakySns(SnsPublisher):
        calls = 0

        def publish(self, messages):
            FlakySns.calls += 1
            return [m.id for m in messages] if FlakySns.calls == 1 else super().publish(messages)

    handler = ingest_handler(
        clock=lambda: NOW_S,
        publisher=FlakySns(env["RELAY_TOPIC_ARN"], boto3.client("sns")),
        replay_guard=ReplayGuard(env["RELAY_IDEMPOTENCY_TABLE"]),
    )
    raw = json.dumps({"events": [web_event(event_id="retry-me")]}).encode()
    headers = {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"], NOW_S)}
    first = handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    assert first["statusCode"] == 503 and first["headers"]["Retry-After"] == "1"
    second = handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    assert second["statusCode"] == 202
