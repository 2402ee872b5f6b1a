"""Vendor functions in-process: records from moto SQS (fed through the template's SNS filter
policies), vendors answered by httpx.MockTransport. Asserts what the vendor received."""

from __future__ import annotations

import json
import os

import boto3
import httpx
import pytest

from relay.aws.secrets import SecretRefresh
from relay.aws.sns import Message, SnsPublisher
from relay.ingest.signing import sign
from relay.models.config import config_from_env
from relay.models.event import parse_event
from relay.queued.message import queued_body
from relay.queued.routing import Router
from relay_tools.apigw import http_api_event
from relay_tools.functions import ingest_handler, vendor_handler
from relay_tools.sqs_events import lambda_records

from ..conftest import NOW, NOW_MS, SECRETS, FakeClock, FakeLambdaContext, app_event, drain, use_function_env, web_event

PREFIX = {"applovin": "AppLovin", "appsflyer": "AppsFlyer", "adroll": "AdRoll"}


class Vendor:
    """A mock vendor: records each request, answers with `answer(request) -> httpx.Response`."""

    def __init__(self, answer=None):
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda request: httpx.Response(200, text="OK"))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    def bodies(self) -> list:
        return [json.loads(r.content) for r in self.requests]


def queued(event: dict, legacy: bool = False) -> str:
    """A message body as the ingest publishes it (`legacy`: a canonical event, as relays before the queued
    message format did; vendor functions still map those themselves)."""
    parsed = parse_event(event, now=NOW)
    if legacy:
        return parsed.model_dump_json(exclude_none=True)
    return queued_body(parsed, Router(config_from_env(os.environ, credentials=False)).route(parsed))


def publish(stack, vendor: str, events: list[dict], legacy: bool = False) -> None:
    publisher = SnsPublisher(stack.physical["EventsTopic"], boto3.client("sns"))
    messages = [Message(str(i), queued(e, legacy), [vendor]) for i, e in enumerate(events)]
    assert publisher.publish(messages) == []


def receive(stack, vendor: str, n: int) -> dict:
    """What Lambda's SQS event source would pass: real messages, received from the vendor's queue."""
    sqs = boto3.client("sqs")
    url = stack.physical[f"{PREFIX[vendor]}Queue"]
    messages: list[dict] = []
    while len(messages) < n:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        assert got, f"expected {n} messages, got {len(messages)}"
        messages += got
    return lambda_records(messages, stack.arns[f"{PREFIX[vendor]}Queue"], "us-east-1")


def run(stack, monkeypatch, vendor: str, events: list[dict], mock: Vendor, legacy: bool = False, **handler_kwargs):
    use_function_env(monkeypatch, stack, f"{PREFIX[vendor]}Function")
    publish(stack, vendor, events, legacy)
    event = receive(stack, vendor, len(events))
    clock = handler_kwargs.pop("clock", None) or FakeClock()
    handler = vendor_handler(vendor, http_client=mock.client(), sleep=clock.sleep, **handler_kwargs)
    response = handler(event, FakeLambdaContext(clock))
    by_id = {r["messageId"]: json.loads(r["body"])["event_id"] for r in event["Records"]}
    return sorted(by_id[f["itemIdentifier"]] for f in response["batchItemFailures"])


def many(n: int, **fields) -> list[dict]:
    return [web_event(event_id=f"e{i:03d}", **fields) for i in range(n)]


def test_applovin_sends_100_events_in_one_request(aws_stack, monkeypatch):
    mock = Vendor()
    assert run(aws_stack, monkeypatch, "applovin", many(100), mock) == []
    assert len(mock.requests) == 1
    request = mock.requests[0]
    assert str(request.url) == "https://b.applovin.com/v1/event?pixel_id=PIXEL123"
    assert request.headers["authorization"] == SECRETS["applovin"]
    assert sorted(e["dedupe_id"] for e in mock.bodies()[0]["events"]) == [f"e{i:03d}" for i in range(100)]


def test_applovin_splits_150_into_100_and_50(aws_stack, monkeypatch):
    mock = Vendor()
    assert run(aws_stack, monkeypatch, "applovin", many(150), mock) == []
    assert sorted(len(b["events"]) for b in mock.bodies()) == [50, 100]


def test_adroll_batches_as_an_array(aws_stack, monkeypatch):
    mock = Vendor()
    assert run(aws_stack, monkeypatch, "adroll", many(30), mock) == []
    assert len(mock.requests) == 1
    assert mock.requests[0].headers["authorization"] == f"Token {SECRETS['adroll']}"
    assert str(mock.requests[0].url) == "https://srv.adroll.com/api?advertisable=ADV_EID"
    body = mock.bodies()[0]
    assert isinstance(body, list) and len(body) == 30 and body[0]["pixel_eid"] == "PIX_EID"


def test_appsflyer_one_request_per_event_and_partial_failure(aws_stack, monkeypatch):
    events = [app_event("ios", event_id=f"i{i}") for i in range(3)] + [
        app_event("android", event_id=f"a{i}") for i in range(3)
    ]

    def answer(request):
        body = json.loads(request.content)
        return httpx.Response(500 if body.get("customer_user_id") == "fail" else 200, text="OK")

    events[4]["user"] = {**events[4]["user"], "id": "fail"}
    mock = Vendor(answer)
    assert run(aws_stack, monkeypatch, "appsflyer", events, mock, max_workers=4) == ["a1"]
    failing = [r for r in mock.requests if json.loads(r.content).get("customer_user_id") == "fail"]
    assert len(failing) == 6  # a 500 is retried in-process (RetryPolicy.max_attempts), then left to SQS
    ok = [r for r in mock.requests if r not in failing]
    assert len(ok) == 5
    assert sorted(str(r.url) for r in ok + failing[:1]) == (
        ["https://api3.appsflyer.com/inappevent/com.example.app"] * 3
        + ["https://api3.appsflyer.com/inappevent/id123456789"] * 3
    )
    assert all(r.headers["authentication"] == SECRETS["appsflyer"] for r in mock.requests)
    assert all(len(r.content) <= 1024 for r in mock.requests)


def test_a_vendor_400_on_every_event_dead_letters_each_after_bisecting(aws_stack, monkeypatch):
    mock = Vendor(lambda r: httpx.Response(400, text="bad event"))
    assert run(aws_stack, monkeypatch, "applovin", many(5), mock) == []  # nothing left to retry
    assert [len(b["events"]) for b in mock.bodies()] == [5, 2, 1, 1, 3, 1, 2, 1, 1]
    letters = drain(aws_stack.physical["AppLovinDeadLetterQueue"])
    assert sorted(m["MessageAttributes"]["relay_event_id"]["StringValue"] for m in letters) == [
        f"e{i:03d}" for i in range(5)
    ]
    assert {m["MessageAttributes"]["relay_status"]["StringValue"] for m in letters} == {"400"}


def test_connection_errors_are_failures(aws_stack, monkeypatch):
    def answer(request):
        raise httpx.ConnectError("refused", request=request)

    assert run(aws_stack, monkeypatch, "adroll", many(3), Vendor(answer)) == ["e000", "e001", "e002"]


def test_auth_failure_keeps_records_and_emits_the_alarm_metric(aws_stack, monkeypatch, output):
    mock = Vendor(lambda r: httpx.Response(401, text="Unauthorized"))
    assert run(aws_stack, monkeypatch, "appsflyer", [app_event("ios")], mock) == ["app-1"]
    out = output.text()
    metrics = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    assert any(m.get("VendorAuthFailures") == [1.0] and m.get("vendor") == "appsflyer" for m in metrics)
    assert "appsflyer refused the relay's credentials" in out
    assert SECRETS["appsflyer"] not in out


def test_skipped_at_the_vendor_is_not_a_failure_and_sends_nothing(aws_stack, monkeypatch, output):
    """A canonical event (an older relay's message) is mapped at the vendor function, with the same rules."""
    mock = Vendor()
    event = web_event(consent={"ad_storage": False})
    assert run(aws_stack, monkeypatch, "applovin", [event], mock, legacy=True) == []
    assert mock.requests == []
    metrics = [json.loads(line) for line in output.text().splitlines() if line.startswith('{"_aws"')]
    assert any(m.get("EventsSkipped") == [1.0] for m in metrics)


def test_invalid_at_the_vendor_is_a_failure_and_sends_nothing(aws_stack, monkeypatch):
    mock = Vendor()
    event = web_event(event_id="noip", user={"cookie_id": "c"})
    assert run(aws_stack, monkeypatch, "applovin", [event, web_event(event_id="fine")], mock, legacy=True) == []
    assert [e["dedupe_id"] for e in mock.bodies()[0]["events"]] == ["fine"]
    (letter,) = drain(aws_stack.physical["AppLovinDeadLetterQueue"])
    assert letter["MessageAttributes"]["relay_outcome"]["StringValue"] == "invalid"
    assert letter["MessageAttributes"]["relay_reason"]["StringValue"] == (
        "user.ip: is required: AppLovin's client_ip_address; user.user_agent: is required: AppLovin's client_user_agent"
    )


def test_unparseable_body_is_a_failure(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "AdRollFunction")
    sqs = boto3.client("sqs")
    url = aws_stack.physical["AdRollQueue"]
    sqs.send_message(QueueUrl=url, MessageBody='{"event_id": "x"}')
    messages = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
    event = lambda_records(messages, aws_stack.arns["AdRollQueue"], "us-east-1")
    mock = Vendor()
    response = vendor_handler("adroll", http_client=mock.client())(event, FakeLambdaContext())
    assert response["batchItemFailures"] == []  # permanent: moved to the DLQ with the reason, not retried
    assert mock.requests == []
    (letter,) = drain(aws_stack.physical["AdRollDeadLetterQueue"])
    assert letter["MessageAttributes"]["relay_reason"]["StringValue"].startswith(
        "not a canonical event: name: is required"
    )


def test_unfilled_vendor_secret_fails_every_record(aws_stack, monkeypatch, output):
    env = use_function_env(monkeypatch, aws_stack, "AdRollFunction")
    boto3.client("secretsmanager").put_secret_value(SecretId=env["RELAY_VENDOR_SECRET_ARN"], SecretString="{}")
    mock = Vendor()
    assert run(aws_stack, monkeypatch, "adroll", many(2), mock) == ["e000", "e001"]
    assert mock.requests == []
    assert "adroll configuration unusable" in output.text()
    assert "adroll.token: missing: set token in adroll's secret" in output.text()


def test_end_to_end_ingest_to_vendor(aws_stack, monkeypatch, output):
    """Signed HTTP request -> IngestFunction -> SNS -> SQS (filter policy) -> AppLovinFunction -> vendor."""
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    ingest = ingest_handler(clock=lambda: NOW_MS / 1000)
    lead = web_event(
        event_id="lead-1",
        name="generate_lead",
        value=30,
        currency="USD",
        user={"ip": "203.0.113.7", "user_agent": "UA", "email": "Lead@Example.com", "cookie_id": "c1"},
    )
    raw = json.dumps({"events": [lead]}).encode()
    headers = {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"], NOW_MS // 1000)}
    response = ingest(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    assert response["statusCode"] == 202
    use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    mock = Vendor()
    handler = vendor_handler("applovin", http_client=mock.client())
    assert handler(receive(aws_stack, "applovin", 1), FakeLambdaContext()) == {"batchItemFailures": []}
    (body,) = mock.bodies()
    import hashlib

    assert body == {
        "events": [
            {
                "name": "generate_lead",
                "event_time": NOW_MS - 5000,
                "event_source_url": "https://shop.example.com/products/shirt?color=blue",
                "user_data": {
                    "client_ip_address": "203.0.113.7",
                    "client_user_agent": "UA",
                    "esi": "web",
                    "client_id": "c1",
                    "email": hashlib.sha256(b"lead@example.com").hexdigest(),
                },
                "data": {"currency": "USD", "value": 30},
                "dedupe_id": "lead-1",
            }
        ]
    }
    out = output.text()
    for clear in ("Lead@Example.com", "lead@example.com", "203.0.113.7", SECRETS["applovin"], SECRETS["signing"]):
        assert clear not in out


def load_function(name: str):
    """functions/<name>/app.py's module-level handler as Lambda calls it: no injected function, so it builds
    its dependencies from the environment (the autouse fixture starts each test as a new container)."""
    from relay_tools.functions import app_module

    return app_module(name).lambda_handler


def test_the_ingest_function_module_runs_on_the_template_environment(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    handler = load_function("ingest")  # secrets, topic and replay table found through the template's env vars
    event = {k: v for k, v in web_event(event_id="via-module").items() if k != "timestamp"}
    raw = json.dumps({"events": [event]}).encode()
    headers = {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"])}
    response = handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    assert response["statusCode"] == 202
    (message,) = receive(aws_stack, "applovin", 1)["Records"]
    assert json.loads(message["body"])["event_id"] == "via-module"


@pytest.mark.parametrize(
    ("vendor", "event"),
    [
        ("applovin", web_event(consent={"ad_storage": False})),
        ("appsflyer", web_event(name="purchase", value=1, currency="USD")),
        ("adroll", web_event(consent={"ad_storage": False})),
    ],
)
def test_vendor_function_modules_run_on_the_template_environment(aws_stack, monkeypatch, vendor, event):
    use_function_env(monkeypatch, aws_stack, f"{PREFIX[vendor]}Function")
    handler = load_function(vendor)  # its secret read from Secrets Manager through the template's env vars
    publish(aws_stack, vendor, [event], legacy=True)
    assert handler(receive(aws_stack, vendor, 1), FakeLambdaContext()) == {"batchItemFailures": []}  # skipped


@pytest.mark.parametrize(("vendor", "count"), [("applovin", 3), ("appsflyer", 2), ("adroll", 2)])
def test_committed_sam_local_events_run_through_the_handlers(aws_stack, monkeypatch, vendor, count):
    from ..conftest import ROOT

    event = json.loads((ROOT / "events" / f"sqs_{vendor}.json").read_text())
    assert len(event["Records"]) == count
    use_function_env(monkeypatch, aws_stack, f"{PREFIX[vendor]}Function")
    mock = Vendor()
    assert vendor_handler(vendor, http_client=mock.client())(event, FakeLambdaContext()) == {"batchItemFailures": []}
    events_sent = {
        "applovin": lambda bodies: sum(len(b["events"]) for b in bodies),
        "appsflyer": len,  # one event per request
        "adroll": lambda bodies: sum(len(b) for b in bodies),
    }[vendor]
    assert events_sent(mock.bodies()) == count


def test_committed_ingest_event_is_signed_with_the_example_secret():
    from relay.ingest.signing import verify
    from relay_tools.apigw import response_body
    from relay_tools.config_file import load_config

    from ..conftest import ROOT

    event = json.loads((ROOT / "events" / "ingest.json").read_text())
    raw = response_body(event)
    header = event["headers"]["x-relay-signature"]
    secrets = [s.get_secret_value() for s in load_config(ROOT / "relay.example.toml").ingest.secrets]
    signed_at = int(header.split(",")[0][2:])
    assert verify(raw, header, secrets, now=signed_at) == signed_at
    assert [e["event_id"] for e in json.loads(raw)["events"]] == ["web-purchase-0001", "ios-purchase-0001"]


def test_a_message_without_this_vendors_payload_is_dead_lettered_with_the_reason(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "AdRollFunction")
    sqs = boto3.client("sqs")
    url = aws_stack.physical["AdRollQueue"]
    body = queued(web_event(event_id="al-only", consent={"ad_storage": True}))
    message = json.loads(body)
    del message["payloads"]["adroll"]  # a message that reached the wrong queue
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message))
    event = lambda_records(
        sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"],
        aws_stack.arns["AdRollQueue"],
        "us-east-1",
    )
    mock = Vendor()
    response = vendor_handler("adroll", http_client=mock.client())(event, FakeLambdaContext())
    assert response["batchItemFailures"] == []  # permanent: moved to the DLQ with the reason, not retried
    assert mock.requests == []
    (letter,) = drain(aws_stack.physical["AdRollDeadLetterQueue"])
    attributes = {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()}
    assert attributes["relay_outcome"] == "invalid"
    assert attributes["relay_reason"] == (
        "not a queued message: payloads.adroll: missing; the message carries payloads for: applovin"
    )
    assert attributes["relay_event_id"] == "al-only"


def test_a_refused_key_is_read_again_from_secrets_manager_at_most_once_a_minute(aws_stack, monkeypatch):
    """Secrets are cached an hour; a 401/403 makes the next invocation read the secret anew (a rotation
    takes effect at once), but no more than once a minute per container."""
    env = use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    accepted = {"key": "rotated-1"}
    mock = Vendor(lambda r: httpx.Response(200 if r.headers["authorization"] == accepted["key"] else 401, text="?"))
    now = {"t": 1000.0}
    handler = vendor_handler(
        "applovin", http_client=mock.client(), secret_refresh=SecretRefresh(clock=lambda: now["t"])
    )

    def invoke(at: float) -> list:
        now["t"] = at
        publish(aws_stack, "applovin", [web_event(event_id=f"k{at}")])  # a new event each time
        return handler(receive(aws_stack, "applovin", 1), FakeLambdaContext())["batchItemFailures"]

    def rotate(key: str) -> None:
        boto3.client("secretsmanager").put_secret_value(
            SecretId=env["RELAY_VENDOR_SECRET_ARN"], SecretString=json.dumps({"api_key": key})
        )

    assert invoke(1000) != []  # the vendor wants rotated-1; the relay still holds the original key
    rotate("rotated-1")
    assert invoke(1001) == []  # refused last time: read again, sent with the new key
    accepted["key"] = "rotated-2"
    rotate("rotated-2")
    assert invoke(1010) != []  # refused: a new read is due...
    assert invoke(1020) != []  # ...but not sooner than a minute after the last one
    assert invoke(1062) == []
    keys = [r.headers["authorization"] for r in mock.requests]
    assert keys == [SECRETS["applovin"], "rotated-1", "rotated-1", "rotated-1", "rotated-2"]


@pytest.mark.parametrize(("function", "missing"), [("ingest", "RELAY_TOPIC_ARN"), ("adroll", "RELAY_DLQ_URL")])
def test_a_function_without_a_variable_fails_its_invocation_naming_it(aws_stack, monkeypatch, function, missing):
    """A Lambda error (counted by the function's error metric), not a request answered with a configuration
    the function cannot use, and nothing sent anywhere."""
    from relay.models.environment import InvalidEnvironment

    logical = "IngestFunction" if function == "ingest" else f"{PREFIX[function]}Function"
    use_function_env(monkeypatch, aws_stack, logical)
    monkeypatch.delenv(missing)
    handler = load_function(function)
    event = http_api_event("POST", "/v1/events", {}, b"{}") if function == "ingest" else {"Records": []}
    with pytest.raises(InvalidEnvironment, match=f"{missing}: Field required"):
        handler(event, FakeLambdaContext())
