"""Bundles: the ingest puts up to EVENTS_PER_MESSAGE events of a request in one SNS message; vendor
functions handle each event of a bundle on its own (claims, retries, dead letters). Real moto SNS/SQS and
DynamoDB (the ledger), vendors answered by httpx.MockTransport."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest

from relay.aws.sns import Message, SnsPublisher
from relay.delivery.deadletter import body_event_ids
from relay.ingest.bundling import bundles
from relay.ingest.signing import sign
from relay.queued.message import EVENTS_PER_MESSAGE, bundle_body, bundle_id, parse_message
from relay_tools.apigw import http_api_event
from relay_tools.functions import ingest_handler, vendor_handler

from ..conftest import NOW_MS, SECRETS, FakeLambdaContext, app_event, drain, use_function_env, web_event
from .test_vendor_functions import PREFIX, Vendor, queued, receive


def single(i: int, destinations=("applovin", "adroll"), size: int = 0) -> tuple[str, Message]:
    body = json.dumps({"event_id": f"e{i}", "name": "purchase", "payloads": {}, "pad": "x" * size})
    return f"e{i}", Message(str(i), body, list(destinations))


def test_events_to_the_same_vendors_share_messages_of_at_most_ten():
    singles = [single(i) for i in range(25)] + [single(i, ("appsflyer",)) for i in range(25, 28)]
    messages, members = bundles(singles, EVENTS_PER_MESSAGE)
    assert [members[m.id] for m in messages] == [
        [f"e{i}" for i in range(10)],
        [f"e{i}" for i in range(10, 20)],
        [f"e{i}" for i in range(20, 25)],
        ["e25", "e26", "e27"],
    ]
    assert [m.destinations for m in messages] == [["applovin", "adroll"]] * 3 + [["appsflyer"]]
    first = json.loads(messages[0].body)
    assert set(first) == {"bundle", "events"} and [e["event_id"] for e in first["events"]] == members[messages[0].id]
    assert first["bundle"] == bundle_id(members[messages[0].id])  # the same events make the same bundle
    assert all(m.size == len(m.body) + len("destinations") + len("String.Array") + len(m.attribute) for m in messages)


def test_a_lone_event_keeps_its_own_message_and_size_splits_bundles():
    (lone,), _ = bundles([single(0)], EVENTS_PER_MESSAGE)
    assert lone.body == single(0)[1].body  # not wrapped: the message format of one event is unchanged
    big = [single(i, size=100_000) for i in range(5)]  # ~100 KB each: two fit in SNS's 256 KiB
    messages, members = bundles(big, EVENTS_PER_MESSAGE)
    assert [len(members[m.id]) for m in messages] == [2, 2, 1]
    assert all(m.size <= 262_144 for m in messages)
    # and room for a dead letter's attributes: a vendor function may move a bundle whole to its DLQ
    from relay.delivery.deadletter import DEAD_LETTER_ATTRIBUTE_BYTES

    assert all(m.size + DEAD_LETTER_ATTRIBUTE_BYTES <= 262_144 for m in messages)
    messages, members = bundles([single(i) for i in range(3)], 1)  # one event per message
    assert [members[m.id] for m in messages] == [["e0"], ["e1"], ["e2"]]


def test_a_bundles_events_are_read_one_by_one_and_a_bad_one_alone_is_refused(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "AppLovinFunction")  # the configuration queued() maps with
    bundle = bundle_id(["a", "b", "?"])
    body = bundle_body(bundle, [queued(web_event(event_id="a")), '{"event_id": "b", "payloads": {}}', "[1]"])
    items = parse_message("m1", body, "applovin")
    assert [i.key for i in items] == ["m1#0", "m1#1", "m1#2"]
    assert items[0].event.event_id == "a" and items[0].error is None and items[0].bundle == bundle
    assert json.loads(items[0].body)["event_id"] == "a"  # the event's own message: what its dead letter holds
    assert items[1].error == "not a queued message: payloads.applovin: missing; the message carries payloads for: none"
    assert items[2].error == "not a queued message: (body): must be a JSON object"
    assert body_event_ids(body) == ("a", "b")
    (one,) = parse_message("m2", queued(web_event(event_id="c")), "applovin")
    assert one.key == "m2" and one.event.event_id == "c" and one.bundle is None


def publish_bundle(stack, vendor: str, bodies: list[str]) -> None:
    publisher = SnsPublisher(stack.physical["EventsTopic"], boto3.client("sns"))
    bundle = bundle_id([json.loads(b)["event_id"] for b in bodies])
    assert publisher.publish([Message("0", bundle_body(bundle, bodies), [vendor])]) == []


def handle(stack, monkeypatch, vendor: str, records: dict, mock: Vendor, **kwargs) -> list[str]:
    use_function_env(monkeypatch, stack, f"{PREFIX[vendor]}Function")
    handler = vendor_handler(vendor, http_client=mock.client(), sleep=lambda s: None, **kwargs)
    return [f["itemIdentifier"] for f in handler(records, FakeLambdaContext())["batchItemFailures"]]


def test_ingest_publishes_bundles_and_applovin_sends_them_in_one_request(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    ingest = ingest_handler(clock=lambda: NOW_MS / 1000)
    events = [web_event(event_id=f"w{i:02d}") for i in range(25)]
    raw = json.dumps({"events": events}).encode()
    headers = {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"], NOW_MS // 1000)}
    response = ingest(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    assert response["statusCode"] == 202
    records = receive(aws_stack, "applovin", 3)
    assert sorted(len(json.loads(r["body"])["events"]) for r in records["Records"]) == [5, 10, 10]
    mock = Vendor()
    assert handle(aws_stack, monkeypatch, "applovin", records, mock) == []
    (body,) = mock.bodies()
    assert sorted(e["dedupe_id"] for e in body["events"]) == [f"w{i:02d}" for i in range(25)]


def test_a_failed_event_retries_its_bundle_and_only_it_is_sent_again(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "AppsFlyerFunction")
    events = [app_event("ios", event_id=f"i{i}") for i in range(3)]
    events[1]["user"] = {**events[1]["user"], "id": "fail"}
    publish_bundle(aws_stack, "appsflyer", [queued(e) for e in events])
    records = receive(aws_stack, "appsflyer", 1)
    failing = {"on": True}

    def answer(request):
        fail = failing["on"] and json.loads(request.content).get("customer_user_id") == "fail"
        return httpx.Response(500 if fail else 200, text="OK")

    mock = Vendor(answer)
    assert handle(aws_stack, monkeypatch, "appsflyer", records, mock) == [records["Records"][0]["messageId"]]
    assert len(mock.requests) == 2 + 6  # two delivered, the failing one tried six times
    failing["on"] = False
    mock.requests.clear()
    assert handle(aws_stack, monkeypatch, "appsflyer", records, mock) == []  # SQS delivers the bundle again
    (again,) = mock.bodies()  # the ledger knows the other two were delivered
    assert again["customer_user_id"] == "fail"
    mock.requests.clear()
    assert handle(aws_stack, monkeypatch, "appsflyer", records, mock) == [] and mock.requests == []


def test_an_invalid_event_of_a_bundle_is_dead_lettered_alone_with_its_own_message(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    bodies = [queued(web_event(event_id=f"e{i}")) for i in range(4)]
    bodies.insert(2, '{"event_id": "broken", "payloads": {"adroll": {}}}')  # no AppLovin payload

    def answer(request):
        sent = [e["dedupe_id"] for e in json.loads(request.content)["events"]]
        return httpx.Response(400 if "e3" in sent else 200, text="bad: e3" if "e3" in sent else "OK")

    publish_bundle(aws_stack, "applovin", bodies)
    records = receive(aws_stack, "applovin", 1)
    mock = Vendor(answer)
    assert handle(aws_stack, monkeypatch, "applovin", records, mock) == []  # nothing left to retry
    # one request for the bundle's four readable events, then the bisection down to e3
    assert [[e["dedupe_id"] for e in b["events"]] for b in mock.bodies()] == [
        ["e0", "e1", "e2", "e3"],
        ["e0", "e1"],
        ["e2", "e3"],
        ["e2"],
        ["e3"],
    ]
    letters = {
        m["MessageAttributes"]["relay_event_id"]["StringValue"]: m
        for m in drain(aws_stack.physical["AppLovinDeadLetterQueue"])
    }
    assert sorted(letters) == ["broken", "e3"]
    # that event's message, not the whole bundle, in a bundle of one under the bundle's id: a redrive brings it
    # back under the identity the ledger knows it by
    bundle = bundle_id(["e0", "e1", "broken", "e2", "e3"])
    assert json.loads(letters["e3"]["Body"]) == {"bundle": bundle, "events": [json.loads(bodies[4])]}
    assert letters["e3"]["MessageAttributes"]["relay_status"]["StringValue"] == "400"
    assert letters["broken"]["MessageAttributes"]["relay_reason"]["StringValue"].startswith(
        "not a queued message: payloads.applovin: missing"
    )
    # the same message delivered again (the invocation died after its work): nothing sent, e3 not moved
    # twice; the unreadable event, which no claim covers (the ingest never writes one), is moved again
    mock.requests.clear()
    assert handle(aws_stack, monkeypatch, "applovin", records, mock) == []
    assert mock.requests == []
    assert [
        m["MessageAttributes"]["relay_event_id"]["StringValue"]
        for m in drain(aws_stack.physical["AppLovinDeadLetterQueue"])
    ] == ["broken"]


@pytest.mark.parametrize("per_message", [1, EVENTS_PER_MESSAGE])
def test_the_ingest_counts_published_events_not_messages(aws_stack, monkeypatch, per_message):
    from relay.ingest.request import Ingest
    from relay.models.config import config_from_env

    from ..conftest import NOW

    env = use_function_env(monkeypatch, aws_stack, "IngestFunction")
    config = config_from_env(env, credentials=False)
    publisher = SnsPublisher(aws_stack.physical["EventsTopic"], boto3.client("sns"))
    ingest = Ingest(config, publisher, clock=lambda: NOW.timestamp(), events_per_message=per_message)
    events = [web_event(event_id=f"p{i}") for i in range(12)]
    result = ingest._accept(events, NOW)
    assert result.status == 202 and result.published == 12
    records = receive(aws_stack, "adroll", 12 if per_message == 1 else 2)
    assert sum(len(body_event_ids(r["body"])) for r in records["Records"]) == 12
