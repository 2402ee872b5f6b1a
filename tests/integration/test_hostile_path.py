"""Hostile input along the whole path (issue #24, Deliver 3): arbitrary events, with the field values that
broke promises before (digits that are not ASCII, numbers no double holds, addresses in every form
`ipaddress` reads, URLs with odd parts, arbitrary JSON in properties), go through the real ingest, every
vendor function and the journeys. Never a 5xx; every vendor body is strict JSON (no NaN or Infinity, also
inside the JSON that AppsFlyer's eventValue and AdRoll's external_data hold); an address reaches a vendor
only normalised, and no journey holds it in clear, whatever the form it was sent in."""

from __future__ import annotations

import ipaddress
import json
import os
import zlib

import boto3
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay_tools.functions import vendor_handler

from ..conftest import FakeClock, FakeLambdaContext, app_event, use_function_env, web_event
from .test_hostile import Ingest
from .test_state_machine import _empty
from .test_vendor_functions import PREFIX

OK = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    max_examples=300 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 25,
    deadline=None,
)


def _strict(text: str | bytes):
    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
addresses = st.one_of(
    ipv4,
    ipv6,
    ipv6.map(lambda a: ipaddress.IPv6Address(a).exploded),  # every group written out
    ipv4.map(lambda a: f"::ffff:{a}"),  # IPv4-mapped
    ipv6.map(lambda a: a.upper()),
    ipv4.map(lambda a: f" {a} "),  # blanks around it
    st.sampled_from(["203.0.113.\u0667", "２０３.0.113.7", "203.0.113.07", "1.2.3", "fe80::1%eth0", "::"]),
)
digits = st.text(alphabet=st.sampled_from("0123456789\u0660\u0667\u06f1\u0966\uff11"), min_size=1, max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.just("PLACEHOLDER"),  # written as 1e999 into the body: a number no double holds
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def hostile_event(draw, index: int):
    base = draw(st.sampled_from(["web", "ios", "android"]))
    event = web_event() if base == "web" else app_event(base)
    event["event_id"] = f"h{index}"
    user = dict(event["user"])
    user["ip"] = draw(addresses)
    if draw(st.booleans()):
        user["fb_login_id"] = draw(digits)
    if draw(st.booleans()):
        user["id"] = draw(digits)
    event["user"] = user
    if draw(st.booleans()):
        event["properties"] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
    if draw(st.booleans()) and base != "web":
        event["app"] = {**event["app"], "custom_data": draw(st.dictionaries(st.text(max_size=8), json_values))}
    if draw(st.booleans()):
        event["page_url"] = draw(
            st.sampled_from(
                ["https://shop.example.com/a?b=%zz", "https://[::1]:8443/x", "https://a.b/\u00e9", "http://x"]
            )
        )
    if base == "android" and draw(st.booleans()):
        event["device"] = {**event["device"], "imei": draw(digits)}
    if base != "web" and draw(st.booleans()):
        event["vendor_ids"] = {**event["vendor_ids"], "appsflyer": {"appsflyer_id": draw(digits) + "-" + draw(digits)}}
    return event


def _deliver(stack, monkeypatch, vendor: str, seen: list[bytes]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, content=request.content)  # an answer that echoes the body: journeys keep it

    use_function_env(monkeypatch, stack, f"{PREFIX[vendor]}Function")
    clock = FakeClock()
    handler = vendor_handler(vendor, http_client=httpx.Client(transport=httpx.MockTransport(answer)), sleep=clock.sleep)
    sqs = boto3.client("sqs")
    url = stack.physical[f"{PREFIX[vendor]}Queue"]
    from relay_tools.sqs_events import lambda_records

    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages"):
        response = handler(
            lambda_records(got, stack.arns[f"{PREFIX[vendor]}Queue"], "us-east-1"), FakeLambdaContext(clock)
        )
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        assert not failed, "a healthy vendor left something to retry"
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _vendor_json(vendor: str, body: bytes) -> None:
    value = _strict(body)
    if vendor == "appsflyer":
        for key in ("eventValue", "custom_data"):
            if value.get(key):
                _strict(value[key])
    if vendor == "adroll":
        for event in value:
            if event.get("external_data"):
                _strict(event["external_data"])


def _ip(event: dict) -> bool:
    try:
        ipaddress.ip_address(event["user"]["ip"].strip())
    except ValueError:
        return False
    return event["user"]["ip"].strip().isascii()


def _clear_forms(address: str) -> set[str]:
    """The ways an address may be written that a journey must never hold: as sent, and as normalised."""
    text = address.strip()
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return set()
    forms = {text, str(parsed)}
    try:
        forms.add(parsed.exploded)
    except ValueError:  # CPython cannot explode an address with a zone: the model refuses those anyway
        pass
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        forms.add(str(parsed.ipv4_mapped))
    # a truncated address is no longer clear: /24 of IPv4, /48 of IPv6 keep it, and nothing more
    return {f for f in forms if f not in ("::", "0.0.0.0") and not f.endswith((".0", "::"))}


@OK
@given(data=st.data())
def test_arbitrary_events_through_ingest_vendors_and_journeys(aws_stack, monkeypatch, data):
    _fresh(aws_stack)  # every example starts from an empty table and empty queues: the same ids each time
    ingest = Ingest(aws_stack, monkeypatch)
    events = [data.draw(hostile_event(i)) for i in range(data.draw(st.integers(1, 4)))]
    raw = json.dumps({"events": events}, ensure_ascii=data.draw(st.booleans())).replace('"PLACEHOLDER"', "1e999")
    status, body = ingest.post(raw.encode())  # asserts: never a 5xx
    if status != 202:
        return
    for vendor in ("applovin", "appsflyer", "adroll"):
        seen: list[bytes] = []
        _deliver(aws_stack, monkeypatch, vendor, seen)
        for sent in seen:
            _vendor_json(vendor, sent)
            if vendor == "applovin":  # the address as ipaddress writes it, whatever form the client used
                normalised = {str(ipaddress.ip_address(e["user"]["ip"].strip())) for e in events if _ip(e)}
                for one in _strict(sent)["events"]:
                    assert one["user_data"].get("client_ip_address") in normalised
            for event in events:
                address = event["user"]["ip"]
                if address.strip() != address or any(not c.isascii() for c in address):
                    assert address.encode() not in sent  # never passed through raw
    scanned = boto3.client("dynamodb").scan(TableName=aws_stack.physical["IdempotencyTable"])["Items"]
    journeys = json.dumps(
        [{k: zlib.decompress(v["B"]).decode() if "B" in v else v for k, v in item.items()} for item in scanned]
    )
    for event in events:
        for form in _clear_forms(event["user"]["ip"]):
            assert f'"{form}"' not in journeys and f'\\"{form}\\"' not in journeys, f"{form} in a journey"


def _fresh(stack) -> None:
    ddb = boto3.client("dynamodb")
    table = stack.physical["IdempotencyTable"]
    for page in ddb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="id"):
        for item in page["Items"]:
            ddb.delete_item(TableName=table, Key={"id": item["id"]})
    for vendor in PREFIX.values():
        for logical in (f"{vendor}Queue", f"{vendor}DeadLetterQueue"):
            _empty(stack.physical[logical])
