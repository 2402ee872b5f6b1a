"""Vendor outages (docs/reliability.md, "Vendor outages"): the retry window in time, the circuit breaker and
the automatic redrive, with moto's SQS and DynamoDB from template.yaml and a mocked vendor. Time is the
function's clock and the messages' SentTimestamp: nothing waits."""

from __future__ import annotations

import json
import time

import boto3
import httpx
import pytest

from relay.delivery.circuit import OPEN_AFTER, CircuitState
from relay.delivery.deadletter import body_event_ids
from relay.delivery.retry import SourceQueue
from relay_tools.functions import vendor_handler

from ..conftest import FakeClock, FakeLambdaContext, app_event, drain, use_function_env, visible, web_event
from .test_bundles import publish_bundle
from .test_delivery import metric
from .test_vendor_functions import PREFIX, Vendor, publish, queued, receive

HOUR = 3600


class Delays(SourceQueue):
    """The function's queue, remembering the delays it set (they are set on moto's queue as well)."""

    def __init__(self, url: str):
        super().__init__(url, boto3.client("sqs"))
        self.calls: list[dict[str, int]] = []

    def delay(self, delays):
        self.calls.append(dict(delays))
        return super().delay(delays)


class Outage:
    """One vendor function against a mocked vendor; the function's clock is `now` (seconds)."""

    def __init__(self, stack, monkeypatch, vendor: str, answer, workers: int = 1, **env: str):
        self.stack, self.vendor = stack, vendor
        use_function_env(monkeypatch, stack, f"{PREFIX[vendor]}Function")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        self.mock = Vendor(answer)
        self.queue_url = stack.physical[f"{PREFIX[vendor]}Queue"]
        self.dlq = stack.physical[f"{PREFIX[vendor]}DeadLetterQueue"]
        self.delays = Delays(self.queue_url)
        self.clock = FakeClock()
        self.handler = vendor_handler(
            vendor, http_client=self.mock.client(), sleep=self.clock.sleep, max_workers=workers, queue=self.delays
        )
        self.function = self.handler.keywords["function"]
        self.now = time.time()
        self.function.clock = lambda: self.now
        self.function.rng = lambda: 1.0  # the longest delay of each step: exact figures

    def invoke(self, event: dict, age: float | None = None) -> list[str]:
        """Run one invocation; messages it did not report failed are deleted, as the event source does.
        `age`: the messages' SentTimestamp this many seconds before now. Returns the failed event_ids."""
        if age is not None:
            for record in event["Records"]:
                record["attributes"]["SentTimestamp"] = str(int((self.now - age) * 1000))
        self.clock = FakeClock()
        response = self.handler(event, FakeLambdaContext(self.clock))
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        sqs = boto3.client("sqs")
        for record in event["Records"]:
            if record["messageId"] not in failed:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        return sorted(e for r in event["Records"] if r["messageId"] in failed for e in body_event_ids(r["body"]))

    def again(self, event: dict) -> dict:
        """The same messages received again (their visibility ends now), with their receive counts."""
        sqs = boto3.client("sqs")
        for record in event["Records"]:
            sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )
        return receive(self.stack, self.vendor, len(event["Records"]))

    def fail_until_open(self, batch: dict, age: float | None = None) -> dict:
        """Invoke on `batch` until the vendor's circuit is open (at most 10 times); returns the batch as it is
        received next."""
        for _ in range(10):
            self.invoke(batch, age)
            batch = self.again(batch)
            if self.circuit().is_open:
                return batch
        raise AssertionError("the circuit did not open")

    def circuit(self):
        return self.function.circuit.read()


def peek(url: str) -> list[dict]:
    """The messages of a queue, left visible (a plain receive would hide them for the visibility timeout)."""
    sqs = boto3.client("sqs")
    messages = visible(url)
    for m in messages:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return messages


def answering(status: int):
    return lambda request: httpx.Response(status, text=f"status {status}")


def test_a_failed_message_comes_back_after_a_delay_that_doubles_with_each_receive(aws_stack, monkeypatch, output):
    o = Outage(aws_stack, monkeypatch, "adroll", answering(503))
    publish(aws_stack, "adroll", [web_event(event_id="e1")])
    event = receive(aws_stack, "adroll", 1)
    assert o.invoke(event) == ["e1"]
    ((handle, first),) = o.delays.calls[-1].items()
    assert handle == event["Records"][0]["receiptHandle"]
    assert first == 29  # 3600 s / 2**7, rounded up: the defaults' first delay
    assert visible(o.queue_url) == []  # SQS hides it for that long (the partial batch response keeps it)
    delays = [first]
    for _ in range(8):
        event = o.again(event)
        assert o.invoke(event) == ["e1"]
        delays.append(next(iter(o.delays.calls[-1].values())))
    assert delays == [29, 57, 113, 225, 450, 900, 1800, 3600, 3600]  # doubling up to max_retry_delay_seconds
    assert drain(o.dlq) == []
    assert metric(output.text(), "RetryDelays") == 9


def test_jitter_keeps_each_delay_between_half_and_all_of_its_step(aws_stack, monkeypatch):
    o = Outage(aws_stack, monkeypatch, "adroll", answering(500))
    o.function.rng = lambda: 0.0
    publish(aws_stack, "adroll", [web_event(event_id="e1")])
    assert o.invoke(receive(aws_stack, "adroll", 1)) == ["e1"]
    assert list(o.delays.calls[-1].values()) == [15]  # half of 28.1 s, rounded up


def test_a_message_older_than_the_window_is_dead_lettered_with_its_last_error(aws_stack, monkeypatch):
    o = Outage(aws_stack, monkeypatch, "adroll", answering(503))
    publish(aws_stack, "adroll", [web_event(event_id="old"), web_event(event_id="young")])
    event = receive(aws_stack, "adroll", 2)
    ages = {"old": 24 * HOUR + 60, "young": 24 * HOUR - 20}
    for record in event["Records"]:
        age = ages[json.loads(record["body"])["event_id"]]
        record["attributes"]["SentTimestamp"] = str(int((o.now - age) * 1000))
    assert o.invoke(event) == ["young"]
    (letter,) = drain(o.dlq)
    attrs = {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()}
    assert attrs["relay_event_id"] == "old" and attrs["relay_outcome"] == "retries_exhausted"
    assert attrs["relay_reason"] == "gave up after 24.02 h (1 receives; retry window 24 h): adroll answered 503"
    assert attrs["relay_status"] == "503" and attrs["relay_vendor_response"] == "status 503"
    assert list(o.delays.calls[-1].values()) == [20]  # the young one's last try falls at the window's end


def test_the_window_and_delays_come_from_the_delivery_settings(aws_stack, monkeypatch):
    o = Outage(
        aws_stack,
        monkeypatch,
        "appsflyer",
        answering(502),
        RELAY_DELIVERY_RETRY_WINDOW_HOURS="0.5",
        RELAY_DELIVERY_MAX_RETRY_DELAY_SECONDS="128",
    )
    publish(aws_stack, "appsflyer", [app_event("android", event_id="e1")])
    event = receive(aws_stack, "appsflyer", 1)
    assert o.invoke(event, age=10) == ["e1"]
    assert list(o.delays.calls[-1].values()) == [1]  # 128 / 2**7
    assert o.invoke(o.again(event), age=1801) == []  # past half an hour: given up
    (letter,) = drain(o.dlq)
    assert letter["MessageAttributes"]["relay_reason"]["StringValue"].startswith("gave up after 0.50 h")


def test_a_permanent_failure_is_dead_lettered_at_once_and_no_delay_is_set(aws_stack, monkeypatch):
    o = Outage(aws_stack, monkeypatch, "adroll", answering(400))
    publish(aws_stack, "adroll", [web_event(event_id="bad")])
    assert o.invoke(receive(aws_stack, "adroll", 1)) == []
    (letter,) = drain(o.dlq)
    assert letter["MessageAttributes"]["relay_outcome"]["StringValue"] == "rejected"
    assert o.delays.calls == []


@pytest.mark.parametrize(
    "failure",
    [answering(503), answering(401), answering(403), lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow"))],
    ids=["503", "401", "403", "timeout"],
)
def test_the_circuit_opens_after_consecutive_failures_and_then_nothing_is_sent(aws_stack, monkeypatch, output, failure):
    o = Outage(aws_stack, monkeypatch, "appsflyer", failure)
    events = [app_event("android", event_id=f"e{i:02d}") for i in range(40)]
    publish(aws_stack, "appsflyer", events)
    batch = receive(aws_stack, "appsflyer", 40)
    assert len(o.invoke(batch)) == 40
    assert len(o.mock.requests) == OPEN_AFTER  # then it stopped sending: the rest is held
    state = o.circuit()
    assert state.is_open and state.failures >= OPEN_AFTER
    assert metric(output.text(), "CircuitOpened") == 1
    assert len(o.delays.calls[-1]) == 40  # every message comes back on the retry schedule
    # the next invocations send nothing until the probe is due
    batch = o.again(batch)
    assert len(o.invoke(batch)) == 40
    assert len(o.mock.requests) == OPEN_AFTER
    assert metric(output.text(), "EventsHeld") >= 40 + 40 - OPEN_AFTER


def test_one_probe_per_interval_then_full_speed_once_the_vendor_answers(aws_stack, monkeypatch, output):
    status = {"now": 503}
    o = Outage(aws_stack, monkeypatch, "appsflyer", lambda request: httpx.Response(status["now"]), workers=4)
    events = [app_event("android", event_id=f"e{i:02d}") for i in range(30)]
    publish(aws_stack, "appsflyer", events)
    batch = receive(aws_stack, "appsflyer", 30)
    o.invoke(batch)
    assert o.circuit().is_open
    sent = len(o.mock.requests)
    o.now += 61  # the probe is due (CircuitProbeSeconds 60)
    batch = o.again(batch)
    assert len(o.invoke(batch)) == 30  # the probe failed: one request, everything kept
    assert len(o.mock.requests) == sent + 1
    batch = o.again(batch)
    assert len(o.invoke(batch)) == 30  # the next probe is a whole interval later
    assert len(o.mock.requests) == sent + 1
    status["now"] = 200
    o.now += 61
    batch = o.again(batch)
    assert o.invoke(batch) == []  # the probe succeeded: the rest of the batch at once
    assert len(o.mock.requests) == sent + 1 + 30
    assert not o.circuit().is_open and o.circuit().failures == 0
    assert metric(output.text(), "CircuitClosed") == 1


def test_a_rejected_event_is_an_answer_and_keeps_the_circuit_closed(aws_stack, monkeypatch):
    answers = iter([503] * 9 + [400] + [503] * 6)  # the 10th request is refused for its event: the vendor is up
    o = Outage(aws_stack, monkeypatch, "appsflyer", lambda request: httpx.Response(next(answers)))
    events = [app_event("android", event_id=f"e{i}") for i in range(3)]
    publish(aws_stack, "appsflyer", events)
    o.invoke(receive(aws_stack, "appsflyer", 3))
    assert len(o.mock.requests) == 16  # 6 tries, 3 tries and the 400, 6 tries: never held
    state = o.circuit()
    assert not state.is_open and state.failures == 6  # the failures since the last answer


def letter_for(o: Outage, event_id: str, outcome: str, redrives: int = 0) -> None:
    """A dead letter as the function writes it, for `event_id`."""
    attrs = {
        "destinations": {"DataType": "String.Array", "StringValue": json.dumps([o.vendor])},
        "relay_outcome": {"DataType": "String", "StringValue": outcome},
        "relay_reason": {"DataType": "String", "StringValue": "test"},
        "relay_event_id": {"DataType": "String", "StringValue": event_id},
    }
    if redrives:
        attrs["relay_redrives"] = {"DataType": "Number", "StringValue": str(redrives)}
    publish(o.stack, o.vendor, [web_event(event_id=event_id)])
    (message,) = drain(o.queue_url)
    boto3.client("sqs").send_message(QueueUrl=o.dlq, MessageBody=message["Body"], MessageAttributes=attrs)


def test_after_recovery_transient_dead_letters_go_back_and_are_delivered_once(aws_stack, monkeypatch, output):
    status = {"now": 503}
    o = Outage(aws_stack, monkeypatch, "adroll", lambda request: httpx.Response(status["now"]))
    letter_for(o, "exhausted", "retries_exhausted")
    letter_for(o, "cycled", "retries_exhausted", redrives=3)  # moved back three times already: a human's
    letter_for(o, "refused", "rejected")
    # an outage: the circuit opens on the live traffic
    publish(aws_stack, "adroll", [web_event(event_id=f"live{i}") for i in range(4)])
    batch = receive(aws_stack, "adroll", 4)
    batch = o.fail_until_open(batch)
    assert len(peek(o.dlq)) == 3  # nothing moved while the vendor is down
    status["now"] = 200
    o.now += 61
    assert o.invoke(batch) == []  # the probe succeeds: live events delivered, the DLQ's transient letters back
    assert metric(output.text(), "EventsRedriven") == 1
    left = {m["MessageAttributes"]["relay_event_id"]["StringValue"] for m in drain(o.dlq)}
    assert left == {"cycled", "refused"}
    (back,) = peek(o.queue_url)
    assert back["MessageAttributes"]["relay_redrives"]["StringValue"] == "1"
    assert o.circuit().redrive is True  # it moved letters: the next healthy invocation looks once more
    requests = len(o.mock.requests)
    assert o.invoke(receive(aws_stack, "adroll", 1)) == []  # the redriven event: delivered
    assert len(o.mock.requests) == requests + 1
    assert o.circuit().redrive is False  # that pass found nothing to move, and nothing hidden from it
    # a second copy of it (a letter sent back but deleted too late, say) is a duplicate: not sent again
    letter_for(o, "exhausted", "retries_exhausted")
    assert o.invoke(_redrive_now(o)) == []
    assert len(o.mock.requests) == requests + 1
    assert metric(output.text(), "DuplicateEvents") == 1


def _redrive_now(o: Outage) -> dict:
    """Run a redrive pass as a healthy invocation would, and receive what it moved."""
    from relay.delivery.redrive import redrive_transient

    moved = redrive_transient(boto3.client("sqs"), o.dlq, o.queue_url, lambda: True)
    assert moved.moved == 1
    return receive(o.stack, o.vendor, 1)


def test_without_auto_redrive_the_dead_letters_stay(aws_stack, monkeypatch):
    status = {"now": 503}
    o = Outage(
        aws_stack,
        monkeypatch,
        "adroll",
        lambda request: httpx.Response(status["now"]),
        RELAY_DELIVERY_AUTO_REDRIVE="false",
    )
    letter_for(o, "exhausted", "retries_exhausted")
    publish(aws_stack, "adroll", [web_event(event_id=f"live{i}") for i in range(2)])
    batch = receive(aws_stack, "adroll", 2)
    batch = o.fail_until_open(batch)
    status["now"] = 200
    o.now += 61
    assert o.invoke(batch) == []
    assert len(drain(o.dlq)) == 1


def test_an_outage_longer_than_the_window_dead_letters_then_redrives_on_recovery(aws_stack, monkeypatch):
    status = {"now": 503}
    o = Outage(aws_stack, monkeypatch, "adroll", lambda request: httpx.Response(status["now"]))
    publish(aws_stack, "adroll", [web_event(event_id=f"e{i}") for i in range(3)])
    batch = receive(aws_stack, "adroll", 3)
    batch = o.fail_until_open(batch, age=HOUR)
    assert o.invoke(batch, age=25 * HOUR) == []  # held past the window: dead-lettered, not sent
    assert {m["MessageAttributes"]["relay_outcome"]["StringValue"] for m in peek(o.dlq)} == {"retries_exhausted"}
    assert o.circuit().redrive is True
    status["now"] = 200
    o.now += 61
    publish(aws_stack, "adroll", [web_event(event_id="new")])
    sent = len(o.mock.requests)
    assert o.invoke(receive(aws_stack, "adroll", 1)) == []  # the probe: delivered, and the DLQ moved back
    assert peek(o.dlq) == []
    assert o.invoke(receive(aws_stack, "adroll", 3)) == []
    assert len(o.mock.requests) == sent + 2  # the probe, then the three redriven events in one request


def test_an_outage_longer_than_the_window_then_silence_recovers_on_the_schedule(aws_stack, monkeypatch, output):
    """Issue #24, item 7: no event arrives after the outage. The scheduled run (template.yaml: every five
    minutes) sends one letter back as the probe while the vendor is down, the circuit holds it; once the
    vendor answers, that message's invocation delivers it and redrives the others. Each event reaches the
    vendor once."""
    from relay.delivery.recovery import RECOVERY_EVENT

    status = {"now": 503}
    o = Outage(aws_stack, monkeypatch, "adroll", lambda request: httpx.Response(status["now"]))
    publish(aws_stack, "adroll", [web_event(event_id=f"e{i}") for i in range(3)])
    batch = o.fail_until_open(receive(aws_stack, "adroll", 3), age=HOUR)
    assert o.invoke(batch, age=25 * HOUR) == []  # held past the window: dead-lettered, not sent
    assert len(peek(o.dlq)) == 3 and o.circuit().redrive is True

    def scheduled() -> dict:
        return o.handler(dict(RECOVERY_EVENT), FakeLambdaContext(FakeClock()))

    assert scheduled() == {"moved": 1}  # the vendor is still down: one letter back, as the probe
    assert scheduled() == {"moved": 0}  # it is queued: it probes the vendor itself, nothing more moves
    probe = receive(aws_stack, "adroll", 1)
    sent = len(o.mock.requests)
    assert len(o.invoke(probe)) == 1  # the circuit is open and its probe is not due: held, not sent
    assert len(o.mock.requests) == sent
    status["now"] = 200
    o.now += 61
    assert o.invoke(o.again(probe)) == []  # the probe: delivered, and the two other letters moved back
    assert peek(o.dlq) == []
    assert o.invoke(receive(aws_stack, "adroll", 2)) == []
    assert scheduled() == {"moved": 0} and o.circuit().redrive is False  # nothing left to recover
    # the probe's event, then the two redriven ones in one request: three events, each once
    assert [len(json.loads(r.content)) for r in o.mock.requests[sent:]] == [1, 2]


def test_the_schedule_moves_nothing_without_auto_redrive_or_a_marked_dlq(aws_stack, monkeypatch):
    from relay.delivery.recovery import RECOVERY_EVENT

    o = Outage(aws_stack, monkeypatch, "adroll", lambda request: httpx.Response(200))
    letter_for(o, "exhausted", "retries_exhausted")
    assert o.handler(dict(RECOVERY_EVENT), FakeLambdaContext(FakeClock())) == {"moved": 0}  # not marked
    o.function.circuit.mark_redrive()
    off = Outage(aws_stack, monkeypatch, "adroll", lambda r: httpx.Response(200), RELAY_DELIVERY_AUTO_REDRIVE="false")
    assert off.handler(dict(RECOVERY_EVENT), FakeLambdaContext(FakeClock())) == {"moved": 0}
    assert len(peek(o.dlq)) == 1


def test_a_letter_hidden_from_the_pass_is_moved_by_a_later_one(aws_stack, monkeypatch):
    """`relay dlq list` holds the letters it reads for a while: a pass meanwhile does not see them, so the
    DLQ stays marked until a pass finds nothing hidden."""
    o = Outage(aws_stack, monkeypatch, "adroll", answering(200))
    letter_for(o, "exhausted", "retries_exhausted")
    o.function.circuit.mark_redrive()
    sqs = boto3.client("sqs")
    (held,) = sqs.receive_message(QueueUrl=o.dlq, VisibilityTimeout=300)["Messages"]  # someone lists the DLQ
    publish(aws_stack, "adroll", [web_event(event_id="live")])
    assert o.invoke(receive(aws_stack, "adroll", 1)) == []
    assert o.circuit().redrive is True and len(peek(o.queue_url)) == 0  # nothing moved, the mark stays
    sqs.change_message_visibility(QueueUrl=o.dlq, ReceiptHandle=held["ReceiptHandle"], VisibilityTimeout=0)
    publish(aws_stack, "adroll", [web_event(event_id="live2")])
    assert o.invoke(receive(aws_stack, "adroll", 1)) == []
    (back,) = peek(o.queue_url)
    assert json.loads(back["Body"])["event_id"] == "exhausted"


def test_a_circuit_item_past_its_time_to_live_starts_over(aws_stack, monkeypatch):
    """DynamoDB deletes expired items late: an old open circuit with its counts reads as closed, and the
    next failures count from zero."""
    o = Outage(aws_stack, monkeypatch, "adroll", answering(503))
    circuit = o.function.circuit
    assert circuit.failed(OPEN_AFTER) and circuit.read().is_open
    o.now += 15 * 86_400  # past the item's 14-day time to live
    assert circuit.read() == CircuitState()  # closed, no failures
    assert circuit.failed(3) is False
    state = circuit.read()
    assert not state.is_open and state.failures == 3


def test_when_sqs_fails_a_redrive_pass_the_batch_stays_delivered_and_the_dlq_marked(aws_stack, monkeypatch, output):
    o = Outage(aws_stack, monkeypatch, "adroll", answering(200))
    letter_for(o, "exhausted", "retries_exhausted")
    o.function.circuit.mark_redrive()
    client = o.function.dead_letters.client

    def refuse(**kwargs):
        raise client.exceptions.QueueDoesNotExist({"Error": {"Code": "QueueDoesNotExist"}}, "ReceiveMessage")

    monkeypatch.setattr(client, "receive_message", refuse)
    publish(aws_stack, "adroll", [web_event(event_id="live")])
    assert o.invoke(receive(aws_stack, "adroll", 1)) == []  # delivered, not failed by the redrive
    assert len(o.mock.requests) == 1
    assert o.circuit().redrive is True and metric(output.text(), "RedriveErrors") == 1


def test_a_mark_set_while_a_pass_ran_is_not_cleared_by_it(aws_stack, monkeypatch):
    """A pass that found nothing clears the DLQ's mark only if no invocation marked it again since the pass read
    the circuit: a letter dead-lettered meanwhile is not left waiting for a mark that never comes."""
    o = Outage(aws_stack, monkeypatch, "adroll", lambda request: httpx.Response(200))
    o.function.circuit.mark_redrive()
    read_before_the_pass = o.circuit()
    o.function.circuit.mark_redrive()  # another invocation dead-letters a letter meanwhile
    assert not o.function.circuit.clear_redrive(read_before_the_pass)
    assert o.circuit().redrive is True
    assert o.function.circuit.clear_redrive(o.circuit())  # read after the last mark: cleared
    assert o.circuit().redrive is False

    # an invocation read the circuit before the mark and then answers: its write leaves the mark alone
    o.function.circuit.failed(2)
    read_before_the_mark = o.circuit()
    o.function.circuit.mark_redrive()
    assert not o.function.circuit.answered(read_before_the_mark)
    assert o.circuit().redrive is True and o.circuit().failures == 0


@pytest.mark.parametrize("bundled", [True, False])
def test_letters_redriven_together_with_the_message_they_left_are_each_delivered_once(aws_stack, monkeypatch, bundled):
    """An outage past the retry window dead-letters every event (a bundle: one letter each); the vendor
    recovers and the letters go back. A batch holding the letters together, after a copy of the message they
    were moved from, loses none: the copy does not stand for them, and the letters of one bundle, claimed
    together, are each sent once."""
    status = {"now": 503}
    o = Outage(aws_stack, monkeypatch, "applovin", lambda request: httpx.Response(status["now"]))
    ids = ["b0", "b1", "b2"] if bundled else ["solo"]
    if bundled:
        publish_bundle(aws_stack, "applovin", [queued(web_event(event_id=e)) for e in ids])
    else:
        publish(aws_stack, "applovin", [web_event(event_id="solo")])
    original = receive(aws_stack, "applovin", 1)
    assert o.invoke(original, age=25 * HOUR) == []  # past the window: every event dead-lettered
    assert {m["MessageAttributes"]["relay_event_id"]["StringValue"] for m in peek(o.dlq)} == set(ids)
    status["now"] = 200
    down = len(o.mock.requests)  # the failed requests of the outage
    from relay.delivery.redrive import redrive_transient

    assert redrive_transient(boto3.client("sqs"), o.dlq, o.queue_url, lambda: True).moved == len(ids)
    letters = receive(aws_stack, "applovin", len(ids))
    batch = {"Records": original["Records"] + letters["Records"]}  # the original first: a copy of it again
    # the original's copy sends nothing (its events are in the DLQ): the letters wait and claim for themselves
    assert o.invoke(batch) == sorted(ids)
    assert len(o.mock.requests) == down
    assert o.invoke(o.again(letters)) == []
    sent = [e["dedupe_id"] for b in o.mock.bodies()[down:] for e in b["events"]]
    assert sorted(sent) == sorted(ids)
    assert peek(o.dlq) == []


def test_an_unusable_configuration_keeps_every_message_on_the_retry_schedule(aws_stack, monkeypatch):
    """A configuration the function cannot use at all (here a malformed setting) fails every event of the batch
    as `config`, a transient failure: each message comes back after the schedule's delay, nothing is sent."""
    use_function_env(monkeypatch, aws_stack, "AdRollFunction")
    publish(aws_stack, "adroll", [web_event(event_id="c1"), web_event(event_id="c2")])
    event = receive(aws_stack, "adroll", 2)
    o = Outage(aws_stack, monkeypatch, "adroll", answering(200), RELAY_ADROLL_DRY_RUN="perhaps")
    assert o.invoke(event) == ["c1", "c2"]
    assert o.mock.requests == []
    (delays,) = o.delays.calls
    assert sorted(delays) == sorted(r["receiptHandle"] for r in event["Records"])
    assert set(delays.values()) == {29}  # the schedule's first delay
