"""Many accounts, one relay (docs/connections.md): sources with their own secrets, named connections per
vendor, delivery that keeps one connection's failure to itself. The real ingest and vendor functions against
moto's stack from template.yaml, the deployed configuration (a connections file without secrets, the keys in
Secrets Manager), vendors behind httpx.MockTransport."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

from relay.delivery.circuit import OPEN_AFTER
from relay.delivery.deadletter import body_event_ids
from relay.ingest.signing import sign
from relay.models.sections import MAX_CONNECTIONS
from relay_tools.apigw import http_api_event, response_body
from relay_tools.functions import ingest_handler, vendor_handler

from ..conftest import NOW_MS, SECRETS, FakeClock, FakeLambdaContext, app_event, drain, use_function_env, web_event
from .test_delivery import metric
from .test_vendor_functions import PREFIX, Vendor, receive

NOW_S = NOW_MS / 1000
KEYS = {  # each source's signing secrets and each connection's vendor key: never in the connections file
    "eu": "eu-signing-SECRET-0001",
    "us": "us-signing-SECRET-0002",
    "us-old": "us-signing-SECRET-old",
    "both": "both-signing-SECRET-03",
    "applovin.eu": "al-eu-KEY-SECRET",
    "applovin.us": "al-us-KEY-SECRET",
    "adroll.eu": "ar-eu-TOKEN-SECRET",
    "adroll.us": "ar-us-TOKEN-SECRET",
    "appsflyer.eu": "af-eu-KEY-SECRET",
    "appsflyer.us": "af-us-KEY-SECRET",
}
CONNECTIONS_FILE = """
[sources.eu]
connections = ["applovin.eu", "appsflyer.eu", "adroll.eu"]

[sources.us]
connections = ["applovin.us", "appsflyer.us", "adroll.us"]

[sources.both]
connections = ["applovin.eu", "applovin.us"]

[connections.applovin.eu]
pixel_id = "eu-pixel"

[connections.applovin.us]
pixel_id = "us-pixel"
retry_window_hours = 2

[connections.appsflyer.eu]
ios_app_id = "id1110000001"

[connections.appsflyer.us]
ios_app_id = "id2220000002"

[connections.adroll.eu]
advertisable_eid = "EU_ADV"
pixel_eid = "EU_PIX"

[connections.adroll.us]
advertisable_eid = "US_ADV"
pixel_eid = "US_PIX"
"""


@pytest.fixture
def stack(aws_stack, monkeypatch, tmp_path):
    """The stack deployed with the connections file and every source's and connection's secret."""
    path = tmp_path / "connections.toml"
    path.write_text(CONNECTIONS_FILE)
    monkeypatch.setenv("RELAY_CONNECTIONS_FILE", str(path))
    secrets = boto3.client("secretsmanager")
    values = {
        "IngestSigningSecret": {
            "secret": SECRETS["signing"],
            "sources": {
                "eu": {"secret": KEYS["eu"]},
                "us": {"secret": KEYS["us"], "previous": KEYS["us-old"]},
                "both": {"secret": KEYS["both"]},
            },
        },
        "AppLovinSecret": {
            "api_key": SECRETS["applovin"],
            "connections": {n: {"api_key": KEYS[f"applovin.{n}"]} for n in ("eu", "us")},
        },
        "AppsFlyerSecret": {
            "key": SECRETS["appsflyer"],
            "connections": {n: {"key": KEYS[f"appsflyer.{n}"]} for n in ("eu", "us")},
        },
        "AdRollSecret": {
            "token": SECRETS["adroll"],
            "connections": {n: {"token": KEYS[f"adroll.{n}"]} for n in ("eu", "us")},
        },
    }
    for logical, value in values.items():
        secrets.put_secret_value(SecretId=aws_stack.physical[logical], SecretString=json.dumps(value))
    return aws_stack


def post(stack, monkeypatch, events, source: str | None, secret: str, signed_at: float = NOW_S) -> tuple[int, dict]:
    use_function_env(monkeypatch, stack, "IngestFunction")
    handler = ingest_handler(clock=lambda: NOW_S)
    raw = json.dumps({"events": events}).encode()
    headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(raw, secret, timestamp=int(signed_at))}
    if source is not None:
        headers["X-Relay-Source"] = source
    response = handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    return response["statusCode"], json.loads(response_body(response))


class Function:
    """One vendor function, its clock `now`; `invoke` deletes what the event source would."""

    def __init__(self, stack, monkeypatch, vendor: str, answer=None):
        use_function_env(monkeypatch, stack, f"{PREFIX[vendor]}Function")
        self.stack, self.vendor, self.mock = stack, vendor, Vendor(answer)
        self.queue_url = stack.physical[f"{PREFIX[vendor]}Queue"]
        self.clock = FakeClock()
        self.handler = vendor_handler(vendor, http_client=self.mock.client(), sleep=self.clock.sleep)
        self.function = self.handler.keywords["function"]
        self.now = time.time()
        self.function.clock = lambda: self.now
        self.kept: dict = {"Records": []}

    def invoke(self, event: dict) -> list[str]:
        """The event ids of the messages the invocation keeps for a retry (`kept`: their records)."""
        response = self.handler(event, FakeLambdaContext(FakeClock()))
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        self.kept = {"Records": [r for r in event["Records"] if r["messageId"] in failed]}
        sqs = boto3.client("sqs")
        for record in event["Records"]:
            if record["messageId"] not in failed:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        return sorted(e for r in event["Records"] if r["messageId"] in failed for e in body_event_ids(r["body"]))

    def queued(self) -> dict:
        """Every message now visible in the function's queue, as Lambda would pass them."""
        return receive(self.stack, self.vendor, len(self.visible()))

    def visible(self) -> list[dict]:
        sqs = boto3.client("sqs")
        attrs = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        return [None] * int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    def again(self, event: dict) -> None:
        """The messages of `event` visible again now (their retry delay over)."""
        sqs = boto3.client("sqs")
        for record in event["Records"]:
            sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )


def pixels(mock: Vendor) -> list[tuple[str, str, list[str]]]:
    """Each AppLovin request: (pixel_id, key, the dedupe ids it carried)."""
    return [
        (
            parse_qs(urlsplit(str(r.url)).query)["pixel_id"][0],
            r.headers["authorization"],
            sorted(e["dedupe_id"] for e in json.loads(r.content)["events"]),
        )
        for r in mock.requests
    ]


def test_a_source_reaches_its_own_connections_and_the_answer_lists_them(stack, monkeypatch):
    status, body = post(stack, monkeypatch, [web_event(event_id="w1"), app_event(event_id="a1")], "eu", KEYS["eu"])
    assert status == 202
    assert [e["destinations"] for e in body["accepted"]] == [["applovin.eu", "adroll.eu"], ["appsflyer.eu"]]
    applovin = Function(stack, monkeypatch, "applovin")
    assert applovin.invoke(applovin.queued()) == []
    assert pixels(applovin.mock) == [("eu-pixel", KEYS["applovin.eu"], ["w1"])]
    adroll = Function(stack, monkeypatch, "adroll")
    assert adroll.invoke(adroll.queued()) == []
    (request,) = adroll.mock.requests
    assert str(request.url) == "https://srv.adroll.com/api?advertisable=EU_ADV"
    assert request.headers["authorization"] == f"Token {KEYS['adroll.eu']}"
    assert json.loads(request.content)[0]["pixel_eid"] == "EU_PIX"
    appsflyer = Function(stack, monkeypatch, "appsflyer")
    assert appsflyer.invoke(appsflyer.queued()) == []
    (request,) = appsflyer.mock.requests
    assert str(request.url) == "https://api3.appsflyer.com/inappevent/id1110000001"
    assert request.headers["authentication"] == KEYS["appsflyer.eu"]


def test_one_event_sent_to_two_applovin_pixels_is_delivered_to_each_once(stack, monkeypatch):
    status, body = post(stack, monkeypatch, [web_event(event_id="twice")], "both", KEYS["both"])
    assert status == 202 and body["accepted"][0]["destinations"] == ["applovin.eu", "applovin.us"]
    applovin = Function(stack, monkeypatch, "applovin")
    batch = applovin.queued()
    assert len(batch["Records"]) == 1  # one message carries the event for both connections
    assert applovin.invoke(batch) == []
    assert sorted(pixels(applovin.mock)) == [
        ("eu-pixel", KEYS["applovin.eu"], ["twice"]),
        ("us-pixel", KEYS["applovin.us"], ["twice"]),
    ]
    # SQS delivers at least once: the same message again sends nothing
    applovin.invoke(batch)
    assert len(applovin.mock.requests) == 2


def test_an_event_narrowed_to_one_connection_reaches_only_it(stack, monkeypatch):
    event = web_event(event_id="only-us", connections=["applovin.us"])
    status, body = post(stack, monkeypatch, [event], "both", KEYS["both"])
    assert status == 202 and body["accepted"][0]["destinations"] == ["applovin.us"]
    assert body["accepted"][0]["skipped"]["applovin.eu"] == "applovin.eu is not in the event's connections"
    applovin = Function(stack, monkeypatch, "applovin")
    applovin.invoke(applovin.queued())
    assert pixels(applovin.mock) == [("us-pixel", KEYS["applovin.us"], ["only-us"])]


def test_two_sources_may_use_the_same_event_ids(stack, monkeypatch):
    for source in ("eu", "us"):
        status, body = post(stack, monkeypatch, [web_event(event_id="o-1")], source, KEYS[source])
        assert status == 202 and "duplicate" not in body["accepted"][0]
    applovin = Function(stack, monkeypatch, "applovin")
    applovin.invoke(applovin.queued())
    assert sorted(pixels(applovin.mock)) == [
        ("eu-pixel", KEYS["applovin.eu"], ["o-1"]),
        ("us-pixel", KEYS["applovin.us"], ["o-1"]),
    ]
    # a resend from one source (signed anew) is that source's duplicate, and reaches nothing again
    status, body = post(stack, monkeypatch, [web_event(event_id="o-1")], "eu", KEYS["eu"], signed_at=NOW_S + 1)
    assert status == 202 and body["accepted"][0]["duplicate"] is True
    assert drain(stack.physical["AppLovinQueue"]) == []


@pytest.mark.parametrize(
    ("connections", "field"),
    [(["applovin.us"], "connections[0]"), (["applovin.eu", "applovin.zz"], "connections[1]")],
)
def test_an_event_naming_a_connection_its_source_may_not_reach_is_refused(stack, monkeypatch, connections, field):
    event = web_event(event_id="x", connections=connections)
    status, body = post(stack, monkeypatch, [event], "eu", KEYS["eu"])
    assert status == 400
    (rejected,) = body["rejected"]
    assert rejected["errors"] == [
        {"field": field, "message": f"'{connections[-1]}' is not a connection source 'eu' may reach"}
    ]
    assert drain(stack.physical["AppLovinQueue"]) == []


@pytest.mark.parametrize(
    ("source", "secret"),
    [
        ("us", KEYS["eu"]),  # another source's secret
        ("eu", KEYS["us"]),
        ("eu", KEYS["us-old"]),  # another source's previous secret
        (None, KEYS["eu"]),  # no source named: the default one, which this deploy does not declare
        ("nobody", KEYS["eu"]),
    ],
)
def test_a_source_secret_never_signs_for_another_source(stack, monkeypatch, source, secret):
    status, body = post(stack, monkeypatch, [web_event(event_id="x")], source, secret)
    assert status == 401
    assert secret not in json.dumps(body)
    for queue in ("AppLovinQueue", "AdRollQueue", "AppsFlyerQueue"):
        assert drain(stack.physical[queue]) == []


def test_a_rotated_out_secret_stops_signing_for_its_own_source(stack, monkeypatch):
    assert post(stack, monkeypatch, [web_event(event_id="r1")], "us", KEYS["us-old"])[0] == 202
    secrets = boto3.client("secretsmanager")
    arn = stack.physical["IngestSigningSecret"]
    value = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
    value["sources"]["us"] = {"secret": KEYS["us"]}  # the rotation ends: the previous secret is dropped
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(value))
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    assert post(stack, monkeypatch, [web_event(event_id="r2")], "us", KEYS["us-old"])[0] == 401
    assert post(stack, monkeypatch, [web_event(event_id="r3")], "us", KEYS["us"])[0] == 202


def test_each_connection_reports_its_own_metrics(stack, monkeypatch, output):
    """What the per-connection alarms read (template.yaml, ConnectionAuthFailureAlarm...): the refused key is
    eu-pixel's, the events forwarded us-pixel's."""

    def answer(request):
        refused = parse_qs(urlsplit(str(request.url)).query)["pixel_id"][0] == "eu-pixel"
        return httpx.Response(401, text="invalid api key") if refused else httpx.Response(200, text="OK")

    applovin = Function(stack, monkeypatch, "applovin", answer)
    assert post(stack, monkeypatch, [web_event(event_id="m1")], "eu", KEYS["eu"])[0] == 202
    assert post(stack, monkeypatch, [web_event(event_id="m2")], "us", KEYS["us"])[0] == 202
    assert applovin.invoke(applovin.queued()) == ["m1"]
    text = output.text()
    assert metric(text, "VendorAuthFailures", "applovin.eu") == 1
    assert metric(text, "EventsFailed", "applovin.eu") == 1
    assert metric(text, "EventsForwarded", "applovin.eu") == 0
    assert metric(text, "VendorAuthFailures", "applovin.us") == 0
    assert metric(text, "EventsForwarded", "applovin.us") == 1
    assert metric(text, "VendorAuthFailures") == 1  # the vendor's own alarm counts it too
    for key in KEYS.values():
        assert key not in text


def test_a_refused_key_holds_only_its_own_connections_events(stack, monkeypatch):
    """AppLovin refuses eu-pixel's key for twelve hours. Every hour both sources send; the invocation that
    receives us-pixel's events delivers them, in the same batch as eu's retries, and never keeps one of them
    for a retry (no delay, no second receive)."""

    def answer(request):
        refused = parse_qs(urlsplit(str(request.url)).query)["pixel_id"][0] == "eu-pixel"
        return httpx.Response(401, text="invalid api key") if refused else httpx.Response(200, text="OK")

    applovin = Function(stack, monkeypatch, "applovin", answer)
    eu_ids: list[str] = []
    for hour in range(12):
        eu = [web_event(event_id=f"eu-{hour}-{i}") for i in range(3)]
        us = [web_event(event_id=f"us-{hour}-{i}") for i in range(3)]
        assert post(stack, monkeypatch, eu, "eu", KEYS["eu"])[0] == 202
        assert post(stack, monkeypatch, us, "us", KEYS["us"])[0] == 202
        applovin.again(applovin.kept)  # eu's messages kept for a retry are due again: the same invocation
        batch = applovin.queued()
        sent_before = len(applovin.mock.requests)
        kept = applovin.invoke(batch)
        eu_ids += [e["event_id"] for e in eu]
        assert kept == sorted(eu_ids)  # every eu event so far, and no us event
        new = pixels(applovin.mock)[sent_before:]
        assert [ids for pixel, _, ids in new if pixel == "us-pixel"] == [[e["event_id"] for e in us]]
        applovin.now += 3600
    assert applovin.function.circuit_of("applovin.eu").read().is_open
    assert applovin.function.circuit_of("applovin.us").read().failures == 0
    refused = [p for p in pixels(applovin.mock) if p[0] == "eu-pixel"]
    assert len(refused) < 12 + OPEN_AFTER  # once open, one probe per probe interval


def test_a_connection_gives_up_on_its_own_retry_window(stack, monkeypatch):
    """us-pixel keeps its failing events 2 hours (its own retry_window_hours), eu-pixel the [delivery] 24."""
    applovin = Function(stack, monkeypatch, "applovin", lambda request: httpx.Response(503, text="down"))
    assert post(stack, monkeypatch, [web_event(event_id="w-eu")], "eu", KEYS["eu"])[0] == 202
    assert post(stack, monkeypatch, [web_event(event_id="w-us")], "us", KEYS["us"])[0] == 202
    batch = applovin.queued()
    for record in batch["Records"]:  # queued three hours ago
        record["attributes"]["SentTimestamp"] = str(int((applovin.now - 3 * 3600) * 1000))
    assert applovin.invoke(batch) == ["w-eu"]
    (letter,) = drain(stack.physical["AppLovinDeadLetterQueue"])
    attrs = {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()}
    assert attrs["relay_event_id"] == "w-us" and attrs["relay_vendor"] == "applovin.us"
    assert attrs["relay_outcome"] == "retries_exhausted"
    assert "retry window 2 h" in attrs["relay_reason"]


SCALE = MAX_CONNECTIONS  # connections per vendor the relay supports and is tested at (docs/connections.md, "Limits")


@pytest.fixture
def many_connections(aws_stack, monkeypatch, tmp_path):
    """SCALE connections of each vendor; source `all` reaches every one, source `one` a single pixel."""
    names = [f"c{i:03d}" for i in range(SCALE)]
    lines = ["[sources.all]\n", '[sources.one]\nconnections = ["applovin.c000"]\n']
    for name in names:
        n = int(name[1:])
        lines.append(f'[connections.applovin.{name}]\npixel_id = "pixel-{name}"\n')
        lines.append(f'[connections.adroll.{name}]\nadvertisable_eid = "ADV_{n}"\npixel_eid = "PIX_{n}"\n')
        lines.append(f'[connections.appsflyer.{name}]\nios_app_id = "id{1000 + n}"\n')
    path = tmp_path / "connections.toml"
    path.write_text("\n".join(lines))
    monkeypatch.setenv("RELAY_CONNECTIONS_FILE", str(path))
    secrets = boto3.client("secretsmanager")
    values = {
        "IngestSigningSecret": {"sources": {"all": {"secret": KEYS["both"]}, "one": {"secret": KEYS["eu"]}}},
        "AppLovinSecret": {
            "api_key": SECRETS["applovin"],
            "connections": {n: {"api_key": f"al-{n}-KEY"} for n in names},
        },
        "AdRollSecret": {"token": SECRETS["adroll"], "connections": {n: {"token": f"ar-{n}-TOKEN"} for n in names}},
        "AppsFlyerSecret": {"key": SECRETS["appsflyer"], "connections": {n: {"key": f"af-{n}-KEY"} for n in names}},
    }
    for logical, value in values.items():
        secrets.put_secret_value(SecretId=aws_stack.physical[logical], SecretString=json.dumps(value))
    return aws_stack, names


def test_one_stack_serves_its_most_connections_per_vendor(many_connections, monkeypatch):
    stack, names = many_connections
    status, body = post(stack, monkeypatch, [web_event(event_id="fan-out")], "all", KEYS["both"])
    assert status == 202
    destinations = body["accepted"][0]["destinations"]
    assert len(destinations) == 2 * SCALE + 2  # every AppLovin and AdRoll connection, and the template's own
    applovin = Function(stack, monkeypatch, "applovin")
    assert applovin.invoke(applovin.queued()) == []
    sent = sorted((pixel, key) for pixel, key, ids in pixels(applovin.mock) if ids == ["fan-out"])
    assert sent == sorted([(f"pixel-{n}", f"al-{n}-KEY") for n in names] + [("PIXEL123", SECRETS["applovin"])])
    adroll = Function(stack, monkeypatch, "adroll")
    assert adroll.invoke(adroll.queued()) == []
    assert len({str(r.url) for r in adroll.mock.requests}) == SCALE + 1
    # an app event: one AppsFlyer request per connection, each to its own app with its own key
    status, body = post(stack, monkeypatch, [app_event(event_id="app-fan-out")], "all", KEYS["both"])
    assert status == 202
    assert sum(c.startswith("appsflyer") for c in body["accepted"][0]["destinations"]) == SCALE + 1
    appsflyer = Function(stack, monkeypatch, "appsflyer")
    assert appsflyer.invoke(appsflyer.queued()) == []
    sent = {(str(r.url).rsplit("/", 1)[1], r.headers["authentication"]) for r in appsflyer.mock.requests}
    assert sent == {(f"id{1000 + int(n[1:])}", f"af-{n}-KEY") for n in names} | {("id123456789", SECRETS["appsflyer"])}
    # a source that reaches one of them reaches that one only
    status, body = post(stack, monkeypatch, [web_event(event_id="just-one")], "one", KEYS["eu"])
    assert status == 202 and body["accepted"][0]["destinations"] == ["applovin.c000"]


def test_a_connection_missing_its_key_holds_only_its_own_events(stack, monkeypatch, output):
    secrets = boto3.client("secretsmanager")
    arn = stack.physical["AppLovinSecret"]
    value = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
    del value["connections"]["eu"]  # eu-pixel's key not filled in yet
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(value))
    applovin = Function(stack, monkeypatch, "applovin")
    assert post(stack, monkeypatch, [web_event(event_id="k-eu")], "eu", KEYS["eu"])[0] == 202
    assert post(stack, monkeypatch, [web_event(event_id="k-us")], "us", KEYS["us"])[0] == 202
    assert applovin.invoke(applovin.queued()) == ["k-eu"]
    assert pixels(applovin.mock) == [("us-pixel", KEYS["applovin.us"], ["k-us"])]
    text = output.text()
    assert "applovin.eu.api_key: missing: set connections.eu.api_key in applovin's secret" in text
    assert metric(text, "VendorAuthFailures", "applovin.eu") == 1
    assert metric(text, "VendorAuthFailures", "applovin.us") == 0


def get(stack, monkeypatch, event_id: str, source: str | None, secret: str) -> tuple[int, dict]:
    from relay.ingest.status import event_path, signed_message

    use_function_env(monkeypatch, stack, "IngestFunction")
    handler = ingest_handler(clock=lambda: NOW_S)
    headers = {"X-Relay-Signature": sign(signed_message(event_id), secret, timestamp=int(NOW_S))}
    if source is not None:
        headers["X-Relay-Source"] = source
    response = handler(http_api_event("GET", event_path(event_id), headers, b""), FakeLambdaContext())
    return response["statusCode"], json.loads(response_body(response))


def test_get_answers_each_source_about_its_own_event(stack, monkeypatch):
    for source in ("eu", "us"):
        assert post(stack, monkeypatch, [web_event(event_id="same")], source, KEYS[source])[0] == 202
    applovin = Function(stack, monkeypatch, "applovin")
    applovin.invoke(applovin.queued())
    status, journey = get(stack, monkeypatch, "same", "us", KEYS["us"])
    assert status == 200 and journey["source"] == "us"
    assert sorted(journey["vendors"]) == ["adroll.us", "applovin.us", "appsflyer.us"]
    assert journey["vendors"]["applovin.us"]["outcome"] == "delivered"
    assert "pixel_id=us-pixel" in journey["vendors"]["applovin.us"]["request"]["url"]
    status, journey = get(stack, monkeypatch, "same", "eu", KEYS["eu"])
    assert status == 200 and journey["vendors"]["applovin.eu"]["outcome"] == "delivered"
    assert get(stack, monkeypatch, "same", "us", KEYS["eu"])[0] == 401  # another source's secret
    assert get(stack, monkeypatch, "same", None, KEYS["eu"])[0] == 401  # no default source in this deploy


def test_the_ingest_logs_the_source_and_never_a_secret(stack, monkeypatch, output):
    assert post(stack, monkeypatch, [web_event(event_id="l1")], "eu", KEYS["eu"])[0] == 202
    assert post(stack, monkeypatch, [web_event(event_id="l2")], "eu", KEYS["us"])[0] == 401
    lines = [json.loads(line) for line in output.text().splitlines() if '"ingest request"' in line]
    assert [(line["status"], line.get("source")) for line in lines] == [(202, "eu"), (401, "eu")]
    for key in KEYS.values():
        assert key not in output.text()
