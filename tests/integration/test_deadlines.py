"""Deadlines (issue #14): a slow vendor may cost time, never a duplicate.

Vendor functions run in-process on moto's SQS and DynamoDB from template.yaml, receive after receive, as
the event source mapping would. Time is a FakeClock that the mock vendor moves by its latency; a vendor
answer that would arrive after the function's Timeout kills the invocation (`Killed`, which no `except
Exception` catches) after the vendor has taken the request — what Lambda does to a function at its
timeout. The assertions count what the vendor took per event and what is in the DLQ, with its reason.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter

import boto3
import httpx
import pytest

from relay.delivery.forwarding import Forwarder
from relay.delivery.outcomes import Outcome
from relay.delivery.sending import RetryPolicy
from relay_tools.faults import SOAK_ID_PROPERTY
from relay_tools.functions import vendor_handler
from relay_tools.sqs_events import lambda_records

from ..conftest import (
    FakeClock,
    FakeLambdaContext,
    app_event,
    drain,
    make_config,
    use_function_env,
    visible,
    web_event,
)
from .test_vendor_functions import PREFIX, publish


class Killed(BaseException):
    """Lambda ended the invocation at its timeout."""


class LaneClock(FakeClock):
    """Fake time per thread: requests sent from the send pool's threads overlap, as they do for real; the
    invocation has taken as long as its longest lane."""

    def __init__(self, budget_ms: int = 30_000):
        self.main = threading.get_ident()
        self.lanes: dict[int, float] = {self.main: 0.0}
        self.lock = threading.Lock()
        super().__init__(budget_ms)

    @property
    def now(self) -> float:  # type: ignore[override]
        with self.lock:  # a thread new to this invocation starts where the invocation's own thread is
            return self.lanes.setdefault(threading.get_ident(), self.lanes[self.main])

    @now.setter
    def now(self, value: float) -> None:
        with self.lock:
            self.lanes[threading.get_ident()] = value

    def elapsed(self) -> float:
        return max(self.lanes.values())


class SlowVendor:
    """Answers after `latency(request)` seconds of fake time; `hangs(request)`: no answer until the relay's
    own timeout (an httpx.ReadTimeout after the request's whole budget; 20 ms of real time too, so that the
    send pool spreads requests over its threads as it does when they really wait). Past the invocation's deadline the
    vendor has still taken the request, but the invocation is killed before it learns so."""

    def __init__(self, vendor: str, latency: float, rejects=lambda ids: False, hangs=lambda ids: False):
        self.vendor, self.latency, self.rejects, self.hangs = vendor, latency, rejects, hangs
        self.clock = LaneClock()
        self.accepted: Counter[str] = Counter()
        self.requests = 0

    def ids(self, request: httpx.Request) -> list[str]:
        body = json.loads(request.content)
        if self.vendor == "applovin":
            return [e["dedupe_id"] for e in body["events"]]
        return [json.loads(body["eventValue"])[SOAK_ID_PROPERTY]]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        ids = self.ids(request)
        if self.hangs(ids):
            # a thread blocked here must not take the pool's next request: hold it a moment for real too
            time.sleep(0.02)
            self.clock.now += RetryPolicy().request_seconds
            if self.clock.remaining_ms() < 0:
                raise Killed
            raise httpx.ReadTimeout("no answer", request=request)
        self.clock.now += self.latency
        response = httpx.Response(400, text="Invalid event in batch") if self.rejects(ids) else httpx.Response(200)
        if response.is_success:
            self.accepted.update(ids)
        if self.clock.remaining_ms() < 0:
            raise Killed
        return response


def run_until_done(stack, monkeypatch, vendor: str, mock: SlowVendor, receives: int = 12, **kwargs) -> int:
    """Receive and invoke until the queue is empty, as the event source mapping would; returns how many
    invocations were killed at their timeout. The function's environment is set already (use_function_env)."""
    timeout_ms = stack.function_timeout(f"{PREFIX[vendor]}Function") * 1000
    handler = vendor_handler(vendor, http_client=httpx.Client(transport=httpx.MockTransport(mock)), **kwargs)
    sqs = boto3.client("sqs")
    url = stack.physical[f"{PREFIX[vendor]}Queue"]
    killed = 0
    for _ in range(receives):
        messages = visible(url)
        if not messages:
            return killed
        mock.clock = LaneClock(timeout_ms)
        event = lambda_records(messages, stack.arns[f"{PREFIX[vendor]}Queue"], "us-east-1")
        try:
            response = handler(event, FakeLambdaContext(mock.clock))
        except Killed:
            killed += 1
            failed = {m["MessageId"] for m in messages}
        else:
            assert mock.clock.elapsed() * 1000 <= timeout_ms  # the handler returned before its deadline
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] in failed:  # the visibility timeout passes
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    raise AssertionError(f"the queue was not empty after {receives} receives")


def dead_letters(stack, vendor: str) -> dict[str, str]:
    letters = drain(stack.physical[f"{PREFIX[vendor]}DeadLetterQueue"])
    out = {}
    for m in letters:
        attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
        assert "relay_reason" in attrs, "a message SQS moved itself, without a reason"
        out[attrs["relay_event_id"]] = attrs["relay_reason"]
    return out


@pytest.mark.parametrize(
    ("latency", "bad"),
    [(0.4, {f"bad-{i:03d}" for i in range(3, 100, 10)}), (2.5, {"bad-042"})],
    ids=["400ms-10-invalid", "2.5s-1-invalid"],
)
def test_a_slow_vendor_bisecting_past_the_timeout_delivers_each_event_once(aws_stack, monkeypatch, latency, bad):
    ids = [f"bad-{i:03d}" if f"bad-{i:03d}" in bad else f"e{i:03d}" for i in range(100)]
    mock = SlowVendor("applovin", latency, rejects=lambda batch: any(i.startswith("bad") for i in batch))
    use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    publish(aws_stack, "applovin", [web_event(event_id=i) for i in ids])
    assert run_until_done(aws_stack, monkeypatch, "applovin", mock) == 0  # never killed at its timeout
    valid = [i for i in ids if i not in bad]
    assert mock.accepted == Counter(valid)  # each valid event delivered exactly once
    letters = dead_letters(aws_stack, "applovin")
    assert set(letters) == bad
    assert set(letters.values()) == {"applovin rejected the request (400)"}


def test_appsflyer_requests_hanging_until_the_timeout_cost_time_not_duplicates(aws_stack, monkeypatch):
    events = [app_event("android", event_id=f"a{i:02d}", properties={SOAK_ID_PROPERTY: f"a{i:02d}"}) for i in range(50)]
    hanging = {f"a{i:02d}" for i in range(0, 50, 2)}
    mock = SlowVendor("appsflyer", 0.1, hangs=lambda batch: batch[0] in hanging)
    use_function_env(monkeypatch, aws_stack, "AppsFlyerFunction")
    monkeypatch.setenv("RELAY_MAX_RECEIVE_COUNT", "5")  # the safety net, well within the retry window
    publish(aws_stack, "appsflyer", events)
    assert run_until_done(aws_stack, monkeypatch, "appsflyer", mock) == 0
    assert mock.accepted == Counter(e["event_id"] for e in events if e["event_id"] not in hanging)
    letters = dead_letters(aws_stack, "appsflyer")
    assert set(letters) == hanging  # given up on after MaxReceiveCount receives, each with its reason
    assert all(r.startswith("gave up after 5 receives (MaxReceiveCount): ") for r in letters.values())


def test_no_request_starts_without_time_to_finish_it_and_what_was_delivered_is_recorded(aws_stack, monkeypatch):
    """Two AppLovin chunks of 100 at 9 s a request in a 30 s invocation: the second cannot finish before the
    deadline less the bookkeeping, so it is not sent; the first is recorded and not sent again."""
    mock = SlowVendor("applovin", 9.0)
    use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    publish(aws_stack, "applovin", [web_event(event_id=f"e{i:03d}") for i in range(200)])
    assert run_until_done(aws_stack, monkeypatch, "applovin", mock) == 0
    assert mock.accepted == Counter(f"e{i:03d}" for i in range(200))
    assert mock.requests == 2


def test_a_deferred_request_says_why():
    clock = FakeClock(10_000)
    forwarder = Forwarder("adroll", make_config(), httpx.Client(transport=httpx.MockTransport(lambda r: 1 / 0)))
    from ..conftest import event

    results = forwarder.deliver({"m1": event(web_event(event_id="d1"))}, clock.remaining_ms)
    assert results["m1"].outcome == Outcome.DEFERRED and not results["m1"].ok
    assert results["m1"].reason == "not sent to adroll: 10000 ms of the invocation were left, a request may take 10 s"
    assert forwarder.stats.deferred_requests == 1 and forwarder.stats.calls == []


# -- one total deadline per request, against a real socket -----------------------------------------


class Dripping:
    """A loopback HTTP server that answers 200 at once, then drips its body one byte every `pause` s
    (`first`: the first byte after that many seconds instead)."""

    def __init__(self, pause: float, length: int, first: float | None = None):
        self.pause, self.length, self.first = pause, length, first
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/event"
        self.finished: list[bool] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.length}\r\nContent-Type: text/plain\r\n\r\n"
            try:
                conn.sendall(head.encode())
                for i in range(self.length):
                    time.sleep(self.first if i == 0 and self.first is not None else self.pause)
                    conn.sendall(b"x")
                self.finished.append(True)
            except OSError:
                self.finished.append(False)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=30)


def test_a_vendor_dripping_its_answer_is_cut_at_the_requests_total_deadline():
    """Each byte comes well within httpx's per-read timeout, so only a total deadline ends the request."""
    server = Dripping(pause=0.05, length=400)  # 20 s of body, a byte every 50 ms
    config = make_config(adroll={"endpoint": server.url})
    policy = RetryPolicy(max_attempts=1, request_seconds=0.5, reserve_ms=0)
    forwarder = Forwarder("adroll", config, httpx.Client(), policy=policy)
    from ..conftest import event

    try:
        results = forwarder.deliver({"m1": event(web_event(event_id="drip"))}, lambda: 60_000)
    finally:
        server.close()
    assert results["m1"].outcome == Outcome.TRANSIENT
    assert results["m1"].reason == "no complete answer within 0.5 s calling adroll"
    assert server.finished == [False]  # the relay hung up: the body was never read to its end


def test_the_watchdog_shuts_a_socket_still_reading_at_its_deadline_and_spares_a_disarmed_one():
    """What ends a read that started with more time than is left (a body stalling after a late byte)."""
    from relay.delivery.deadline import _WATCHDOG

    armed, peer = socket.socketpair()
    spared, other = socket.socketpair()
    with armed, peer, spared, other:
        _WATCHDOG.arm(time.monotonic() + 0.1, armed)
        token = _WATCHDOG.arm(time.monotonic() + 0.1, spared)
        _WATCHDOG.disarm(token)
        armed.settimeout(30)
        assert armed.recv(1) == b""  # shut down at its deadline: the read ends, not after 30 s with a timeout
        spared.settimeout(0.5)
        with pytest.raises(TimeoutError):
            spared.recv(1)  # disarmed: left alone


def test_arming_a_later_deadline_does_not_wake_the_watchdog_and_an_earlier_one_is_kept():
    """A request's deadline later than the watchdog's next round waits for that round (no wake-up per
    request: AppsFlyer sends one per event); an earlier one wakes it, and is kept."""
    from relay.delivery.deadline import _WATCHDOG

    pairs = [socket.socketpair() for _ in range(21)]
    try:
        first = _WATCHDOG.arm(time.monotonic() + 30, pairs[0][0])
        rounds = _WATCHDOG.wakes
        later = [_WATCHDOG.arm(time.monotonic() + 40 + i, a) for i, (a, _) in enumerate(pairs[1:-1])]
        assert _WATCHDOG.wakes - rounds <= 1  # (one round: the first arming's, if it had not run yet)
        for token in (first, *later):
            _WATCHDOG.disarm(token)
        earlier, _ = pairs[-1]
        _WATCHDOG.arm(time.monotonic() + 0.1, earlier)
        earlier.settimeout(30)
        assert earlier.recv(1) == b""  # shut at its deadline, not at the next round's 30 s
    finally:
        for a, b in pairs:
            a.close()
            b.close()


class SlowAnswers:
    """A loopback vendor that answers 200 `delay` s after reading each request; `arrived` is set as each
    request is read, `requests` counts them, `peers` counts them per connection (the client's address)."""

    def __init__(self, delay: float):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.arrived, self.requests = threading.Event(), 0
        self.peers: Counter[tuple[str, int]] = Counter()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests += 1
                outer.peers[self.client_address] += 1
                outer.arrived.set()
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_work_while_waiting_runs_once_the_vendor_has_the_request_and_cannot_fail_it():
    from relay.delivery.deadline import send_within
    from relay.delivery.sending import new_http_client

    vendor, client = SlowAnswers(delay=0.2), new_http_client()
    seen: list[bool] = []

    def meanwhile() -> None:
        seen.append(vendor.arrived.wait(5))  # the vendor has the request (its answer is 0.2 s away)
        raise RuntimeError("work done while waiting fails")

    try:
        response = send_within(client, "POST", vendor.url, {}, b"{}", 10, 3, while_waiting=meanwhile)
    finally:
        vendor.close()
        client.close()
    assert seen == [True]
    assert response.status_code == 200 and vendor.requests == 1  # sent once, answered, not failed by the work


@pytest.mark.parametrize("journey", [True, False])
def test_a_journeys_request_text_is_made_while_the_vendor_answers_and_is_the_same(journey):
    """With journeys kept, each request's body text (IP addresses truncated) is made while its answer is
    awaited; the journey item is the same either way."""
    from relay.delivery.sending import new_http_client
    from relay.journey.record import invocation_journey, journey_body

    from ..conftest import event, make_config

    vendor, client = SlowAnswers(delay=0.05), new_http_client()
    config = make_config(adroll={"endpoint": vendor.url})
    forwarder = Forwarder("adroll", config, client, journey=journey)
    events = {f"m{i}": event(web_event(event_id=f"w{i}")) for i in range(3)}
    try:
        results = forwarder.deliver(events, lambda: 60_000)
    finally:
        vendor.close()
        client.close()
    assert all(d.ok for d in results.values()) and vendor.requests == 1
    [call] = forwarder.stats.calls
    assert call.body == (journey_body(call.request) if journey else None)
    assert '"ip":"203.0.113.0"' in journey_body(call.request)  # the test events' IP, truncated
    claimed = {key: e.event_id for key, e in events.items()}
    [request] = invocation_journey("adroll", 0.0, forwarder.stats, claimed, results)["requests"]
    assert request["body"] == journey_body(call.request)


def test_a_long_request_body_is_compressed_for_the_journey_while_the_vendor_answers():
    """A batch's body of more than PACK_FROM_CHARS is compressed while its answer is awaited (PackedText);
    the journey item reads the same as one compressed after the answer."""
    from relay.delivery.sending import new_http_client
    from relay.journey import PACK_FROM_CHARS, PackedText, decode, fitted
    from relay.journey.record import invocation_journey, journey_body

    from ..conftest import event, make_config

    vendor, client = SlowAnswers(delay=0.05), new_http_client()
    forwarder = Forwarder("adroll", make_config(adroll={"endpoint": vendor.url}), client)
    events = {f"m{i}": event(web_event(event_id=f"w{i}")) for i in range(40)}
    try:
        results = forwarder.deliver(events, lambda: 60_000)
    finally:
        vendor.close()
        client.close()
    [call] = forwarder.stats.calls
    assert all(d.ok for d in results.values()) and vendor.requests == 1
    assert isinstance(call.body, PackedText) and len(call.body) >= PACK_FROM_CHARS
    claimed = {key: e.event_id for key, e in events.items()}
    journey = invocation_journey("adroll", 0.0, forwarder.stats, claimed, results)
    plain = {**journey, "requests": [{**r, "body": str(r["body"])} for r in journey["requests"]]}
    assert decode(fitted(journey)) == decode(fitted(plain)) and plain["requests"][0]["body"] == journey_body(
        call.request
    )


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        (None, b'{"ok":true}'),
        ("application/json", '{"détail":"reçu"}'.encode()),
        ("text/plain; charset=iso-8859-1", "reçu".encode("latin-1")),
        ('text/plain; Charset="UTF-8"', "reçu".encode()),
        ("text/plain; charset=no-such-encoding", b"bad \xff byte"),
        (None, b"bad \xff\xfe bytes"),
        ("application/json", b""),
    ],
)
@pytest.mark.parametrize("status", [200, 400, 503])
def test_the_answer_reads_as_httpx_reads_it(content_type, content, status):
    """`send_within`'s answer (relay.delivery.deadline.Answer) gives the status, headers and text httpx's own
    response gives for the same answer: the Content-Type's charset when it names one, else UTF-8 with
    undecodable bytes replaced."""
    from relay.delivery.deadline import send_within
    from relay.delivery.sending import new_http_client

    headers = {"content-type": content_type} if content_type else {}
    answer = httpx.Response(status, headers=headers, content=content)
    client = new_http_client(transport=httpx.MockTransport(lambda request: answer))
    got = send_within(client, "POST", "https://vendor.test/api", {}, b"{}", 10, 3)
    assert (got.status_code, got.is_success, got.content) == (status, status == 200, content)
    assert got.text == answer.text and got.headers.get("content-type") == content_type


def test_each_sending_thread_keeps_its_own_connections_and_all_share_one_tls_context(monkeypatch):
    """The vendors' client gives every sending thread a connection pool of its own (ThreadPools): a thread
    reuses its keep-alive connection, no two threads share one, closing the client closes them all; every
    pool is made with the one TLS context (loading the CA bundle once, not once per thread)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx._transports.default as transports

    from relay.delivery.sending import new_http_client

    contexts: list[object] = []
    made = transports.create_ssl_context
    monkeypatch.setattr(transports, "create_ssl_context", lambda **kw: contexts.append(kw["verify"]) or made(**kw))
    vendor = SlowAnswers(delay=0)
    client, threads, barrier = new_http_client(), 4, threading.Barrier(4)

    def three_requests(_: int) -> None:
        barrier.wait()  # every thread of the pool takes one task
        for _ in range(3):
            assert client.post(vendor.url, content=b"{}").status_code == 200

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(three_requests, range(threads)))
        pools = list(client._transport._pools)  # type: ignore[attr-defined]
    finally:
        client.close()
        vendor.close()
    assert sorted(vendor.peers.values()) == [3] * threads  # a connection per thread, each kept for its three requests
    assert len(pools) == threads and len(contexts) == threads and len({id(c) for c in contexts}) == 1
    assert isinstance(contexts[0], __import__("ssl").SSLContext)
    assert client._transport._pools == []  # type: ignore[attr-defined]
