"""Delivery guarantees (issue #4): every path with a mocked vendor, counting vendor requests and DLQ
messages. SQS is moto's, fed through the template's SNS subscriptions; the ledger is the template's
DynamoDB table; time is a FakeClock (no real waiting)."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest

from relay.delivery.sending import BOOKKEEPING_MS, REQUEST_TIMEOUT_SECONDS
from relay_tools.functions import vendor_handler

from ..conftest import FakeClock, FakeLambdaContext, drain, use_function_env, web_event
from .test_vendor_functions import PREFIX, Vendor, publish, receive


def metrics_of(text: str, connection: str | None = None) -> list[dict]:
    """The EMF records of the output: the vendor's (no connection dimension), or one connection's."""
    records = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    return [m for m in records if m.get("connection") == connection]


def metric(text: str, name: str, connection: str | None = None) -> float:
    return sum(
        sum(m.get(name, [])) if isinstance(m.get(name), list) else m.get(name, 0) for m in metrics_of(text, connection)
    )


class Harness:
    def __init__(self, stack, monkeypatch, vendor: str, mock: Vendor, budget_ms: int = 30_000):
        self.stack, self.vendor, self.mock = stack, vendor, mock
        use_function_env(monkeypatch, stack, f"{PREFIX[vendor]}Function")
        self.clock = FakeClock(budget_ms)
        self.handler = vendor_handler(vendor, http_client=mock.client(), sleep=lambda s: self.clock.sleep(s))
        self.queue = stack.physical[f"{PREFIX[vendor]}Queue"]
        self.dlq = stack.physical[f"{PREFIX[vendor]}DeadLetterQueue"]

    def invoke(self, event: dict, budget_ms: int | None = None) -> list[str]:
        """Run the handler as Lambda would, delete what it did not report failed (as the event source
        mapping does) and return the event_ids it reported failed."""
        self.clock = FakeClock(budget_ms or self.clock.budget_ms)
        response = self.handler(event, FakeLambdaContext(self.clock))
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        sqs = boto3.client("sqs")
        for record in event["Records"]:
            if record["messageId"] not in failed:
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=record["receiptHandle"])
            else:  # visibility timeout over: SQS makes it visible again
                sqs.change_message_visibility(
                    QueueUrl=self.queue, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
                )
        return sorted(json.loads(r["body"])["event_id"] for r in event["Records"] if r["messageId"] in failed)

    def delivered(self) -> list[str]:
        """AppLovin event_ids (dedupe_id) the vendor accepted with a 2xx, one entry per acceptance."""
        out = []
        for request, status in zip(self.mock.requests, self.mock.statuses, strict=True):
            if 200 <= status < 300:
                out += [e["dedupe_id"] for e in json.loads(request.content)["events"]]
        return sorted(out)


class Recording(Vendor):
    """Records the status of each answer too."""

    def __init__(self, answer=None):
        super().__init__(answer)
        self.statuses: list[int] = []

    def __call__(self, request):
        response = super().__call__(request)
        self.statuses.append(response.status_code)
        return response


def rejects_bad(request: httpx.Request) -> httpx.Response:
    """AppLovin-like: one invalid event fails the whole batch."""
    events = json.loads(request.content)["events"]
    if any(e["dedupe_id"].startswith("bad") for e in events):
        return httpx.Response(400, text="Invalid event in batch")
    return httpx.Response(200)


@pytest.mark.parametrize("bad", [["bad-042"], ["bad-007", "bad-050", "bad-093"]])
def test_batch_of_100_with_invalid_events_is_bisected(aws_stack, monkeypatch, output, bad):
    ids = [f"e{i:03d}" for i in range(100)]
    for b in bad:
        ids[int(b[-3:])] = b
    mock = Recording(rejects_bad)
    h = Harness(aws_stack, monkeypatch, "applovin", mock)
    publish(aws_stack, "applovin", [web_event(event_id=i) for i in ids])
    assert h.invoke(receive(aws_stack, "applovin", 100)) == []  # nothing left for SQS to retry
    valid = sorted(i for i in ids if not i.startswith("bad"))
    assert h.delivered() == valid  # each valid event exactly once
    assert len(valid) == 100 - len(bad)
    letters = drain(h.dlq)
    assert sorted(m["MessageAttributes"]["relay_event_id"]["StringValue"] for m in letters) == sorted(bad)
    for m in letters:
        attrs = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
        assert attrs["relay_reason"] == "applovin rejected the request (400)"
        assert attrs["relay_status"] == "400" and attrs["relay_vendor_response"] == "Invalid event in batch"
        assert attrs["relay_outcome"] == "rejected" and attrs["relay_vendor"] == "applovin"
        assert json.loads(attrs["destinations"]) == ["applovin"]  # original attributes kept
    assert drain(h.queue) == []
    extra = len(mock.requests) - 1
    assert metric(output.text(), "BisectRequests") == extra > 0
    # bisection costs O(bad * log2(100)) requests, not one per event
    assert len(mock.requests) <= 1 + 2 * len(bad) * 7


def test_429_with_retry_after_then_200(aws_stack, monkeypatch):
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200)])
    mock = Recording(lambda r: next(answers))
    h = Harness(aws_stack, monkeypatch, "adroll", mock)
    publish(aws_stack, "adroll", [web_event(event_id="r1")])
    assert h.invoke(receive(aws_stack, "adroll", 1)) == []
    assert mock.statuses == [429, 200]
    assert h.clock.sleeps == [2.0]  # Retry-After honoured (it exceeds the first backoff)


def test_retry_after_as_http_date(aws_stack, monkeypatch):
    from relay.delivery.sending import retry_after_seconds

    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == 10.0
    assert retry_after_seconds("garbage", 0) is None
    assert retry_after_seconds("7", 0) == 7.0


def test_5xx_storm_longer_than_the_invocation_is_delivered_later_exactly_once(aws_stack, monkeypatch, output):
    storm = {"on": True}
    mock = Recording(lambda r: httpx.Response(503) if storm["on"] else httpx.Response(200))
    h = Harness(aws_stack, monkeypatch, "applovin", mock, budget_ms=20_000)
    publish(aws_stack, "applovin", [web_event(event_id=f"s{i}") for i in range(10)])
    assert h.invoke(receive(aws_stack, "applovin", 10)) == [f"s{i}" for i in range(10)]
    attempts = len(mock.requests)
    assert 1 <= attempts <= 6
    # stopped while time was left for one more request and the bookkeeping
    assert sum(h.clock.sleeps) * 1000 <= 20_000 - BOOKKEEPING_MS - REQUEST_TIMEOUT_SECONDS * 1000
    assert drain(h.dlq) == []  # not permanent: left for SQS
    storm["on"] = False
    assert h.invoke(receive(aws_stack, "applovin", 10)) == []
    assert h.delivered() == [f"s{i}" for i in range(10)]
    assert len(mock.requests) == attempts + 1
    assert metric(output.text(), "VendorRetries") == attempts - 1


def test_redelivered_message_reaches_the_vendor_once(aws_stack, monkeypatch, output):
    mock = Recording()
    h = Harness(aws_stack, monkeypatch, "adroll", mock)
    publish(aws_stack, "adroll", [web_event(event_id="once")])
    event = receive(aws_stack, "adroll", 1)
    assert h.handler(event, FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    # SQS delivers the same message again (e.g. the delete was lost): a duplicate, not a second request
    assert h.handler(event, FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    assert len(mock.requests) == 1
    assert metric(output.text(), "DuplicateEvents") == 1


def test_client_resend_with_another_body_is_still_a_duplicate(aws_stack, monkeypatch):
    mock = Recording()
    h = Harness(aws_stack, monkeypatch, "applovin", mock)
    publish(aws_stack, "applovin", [web_event(event_id="dup", page_url="https://a.example/1")])
    assert h.invoke(receive(aws_stack, "applovin", 1)) == []
    publish(aws_stack, "applovin", [web_event(event_id="dup", page_url="https://a.example/2")])
    assert h.invoke(receive(aws_stack, "applovin", 1)) == []
    assert len(mock.requests) == 1
    # the same event_id for another vendor is another delivery
    mock2 = Recording()
    h2 = Harness(aws_stack, monkeypatch, "adroll", mock2)
    publish(aws_stack, "adroll", [web_event(event_id="dup")])
    assert h2.invoke(receive(aws_stack, "adroll", 1)) == [] and len(mock2.requests) == 1


def test_same_event_id_twice_in_one_batch_is_sent_once(aws_stack, monkeypatch):
    mock = Recording()
    h = Harness(aws_stack, monkeypatch, "applovin", mock)
    publish(aws_stack, "applovin", [web_event(event_id="twin"), web_event(event_id="twin")])
    # the second copy shares the first one's delivery: a duplicate, neither retried nor dead-lettered
    assert h.invoke(receive(aws_stack, "applovin", 2)) == []
    assert h.delivered() == ["twin"]
    assert drain(h.dlq) == [] and drain(h.queue) == []


def test_401_keeps_every_record_and_a_later_retry_delivers(aws_stack, monkeypatch, output):
    creds = {"ok": False}
    mock = Recording(lambda r: httpx.Response(200) if creds["ok"] else httpx.Response(401, text="Unauthorized"))
    h = Harness(aws_stack, monkeypatch, "appsflyer", mock)
    from ..conftest import app_event

    publish(aws_stack, "appsflyer", [app_event("ios", event_id=f"k{i}") for i in range(3)])
    assert h.invoke(receive(aws_stack, "appsflyer", 3)) == ["k0", "k1", "k2"]
    assert len(mock.requests) == 3  # not retried in-process: a credentials problem
    assert drain(h.dlq) == []
    out = output.text()
    assert metric(out, "VendorAuthFailures") == 1
    assert out.count("appsflyer refused the relay's credentials") == 1  # logged once per invocation
    creds["ok"] = True
    assert h.invoke(receive(aws_stack, "appsflyer", 3)) == []
    assert len(mock.requests) == 6  # the in-progress records were released: the retry went through


def test_last_receive_moves_to_the_dlq_with_the_reason(aws_stack, monkeypatch):
    mock = Recording(lambda r: httpx.Response(500, text="upstream down"))
    # time for one request and the bookkeeping, not for an in-process retry
    budget_ms = BOOKKEEPING_MS + int(REQUEST_TIMEOUT_SECONDS * 1000) + 100
    h = Harness(aws_stack, monkeypatch, "adroll", mock, budget_ms=budget_ms)
    monkeypatch.setenv("RELAY_MAX_RECEIVE_COUNT", "2")
    publish(aws_stack, "adroll", [web_event(event_id="late")])
    assert h.invoke(receive(aws_stack, "adroll", 1)) == ["late"]  # receive 1: kept
    assert h.invoke(receive(aws_stack, "adroll", 1)) == []  # receive 2 = last: moved, with why
    (letter,) = drain(h.dlq)
    attrs = {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()}
    assert attrs["relay_outcome"] == "retries_exhausted"
    assert attrs["relay_reason"] == "gave up after 2 receives (MaxReceiveCount): adroll answered 500"
    assert attrs["relay_status"] == "500" and attrs["relay_attempts"] == "2"
    assert attrs["relay_vendor_response"] == "upstream down"
    assert drain(h.queue) == []


def test_dlq_failure_keeps_the_message_in_the_source_queue(aws_stack, monkeypatch):
    from relay.delivery.deadletter import DeadLetterQueue

    class Broken:
        def send_message_batch(self, **kwargs):
            raise RuntimeError("SQS unavailable")

    use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    mock = Recording(lambda r: httpx.Response(400, text="no"))
    handler = vendor_handler("applovin", http_client=mock.client(), dead_letters=DeadLetterQueue("x", Broken()))
    publish(aws_stack, "applovin", [web_event(event_id="keep")])
    response = handler(receive(aws_stack, "applovin", 1), FakeLambdaContext(FakeClock()))
    assert len(response["batchItemFailures"]) == 1  # not lost: SQS keeps it


def test_a_ledger_failure_after_delivery_does_not_fail_the_batch(aws_stack, monkeypatch, output):
    from relay.aws.ledger import DeliveryLedger

    class FlakyLedger(DeliveryLedger):
        def settle(self, batch, delivered, failed):
            raise RuntimeError("DynamoDB throttled")

    env = use_function_env(monkeypatch, aws_stack, "AdRollFunction")
    mock = Recording()
    ledger = FlakyLedger("adroll", env["RELAY_IDEMPOTENCY_TABLE"], boto3.client("dynamodb"))
    handler = vendor_handler("adroll", http_client=mock.client(), ledger=ledger)
    publish(aws_stack, "adroll", [web_event(event_id="sent")])
    assert handler(receive(aws_stack, "adroll", 1), FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    assert len(mock.requests) == 1
    out = output.text()
    assert metric(out, "LedgerErrors") == 1 and "could not record deliveries" in out


def test_a_replaced_forwarder_stops_its_send_threads():
    from relay.delivery.forwarding import Forwarder

    from ..conftest import make_config

    forwarder = Forwarder("appsflyer", make_config(), httpx.Client())
    pool = forwarder.pool
    assert list(pool.map(lambda x: x * 2, [1, 2])) == [2, 4]
    forwarder.close()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(print)
    assert forwarder.pool is not pool  # a later batch gets a fresh pool


def test_a_redelivery_after_the_dlq_move_is_not_sent_or_moved_again_and_a_redrive_sends_it(aws_stack, monkeypatch):
    """An invocation that fails after moving a message to the DLQ (found by the fault soak): SQS redelivers
    the message; the ledger knows the event is dead-lettered, so no second vendor request and no second
    DLQ copy. What `relay dlq redrive` sends back is a new message, and that is sent anew."""
    from relay.delivery import deadletter

    answers = {"status": 400}
    mock = Recording(lambda r: httpx.Response(answers["status"], text="bad pixel"))
    h = Harness(aws_stack, monkeypatch, "applovin", mock)
    publish(aws_stack, "applovin", [web_event(event_id="once")])
    batch = receive(aws_stack, "applovin", 1)
    response = h.handler(batch, FakeLambdaContext(h.clock))  # moved to the DLQ; then "crashes": no delete
    assert response["batchItemFailures"] == [] and len(mock.requests) == 1
    response = h.handler(batch, FakeLambdaContext(h.clock))  # SQS redelivers the same message
    assert response["batchItemFailures"] == []
    assert len(mock.requests) == 1  # not sent again
    sqs = boto3.client("sqs")
    letters = list(deadletter.read_all(sqs, h.dlq, hold_seconds=0))
    assert [letter.event_id for letter in letters] == ["once"]  # one copy, not two

    answers["status"] = 200  # the cause fixed: redrive
    assert deadletter.redrive(sqs, h.dlq, h.queue, letters) == 1
    assert h.invoke(receive(aws_stack, "applovin", 1)) == []
    assert len(mock.requests) == 2 and h.delivered() == ["once"]
    assert drain(h.dlq) == []


def test_batch_response_lists_each_message_to_retry_once_in_order():
    from relay.delivery.response import batch_response

    assert batch_response([]) == {"batchItemFailures": []}
    assert batch_response(["b", "a", "b"]) == {"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "a"}]}


def test_match_quality_counts_the_identifiers_of_forwarded_events_only(aws_stack, monkeypatch, output):
    """`Match<Kind>` / `EventsForwarded` is the share of delivered events a vendor can match on each kind."""
    mock = Recording(lambda r: httpx.Response(200))
    h = Harness(aws_stack, monkeypatch, "applovin", mock)
    with_email = web_event(event_id="m1", user={**web_event()["user"], "email": "a@example.com"})
    publish(aws_stack, "applovin", [with_email, web_event(event_id="m2")])
    assert h.invoke(receive(aws_stack, "applovin", 2)) == []
    text = output.text()
    assert metric(text, "EventsForwarded") == 2
    assert metric(text, "MatchEmail") == 1 and metric(text, "MatchCookie") == 2 and metric(text, "MatchIp") == 2
    assert metric(text, "MatchPhone") == 0 and metric(text, "MatchDeviceId") == 0
    assert "a@example.com" not in text


def test_a_batch_refused_for_its_size_is_split_not_dead_lettered(aws_stack, monkeypatch):
    """Issue #24, item 3: a 413 for a batch the relay built says nothing about its events: the batch is
    split until the vendor takes each part; only an event refused on its own is dead-lettered."""
    ids = [f"e{i:03d}" for i in range(100)] + ["huge"]

    def answer(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        if len(events) > 30 or any(e["dedupe_id"] == "huge" for e in events):
            return httpx.Response(413, text="Request Entity Too Large")
        return httpx.Response(200)

    mock = Recording(answer)
    h = Harness(aws_stack, monkeypatch, "applovin", mock)
    publish(aws_stack, "applovin", [web_event(event_id=i) for i in ids])
    records = receive(aws_stack, "applovin", 100)
    records["Records"] += receive(aws_stack, "applovin", 1)["Records"]
    assert h.invoke(records) == []
    assert h.delivered() == sorted(ids[:-1])  # each valid event exactly once
    (letter,) = drain(h.dlq)
    attrs = {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()}
    assert attrs["relay_event_id"] == "huge" and attrs["relay_status"] == "413"
    assert attrs["relay_outcome"] == "rejected"


def test_vendor_requests_carry_no_cookie_a_vendor_answer_set():
    """One container's client sends for every account of its vendor: a cookie one answer sets (a load
    balancer's) is neither kept nor sent with the next request, another account's here."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from relay.delivery.forwarding import Forwarder
    from relay.delivery.sending import new_http_client

    from ..conftest import event, make_config

    sent: list[str | None] = []

    class SetsCookies(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            sent.append(self.headers.get("Cookie"))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Set-Cookie", "AWSALB=lb-node-7; Path=/")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

    server = ThreadingHTTPServer(("127.0.0.1", 0), SetsCookies)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = new_http_client()
    try:
        for i, account in enumerate(("ADV1", "ADV2")):
            endpoint = f"http://127.0.0.1:{server.server_address[1]}/api"
            config = make_config(adroll={"endpoint": endpoint, "advertisable_eid": account})
            results = Forwarder("adroll", config, client).deliver(
                {"m": event(web_event(event_id=f"c{i}"))}, lambda: 60_000
            )
            assert results["m"].ok
    finally:
        server.shutdown()
        client.close()
    assert sent == [None, None]
    assert not client.cookies
    for keep in (
        lambda: new_http_client(cookies={"session": "x"}),
        lambda: client.cookies.update({"session": "x"}),
        lambda: client.cookies.set("session", "x"),
    ):
        with pytest.raises(ValueError, match="vendor requests carry no cookies"):
            keep()
    assert not client.cookies and not new_http_client().cookies  # the jar every client shares stays empty
