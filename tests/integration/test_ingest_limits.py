"""The ingest keeps its promises at AWS's limits (issue #14): a 4xx naming the field for input no vendor
would get, a 503 to resend — never a 500 — when AWS fails or time runs short, and a dedupe horizon as long
as the oldest event it accepts. IngestFunction in-process against moto, from template.yaml."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from relay.aws.clients import AWS_CALL_MAX_MS
from relay.aws.ledger import DAY_SECONDS, INGEST, DeliveryLedger, dedupe_horizon_seconds
from relay.aws.replay import ReplayGuard
from relay.aws.sns import SnsPublisher
from relay.delivery.deadletter import body_event_ids
from relay.ingest.signing import sign
from relay.models.environment import FunctionEnvironment, read_environment
from relay_tools.apigw import http_api_event, response_body
from relay_tools.functions import ingest_handler

from ..conftest import NOW_MS, SECRETS, FakeClock, FakeLambdaContext, answered, use_function_env, web_event
from .test_ingest_function import queues

NOW_S = NOW_MS / 1000


def post(handler, body, signed_at=NOW_S, context=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(raw, SECRETS["signing"], int(signed_at))}
    event = http_api_event("POST", "/v1/events", headers, raw)
    response = handler(event, context or FakeLambdaContext())
    return response["statusCode"], answered(response, event)


@pytest.fixture
def handler(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    return ingest_handler(clock=lambda: NOW_S)


def errors_of(result, index):
    (rejection,) = [r for r in result["rejected"] if r["index"] == index]
    return rejection["errors"]


@pytest.mark.parametrize(
    "event_id", ["a\nb", "tab\there", "nul\x00", "bidi\u202eoverride", "line\u2028sep", "\ufeffbom"]
)
def test_an_event_id_with_a_control_or_format_character_is_refused_naming_the_field(handler, aws_stack, event_id):
    status, result = post(handler, {"events": [web_event(event_id=event_id), web_event(event_id="fine")]})
    assert status == 202
    assert [a["event_id"] for a in result["accepted"]] == ["fine"]
    (error,) = errors_of(result, 0)
    assert error["field"] == "event_id" and error["message"].startswith("must be printable text")
    assert [json.loads(m["Body"])["event_id"] for m in queues(aws_stack)["applovin"]] == ["fine"]


@pytest.mark.parametrize(
    ("raw_text", "field", "code_point"),
    [
        ('"properties": {"note": "\\ud800"}', "properties.note", "U+D800"),  # a lone surrogate, as an escape
        ('"properties": {"note": ["ok", "x\\uffff"]}', "properties.note[1]", "U+FFFF"),
        ('"properties": {"note": "x\uffff"}', "properties.note", "U+FFFF"),  # raw, in UTF-8
        ('"properties": {"\\udfff": 1}', "properties.(a key)", "U+DFFF"),
        ('"order_id": "\\ufffe"', "order_id", "U+FFFE"),
    ],
)
def test_a_character_sqs_refuses_is_a_400_for_that_event_only(handler, aws_stack, raw_text, field, code_point):
    bad = json.dumps(web_event(event_id="bad"))[:-1] + ", " + raw_text + "}"
    raw = ('{"events": [' + bad + ", " + json.dumps(web_event(event_id="good")) + "]}").encode("utf-8")
    status, result = post(handler, raw)
    assert status == 202
    assert [a["event_id"] for a in result["accepted"]] == ["good"]
    (error,) = errors_of(result, 0)
    assert error == {
        "field": field,
        "message": f"holds {code_point}, a character SQS cannot carry " + ("(lone surrogates, U+FFFE and U+FFFF)"),
    }
    assert [json.loads(m["Body"])["event_id"] for m in queues(aws_stack)["applovin"]] == ["good"]


def test_an_emoji_written_as_a_surrogate_pair_escape_is_carried(handler, aws_stack):
    raw = json.dumps({"events": [web_event(event_id="smile", properties={"note": "\U0001f600"})]}).encode()
    assert b"\\ud83d\\ude00" in raw
    status, result = post(handler, raw)
    assert status == 202 and result["rejected"] == []
    (message,) = queues(aws_stack)["applovin"]
    assert json.loads(message["Body"])["event_id"] == "smile"


def test_an_integer_longer_than_python_converts_is_a_400(handler, aws_stack):
    raw = ('{"events": [{"event_id": "n", "value": ' + "9" * 5000 + "}]}").encode()
    status, result = post(handler, raw)
    assert (status, result["error"]) == (400, "not valid JSON: an integer has more than 4300 digits")


@pytest.mark.parametrize("t", ["\u0661\u0667\u0664\u0661", "1" * 5000, "\u00b2"])
def test_a_signature_timestamp_that_is_not_ascii_seconds_is_a_401(handler, aws_stack, t):
    raw = json.dumps({"events": [web_event()]}).encode()
    headers = {"Content-Type": "application/json", "X-Relay-Signature": f"t={t},v1={'a' * 64}"}
    response = handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    assert response["statusCode"] == 401
    assert "1 to 12 ASCII digits" in json.loads(response_body(response))["error"]


def throttled(client, operation: str, calls: list | None = None):
    """`operation` answered by DynamoDB's throttling error (after botocore's own retries)."""
    error = {"Error": {"Code": "ThrottlingException", "Message": "rate exceeded"}}

    def answer(**_):
        if calls is not None:
            calls.append(operation)
        return AWSResponse("https://dynamodb", 400, {}, None), error

    client.meta.events.register(f"before-call.dynamodb.{operation}", answer)
    return client


def test_a_throttled_replay_guard_is_a_503_to_resend_the_whole_request(aws_stack, monkeypatch):
    env = use_function_env(monkeypatch, aws_stack, "IngestFunction")
    guard = ReplayGuard(env["RELAY_IDEMPOTENCY_TABLE"], throttled(boto3.client("dynamodb"), "PutItem"))
    handler = ingest_handler(clock=lambda: NOW_S, replay_guard=guard)
    status, result = post(handler, {"events": [web_event(event_id="r1")]})
    assert status == 503
    assert result == {
        "error": "could not check the request against replays; resend the whole request, signed anew "
        "(event_id makes resends safe)"
    }
    assert queues(aws_stack)["applovin"] == []


def test_publish_batch_raising_is_a_503_and_the_same_request_goes_through_when_resent(aws_stack, monkeypatch):
    """SNS raising (throttled, a timeout): a 503 listing the events; the replay key is released, so the
    identical request resent is not refused as a replay, and the claims are settled as not published, so
    the resend publishes at once."""
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    sns = boto3.client("sns")
    failing = {"on": True}

    def answer(**_):
        if failing["on"]:
            return AWSResponse("https://sns", 400, {}, None), {"Error": {"Code": "Throttling", "Message": "slow"}}
        return None

    sns.meta.events.register("before-call.sns.PublishBatch", answer)
    handler = ingest_handler(clock=lambda: NOW_S, publisher=SnsPublisher(aws_stack.physical["EventsTopic"], sns))
    raw = json.dumps({"events": [web_event(event_id="p1"), web_event(event_id="p2")]}).encode()
    status, result = post(handler, raw)
    assert (status, result["not_enqueued"]) == (503, ["p1", "p2"])
    failing["on"] = False
    status, result = post(handler, raw)  # the very same signed request
    assert status == 202 and not any(a.get("duplicate") for a in result["accepted"])
    assert sorted(e for m in queues(aws_stack)["applovin"] for e in body_event_ids(m["Body"])) == ["p1", "p2"]


def test_too_little_time_left_to_queue_is_a_503_and_nothing_is_claimed(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    handler = ingest_handler(clock=lambda: NOW_S)
    short = FakeLambdaContext(FakeClock(AWS_CALL_MAX_MS - 1))
    status, result = post(handler, {"events": [web_event(event_id="t1")]}, context=short)
    assert (status, result["not_enqueued"]) == (503, ["t1"])
    status, result = post(handler, {"events": [web_event(event_id="t1")]}, signed_at=NOW_S + 1)
    assert status == 202 and "duplicate" not in result["accepted"][0]
    assert [json.loads(m["Body"])["event_id"] for m in queues(aws_stack)["applovin"]] == ["t1"]


def test_the_ledger_remembers_events_as_long_as_the_ingest_accepts_them(aws_stack, monkeypatch):
    """MaxEventAgeDays 30: a resend 16 days later is still a duplicate (15 days of memory would queue it
    again and every vendor would get it twice)."""
    stack_env = use_function_env(monkeypatch, aws_stack, "IngestFunction")
    monkeypatch.setenv("RELAY_INGEST_MAX_EVENT_AGE_DAYS", "30")
    now = {"t": NOW_S}
    handler = ingest_handler(clock=lambda: now["t"])
    body = {"events": [web_event(event_id="late-resend")]}
    assert post(handler, body)[0] == 202
    now["t"] = NOW_S + 16 * DAY_SECONDS
    status, result = post(handler, body, signed_at=now["t"])
    assert status == 202 and result["accepted"][0]["duplicate"] is True
    assert len(queues(aws_stack)["applovin"]) == 1
    no_archive = {**stack_env, "RELAY_INGEST_MAX_EVENT_AGE_DAYS": "30", "RELAY_ARCHIVE_RETENTION_DAYS": "0"}
    ledger = DeliveryLedger.for_function(INGEST, read_environment(FunctionEnvironment, no_archive))
    assert ledger.horizon_seconds == dedupe_horizon_seconds(30, 14 * DAY_SECONDS) == 31 * DAY_SECONDS + 300
    # with the archive (ArchiveRetentionDays, 90 by default), as long as it keeps events: relay replay
    ledger = DeliveryLedger.for_function(INGEST, read_environment(FunctionEnvironment, {**no_archive, **stack_env}))
    assert ledger.horizon_seconds == dedupe_horizon_seconds(7, 14 * DAY_SECONDS, 90) == 91 * DAY_SECONDS


@pytest.mark.parametrize("max_age_days", [1, 7, 14, 15, 30, 365])
def test_the_dedupe_horizon_outlasts_every_way_back(max_age_days):
    horizon = dedupe_horizon_seconds(max_age_days, 14 * DAY_SECONDS)
    assert horizon >= max_age_days * DAY_SECONDS + 300 + DAY_SECONDS  # a client's resend, plus a margin
    assert horizon >= 15 * DAY_SECONDS  # a redrive from the DLQ within its retention, plus a margin
