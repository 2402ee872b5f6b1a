"""The ingest's claims when DynamoDB refuses one of them (issue #24, item 4): the events it could claim are
queued, the refused one is named in a 503, and nothing is left claimed that a resend would then wait for."""

from __future__ import annotations

import json

import pytest

from relay.aws.ledger import INGEST, DeliveryLedger, claim_key
from relay.ingest.signing import sign
from relay_tools.apigw import http_api_event, response_body

from ..conftest import SECRETS, FakeLambdaContext, web_event
from .test_hostile import NOW_S, Ingest


def post(ingest: Ingest, raw: bytes, at: int = NOW_S) -> tuple[int, dict]:
    """A signed POST that may be answered 503 (the helper in test_hostile allows no 5xx)."""
    headers = {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"], at)}
    response = ingest.handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
    return response["statusCode"], json.loads(response_body(response))


@pytest.fixture
def ingest(aws_stack, monkeypatch):
    return Ingest(aws_stack, monkeypatch)


@pytest.mark.parametrize("code", ["TransactionConflictException", "ProvisionedThroughputExceededException"])
def test_one_claim_refused_queues_the_other_99_and_a_resend_completes(aws_stack, ingest, aws_faults, code):
    table = aws_stack.physical["IdempotencyTable"]
    concurrent = DeliveryLedger(INGEST, table)
    concurrent.claim("e050", 60_000, "concurrent-request")  # another request of the client holds e050
    key = claim_key(INGEST, "e050")
    # DynamoDB refuses the transaction (e050 exists), then the single claim of e050 (its item is in another
    # transaction, or throttled)
    aws_faults.fail("PutItem", code, when=lambda params: params["Item"]["id"]["S"] == key)
    events = [web_event(event_id=f"e{i:03d}") for i in range(100)]
    raw = json.dumps({"events": events}).encode()
    status, body = post(ingest, raw)
    assert (status, body["not_enqueued"]) == (503, ["e050"])
    assert ingest.published == 10  # the 99 others, in bundles of up to ten events
    concurrent.settle("concurrent-request", {"e050": None}, [])  # the other request queued e050
    published = ingest.published
    status, body = post(ingest, raw, NOW_S - 1)  # signed anew
    assert status == 202
    assert [e["event_id"] for e in body["accepted"] if e.get("duplicate")] == [e["event_id"] for e in events]
    assert ingest.published == published  # nothing queued twice


def test_a_claim_written_whose_answer_was_lost_is_taken_over_by_the_resend(aws_stack, ingest, aws_faults):
    """The transaction is refused for one event (a stale record), its single claim is written but DynamoDB's
    answer is lost: the request answers 503 for it, its batch record lists it as not delivered, and the
    resend takes the claim over and queues it once."""
    table = aws_stack.physical["IdempotencyTable"]
    key = claim_key(INGEST, "e007")
    DeliveryLedger(INGEST, table, clock=lambda: 0).claim("e007", 1000, "long-ago")  # expired, not yet deleted
    aws_faults.fail("PutItem", "InternalServerError", when=lambda p: p["Item"]["id"]["S"] == key, lost=True)
    raw = json.dumps({"events": [web_event(event_id=f"e{i:03d}") for i in range(10)]}).encode()
    status, body = post(ingest, raw)
    assert (status, body["not_enqueued"]) == (503, ["e007"])
    assert DeliveryLedger(INGEST, table).queued_for("e007") is not None  # the write did happen
    published = ingest.published
    status, body = post(ingest, raw, NOW_S - 1)
    assert status == 202
    assert [e["event_id"] for e in body["accepted"] if not e.get("duplicate")] == ["e007"]
    assert ingest.published == published + 1
