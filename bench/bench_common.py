"""Shared by bench/run.py and bench/probe.py: the relay's real code paths with vendors at a local stub."""

from __future__ import annotations

import copy
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from relay.coldstart import loading

with loading():  # imported as the functions import them: the collector paused, then frozen
    import boto3
    import httpx
    from botocore import xform_name
    from botocore.stub import Stubber

    from relay.aws.clients import AWS_CALLS, TRUSTED_CALLS, tuned
    from relay.aws.ledger import INGEST, DeliveryLedger
    from relay.aws.sns import SNS_MAX_BATCH, SnsPublisher
    from relay.delivery.forwarding import Forwarder
    from relay.delivery.function import read_records
    from relay.delivery.sending import new_http_client
    from relay.ingest.request import Ingest
    from relay.ingest.signing import sign
    from relay.journey import JourneyTable, fitted
    from relay.journey.record import invocation_journey
    from relay.models.config import config_from_mapping
    from relay.models.event import parse_event
    from relay.queued.message import EVENTS_PER_MESSAGE, QueuedEvent, queued_body
    from relay.queued.routing import Router
    from relay_tools.sqs_events import lambda_records

SECRET = "bench-signing-secret"
FPC = "0123456789abcdef0123456789abcdef-1741784485001"


def config(port: int = 9, **over: Any):
    base = f"http://127.0.0.1:{port}"
    data = {
        "ingest": {"secrets": [SECRET]},
        "applovin": {"pixel_id": "PIX", "api_key": "k", "endpoint": f"{base}/applovin/v1/event"},
        "appsflyer": {"key": "k", "ios_app_id": "id123456789", "android_app_id": "com.example.app", "endpoint": base},
        "adroll": {
            "advertisable_eid": "ADV",
            "pixel_eid": "PX",
            "token": "t",
            "endpoint": f"{base}/adroll/api",
            "app_url_domain": "app.example.com",
        },
        **over,
    }
    return config_from_mapping(data)


def raw_event(i: int, vendor: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": f"bench-{i:06d}",
        "name": "purchase",
        "source": "web",
        "page_url": "https://shop.example.com/checkout/done",
        "value": "19.99",
        "currency": "USD",
        "order_id": f"o-{i}",
        "items": [{"id": "sku-1", "price": "19.99", "quantity": 1}],
        "user": {
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0 bench",
            "email": f"u{i}@example.com",
            "cookie_id": f"c{i}",
        },
        "vendor_ids": {"adroll": {"first_party_cookie": FPC}},
    }
    if vendor == "appsflyer":
        data.update(
            source="app",
            device={"os": "android", "os_version": "14", "advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d"},
            vendor_ids={"appsflyer": {"appsflyer_id": "1541234567890-1234567"}},
        )
    return data


def records(vendor: str, n: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    router = Router(config())
    messages = []
    for i in range(n):
        event = parse_event(raw_event(i, vendor), now=now)
        body = queued_body(event, router.route(event))  # as the ingest publishes it
        messages.append(
            {
                "MessageId": f"m{i}",
                "ReceiptHandle": f"r{i}",
                "Body": body,
                "MD5OfBody": "x",
                "Attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1",
                    "SenderId": "AIDA",
                    "ApproximateFirstReceiveTimestamp": "1",
                },
                "MessageAttributes": {
                    "destinations": {"DataType": "String.Array", "StringValue": json.dumps([vendor])}
                },
            }
        )
    return lambda_records(messages, f"arn:aws:sqs:us-east-1:123456789012:{vendor}", "us-east-1")


_FORWARDERS: dict[tuple[str, int, int], Forwarder] = {}


def items(event: dict[str, Any], vendor: str) -> list[QueuedEvent]:
    """Every event of a Lambda SQS event, read as the vendor function reads them."""
    return list(read_records(event["Records"], vendor).values())


def vendor_batch_once(
    vendor: str, n: int, port: int, client: httpx.Client | None = None, event: dict[str, Any] | None = None
) -> tuple[float, float]:
    """One vendor-function batch the way the handler runs it (parse records, map, send, build and compress
    its journey item): (wall s, CPU s). No ledger and no DLQ: their DynamoDB/SQS round trips are costed in
    the cost model, not timed here."""
    event = event or records(vendor, n)
    key = (vendor, port, id(client))
    if key not in _FORWARDERS:  # one per container, as the handler keeps it
        _FORWARDERS[key] = Forwarder(vendor, config(port), client or new_http_client())
    forwarder = _FORWARDERS[key]
    wall, cpu = time.perf_counter(), time.process_time()
    events = {item.key: item.event for item in items(event, vendor)}
    results = forwarder.deliver(events, lambda: 60_000)
    fitted(invocation_journey(vendor, time.time(), forwarder.stats, forwarder.last[1], results))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert all(d.ok for d in results.values()), {d.outcome for d in results.values()}
    return wall, cpu


_BARE_POOLS: dict[int, ThreadPoolExecutor] = {}


def bare_once(
    vendor: str, n: int, port: int, client: httpx.Client, workers: int, event: dict[str, Any] | None = None
) -> tuple[float, float]:
    """The transport alone: the HTTP requests the relay sends for this batch (same bodies, built beforehand,
    untimed), sent as `client.request(method, url, ...)` through the same `client` with the same concurrency
    (`workers` threads when the vendor takes one event per request): (wall s, CPU s). Its CPU subtracted from
    the relay's leaves the relay's own overhead per event (mapping, hashing, bookkeeping); its wall time is
    what the machine and httpx allow a batch before the relay does anything."""
    event = event or records(vendor, n)
    forwarder = _FORWARDERS.get((vendor, port, id(client))) or Forwarder(vendor, config(port), client)
    payloads: dict[str, list[dict[str, Any]]] = {}
    for item in items(event, vendor):
        outcome = forwarder.outcome(item.event)
        payloads.setdefault(outcome.target, []).append(outcome.payload)
    size = forwarder.adapter.max_batch
    requests = [
        forwarder.adapter.build_request(target, items[i : i + size])
        for target, items in payloads.items()
        for i in range(0, len(items), size)
    ]

    def send(request: Any) -> None:
        response = client.request(request.method, request.url, headers=request.headers, content=request.content)
        assert response.is_success, response.status_code

    if workers not in _BARE_POOLS:  # one per concurrency, as the forwarder keeps its pool per container
        _BARE_POOLS[workers] = ThreadPoolExecutor(max_workers=workers)
    pool = _BARE_POOLS[workers]
    wall, cpu = time.perf_counter(), time.process_time()
    if len(requests) > 1:
        list(pool.map(send, requests))
    else:
        send(requests[0])
    return time.perf_counter() - wall, time.process_time() - cpu


def naive_once(vendor: str, n: int, port: int, event: dict[str, Any] | None = None) -> float:
    """The baseline a user would write: one event per request, sequentially, a new connection each time."""
    event = event or records(vendor, n)
    forwarder = Forwarder(vendor, config(port), new_http_client())
    started = time.perf_counter()
    for item in items(event, vendor):
        outcome = forwarder.outcome(item.event)
        request = forwarder.adapter.request_for(outcome)
        with httpx.Client(timeout=10) as client:
            assert client.request(
                request.method, request.url, headers=request.headers, content=request.content
            ).is_success
    return time.perf_counter() - started


_STUBBED: dict[tuple[str, int], tuple[Any, Stubber]] = {}


def stubbed(service: str, answers: list[tuple[str, dict[str, Any]]], **options: Any) -> Any:
    """A client answered in-process by botocore's Stubber, in this order (`options`: as deployed). One client
    per service and options in a process, as a warm Lambda container keeps its clients: what botocore works
    out on a client's first calls is not counted against every request."""
    config = options.get("config", AWS_CALLS)
    if (service, id(config)) not in _STUBBED:
        client = boto3.client(
            service, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench", **options
        )
        tuned(client, config)  # as the relay's own clients (relay.aws.clients.new_client)
        stubber = Stubber(client)
        stubber.activate()
        _STUBBED[(service, id(config))] = client, stubber
    client, stubber = _STUBBED[(service, id(config))]
    for operation, answer in answers:
        stubber.add_response(operation, answer)
    return client


def stubbed_sns(calls: int) -> Any:
    answer = {"Successful": [{"Id": "0", "MessageId": "m"}], "Failed": []}
    return stubbed("sns", [("publish_batch", answer)] * calls, **SnsPublisher.client_options)


def stubbed_dynamodb(repeat: int, n: int) -> Any:
    """The ingest's claims: per request one TransactWriteItems (one PutItem for a single event) and the
    PutItem that settles them, with the request's journey; configured as the deployed ledger's client."""
    claim = ("transact_write_items" if n > 1 else "put_item", {})
    return stubbed("dynamodb", [claim, ("put_item", {})] * repeat, config=TRUSTED_CALLS)


def _ingest(n: int, repeat: int) -> tuple[Ingest, bytes, list[Any]]:
    """An ingest as deployed, its SNS and DynamoDB clients answered in-process for `repeat` requests of `n`
    events, the body it is sent, and its two clients."""
    body = json.dumps({"events": [raw_event(i, "applovin") for i in range(n)]}).encode()
    calls = math.ceil(math.ceil(n / EVENTS_PER_MESSAGE) / SNS_MAX_BATCH)  # PublishBatch calls of bundles
    publisher = SnsPublisher("arn:aws:sns:us-east-1:123456789012:t", stubbed_sns(repeat * calls))
    ledger = DeliveryLedger(INGEST, "t", stubbed_dynamodb(repeat, n))
    ingest = Ingest(config(), publisher, ledger=ledger, journeys=JourneyTable("t", ledger.client))
    return ingest, body, [publisher.client, ledger.client]


def _send(ingest: Ingest, body: bytes, n: int) -> None:
    headers = {"content-type": "application/json", "x-relay-signature": sign(body, SECRET)}
    result = ingest.handle(body, headers)
    assert result.status == 202 and result.published == n, result.body


def ingest_once(n: int, repeat: int = 1) -> tuple[float, float]:
    """CPU seconds per event to verify, validate, map, claim and publish a request of `n` events (SNS and
    DynamoDB answered in-process by botocore's Stubber, so botocore's serialisation is counted):
    (per-event CPU, request wall)."""
    ingest, body, _ = _ingest(n, repeat)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        _send(ingest, body, n)
    return (time.process_time() - cpu) / (repeat * n), (time.perf_counter() - wall) / repeat


def ingest_calls(n: int) -> list[tuple[Any, str, dict[str, Any]]]:
    """The AWS calls the ingest makes for one request of `n` events: (its client, operation, parameters)."""
    ingest, body, clients = _ingest(n, 1)
    calls: list[tuple[Any, str, dict[str, Any]]] = []
    by_service = {client.meta.service_model.service_name: client for client in clients}

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((by_service[model.service_model.service_name], model.name, copy.deepcopy(params)))

    for client in clients:
        client.meta.events.register("provide-client-params", record, unique_id="bench-record")
    try:
        _send(ingest, body, n)
    finally:
        for client in clients:
            client.meta.events.unregister("provide-client-params", unique_id="bench-record")
    return calls


def floor_once(n: int, repeat: int = 1, reference: bool = True) -> dict[str, float]:
    """CPU seconds per event of what an ingest making the same AWS calls cannot go under, line by line:
    `reference_once`'s, then each of the very calls the ingest makes (`ingest_calls`: the claim, the
    PublishBatch, the settling record, their parameters as the ingest built them, in that order), through
    the same clients, nothing else. Their sum is the floor. `reference=False`: the calls' lines alone (the
    caller measured the reference in the same round)."""
    calls = ingest_calls(n)
    _ingest(n, repeat)  # answers queued for `repeat` requests, on the same clients (`stubbed` keeps them)
    sends = [(getattr(client, xform_name(operation)), params) for client, operation, params in calls]
    spent = [0.0] * len(sends)
    for _ in range(repeat):
        for i, (send, params) in enumerate(sends):
            cpu = time.process_time()
            send(**params)
            spent[i] += time.process_time() - cpu
    lines = {"reference": reference_once(n, repeat)} if reference else {}  # False: the caller has measured it
    for i, (_, operation, params) in enumerate(calls):
        lines[_call_line(i, operation, params)] = spent[i] / (repeat * n)
    return lines


def _call_line(i: int, operation: str, params: dict[str, Any]) -> str:
    """A line of the floor: what the call is for (a claim or a settling record, by the item's status), its
    operation."""
    status = params.get("Item", {}).get("status", {}).get("S")
    role = {"CLAIMED": "the claim", "SETTLED": "the settling record"}.get(status)
    entries = len(params.get("PublishBatchRequestEntries", []))
    published = "the message published" if entries == 1 else f"the {entries} messages published"
    role = role or {"PublishBatch": published, "TransactWriteItems": "the claims"}.get(operation) or f"call {i + 1}"
    return f"{role}: {operation}"


def mapping_once(n: int, repeat: int = 1) -> float:
    """CPU seconds per event of the mapping on `reference_once`'s body: each event, already validated, routed
    to every connection (the vendors' payloads, relay.queued.routing) and made into its queued message
    (relay.queued.message.queued_body), as the ingest does before it claims and publishes."""
    now = datetime.now(UTC)
    router = Router(config())
    # fresh events for every repeat, parsed beforehand: what an event works out once (its email's digest,
    # say) is worked out in each, as in the ingest
    runs = [[parse_event(raw_event(i, "applovin"), now=now) for i in range(n)] for _ in range(repeat)]
    cpu = time.process_time()
    for events in runs:
        for event in events:
            queued_body(event, router.route(event))
    return (time.process_time() - cpu) / (repeat * n)


def reference_once(n: int, repeat: int = 1) -> float:
    """CPU seconds per event of what no ingest can skip, on the body `ingest_once` sends: sign it (as the
    client does there), verify the signature, read the JSON and validate every canonical event."""
    from relay.ingest import jsonbody
    from relay.ingest.signing import verify

    body = json.dumps({"events": [raw_event(i, "applovin") for i in range(n)]}).encode()
    cfg = config()
    cpu = time.process_time()
    for _ in range(repeat):
        header = sign(body, SECRET)
        verify(body, header, [SECRET], cfg.ingest.tolerance_seconds)
        now = datetime.now(UTC)
        for raw in jsonbody.loads(body)["events"]:
            parse_event(raw, now=now, max_event_age_days=cfg.ingest.max_event_age_days)
    return (time.process_time() - cpu) / (repeat * n)
