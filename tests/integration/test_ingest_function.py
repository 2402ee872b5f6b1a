"""IngestFunction in-process against moto (Secrets Manager, SNS, SQS from template.yaml)."""

from __future__ import annotations

import base64
import json
import re

import boto3
import pytest

from relay.aws.secrets import SecretRefresh
from relay.aws.sns import SNS_MAX_BATCH, Message, SnsPublisher
from relay.delivery.deadletter import body_event_ids
from relay.ingest.signing import sign
from relay.models.pii import hash_email
from relay_tools.apigw import http_api_event, response_body
from relay_tools.functions import ingest_handler

from ..conftest import (
    FPC,
    NOW_MS,
    SECRETS,
    FakeLambdaContext,
    answered,
    app_event,
    drain,
    use_function_env,
    web_event,
)

NOW_S = NOW_MS / 1000
MISMATCH = (
    "no active signing secret made this signature over this body: sign the raw bytes you send, "
    "keyed with the secret's UTF-8 bytes, as lower-case hex"
)


@pytest.fixture
def ingest(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    handler = ingest_handler(clock=lambda: NOW_S)

    def call(body, headers=None, secret=SECRETS["signing"], signed_at=NOW_S, content_type="application/json"):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"Content-Type": content_type} if content_type else {}
        if secret:
            hdrs["X-Relay-Signature"] = sign(raw, secret, timestamp=int(signed_at))
        hdrs.update(headers or {})
        event = http_api_event("POST", "/v1/events", hdrs, raw)
        response = handler(event, FakeLambdaContext())
        return response["statusCode"], answered(response, event)

    return call


def queues(stack) -> dict[str, list[dict]]:
    return {
        v: drain(stack.physical[f"{p}Queue"])
        for v, p in (("applovin", "AppLovin"), ("appsflyer", "AppsFlyer"), ("adroll", "AdRoll"))
    }


def test_signed_events_are_accepted_and_fanned_out_by_destinations(ingest, aws_stack):
    user = {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 test", "cookie_id": "fp-1", "email": "Jane@Example.com"}
    body = {"events": [web_event(event_id="w1", user=user), app_event("ios", event_id="a1")]}
    status, result = ingest(body)
    assert status == 202
    assert result["rejected"] == []
    assert [(a["index"], a["event_id"], a["destinations"]) for a in result["accepted"]] == [
        (0, "w1", ["applovin", "adroll"]),
        (1, "a1", ["appsflyer", "adroll"]),
    ]
    assert result["accepted"][0]["skipped"] == {"appsflyer": "no appsflyer event is mapped to 'page_view'"}
    got = queues(aws_stack)
    assert [json.loads(m["Body"])["event_id"] for m in got["applovin"]] == ["w1"]
    assert [json.loads(m["Body"])["event_id"] for m in got["appsflyer"]] == ["a1"]
    assert sorted(json.loads(m["Body"])["event_id"] for m in got["adroll"]) == ["a1", "w1"]
    message = got["applovin"][0]
    # raw message delivery: the body is the event as each destination takes it (mapped once, here), the
    # attribute carries the destinations
    web = json.loads(message["Body"])
    assert sorted(web) == ["event_id", "name", "payloads"]
    assert (web["event_id"], web["name"], sorted(web["payloads"])) == ("w1", "page_view", ["adroll", "applovin"])
    assert web["payloads"]["applovin"]["event_time"] == NOW_MS - 5000  # web_event's timestamp, in ms
    assert web["payloads"]["applovin"]["dedupe_id"] == "w1"
    assert json.loads(message["MessageAttributes"]["destinations"]["StringValue"]) == ["applovin", "adroll"]
    app = json.loads(got["appsflyer"][0]["Body"])
    assert sorted(app["payloads"]) == ["adroll", "appsflyer"]
    assert app["targets"] == {"appsflyer": "id123456789"}  # AppsFlyer's request group: the iOS app id
    assert web["payloads"]["applovin"]["user_data"]["email"] == hash_email("Jane@Example.com")
    assert "@" not in message["Body"]  # the email travels hashed


def test_partial_acceptance_and_all_invalid(ingest, aws_stack):
    body = {"events": [web_event(event_id="ok"), {"event_id": "bad", "name": "x", "source": "tv"}]}
    status, result = ingest(body)
    assert status == 202
    assert [a["event_id"] for a in result["accepted"]] == ["ok"]
    assert result["rejected"] == [
        {"index": 1, "event_id": "bad", "errors": [{"field": "source", "message": "Input should be 'web' or 'app'"}]}
    ]
    status, result = ingest({"events": [{"event_id": "bad"}]})
    assert status == 400
    assert result["accepted"] == [] and result["rejected"][0]["errors"][0] == {
        "field": "name",
        "message": "is required",
    }
    got = queues(aws_stack)
    assert len(got["applovin"]) == 1 and len(got["adroll"]) == 1 and got["appsflyer"] == []


def test_an_event_name_no_destination_takes_is_refused_with_the_nearest_names(ingest, aws_stack):
    """A 202 for an event nobody receives would tell the client it worked."""
    status, result = ingest({"events": [web_event(name="purchse")]})
    assert status == 400 and result["accepted"] == []
    (rejected,) = result["rejected"]
    (error,) = rejected["errors"]
    assert error["field"] == "name" and "did you mean 'purchase'?" in error["message"]
    assert set(rejected["skipped"]) == {"applovin", "appsflyer", "adroll"}  # each vendor's reason
    status, result = ingest({"events": [web_event(event_id="lvl", name="level_up")]})  # nothing close: no guess
    assert status == 400 and "did you mean" not in result["rejected"][0]["errors"][0]["message"]
    assert all(not msgs for msgs in queues(aws_stack).values())


def test_a_custom_name_that_reaches_appsflyer_is_accepted_with_a_hint_when_it_looks_like_a_typo(ingest, aws_stack):
    status, result = ingest(
        {"events": [app_event("ios", name="purchse"), app_event("ios", event_id="app-2", name="level_up")]}
    )
    assert status == 202
    typo, custom = result["accepted"]
    assert typo["destinations"] == ["appsflyer"] and "did you mean 'purchase'?" in typo["hints"]["name"]
    assert custom["destinations"] == ["appsflyer"] and "hints" not in custom
    assert len(queues(aws_stack)["appsflyer"]) == 1  # one bundle of both


def test_an_event_every_vendor_found_invalid_or_skipped_is_refused_with_each_vendors_reasons(ingest, aws_stack):
    data = web_event(vendor_ids={}, user={"ip": "203.0.113.7", "user_agent": "t"})  # no identifier, no AdRoll cookie
    status, result = ingest({"events": [data]})
    assert status == 400
    (rejected,) = result["rejected"]
    fields = {(e["field"], e["message"].split(":", 1)[0]) for e in rejected["errors"]}
    assert ("user", "applovin") in fields and ("vendor_ids.adroll.first_party_cookie", "adroll") in fields
    assert set(rejected["invalid"]) == {"applovin", "adroll"} and "appsflyer" in rejected["skipped"]
    assert all(not msgs for msgs in queues(aws_stack).values())


def test_an_event_every_vendor_skips_for_consent_is_accepted_with_the_reasons(ingest, aws_stack):
    status, result = ingest({"events": [web_event(consent={"ad_storage": False})]})
    assert status == 202
    (entry,) = result["accepted"]
    assert entry["destinations"] == [] and entry["skipped"]["applovin"] == "consent.ad_storage is false"
    assert all(not msgs for msgs in queues(aws_stack).values())


def test_vendor_rule_failures_are_reported_and_not_published(ingest, aws_stack):
    status, result = ingest({"events": [web_event(vendor_ids={})]})  # no AdRoll first-party cookie
    assert status == 202
    entry = result["accepted"][0]
    assert entry["destinations"] == ["applovin"]
    assert entry["invalid"] == {
        "adroll": [
            {
                "field": "vendor_ids.adroll.first_party_cookie",
                "message": "is required: AdRoll needs identifiers.first_party_cookie",
            }
        ]
    }
    assert queues(aws_stack)["adroll"] == []


def test_consent_and_destinations_shape_the_attribute(ingest, aws_stack):
    status, result = ingest(
        {
            "events": [
                app_event("ios", event_id="c1", page_url="https://x.example/", consent={"ad_storage": False}),
                web_event(event_id="d1", destinations=["adroll"]),
            ]
        }
    )
    assert [a["destinations"] for a in result["accepted"]] == [["appsflyer"], ["adroll"]]
    got = queues(aws_stack)
    assert [json.loads(m["Body"])["event_id"] for m in got["adroll"]] == ["d1"]
    assert got["applovin"] == []


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"secret": None}, 401, "missing X-Relay-Signature header"),
        ({"secret": "wrong-secret"}, 401, MISMATCH),
        ({"signed_at": NOW_S - 301}, 401, "signature timestamp is outside the 300 s tolerance"),
        (
            {"headers": {"X-Relay-Signature": "t=1,v1=zz"}},
            401,
            "malformed X-Relay-Signature header: v1 must be 64 lower-case hex characters",
        ),
        ({"content_type": "text/plain"}, 415, "Content-Type must be application/json (UTF-8)"),
        ({"content_type": None}, 415, "Content-Type must be application/json (UTF-8)"),
        ({"content_type": "application/json; charset=latin-1"}, 415, "Content-Type must be application/json (UTF-8)"),
    ],
)
def test_refusals_publish_nothing(ingest, aws_stack, kwargs, status, error):
    got_status, result = ingest({"events": [web_event()]}, **kwargs)
    assert (got_status, result) == (status, {"error": error})
    assert all(not msgs for msgs in queues(aws_stack).values())


def test_signature_covers_the_exact_body(ingest, aws_stack):
    raw = json.dumps({"events": [web_event()]}).encode()
    other = json.dumps({"events": [web_event(event_id="forged")]}).encode()
    header = sign(raw, SECRETS["signing"], timestamp=int(NOW_S))
    status, result = ingest(other, secret=None, headers={"X-Relay-Signature": header})
    assert status == 401 and result == {"error": MISMATCH}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{nope", 400, "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b'[{"event_id": "x"}]', 400, 'body must be a JSON object {"events": [ ... ]}'),
        (b'{"events": [], "x": 1}', 400, 'body must be a JSON object {"events": [ ... ]}'),
        (b'{"events": []}', 400, "events: must hold at least one event"),
        (json.dumps({"events": [{}] * 101}).encode(), 413, "101 events; at most 100 per request"),
        (b" " * (1_048_576 + 1), 413, "body is 1048577 bytes; the limit is 1048576"),
    ],
)
def test_bad_bodies_get_4xx(ingest, body, status, error):
    assert ingest(body) == (status, {"error": error})


def test_duplicate_event_ids_in_one_request(ingest, aws_stack):
    status, result = ingest({"events": [web_event(event_id="same"), web_event(event_id="same")]})
    assert status == 202
    assert result["rejected"] == [
        {
            "index": 1,
            "event_id": "same",
            "errors": [{"field": "event_id", "message": "repeats the event_id of events[0] in this request"}],
        }
    ]
    assert len(queues(aws_stack)["applovin"]) == 1


def test_base64_bodies_are_verified_on_the_decoded_bytes(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    handler = ingest_handler(clock=lambda: NOW_S)
    raw = json.dumps({"events": [web_event()]}).encode()
    event = http_api_event(
        "POST",
        "/v1/events",
        {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"], int(NOW_S))},
        raw,
    )
    event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    assert handler(event, FakeLambdaContext())["statusCode"] == 202


def test_rotation_previous_secret_still_verifies(aws_stack, monkeypatch):
    env = use_function_env(monkeypatch, aws_stack, "IngestFunction")
    boto3.client("secretsmanager").put_secret_value(
        SecretId=env["RELAY_INGEST_SECRET_ARN"],
        SecretString=json.dumps({"secret": "new-one", "previous": SECRETS["signing"]}),
    )
    handler = ingest_handler(clock=lambda: NOW_S)
    for secret in ("new-one", SECRETS["signing"]):
        raw = json.dumps({"events": [web_event(event_id=secret)]}).encode()
        headers = {"content-type": "application/json", "x-relay-signature": sign(raw, secret, int(NOW_S))}
        assert handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())["statusCode"] == 202


def test_unfilled_secret_is_a_server_error_not_a_client_one(aws_stack, monkeypatch, output):
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    monkeypatch.setenv("RELAY_INGEST_SECRET_ARN", aws_stack.physical["AppLovinSecret"].replace("AppLovin", "Nope"))
    handler = ingest_handler(clock=lambda: NOW_S)
    raw = b'{"events": []}'
    event = http_api_event("POST", "/v1/events", {"content-type": "application/json"}, raw)
    response = handler(event, FakeLambdaContext())
    assert response["statusCode"] == 500
    assert answered(response, event) == {"error": "the relay is misconfigured; its operators have been alerted"}
    (emf,) = [json.loads(line) for line in output.text().splitlines() if '"_aws"' in line]
    assert emf["IngestServerErrors"] == [1.0]  # counted: IngestServerErrorAlarm watches it


def test_unknown_route_is_404(ingest, aws_stack, monkeypatch):
    handler = ingest_handler(clock=lambda: NOW_S)
    response = handler(http_api_event("GET", "/v1/other", {}, b""), FakeLambdaContext())
    assert response["statusCode"] == 404


def test_publish_batch_chunks_by_ten_and_by_size(aws_stack):
    small = [Message(str(i), "x" * 10, ["applovin"]) for i in range(25)]
    assert [len(c) for c in SnsPublisher.chunks(small)] == [10, 10, 5]
    big = [Message(str(i), "x" * 100_000, ["adroll"]) for i in range(5)]
    assert [len(c) for c in SnsPublisher.chunks(big)] == [2, 2, 1]
    calls = []
    client = boto3.client("sns")
    client.meta.events.register("before-parameter-build.sns.PublishBatch", lambda **kw: calls.append(kw["params"]))
    publisher = SnsPublisher(aws_stack.physical["EventsTopic"], client)
    assert publisher.publish(small) == []
    assert [len(c["PublishBatchRequestEntries"]) for c in calls] == [10, 10, 5]
    assert max(len(c["PublishBatchRequestEntries"]) for c in calls) <= SNS_MAX_BATCH


def test_logs_and_metrics_hold_no_pii_or_secrets(ingest, aws_stack, output):
    event = web_event(
        user={
            "ip": "203.0.113.77",
            "user_agent": "UA",
            "email": "leak@example.com",
            "phone": "+16505559876",
            "cookie_id": "c",
        },
        vendor_ids={"adroll": {"first_party_cookie": FPC}},
    )
    ingest({"events": [event, {**event, "event_id": "bad", "user": {"email": "nope"}}]})
    out = output.text()
    assert '"EventsReceived"' in out and '"EventsRejected"' in out and '"ingest request"' in out
    for secret in ("leak@example.com", "203.0.113.77", "6505559876", SECRETS["signing"], "nope"):
        assert secret not in out


def test_only_post_v1_events_is_served_also_behind_a_named_stage(ingest, aws_stack):
    handler = ingest_handler(clock=lambda: NOW_S)
    raw = json.dumps({"events": [web_event()]}).encode()
    headers = {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"], int(NOW_S))}
    staged = http_api_event("POST", "/prod/v1/events", headers, raw, stage="prod")
    response = handler(staged, FakeLambdaContext())
    assert response["statusCode"] == 202 and response["headers"]["Content-Type"] == "application/json"
    for method, path in (("GET", "/v1/events"), ("POST", "/v1/events/x"), ("POST", "/v2/events")):
        event = http_api_event(method, path, headers, raw)
        response = handler(event, FakeLambdaContext())
        assert response["statusCode"] == 404
        routes = "POST /v1/events, GET /v1/events/{event_id} or GET /v1/requests/{request_id}"
        assert answered(response, event) == {"error": f"not found: {routes}"}


def test_a_client_signing_with_a_rotated_secret_is_accepted_at_once(aws_stack, monkeypatch):
    """The signing secret is cached an hour; a signature no cached secret made re-reads it (at most once a
    minute per container) and is checked again."""
    env = use_function_env(monkeypatch, aws_stack, "IngestFunction")
    now = {"t": 1000.0}
    handler = ingest_handler(clock=lambda: NOW_S, secret_refresh=SecretRefresh(clock=lambda: now["t"]))

    def post(secret: str, at: float, event_id: str) -> int:
        now["t"] = at
        raw = json.dumps({"events": [web_event(event_id=event_id)]}).encode()
        headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(raw, secret, timestamp=int(NOW_S))}
        return handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())["statusCode"]

    def rotate(secret: str, previous: str) -> None:
        boto3.client("secretsmanager").put_secret_value(
            SecretId=env["RELAY_INGEST_SECRET_ARN"], SecretString=json.dumps({"secret": secret, "previous": previous})
        )

    assert post(SECRETS["signing"], 1000, "r1") == 202  # cached from here on
    rotate("rotated-1", SECRETS["signing"])
    assert post("rotated-1", 1001, "r2") == 202  # no cached secret made it: read again, accepted
    assert post(SECRETS["signing"], 1002, "r3") == 202  # the previous secret still works during rotation
    rotate("rotated-2", "rotated-1")
    assert post("rotated-2", 1010, "r4") == 401  # a second read within the minute is not allowed
    assert post("not-a-secret", 1030, "r5") == 401  # any refused signature is refreshed for at most once a minute
    assert post("rotated-2", 1062, "r6") == 202


def test_a_secret_that_cannot_be_read_again_leaves_a_bad_signature_a_401(aws_stack, monkeypatch):
    env = use_function_env(monkeypatch, aws_stack, "IngestFunction")
    handler = ingest_handler(clock=lambda: NOW_S, secret_refresh=SecretRefresh(clock=lambda: 1000.0))
    raw = json.dumps({"events": [web_event(event_id="s1")]}).encode()

    def post(secret: str) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(raw, secret, timestamp=int(NOW_S))}
        event = http_api_event("POST", "/v1/events", headers, raw)
        response = handler(event, FakeLambdaContext())
        return response["statusCode"], answered(response, event)

    assert post(SECRETS["signing"])[0] == 202  # the secret is cached
    boto3.client("secretsmanager").delete_secret(
        SecretId=env["RELAY_INGEST_SECRET_ARN"], ForceDeleteWithoutRecovery=True
    )
    assert post("forged") == (
        401,
        {"error": MISMATCH},
    )  # the re-read failed: still 401


def test_a_resent_event_is_answered_as_a_duplicate_and_not_queued_again(ingest, aws_stack, output):
    """The ingest claims every event once (relay.ledger, vendor "ingest"): a client's resend of a queued
    event — in another request, with another signature — is not published."""
    first = {"events": [web_event(event_id="r1"), web_event(event_id="r2")]}
    assert ingest(first)[0] == 202
    status, result = ingest({"events": [web_event(event_id="r2"), web_event(event_id="r3")]}, signed_at=NOW_S + 1)
    assert status == 202
    assert [(a["event_id"], a.get("duplicate")) for a in result["accepted"]] == [("r2", True), ("r3", None)]
    got = queues(aws_stack)
    carried = sorted(e for m in got["applovin"] for e in body_event_ids(m["Body"]))
    assert carried == ["r1", "r2", "r3"]  # r2 once
    metrics = [json.loads(line) for line in output.text().splitlines() if line.startswith('{"_aws"')]
    assert any(m.get("DuplicateEvents") == [1.0] for m in metrics)


def test_events_sns_did_not_take_are_published_at_once_when_resent(aws_stack, monkeypatch):
    """The claims of what SNS refused are settled as failed: the client's resend publishes them at once,
    not after the lease."""
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    sns = boto3.client("sns")
    refuse = {"on": True}
    entries: list[str] = []

    def note(params, **_):
        entries[:] = [e["Id"] for e in params["PublishBatchRequestEntries"]]

    def answer(**_):  # SNS refusing every entry of the batch (its partial-failure answer), while `refuse`
        from botocore.awsrequest import AWSResponse

        if not refuse["on"]:
            return None
        failed = [{"Id": i, "Code": "InternalError", "SenderFault": False} for i in entries]
        return AWSResponse("https://sns", 200, {}, None), {"Successful": [], "Failed": failed}

    sns.meta.events.register("before-parameter-build.sns.PublishBatch", note)
    sns.meta.events.register("before-call.sns.PublishBatch", answer)
    handler = ingest_handler(clock=lambda: NOW_S, publisher=SnsPublisher(aws_stack.physical["EventsTopic"], sns))
    raw = json.dumps({"events": [web_event(event_id="s1"), web_event(event_id="s2")]}).encode()

    def post(signed_at):
        headers = {
            "Content-Type": "application/json",
            "X-Relay-Signature": sign(raw, SECRETS["signing"], int(signed_at)),
        }
        response = handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
        return response["statusCode"], json.loads(response_body(response))

    status, result = post(NOW_S)
    assert (status, result["not_enqueued"]) == (503, ["s1", "s2"])
    refuse["on"] = False
    status, result = post(NOW_S + 1)
    assert status == 202 and not any(a.get("duplicate") for a in result["accepted"])
    assert sorted(e for m in queues(aws_stack)["applovin"] for e in body_event_ids(m["Body"])) == ["s1", "s2"]


def test_an_event_another_request_is_queuing_right_now_is_a_503_to_resend(ingest, aws_stack):
    from relay.aws.ledger import INGEST, DeliveryLedger

    busy = DeliveryLedger(INGEST, aws_stack.physical["IdempotencyTable"], boto3.client("dynamodb"), clock=lambda: NOW_S)
    busy.claim("f1", 10_000, busy.new_batch())  # claimed, not settled, lease running
    status, result = ingest({"events": [web_event(event_id="f1"), web_event(event_id="f2")]})
    assert (status, result["not_enqueued"]) == (503, ["f1"])
    assert sorted(e for m in queues(aws_stack)["applovin"] for e in body_event_ids(m["Body"])) == ["f2"]


def test_the_idempotency_table_unavailable_is_a_503_not_a_500(aws_stack, monkeypatch):
    """DynamoDB answering the claims with an error (throttled, after botocore's retries): nothing is queued
    and the client is told to resend — not a 500."""
    from botocore.awsrequest import AWSResponse

    from relay.aws.ledger import INGEST, DeliveryLedger

    env = use_function_env(monkeypatch, aws_stack, "IngestFunction")
    dynamodb = boto3.client("dynamodb")
    error = {"Error": {"Code": "ThrottlingException", "Message": "rate exceeded"}}
    dynamodb.meta.events.register(
        "before-call.dynamodb.TransactWriteItems", lambda **_: (AWSResponse("https://dynamodb", 400, {}, None), error)
    )
    ledger = DeliveryLedger(INGEST, env["RELAY_IDEMPOTENCY_TABLE"], dynamodb)
    handler = ingest_handler(clock=lambda: NOW_S, ledger=ledger)
    raw = json.dumps({"events": [web_event(event_id="d1"), web_event(event_id="d2")]}).encode()
    headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(raw, SECRETS["signing"], int(NOW_S))}
    response = handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    assert (response["statusCode"], json.loads(response_body(response))["not_enqueued"]) == (503, ["d1", "d2"])
    assert queues(aws_stack)["applovin"] == []


def test_a_resend_fixed_for_a_vendor_reaches_that_vendor_and_only_it(ingest, aws_stack):
    """Accepted for AppLovin, invalid for AdRoll (no first-party cookie); the client adds the cookie and resends
    the same event_id: AdRoll gets it, AppLovin does not get it twice; a third send is a plain duplicate."""
    first = web_event(event_id="fix-1", vendor_ids={})
    status, result = ingest({"events": [first]})
    assert status == 202 and result["accepted"][0]["destinations"] == ["applovin"]
    fixed = web_event(event_id="fix-1")  # now with AdRoll's cookie
    status, result = ingest({"events": [fixed]})
    assert status == 202
    (entry,) = result["accepted"]
    assert entry["duplicate"] is True and entry["queued_now"] == ["adroll"]
    status, result = ingest({"events": [{**fixed, "properties": {"again": 1}}]})  # another body: not a replay
    assert result["accepted"][0]["duplicate"] is True and "queued_now" not in result["accepted"][0]
    got = queues(aws_stack)
    assert [json.loads(m["Body"])["event_id"] for m in got["applovin"]] == ["fix-1"]  # once
    assert [json.loads(m["Body"])["event_id"] for m in got["adroll"]] == ["fix-1"]  # once, alone


def test_errors_echo_no_value_but_the_events_name_and_id(ingest, aws_stack):
    """docs/ingest-api.md, "Canonical event": an error names the field and the rule and echoes no value the
    event holds, except its `name` (quoted with the nearest known names) and its `event_id`."""
    marks = {
        "value": "MARKVALUE1",
        "currency": "MARKCUR2",
        "timestamp": "MARKTIME3",
        "page_url": "MARKURL4",
        "consent": {"ad_storage": "MARKCONSENT5"},
        "user": {"email": "MARKEMAIL6", "phone": "MARKPHONE7", "ip": "MARKIP8", "cookie_id": ["MARKCOOKIE9"]},
        "items": [{"id": "i", "price": "MARKPRICE10", "quantity": "MARKQTY11"}],
        "properties": {"note": ["MARKPROP12" * 30]},
        "device": {"os": "MARKOS13", "att": "MARKATT14"},
        "unknown_field": "MARKUNKNOWN15",
    }
    bad = web_event(event_id="echo-1", **marks)
    misnamed = web_event(event_id="echo-2", name="MARKNAME_purchse")
    status, result = ingest({"events": [bad, misnamed]})
    assert status == 400 and len(result["rejected"]) == 2
    errors = json.dumps(result["rejected"])
    assert re.findall(r"MARK[A-Z]+\d*", errors) and set(re.findall(r"MARK[A-Z_a-z]+\d*", errors)) == {
        "MARKNAME_purchse"
    }, errors
    assert "echo-1" in errors and "echo-2" in errors
    fields = {e["field"] for e in result["rejected"][0]["errors"]}
    assert {"value", "currency", "timestamp", "user.email", "unknown_field"} <= fields, fields  # each was read
