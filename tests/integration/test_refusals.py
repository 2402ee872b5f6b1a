"""Refused requests leave a trace (relay.journey.refusals): the IngestFunction against moto."""

from __future__ import annotations

import json
from urllib.parse import quote

import boto3
import pytest

from relay.ingest.signing import sign
from relay.journey import JourneyTable
from relay.journey.refusals import KEEP_SECONDS, REASONS, Budget, Refusal, RefusalLog
from relay.journey.trace import trace_event
from relay_tools.apigw import http_api_event
from relay_tools.cli import main
from relay_tools.functions import ingest_handler

from ..conftest import NOW_MS, SECRETS, FakeLambdaContext, answered, use_function_env, web_event

NOW_S = NOW_MS / 1000
EMAIL = "refused.person@example.com"
IP = "203.0.113.77"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def relay(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "IngestFunction")
    now = Clock()
    now.t = NOW_S
    table = JourneyTable(aws_stack.physical["IdempotencyTable"], boto3.client("dynamodb"), clock=now)
    budget_clock = Clock()
    log = RefusalLog(table, Budget(clock=budget_clock))
    handler = ingest_handler(clock=now, refusals=log)

    class Relay:
        refusals, clock, relay_clock = log, budget_clock, now

        @staticmethod
        def post(body, secret=SECRETS["signing"], signed_at=NOW_S, headers=None, content_type="application/json"):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs = {"Content-Type": content_type} if content_type else {}
            if secret:
                hdrs["X-Relay-Signature"] = sign(raw, secret, timestamp=int(signed_at))
            hdrs.update(headers or {})
            event = http_api_event("POST", "/v1/events", hdrs, raw, source_ip=IP)
            response = handler(event, FakeLambdaContext())
            body = json.loads(response["body"])
            return response["statusCode"], body, event["requestContext"]["requestId"]

        @staticmethod
        def get(path, secret=SECRETS["signing"], headers=None):
            hdrs = {"X-Relay-Signature": sign(f"GET {path}".encode(), secret, int(NOW_S))} if secret else {}
            event = http_api_event("GET", path, {**hdrs, **(headers or {})}, b"")
            response = handler(event, FakeLambdaContext())
            return response["statusCode"], answered(response, event)

    return Relay


def person(event_id: str) -> dict:
    event = web_event(event_id=event_id)
    event["user"] = {**event.get("user", {}), "email": EMAIL, "ip": IP}
    return event


REFUSALS = [
    ({"secret": None}, 401, "signature_missing", {"diagnosis": "missing"}),
    ({"secret": "not-the-secret"}, 401, "signature_mismatch", {"diagnosis": "mismatch"}),
    ({"signed_at": NOW_S - 900}, 401, "signature_stale", {"diagnosis": "stale", "skew_seconds": 900}),
    (
        {"secret": None, "headers": {"X-Relay-Signature": f"t={int(NOW_MS)},v1={'0' * 64}"}},
        401,
        "signature_milliseconds",
        {"diagnosis": "milliseconds"},
    ),  # fmt: skip
    ({"headers": {"X-Relay-Source": "nobody"}}, 401, "unknown_source", None),
    ({"content_type": "text/plain"}, 415, "content_type", None),
]


@pytest.mark.parametrize(("kwargs", "status", "reason", "signature"), REFUSALS)
def test_a_refused_request_is_kept_with_its_reason_its_event_ids_and_no_value_it_held(
    relay, aws_stack, output, kwargs, status, reason, signature
):
    got, body, request_id = relay.post({"events": [person("r-1"), person("r-2")]}, **kwargs)
    assert (got, body["request_id"], body["reason"]) == (status, request_id, reason)
    kept = relay.refusals.get(request_id)
    assert kept["status"] == status and kept["reason"] == reason and kept["error"] == body["error"]
    assert kept["event_ids"] == ["r-1", "r-2"]  # read from the body, though it was refused
    assert kept.get("signature") == signature
    assert reason in REASONS
    assert (kept["source"], kept["source_known"]) == (
        ("nobody", False) if reason == "unknown_source" else ("default", True)
    )
    # nothing the client sent but its event ids: no email, no address, no secret, in the table or the logs
    items = boto3.client("dynamodb").scan(TableName=aws_stack.physical["IdempotencyTable"])["Items"]
    dumped = json.dumps([relay.refusals.get(request_id)]) + str(items) + output.text()
    for value in (EMAIL, IP, "203.0.113", SECRETS["signing"]):
        assert value not in dumped
    (counted,) = [json.loads(line) for line in output.text().splitlines() if '"RequestsRefused"' in line]
    assert (counted["reason"], counted["RequestsRefused"]) == (reason, [1.0])


def test_a_request_every_event_of_which_broke_a_rule_keeps_each_fields_error(relay):
    bad = web_event(event_id="bad-1")
    bad["value"] = "lots"
    status, body, request_id = relay.post({"events": [bad, {"event_id": "bad-2"}]})
    assert status == 400
    kept = relay.refusals.get(request_id)
    assert kept["reason"] == "invalid_events" and kept["event_ids"] == ["bad-1", "bad-2"]
    assert kept["rejected"] == body["rejected"]
    assert "lots" not in json.dumps(kept)  # rules, never values


def test_trace_and_the_events_get_show_an_events_refusals_newest_first(relay, aws_stack):
    table = relay.refusals.table
    _, _, first = relay.post({"events": [person("t-1")]}, secret="wrong")
    relay.relay_clock.t += 1
    _, _, second = relay.post({"events": [person("t-1")]}, signed_at=NOW_S - 1000)
    journey = trace_event(table, "t-1")
    assert [r["request_id"] for r in journey["refused"]] == [second, first]
    assert journey["vendors"] == {} and journey["accepted_at"] is None
    assert trace_event(table, "t-1", source="web") is None  # event ids are per source
    status, body = relay.get("/v1/events/t-1")
    assert status == 200 and [r["reason"] for r in body["refused"]] == ["signature_stale", "signature_mismatch"]
    # accepted later: the journey says both
    assert relay.post({"events": [web_event(event_id="t-1")]})[0] == 202
    journey = trace_event(table, "t-1")
    assert journey["accepted_at"] and len(journey["refused"]) == 2


def test_get_requests_answers_the_refusal_signed_like_the_events_get(relay):
    _, _, request_id = relay.post({"events": [person("g-1")]}, secret="wrong")
    path = f"/v1/requests/{quote(request_id)}"
    status, body = relay.get(path)
    assert status == 200
    assert (body["request_id"], body["reason"], body["event_ids"]) == (request_id, "signature_mismatch", ["g-1"])
    assert relay.get(path, secret=None) == (
        401,
        {"error": 'missing X-Relay-Signature header (a GET is signed over "<t>.GET /v1/requests/<request_id>")'},
    )
    assert relay.get("/v1/requests/no-such-request")[0] == 404
    assert relay.get("/v1/requests/" + quote("a b"))[0] == 400
    # a source reads the refusals of requests that named it, or named no source of the relay
    other = Refusal("other-source", NOW_S, 401, "signature_mismatch", "x", source="web")
    unknown = Refusal("unknown-source", NOW_S, 401, "unknown_source", "x", source="nobody", source_known=False)
    assert relay.refusals.write(other) and relay.refusals.write(unknown)
    assert relay.get("/v1/requests/other-source")[0] == 404
    assert relay.get("/v1/requests/unknown-source")[0] == 200


def test_under_a_flood_every_refusal_is_counted_and_the_records_stay_within_the_budget(relay, aws_stack, output):
    for n in range(60):  # no time passes: the burst (200 items) alone
        relay.post({"events": [{"event_id": f"f-{n}-{k}"} for k in range(9)]}, secret="wrong", signed_at=NOW_S - n)
    kept = relay.refusals.recent(NOW_S - 60)
    assert len(kept) == 20  # 20 refusals of 1 record + 9 pointers = 200 items
    emf = [json.loads(line) for line in output.text().splitlines() if '"_aws"' in line]
    assert sum(m.get("RequestsRefused", [0])[0] for m in emf) == 60
    assert sum(m.get("RefusalsNotRecorded", [0])[0] for m in emf) == 40
    relay.clock.t += 60  # the budget refills: the next refusal says how many were left out before it
    _, _, request_id = relay.post({"events": [{"event_id": "after"}]}, secret="wrong")
    assert relay.refusals.get(request_id)["not_recorded"] == 40


def test_refusals_are_kept_seven_days_whatever_ttl_has_not_yet_deleted(relay):
    _, _, request_id = relay.post({"events": [person("old-1")]}, secret="wrong")
    later = RefusalLog(JourneyTable(relay.refusals.table.table_name, relay.refusals.table.client,
                                    clock=lambda: NOW_S + KEEP_SECONDS + 1))  # fmt: skip
    assert relay.refusals.get(request_id) is not None
    assert later.get(request_id) is None and later.of_event("old-1", "default") == []
    assert later.recent(NOW_S - 3600) == []


def test_relay_refused_lists_them_by_time_and_source(relay, aws_stack, capsys, monkeypatch):
    relay.post({"events": [person("l-1")]}, secret="wrong")
    relay.relay_clock.t += 1
    relay.post({"events": [person("l-2")]}, headers={"X-Relay-Source": "elsewhere"})
    monkeypatch.setattr("relay_tools.cli.resolve_config", lambda *a: None)
    monkeypatch.setattr("relay_tools.journeys.journey_table", lambda **kw: relay.refusals.table)
    capsys.readouterr()  # the function's log lines
    assert main(["refused", "--stack", "any", "--since", "2025-03-01T00:00:00Z", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["reason"] for r in listed] == ["unknown_source", "signature_mismatch"]
    assert main(["refused", "--stack", "any", "--since", "2025-03-01T00:00:00Z", "--source", "elsewhere"]) == 0
    text = capsys.readouterr().out
    assert "unknown_source source elsewhere" in text and "signature_mismatch" not in text and "events l-2" in text
    assert main(["refused", "--stack", "any", "--since", "yesterday"]) == 2
    assert "--since: must be a duration" in capsys.readouterr().err


def test_relay_trace_prints_an_events_refusals(relay, capsys, monkeypatch):
    bad = web_event(event_id="p-1")
    bad["value"] = -1e16
    relay.post({"events": [bad]})
    monkeypatch.setattr("relay_tools.journeys.journey_table", lambda **kw: relay.refusals.table)
    capsys.readouterr()
    assert main(["trace", "p-1", "--stack", "any"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("p-1  never accepted")
    assert "HTTP 400  invalid_events" in text and "p-1: value must be less than 10^15" in text
