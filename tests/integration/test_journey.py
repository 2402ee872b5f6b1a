"""Every event's journey (relay.journey): written by the real ingest and vendor handlers into moto's table
from template.yaml, read back by `trace_event` and GET /v1/events/{event_id}."""

from __future__ import annotations

import json
import zlib

import boto3
import httpx
import pydantic_core
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.ingest.signing import sign
from relay.journey import (
    MAX_DATA_BYTES,
    NOT_KEPT,
    PACK_FROM_CHARS,
    JourneyTable,
    PackedText,
    decode,
    encode,
    fitted,
    iso,
    mask_ips_text,
    packed,
    truncate_ip,
)
from relay.journey.trace import trace_event
from relay_tools.apigw import http_api_event
from relay_tools.functions import ingest_handler, vendor_handler
from relay_tools.openapi import EventJourney

from ..conftest import NOW_MS, SECRETS, FakeClock, FakeLambdaContext, app_event, use_function_env, web_event
from .test_vendor_functions import Vendor, receive

NOW = NOW_MS / 1000


def post(stack, monkeypatch, events: list[dict], source_ip: str = "198.51.100.77", **env: str) -> dict:
    use_function_env(monkeypatch, stack, "IngestFunction")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    raw = json.dumps({"events": events}).encode()
    headers = {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"], int(NOW))}
    event = http_api_event("POST", "/v1/events", headers, raw, source_ip=source_ip)
    response = ingest_handler(clock=lambda: NOW)(event, FakeLambdaContext())
    assert response["statusCode"] == 202, response["body"]
    return json.loads(response["body"])


def deliver(stack, monkeypatch, vendor: str, n: int, mock: Vendor, records: dict | None = None, **env: str) -> dict:
    """One invocation of the vendor's function on `n` messages received now (or on `records`)."""
    logical = {"applovin": "AppLovinFunction", "appsflyer": "AppsFlyerFunction", "adroll": "AdRollFunction"}
    use_function_env(monkeypatch, stack, logical[vendor])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clock = FakeClock()
    handler = vendor_handler(vendor, http_client=mock.client(), sleep=clock.sleep)
    return handler(records or receive(stack, vendor, n), FakeLambdaContext(clock))


def table(stack) -> JourneyTable:
    return JourneyTable(stack.physical["IdempotencyTable"], boto3.client("dynamodb"))


def items(stack, kind: str) -> list[dict]:
    """The journey items of `kind` (a vendor's own items; the ingest's batch records, which carry its journeys)."""
    scanned = boto3.client("dynamodb").scan(TableName=stack.physical["IdempotencyTable"])["Items"]
    marker = ".ingest.batch#" if kind == "ingest" else f".{kind}.journey#"
    return [i for i in scanned if marker in i["id"]["S"] and "data" in i]


def lead(event_id: str) -> dict:
    return web_event(
        event_id=event_id,
        name="generate_lead",
        value=30,
        currency="USD",
        user={"ip": "203.0.113.7", "user_agent": "UA", "email": "Lead@Example.com", "cookie_id": "c1"},
    )


def test_a_delivered_event_has_its_request_answer_and_outcome(aws_stack, monkeypatch):
    post(aws_stack, monkeypatch, [lead("order-1001")])
    mock = Vendor(lambda request: httpx.Response(200, json={"status": "accepted"}))
    assert deliver(aws_stack, monkeypatch, "applovin", 1, mock) == {"batchItemFailures": []}
    journey = trace_event(table(aws_stack), "order-1001")
    assert journey["event_id"] == "order-1001"
    assert journey["accepted_at"] == iso(NOW) and journey["request_id"]  # the ingest's clock, API Gateway's id
    applovin = journey["vendors"]["applovin"]
    assert applovin["outcome"] == "delivered" and applovin["status"] == 200
    (attempt,) = applovin["attempts"]
    assert attempt["status"] == 200 and attempt["attempt"] == 1
    assert json.loads(attempt["response"]) == {"status": "accepted"}
    request = applovin["request"]
    assert request["method"] == "POST" and request["url"] == "https://b.applovin.com/v1/event?pixel_id=PIXEL123"
    assert request["headers"]["Authorization"] != SECRETS["applovin"]  # masked
    sent = json.loads(mock.requests[0].content)
    # the body as sent, but for the client's IP address, truncated to its /24
    assert sent["events"][0]["user_data"]["client_ip_address"] == "203.0.113.7"
    kept = request["body"]["events"][0]
    assert kept["user_data"]["client_ip_address"] == "203.0.113.0"
    assert {k: v for k, v in kept.items() if k != "user_data"} == {
        k: v for k, v in sent["events"][0].items() if k != "user_data"
    }
    # queued for the others, not received yet
    assert journey["vendors"]["adroll"]["outcome"] == "pending"


def test_journey_items_hold_no_clear_text_pii(aws_stack, monkeypatch):
    user = {"ip": "203.0.113.7", "email": "Lead@Example.com", "phone": "+1 650 555 0100"}
    web = lead("order-1002") | {"user": {**lead("x")["user"], **user}}
    ios = app_event("ios", event_id="order-1002-ios")
    ios["user"] = {**ios.get("user", {}), **user, "ip": "2001:db8:abcd:12::7"}
    post(aws_stack, monkeypatch, [web, ios], source_ip="198.51.100.77")
    echo = Vendor(lambda request: httpx.Response(200, content=request.content))  # an answer echoing the body
    for vendor in ("applovin", "adroll", "appsflyer"):
        deliver(aws_stack, monkeypatch, vendor, 1, echo)
    sent = b" ".join(r.content for r in echo.requests)
    assert b"203.0.113.7" in sent and b"2001:db8:abcd:12::7" in sent  # the vendors got the addresses
    scanned = boto3.client("dynamodb").scan(TableName=aws_stack.physical["IdempotencyTable"])["Items"]
    text = json.dumps(
        [{k: zlib.decompress(v["B"]).decode() if "B" in v else v for k, v in item.items()} for item in scanned]
    )
    assert len(items(aws_stack, "applovin") + items(aws_stack, "adroll") + items(aws_stack, "appsflyer")) == 3
    clear = ("203.0.113.7", "2001:db8:abcd:12::7", "198.51.100.77", "Lead@Example.com", "lead@example.com")
    clear += ("+1 650 555 0100", "16505550100", "6505550100")  # the phone, as given and normalised
    for secret in (*clear, SECRETS["applovin"], SECRETS["adroll"], SECRETS["appsflyer"]):
        assert secret not in text
    assert "203.0.113.0" in text and "2001:db8:abcd::" in text
    ingest = json.loads(zlib.decompress(items(aws_stack, "ingest")[0]["data"]["B"]))
    assert ingest["source_ip"] == "198.51.100.0"


def test_one_item_per_request_and_per_invocation_not_per_event(aws_stack, monkeypatch):
    post(aws_stack, monkeypatch, [lead(f"e{i:03d}") for i in range(100)])
    mock = Vendor()
    deliver(aws_stack, monkeypatch, "applovin", 10, mock)  # ten bundles of ten
    assert len(mock.requests) == 1
    assert len(items(aws_stack, "ingest")) == 1
    (vendor_item,) = items(aws_stack, "applovin")
    assert vendor_item["journey_minute"]["S"][-2] == "#"  # on the journeys index
    journey = trace_event(table(aws_stack), "e042")
    assert journey["vendors"]["applovin"]["outcome"] == "delivered"
    assert len(journey["vendors"]["applovin"]["request"]["body"]["events"]) == 100
    # the page's recent list, from the journeys index (the ingest ran at NOW, the vendor function now)
    from relay_tools.ui import RecentJourneys

    name, client = aws_stack.physical["IdempotencyTable"], boto3.client("dynamodb")
    ingest_key = items(aws_stack, "ingest")[0]["id"]["S"]
    assert list(RecentJourneys(JourneyTable(name, client, clock=lambda: NOW + 1), minutes=3).items()) == [ingest_key]
    recent = RecentJourneys(JourneyTable(name, client), minutes=3).items()
    assert list(recent) == [vendor_item["id"]["S"]]
    assert recent[vendor_item["id"]["S"]]["events"]["e042"]["outcome"] == "delivered"


def test_retries_and_dead_letters_keep_every_attempt(aws_stack, monkeypatch):
    post(aws_stack, monkeypatch, [app_event("ios", event_id="ios-1")])
    down = Vendor(lambda request: httpx.Response(503, text="maintenance"))
    first = receive(aws_stack, "appsflyer", 1)
    result = deliver(aws_stack, monkeypatch, "appsflyer", 1, down, first)
    assert len(result["batchItemFailures"]) == 1
    journey = trace_event(table(aws_stack), "ios-1")["vendors"]["appsflyer"]
    assert journey["outcome"] == "pending" and "503" in journey["reason"]
    assert "next_attempt_at" in journey
    assert [a["status"] for a in journey["attempts"]] == [503] * len(down.requests)
    url = aws_stack.physical["AppsFlyerQueue"]
    handle = first["Records"][0]["receiptHandle"]
    boto3.client("sqs").change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    refused = Vendor(lambda request: httpx.Response(400, text="bad app id"))
    assert deliver(aws_stack, monkeypatch, "appsflyer", 1, refused) == {"batchItemFailures": []}
    traced = trace_event(table(aws_stack), "ios-1")
    EventJourney.model_validate(traced)
    journey = traced["vendors"]["appsflyer"]
    assert journey["outcome"] == "dead_lettered" and "400" in journey["reason"]
    assert [a["status"] for a in journey["attempts"]] == [503] * len(down.requests) + [400]
    assert journey["attempts"][-1]["response"] == "bad app id"


def test_skipped_and_invalid_vendors_say_why(aws_stack, monkeypatch):
    ios = app_event("ios", event_id="ios-2")  # no page_url: AppLovin skips app events without one
    post(aws_stack, monkeypatch, [ios])
    journey = trace_event(table(aws_stack), "ios-2")
    assert journey["vendors"]["applovin"]["outcome"] == "skipped"
    assert "page_url" in journey["vendors"]["applovin"]["reason"]
    assert journey["vendors"]["appsflyer"]["outcome"] == "pending"


def test_an_unknown_event_is_none(aws_stack):
    assert trace_event(table(aws_stack), "never-sent") is None


def test_with_the_journey_off_the_ledger_still_tells_the_outcome(aws_stack, monkeypatch):
    off = {"RELAY_DELIVERY_JOURNEY": "false"}
    post(aws_stack, monkeypatch, [lead("quiet-1")], **off)
    deliver(aws_stack, monkeypatch, "applovin", 1, Vendor(), **off)
    assert items(aws_stack, "ingest") == [] and items(aws_stack, "applovin") == []
    journey = trace_event(table(aws_stack), "quiet-1")
    assert journey["vendors"]["applovin"]["outcome"] == "delivered"
    assert journey["vendors"]["applovin"]["attempts"] == []


def signed_get(path: str, secret: str = SECRETS["signing"], t: int | None = None) -> dict:
    t = int(NOW) if t is None else t
    return {"x-relay-signature": sign(f"GET {path}".encode(), secret, t)}


def test_an_id_is_signed_percent_encoded_whatever_encoding_the_path_arrived_in(aws_stack, monkeypatch):
    post(aws_stack, monkeypatch, [lead("order 1005/ü")])
    handler = ingest_handler(clock=lambda: NOW)
    headers = signed_get("/v1/events/order%201005%2F%C3%BC")  # RFC 3986: only A-Z a-z 0-9 - . _ ~ stay
    for sent in ("/v1/events/order%201005%2F%C3%BC", "/v1/events/order%201005%2f%c3%bc"):
        response = handler(http_api_event("GET", sent, headers, b""), FakeLambdaContext())
        assert response["statusCode"] == 200, response["body"]
        assert json.loads(response["body"])["event_id"] == "order 1005/ü"
    # behind API Gateway the route's path parameter holds the id decoded, whatever rawPath holds
    deployed = http_api_event("GET", "/v1/events/order%201005/%C3%BC", headers, b"")
    deployed["pathParameters"] = {"event_id": "order 1005/ü"}
    response = handler(deployed, FakeLambdaContext())
    assert response["statusCode"] == 200 and json.loads(response["body"])["event_id"] == "order 1005/ü"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/events/order-1003", None, 200),
        ("/v1/events/unknown-id", None, 404),
        ("/v1/events/order-1003", {"x-relay-signature": "t=1,v1=" + "0" * 64}, 401),
        ("/v1/events/order-1003", {}, 401),
        ("/v1/events/%FF", None, 400),
        ("/v1/events/" + "x" * 129, None, 400),
    ],
)
def test_get_event_status(aws_stack, monkeypatch, path, headers, status):
    post(aws_stack, monkeypatch, [lead("order-1003")])
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    handler = ingest_handler(clock=lambda: NOW)
    headers = signed_get(path) if headers is None else headers
    response = handler(http_api_event("GET", path, headers, b""), FakeLambdaContext())
    assert response["statusCode"] == status, response["body"]
    body = json.loads(response["body"])
    if status == 200:
        assert body["event_id"] == "order-1003" and set(body["vendors"]) == {"applovin", "appsflyer", "adroll"}
        assert body["vendors"]["appsflyer"]["outcome"] == "skipped"  # a web event
        EventJourney.model_validate(body)  # what openapi.json says a 200 holds
    else:
        assert body["error"]


def test_get_is_signed_over_the_path_not_a_body(aws_stack, monkeypatch):
    post(aws_stack, monkeypatch, [lead("order-1004")])
    handler = ingest_handler(clock=lambda: NOW)
    other = signed_get("/v1/events/order-9999")
    response = handler(http_api_event("GET", "/v1/events/order-1004", other, b""), FakeLambdaContext())
    assert response["statusCode"] == 401
    late = signed_get("/v1/events/order-1004", t=int(NOW) - 301)
    response = handler(http_api_event("GET", "/v1/events/order-1004", late, b""), FakeLambdaContext())
    assert response["statusCode"] == 401 and "tolerance" in json.loads(response["body"])["error"]
    # no replay guard: the same signature reads twice
    same = signed_get("/v1/events/order-1004")
    for _ in range(2):
        response = handler(http_api_event("GET", "/v1/events/order-1004", same, b""), FakeLambdaContext())
        assert response["statusCode"] == 200


@pytest.mark.parametrize(
    "value",
    [
        "203.0.113.7",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "1.2.3.4.5",
        " 10.0.0.1 ",
        "\u0661.2.3.4",
        "2001:db8::1",
        "::1",
        "::ffff:1.2.3.4",
        "10:30:00",
        "1.2.3.04",
        "",
    ],
)
def test_ip_truncation_agrees_with_the_standard_library(value):
    import ipaddress

    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        expected = None
    else:
        prefix = 24 if address.version == 4 else 48
        expected = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
    assert truncate_ip(value) == expected


def test_ip_truncation():
    assert truncate_ip("203.0.113.7") == "203.0.113.0"
    assert truncate_ip("2001:db8:abcd:12:1:2:3:4") == "2001:db8:abcd::"
    assert truncate_ip("not an ip") is None
    text = json.dumps({"a": ["10.1.2.3", "x", "1.2.3"], "b": {"ip": "::1", "t": "10:30:00"}, "c": "2001:db8::7"})
    assert json.loads(mask_ips_text(text)) == {
        "a": ["10.1.2.0", "x", "1.2.3"],
        "b": {"ip": "::", "t": "10:30:00"},
        "c": "2001:db8::",
    }
    unchanged = '{"v": "a 10.1.2.3 b", "w": "999.1.1.1"}'  # whole string values only, real addresses only
    assert mask_ips_text(unchanged) == unchanged


def test_an_oversized_journey_drops_bodies_not_outcomes():
    noise = __import__("os").urandom(400_000).hex()  # compresses to about 400 KB
    data = {"requests": [{"body": noise, "response": "ok"}], "events": {"e1": {"outcome": "delivered"}}}
    blob = fitted(data)
    assert len(blob) <= MAX_DATA_BYTES
    kept = json.loads(zlib.decompress(blob))
    assert kept["requests"][0]["body"] == NOT_KEPT and kept["events"]["e1"]["outcome"] == "delivered"


@given(
    requests=st.lists(st.tuples(st.text(max_size=40), st.booleans(), st.text(max_size=10)), min_size=1, max_size=4),
    outcome=st.text(max_size=20),
)
def test_a_journey_with_bodies_compressed_ahead_decompresses_to_the_same_json(requests, outcome):
    """Bodies compressed while the vendor answered (relay.journey.packed) are spliced into the journey's
    stream: zlib reads one stream, byte for byte the JSON of the same journey with plain bodies, whatever
    the bodies hold (quotes, backslashes, any text, what looks like the splice's marks)."""
    plain = {
        "kind": "vendor",
        "requests": [
            {"at": i, "body": text * (PACK_FROM_CHARS // max(len(text), 1) + 1) if long else text, "response": r}
            for i, (text, long, r) in enumerate(requests)
        ],
        "events": {"e1": {"outcome": outcome}},
    }
    ahead = {**plain, "requests": [{**r, "body": packed(r["body"])} for r in plain["requests"]]}
    kinds = [isinstance(r["body"], PackedText) for r in ahead["requests"]]
    assert kinds == [len(r["body"]) >= PACK_FROM_CHARS for r in plain["requests"]]
    assert zlib.decompress(encode(ahead)) == pydantic_core.to_json(plain) == zlib.decompress(encode(plain))
    assert decode(fitted(ahead)) == plain


def test_an_oversized_journey_with_a_body_compressed_ahead_drops_it():
    noise = __import__("os").urandom(400_000).hex()
    data = {"requests": [{"body": packed(noise), "response": "ok"}], "events": {"e1": {"outcome": "delivered"}}}
    kept = decode(fitted(data))
    assert kept["requests"][0]["body"] == NOT_KEPT and kept["events"]["e1"]["outcome"] == "delivered"


def test_a_get_signed_with_a_rotated_secret_reads_the_secret_again(aws_stack, monkeypatch):
    from relay.aws.secrets import SecretRefresh

    post(aws_stack, monkeypatch, [lead("order-1006")])
    env = use_function_env(monkeypatch, aws_stack, "IngestFunction")
    handler = ingest_handler(clock=lambda: NOW, secret_refresh=SecretRefresh(clock=lambda: 1000.0))
    path = "/v1/events/order-1006"
    assert handler(http_api_event("GET", path, signed_get(path), b""), FakeLambdaContext())["statusCode"] == 200
    boto3.client("secretsmanager").put_secret_value(
        SecretId=env["RELAY_INGEST_SECRET_ARN"], SecretString=json.dumps({"secret": "rotated-3"})
    )
    rotated = signed_get(path, secret="rotated-3")
    assert handler(http_api_event("GET", path, rotated, b""), FakeLambdaContext())["statusCode"] == 200
    stale = signed_get(path, secret="not-a-secret")
    assert handler(http_api_event("GET", path, stale, b""), FakeLambdaContext())["statusCode"] == 401


def test_the_pages_recent_list_reads_settled_minutes_once_and_forgets_what_left_the_window(aws_stack, monkeypatch):
    from relay_tools.ui import RecentJourneys

    post(aws_stack, monkeypatch, [lead("order-1007")])
    client = boto3.client("dynamodb")
    queries: list[str] = []
    client.meta.events.register("before-call.dynamodb.Query", lambda **kw: queries.append("q"))
    now = {"t": NOW + 5 * 60}  # the ingest's item is five minutes old: its minute is settled
    recent = RecentJourneys(JourneyTable(aws_stack.physical["IdempotencyTable"], client, clock=lambda: now["t"]))
    first = recent.items()
    assert [j["kind"] for j in first.values()] == ["ingest"] and len(queries) == recent.minutes * 8
    queries.clear()
    assert recent.items() == first
    assert len(queries) == recent.SETTLED_MINUTES * 8  # only the minutes that may still grow
    now["t"] = NOW + (recent.minutes + 1) * 60  # the item has left the window
    assert recent.items() == {}


@given(
    values=st.lists(
        st.one_of(
            st.ip_addresses().map(str), st.text(max_size=20), st.from_regex(r"\d{1,4}(\.\d{1,4}){3}", fullmatch=True)
        ),
        max_size=8,
    ),
    nested=st.booleans(),
)
def test_mask_ips_text_truncates_exactly_the_values_that_are_addresses(values, nested):
    """The one-pass text substitution agrees with truncate_ip value by value, also inside JSON held in a string."""
    expected = [truncate_ip(v) if truncate_ip(v) is not None else v for v in values]
    text = json.dumps({"v": values})
    if nested:
        text = json.dumps({"eventValue": text})
        masked = json.loads(json.loads(mask_ips_text(text))["eventValue"])["v"]
    else:
        masked = json.loads(mask_ips_text(text))["v"]
    assert masked == expected


def test_when_the_last_invocation_left_no_journey_the_ledger_tells_the_outcome(aws_stack, monkeypatch):
    """A retry delivers the event but its journey item cannot be written (JourneyErrors): the trace does not
    keep saying "pending" from the first attempt's item; the ledger's batch record says delivered."""
    post(aws_stack, monkeypatch, [app_event("ios", event_id="ios-3")])
    first = receive(aws_stack, "appsflyer", 1)
    deliver(aws_stack, monkeypatch, "appsflyer", 1, Vendor(lambda r: httpx.Response(503)), first)
    assert trace_event(table(aws_stack), "ios-3")["vendors"]["appsflyer"]["outcome"] == "pending"
    url, handle = aws_stack.physical["AppsFlyerQueue"], first["Records"][0]["receiptHandle"]
    boto3.client("sqs").change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    monkeypatch.setattr(JourneyTable, "put", lambda self, vendor, batch, data: False)
    assert deliver(aws_stack, monkeypatch, "appsflyer", 1, Vendor()) == {"batchItemFailures": []}
    journey = trace_event(table(aws_stack), "ios-3")["vendors"]["appsflyer"]
    assert journey["outcome"] == "delivered"
    assert [a["status"] for a in journey["attempts"]] == [503] * len(journey["attempts"])  # what was kept


def test_a_fixed_resend_reaching_the_vendor_that_found_it_invalid_is_its_journey(aws_stack, monkeypatch):
    """Issue #24, item 8: the event first reached AppLovin only (AdRoll found it invalid), then the client sent
    it again with the missing field: AdRoll's part of the journey is its delivery, with when it was queued
    again and what AdRoll had found wrong before."""
    first = post(aws_stack, monkeypatch, [web_event(event_id="fix-1", vendor_ids={})])
    (entry,) = first["accepted"]
    assert entry["destinations"] == ["applovin"] and "adroll" in entry["invalid"]
    again = post(aws_stack, monkeypatch, [web_event(event_id="fix-1")])
    assert again["accepted"][0]["queued_now"] == ["adroll"]
    assert deliver(aws_stack, monkeypatch, "adroll", 1, Vendor()) == {"batchItemFailures": []}
    adroll = trace_event(table(aws_stack), "fix-1")["vendors"]["adroll"]
    assert adroll["outcome"] == "delivered" and adroll["status"] == 200
    assert adroll["requeued"] == {"at": iso(NOW), "earlier_errors": entry["invalid"]["adroll"]}
    assert [a["status"] for a in adroll["attempts"]] == [200]
    EventJourney.model_validate(trace_event(table(aws_stack), "fix-1"))  # what GET /v1/events/{id} documents
