"""The delivery machine under every interleaving Hypothesis finds (docs/decisions/0008): a stateful test of the
real IngestFunction and AppLovinFunction handlers against moto (SNS, SQS with its redrive policy, DynamoDB)
and a scripted vendor behind httpx.MockTransport.

Three AppLovin connections and two sources (docs/connections.md): the source `default` reaches the pixel of
the template's parameters (`applovin`) and `applovin.eu`, the source `us` reaches `applovin.us` with the same
event ids (ids are scoped per source), and one pixel may fail while the others answer. The rules are what
production interleaves: a client's send, an identical resend, a resend reordered or regrouped; the ingest or a
vendor invocation killed at any AWS call (before it or after it, its answer lost) or after the vendor processed
a request; SQS handing out any visible message, and a second copy of one in flight (at-least-once); visibility
timeouts and leases running out; the vendor up, down (5xx) or refusing the credentials; MaxReceiveCount
running out (3 receives) and the automatic redrive; DynamoDB failing a call; the archive (SNS to Firehose, the
real ArchiveFunction, S3) delivering at any time, and `relay replay` run at any step: by default (to what a
pixel has not delivered) or `--again` (once more, once per replay; two replay identities), killed after any of
its PublishBatch calls or stopped by an AWS error, and run again.

Invariants, after every step: no event reaches a connection twice (2xx), beyond once for each `--again` replay
that queued it. At quiescence (teardown: the vendor healthy, nothing killed, the client resending every request
until answered 202, SQS's timeouts run out): every event the relay accepted for a connection is delivered to it
exactly once or is in the DLQ with its reason, naming that connection; and each `--again` replay's send of it
is delivered or dead-lettered too.

`make test` runs a short form; `make reliability` the long one (HYPOTHESIS_PROFILE=long)."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule
from moto import mock_aws

from relay.aws.ledger import INGEST, DeliveryLedger
from relay.aws.sns import SnsPublisher
from relay.delivery.function import VendorFunction
from relay.ingest.archiving import Archiver
from relay.ingest.function import IngestFunction
from relay.ingest.signing import sign
from relay_tools.apigw import http_api_event, response_body
from relay_tools.functions import app_module
from relay_tools.sqs_events import lambda_records

from ..aws_faults import AwsFaults
from ..conftest import ROOT, SECRETS, STACK_PARAMETERS, STACK_SECRETS, FakeClock, FakeLambdaContext, web_event

MAX_RECEIVES = 3
VENDOR = "applovin"
PIXELS = {"PIXEL123": "applovin", "eu-pixel": "applovin.eu", "us-pixel": "applovin.us"}  # pixel -> connection
SOURCES = {"default": SECRETS["signing"], "us": "us-signing-SECRET-machine"}
CONNECTIONS_FILE = """[sources.default]
connections = ["applovin", "applovin.eu", "appsflyer", "adroll"]

[sources.us]
connections = ["applovin.us"]

[connections.applovin.eu]
pixel_id = "eu-pixel"

[connections.applovin.us]
pixel_id = "us-pixel"
"""
MACHINE_SECRETS = {
    **STACK_SECRETS,
    "IngestSigningSecret": {"secret": SOURCES["default"], "sources": {"us": {"secret": SOURCES["us"]}}},
    "AppLovinSecret": {
        "api_key": SECRETS["applovin"],
        "connections": {"eu": {"api_key": "al-eu-KEY-machine"}, "us": {"api_key": "al-us-KEY-machine"}},
    },
}
Delivery = tuple[str, str]  # (connection, event_id): what the relay owes and the vendor takes
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


class Killed(BaseException):  # noqa: N818 - Lambda stopping the process: no `except Exception` catches it
    """The invocation dies here (its timeout, an out-of-memory, the host lost)."""


@dataclass
class Kill:
    """Kill the next invocation at its `at`-th AWS call (`after`: once the call is made, its answer lost), or
    right after the vendor processed its first request (`at` = 0)."""

    at: int
    after: bool
    calls: int = 0

    def hook(self, when: str, operation: str, client: object = None) -> None:
        if self.at <= 0:
            return
        if when == "before":
            self.calls += 1
        if self.calls == self.at and (when == "after") == self.after:
            self.at = -1
            raise Killed(f"killed {when} AWS call {self.calls} ({operation})")


ANSWERS = ["200", "200", "500", "401", "429", "400-some", "413-large", "slow", "silent"]
INVALID_SUFFIX = "7"  # "400-some": AppLovin refuses a batch holding an event whose id ends so (and that event)


class Pause:
    """Two vendor-function containers at once: the first stops before its `at`-th AWS call (any of its clients,
    from any of its threads) until the second has run its whole invocation, then goes on."""

    def __init__(self, at: int, clients: set[int]):
        self.at, self.clients, self.calls = at, clients, 0
        self.paused, self.resume = threading.Event(), threading.Event()

    def hook(self, when: str, operation: str, client: object = None) -> None:
        if when != "before" or id(client) not in self.clients:
            return
        self.calls += 1
        if self.calls == self.at:
            self.paused.set()
            self.resume.wait(60)


@dataclass
class Scripted:
    """The vendor: answers as the machine says; records every request it processed and what it accepted.
    `answer`: 200, 500, 401, 429 (Retry-After 1), "400-some" (AppLovin's whole batch refused for one invalid
    event), "413-large" (more than three events refused for size), "slow" (processed, the answer never read:
    a read timeout), "silent" (not processed: the connection times out). `only`: the one connection that
    answers so, the others answering 200 (one pixel's key refused, the others' fine)."""

    answer: str = "200"
    kill: Kill | None = None
    accepted: dict[Delivery, int] = field(default_factory=dict)  # (connection, event_id) -> 2xx answers
    requests: int = 0
    only: str | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        connection = PIXELS[request.url.params["pixel_id"]]
        ids = [e["dedupe_id"] for e in json.loads(request.content)["events"]]
        answer = self.answer if self.only in (None, connection) else "200"
        if answer == "silent":
            raise httpx.ConnectTimeout("connect timed out", request=request)
        status = {"400-some": 200, "413-large": 200, "slow": 200}.get(answer) or int(answer)
        if answer == "400-some" and any(i.endswith(INVALID_SUFFIX) for i in ids):
            status = 400
        if answer == "413-large" and len(ids) > 3:
            status = 413
        if 200 <= status < 300:
            for event_id in ids:
                key = (connection, event_id)
                self.accepted[key] = self.accepted.get(key, 0) + 1
        if self.kill is not None and self.kill.at == 0:
            self.kill.at = -1
            raise Killed("killed after the vendor processed the request")
        if answer == "slow":
            raise httpx.ReadTimeout("the answer did not come in time", request=request)
        headers = {"Retry-After": "1"} if status == 429 else {}
        return httpx.Response(status, text="OK" if status < 300 else "refused", headers=headers)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class DeliveryMachine(RuleBasedStateMachine):
    stack = None  # set by the test: template.yaml's resources in moto

    requests = Bundle("requests")
    tally: dict[str, int] = {}  # what a run went through (RELAY_MACHINE_RESULTS: written for the docs)

    def __init__(self) -> None:
        super().__init__()
        self._count("examples")
        self.clock = Clock()
        self.vendor = Scripted()
        self.kill: Kill | None = None
        self.sent_ids = 0
        self.example = "e"  # every example starts from an empty table and empty queues: the same ids each run
        self.answered: dict[int, int] = {}  # request number -> last status
        self.bodies: list[tuple[str, list[dict]]] = []  # (source, events) of each request
        self.accepted: set[Delivery] = set()  # what the ingest answered 202 for, per connection
        self.pool: list[dict] = []  # SQS messages received and not yet deleted or visible again
        self.doubts: dict[Delivery, int] = {}  # invocations that died after the vendor took it
        self.expired: set[Delivery] = set()  # owed when SQS's retention dropped them (horizon_passes)
        self.sqs = boto3.client("sqs")
        stack = self.stack
        self.queue = stack.physical["AppLovinQueue"]
        self.dlq = stack.physical["AppLovinDeadLetterQueue"]
        self.arn = stack.arns["AppLovinQueue"]
        for url in (self.queue, self.dlq):
            _empty(url)
        table = stack.physical["IdempotencyTable"]
        ddb = boto3.client("dynamodb")
        # a fresh table for each example (moto copies the whole table on every transaction: keep it small)
        for page in ddb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="id"):
            for item in page["Items"]:
                ddb.delete_item(TableName=table, Key={"id": item["id"]})
        ingest_env = stack.function_environment("IngestFunction")
        publisher = SnsPublisher(ingest_env["RELAY_TOPIC_ARN"], boto3.client("sns"))
        self.ingest = functools.partial(
            app_module("ingest").lambda_handler,
            function=IngestFunction(
                clock=self.clock,
                publisher=publisher,
                ledger=DeliveryLedger(INGEST, table, clock=self.clock),
                archiver=Archiver(publisher, inline=True),  # its PublishBatch in the invocation's order of calls
            ),
        )
        # the archive (SNS -> Firehose -> ArchiveFunction -> S3, relay_tools.local_archive) and `relay replay`
        _empty(self.firehose.queue_url)
        s3 = boto3.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.firehose.bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=self.firehose.bucket, Key=item["Key"])
        self.again_sent: dict[Delivery, set[str]] = {}  # what each `--again` replay queued, by its id
        self.again_gone: dict[Delivery, int] = {}  # of those, what SQS dropped undelivered (horizon_passes)
        # an id accepted anew once the ledger forgot its first acceptance (its horizon passed) is another event
        self.epoch = 0  # horizons passed
        self.accepted_in: dict[tuple[str, str], int] = {}  # (source, event_id) -> the epoch it was last accepted in
        self.anew: dict[Delivery, int] = {}  # acceptances of an id after the ledger forgot the one before
        self.replays = Path(self.replay_dir) / f"run{id(self)}"
        from relay.models.environment import VendorEnvironment, read_environment

        env = read_environment(
            VendorEnvironment,
            {
                **stack.function_environment("AppLovinFunction"),
                "RELAY_CONNECTIONS_FILE": os.environ["RELAY_CONNECTIONS_FILE"],
            },
        )
        self.function, self.vendor_handler = self._container(env)
        # a second container of the same function, for invocations that run at the same time as the first's
        self.other, self.other_handler = self._container(env)
        AwsFaults.current.clear()
        AwsFaults.current.killer = None

    def _container(self, env):
        """A VendorFunction with clients of its own (as a Lambda container has), one send thread (its AWS calls in
        a fixed order), the machine's clock and vendor."""
        from relay.delivery.deadletter import DeadLetterQueue
        from relay.delivery.retry import SourceQueue

        sqs, ddb = boto3.client("sqs"), boto3.client("dynamodb")
        function = VendorFunction(
            VENDOR,
            env,
            http_client=httpx.Client(transport=httpx.MockTransport(self.vendor)),
            ledger=DeliveryLedger.for_function(VENDOR, env, client=ddb, clock=self.clock),
            dead_letters=DeadLetterQueue(env.dlq_url, sqs),
            queue=SourceQueue(env.queue_url, sqs),
            secrets_client=boto3.client("secretsmanager"),
            sleep=lambda s: None,
            max_workers=1,
        )
        function.clock = self.clock
        function.rng = lambda: 0.0
        function.clients = {id(sqs), id(ddb), id(function._secrets_client)}
        return function, functools.partial(app_module(VENDOR).lambda_handler, function=function)

    # -- the client --------------------------------------------------------------------------------

    def _post(self, events: list[dict], kill: Kill | None, source: str = "default") -> int:
        raw = json.dumps({"events": events}).encode()
        self.clock.now += 1  # every request is signed anew (a replayed signature is refused)
        headers = {
            "content-type": "application/json",
            "x-relay-signature": sign(raw, SOURCES[source], int(self.clock.now)),
        }
        if source != "default":
            headers["x-relay-source"] = source
        AwsFaults.current.killer = kill
        try:
            response = self.ingest(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())
        except Killed:
            return 0
        finally:
            AwsFaults.current.killer = None
        status = response["statusCode"]
        if status == 400:  # only for events older than the ingest accepts (after the dedupe horizon passed)
            rejected = json.loads(response_body(response))["rejected"]
            assert {e["field"] for r in rejected for e in r["errors"]} == {"timestamp"}, rejected
            return 400
        assert status in (202, 503), (status, response_body(response))
        if status == 202:  # what the relay owes each pixel now (not what only AdRoll takes, until fixed)
            body = json.loads(response_body(response))
            for e in body["accepted"]:  # an id the ledger forgot, accepted anew: another event, delivered once more
                if not e.get("duplicate") and self.accepted_in.get((source, e["event_id"]), self.epoch) < self.epoch:
                    for connection in set(e.get("destinations", [])) & set(PIXELS.values()):
                        self.anew[(connection, e["event_id"])] = self.anew.get((connection, e["event_id"]), 0) + 1
                self.accepted_in[(source, e["event_id"])] = self.epoch
            self.accepted.update(
                (connection, e["event_id"])
                for e in body["accepted"]
                for connection in e.get("destinations", []) + e.get("queued_now", [])
                if connection in PIXELS.values()
            )
        return status

    @rule(
        target=requests,
        n=st.integers(1, 12),
        kill=st.none() | st.builds(Kill, st.integers(1, 6), st.booleans()),
        broken=st.booleans(),
        source=st.sampled_from(sorted(SOURCES)),
        again=st.booleans(),
    )
    def send(self, n: int, kill: Kill | None, broken: bool, source: str, again: bool) -> int:
        """A client's new request from `source`. `broken` (the default source's): without the user agent AppLovin
        requires (AdRoll takes them); `again`: ids used already (by the other source: ids are scoped per source; or
        by this one, before the horizon passed: then another event, which the relay delivers once more)."""
        broken = broken and source == "default"  # `us` reaches AppLovin only: a broken event would be refused
        start = self.sent_ids - n if again and self.sent_ids >= n else self.sent_ids
        events = [
            web_event(event_id=f"{self.example}{start + i}", timestamp=int(self.clock.now * 1000) - 5000)
            for i in range(n)
        ]
        if broken:
            for event in events:
                event["user"] = {k: v for k, v in event["user"].items() if k != "user_agent"}
        self.sent_ids = max(self.sent_ids, start + n)
        self.bodies.append((source, events))
        number = len(self.bodies) - 1
        self.answered[number] = self._post(events, kill, source)
        return number

    @rule(
        request=requests,
        order=st.randoms(use_true_random=False),
        split=st.booleans(),
        kill=st.none() | st.builds(Kill, st.integers(1, 6), st.booleans()),
        fixed=st.booleans(),
    )
    def resend(self, request: int, order, split: bool, kill: Kill | None, fixed: bool) -> None:
        """The same events again: as they were, reordered, or regrouped into two requests; `fixed`: with the user
        agent AppLovin needs (a broken event then reaches AppLovin too)."""
        source, events = self.bodies[request]
        if fixed:
            events = [web_event(**{**e, "user": web_event()["user"]}) for e in events]
            self.bodies[request] = (source, events)
        events = list(events)
        order.shuffle(events)
        parts = [events[: len(events) // 2], events[len(events) // 2 :]] if split and len(events) > 1 else [events]
        statuses = [self._post(part, kill, source) for part in parts if part]
        if all(s == 202 for s in statuses) or 400 in statuses:  # accepted, or too old to be ever again
            self.answered[request] = 202 if 400 not in statuses else 400

    # -- SQS and the vendor function -----------------------------------------------------------------

    @rule()
    def receive(self) -> None:
        got = self.sqs.receive_message(
            QueueUrl=self.queue,
            MaxNumberOfMessages=10,
            VisibilityTimeout=3600,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        self.pool += got

    @precondition(lambda self: self.pool)
    @rule(data=st.data())
    def second_copy(self, data) -> None:
        """At-least-once: SQS hands out a message that is in flight once more."""
        self.pool.append(dict(data.draw(st.sampled_from(self.pool))))

    @precondition(lambda self: self.pool)
    @rule(
        data=st.data(),
        answer=st.sampled_from(ANSWERS),
        only=st.none() | st.sampled_from(sorted(PIXELS.values())),
        kill=st.none() | st.builds(Kill, st.integers(0, 6), st.booleans()),
        budget_ms=st.sampled_from([30_000, 30_000, 6_000, 1_500]),  # the deadline may arrive mid-batch
    )
    def invoke(self, data, answer: str, only: str | None, kill: Kill | None, budget_ms: int) -> None:
        """One invocation on messages of the pool; `only`: the one connection answering `answer`."""
        picked = data.draw(st.lists(st.sampled_from(range(len(self.pool))), min_size=1, max_size=10, unique=True))
        messages = [self.pool[i] for i in picked]
        self.vendor.answer, self.vendor.kill, self.vendor.only = answer, kill, only
        AwsFaults.current.killer = kill if kill is not None and kill.at > 0 else None
        event = lambda_records(messages, self.arn, "us-east-1")
        before, faults = dict(self.vendor.accepted), len(AwsFaults.current.injected)
        clock = FakeClock(budget_ms)
        self.function.sleep = clock.sleep
        try:
            response = self.vendor_handler(event, FakeLambdaContext(clock))
        except (Killed, ClientError):  # killed, or failed on an AWS error it did not handle: Lambda retries
            self._in_doubt(before)
            return  # the batch comes back when its visibility timeout ends
        finally:
            AwsFaults.current.killer = None
            self.vendor.kill, self.vendor.only = None, None
        if len(AwsFaults.current.injected) > faults or answer == "slow":
            # a ledger write may have failed after the vendor took them; or the vendor took them and its answer
            # never came (a read timeout): the relay cannot know, and sends them again
            self._in_doubt(before)
        self._acknowledge(messages, response)

    def _acknowledge(self, messages: list[dict], response: dict) -> None:
        """What Lambda's event source does with an invocation's partial batch response: the messages it does not
        name are deleted (and leave the pool); those it names stay in flight until their visibility ends."""
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        done = {m["MessageId"] for m in messages if m["MessageId"] not in failed}
        for message in messages:
            if message["MessageId"] in done:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        self.pool = [m for m in self.pool if m["MessageId"] not in done]

    @precondition(lambda self: self.pool)
    @rule(data=st.data())
    def invoke_unusable(self, data) -> None:
        """An invocation whose configuration cannot be used at all (a setting the models refuse, deployed by
        mistake): every event fails as `config`, a transient failure kept on the retry schedule, and a message
        on its last receive or past the window is dead-lettered whole."""
        picked = data.draw(st.lists(st.sampled_from(range(len(self.pool))), min_size=1, max_size=10, unique=True))
        messages = [self.pool[i] for i in picked]
        self.function._load_config = _unusable_config
        try:
            response = self.vendor_handler(lambda_records(messages, self.arn, "us-east-1"), FakeLambdaContext())
        except ClientError:  # an AWS error it did not handle: Lambda retries the batch
            return
        finally:
            self.function._load_config = None
        self._acknowledge(messages, response)

    @precondition(lambda self: len(self.pool) >= 2)
    @rule(data=st.data(), at=st.integers(1, 12), answer=st.sampled_from(["200", "200", "500", "401"]))
    def two_at_once(self, data, at: int, answer: str) -> None:
        """Two invocations at the same time, in two containers sharing the circuit and the ledger: the first
        stops before its `at`-th AWS call, the second runs whole (probe, open, close, the redrive mark set and
        cleared), then the first goes on."""
        picked = data.draw(st.lists(st.sampled_from(range(len(self.pool))), min_size=2, max_size=10, unique=True))
        split = data.draw(st.integers(1, len(picked) - 1))
        first, second = [self.pool[i] for i in picked[:split]], [self.pool[i] for i in picked[split:]]
        self.vendor.answer = answer
        pause = Pause(at, self.function.clients)
        AwsFaults.current.killer = pause
        before, faults = dict(self.vendor.accepted), len(AwsFaults.current.injected)
        outcome: dict[str, object] = {}

        def run_first() -> None:
            try:
                outcome["response"] = self.vendor_handler(
                    lambda_records(first, self.arn, "us-east-1"), FakeLambdaContext()
                )
            except ClientError as exc:  # an AWS error it did not handle: Lambda retries the batch
                outcome["error"] = exc
            finally:
                pause.paused.set()

        thread = threading.Thread(target=run_first, daemon=True)
        thread.start()
        pause.paused.wait(60)
        try:
            response = self.other_handler(lambda_records(second, self.arn, "us-east-1"), FakeLambdaContext())
        except ClientError:
            response = None
        finally:
            pause.resume.set()
            thread.join(60)
            AwsFaults.current.killer = None
        assert not thread.is_alive(), "the first invocation did not finish"
        if len(AwsFaults.current.injected) > faults or response is None or "response" not in outcome:
            self._in_doubt(before)
        for batch, answered in ((first, outcome.get("response")), (second, response)):
            if answered is None:
                continue  # the batch comes back when its visibility timeout ends
            self._acknowledge(batch, answered)

    @rule()
    def horizon_passes(self) -> None:
        """The dedupe horizon passes (16 days): the ledger's records are past their time to live, and SQS has
        dropped what outlived its retention (4 days in the queue, 14 in the DLQ), events owed included. A
        client's resend is now older than the ingest accepts: refused, never delivered again."""
        self.clock.now += 16 * 86_400
        self.epoch += 1
        for url in (self.queue, self.dlq):
            _empty(url)
        self.pool.clear()
        gone = {e for e in self.accepted if not self.vendor.accepted.get(e)}
        self.expired |= gone
        self.accepted -= gone
        for key, replays in self.again_sent.items():  # an --again replay's messages outlived their retention too
            owed = (key in self.accepted) + len(replays) - self.again_gone.get(key, 0)
            self.again_gone[key] = self.again_gone.get(key, 0) + max(owed - self.vendor.accepted.get(key, 0), 0)

    def _in_doubt(self, before: dict[Delivery, int]) -> None:
        """The vendor took these events in an invocation that died, or whose ledger write failed, before its
        batch record: no protocol can know whether the vendor has them (docs/decisions/0008); they may be sent
        once more (AppLovin's dedupe_id absorbs that)."""
        for key, count in self.vendor.accepted.items():
            if count > before.get(key, 0):
                self.doubts[key] = self.doubts.get(key, 0) + 1

    @rule()
    def operator_redrives(self) -> None:
        """`relay dlq redrive`: every letter back to the queue, whatever its reason."""
        from relay_tools.queues import VendorQueues, redrive_letters

        redrive_letters(VendorQueues(self.sqs, self.queue, self.dlq), set())

    @precondition(lambda self: self.pool)
    @rule(answer=st.sampled_from(["500", "401"]))
    def outage_past_the_window(self, answer: str) -> None:
        """A day-long outage: the retry window runs out while the vendor keeps failing, and every message in
        flight is dead-lettered (`retries_exhausted`, a letter per event); a later healthy invocation
        redrives them all at once."""
        self.clock.now += 25 * 3600
        while self.pool:
            self.invoke_all(answer)

    @rule(seconds=st.sampled_from([1, 60, 3600, 25 * 3600]))  # 25 h: past the retry window
    def time_passes(self, seconds: int) -> None:
        """Leases and visibility timeouts run out: what was in flight is visible again."""
        self.clock.now += seconds
        for message in self.pool:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            except self.sqs.exceptions.ClientError:
                pass  # deleted meanwhile by another copy's invocation
        self.pool.clear()

    @rule(
        operation=st.sampled_from(
            ["PutItem", "GetItem", "UpdateItem", "TransactWriteItems", "SendMessageBatch", "PublishBatch"]
        ),
        throttled=st.booleans(),
    )
    def aws_fails_once(self, operation: str, throttled: bool) -> None:
        """The next call of `operation` fails: throttled, or an internal error."""
        if operation in ("SendMessageBatch", "PublishBatch"):
            code = "ThrottlingException" if throttled else "InternalError"
        else:
            code = "ProvisionedThroughputExceededException" if throttled else "InternalServerError"
        AwsFaults.current.fail(operation, code)

    # -- the archive and `relay replay` ------------------------------------------------------------------

    @rule()
    def archive_delivers(self) -> None:
        """Firehose hands what it buffered to the archive's transformation and S3."""
        self.firehose.flush()

    @rule(
        again=st.booleans(),
        which=st.integers(0, 1),
        killed_after=st.none() | st.integers(1, 3),
    )
    def replay(self, again: bool, which: int, killed_after: int | None) -> None:
        """`relay replay` of everything archived so far, to the AppLovin pixels: by default only what a pixel has
        not delivered; `again`: once more, once per replay (`which`: one of two replays, two identities); killed
        after its `killed_after`-th PublishBatch (its answer lost): the same replay run again resumes."""
        from datetime import UTC, datetime

        from relay_tools.archive_store import ArchiveStack
        from relay_tools.replay import Checkpoint, Replay, ReplayRequest

        self.firehose.flush()
        request = ReplayRequest(
            datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=which),
            datetime(2100, 1, 1, tzinfo=UTC),
            connections=tuple(sorted(PIXELS.values())),
            again=again,
        )
        archive = ArchiveStack(
            "machine", self.archive_clients, self.firehose.bucket, self.topic, self.table, self.config
        )
        checkpoint = Checkpoint(self.replays / f"{request.replay_id}.json", request.replay_id)
        now = datetime.fromtimestamp(self.clock.now, UTC)
        replay = Replay(request, archive, checkpoint, rate=1e9, now=now)
        publish, calls = replay.publisher.publish, [0]

        def published(messages):
            failed = publish(messages)
            if again:
                for message in messages:
                    if message.id not in failed:
                        for key in _carried(message.body):
                            self.again_sent.setdefault(key, set()).add(request.replay_id)
            calls[0] += 1
            if killed_after is not None and calls[0] == killed_after:
                raise Killed("the replay was killed after a PublishBatch")
            return failed

        replay.publisher.publish = published
        try:
            replay.run()
            self._count("replays")
        except (Killed, ClientError):  # killed, or stopped by an AWS error (`relay replay` says so): run it again
            self._count("replays_stopped")

    # -- invariants ---------------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        type(self).tally[name] = type(self).tally.get(name, 0) + n

    @invariant()
    def never_twice(self) -> None:
        self._count("checks")  # after every step, and once as an example starts
        owed = self.again_sent
        twice = {
            e: n
            for e, n in self.vendor.accepted.items()
            if n > 1 + self.doubts.get(e, 0) + len(owed.get(e, ())) + self.anew.get(e, 0)
        }
        assert not twice, f"delivered more than once (beyond each --again replay's once): {twice}"

    def teardown(self) -> None:
        """Quiescence: the vendor healthy, nothing killed or failing; the client resends what was not
        answered 202; SQS's timeouts run out until the queue is empty. Then every accepted event is at the
        vendor once, or in the DLQ with its reason."""
        AwsFaults.current.clear()
        AwsFaults.current.killer = None
        for number, (source, events) in enumerate(self.bodies):
            for _ in range(3):
                if self.answered.get(number) in (202, 400):  # accepted, or too old for the ingest
                    break
                self.clock.now += 60  # the lease of a killed ingest runs out
                self.answered[number] = self._post(events, None, source)
            assert self.answered[number] in (202, 400), f"request {number} never answered"
        for _ in range(40):
            self.time_passes(3600)
            self.receive()
            if not self.pool:
                break
            while self.pool:
                self.invoke_all()
        self.never_twice()
        letters = self._letters()
        self._count("accepted_events", len(self.accepted))
        self._count("delivered_events", sum(1 for e in self.accepted if self.vendor.accepted.get(e)))
        self._count(  # owed and not delivered: in the DLQ (a delivered event may have a letter too: a replay's send)
            "dead_lettered_events", sum(1 for e in self.accepted if e in letters and not self.vendor.accepted.get(e))
        )
        for key in sorted(self.accepted):
            if not self.vendor.accepted.get(key):
                assert key in letters, f"{key} neither delivered nor dead-lettered"
                assert all(letters[key]), f"{key} dead-lettered without a reason"
        self._count("replayed_again", sum(len(r) for r in self.again_sent.values()))
        for key, replays in sorted(self.again_sent.items()):  # each --again replay's once, delivered or a letter
            owed = (key in self.accepted) + len(replays) - self.again_gone.get(key, 0)
            assert self.vendor.accepted.get(key, 0) + len(letters.get(key, [])) >= owed, f"{key}: a replay lost"

    def invoke_all(self, answer: str = "200") -> None:
        """One invocation on the first ten messages of the pool. An AWS error the function does not handle (one
        `aws_fails_once` planned) fails the invocation: Lambda receives the whole batch again."""
        batch, self.pool = self.pool[:10], self.pool[10:]
        self.vendor.answer = answer
        self.function.sleep = lambda s: None
        before, faults = dict(self.vendor.accepted), len(AwsFaults.current.injected)
        try:
            response = self.vendor_handler(lambda_records(batch, self.arn, "us-east-1"), FakeLambdaContext())
        except ClientError:
            response = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in batch]}
        if len(AwsFaults.current.injected) > faults:
            self._in_doubt(before)  # a ledger write may have failed after the vendor took them
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for message in batch:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            else:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )

    def _letters(self) -> dict[Delivery, list[str]]:
        """The DLQ's letters by what they carry, (connection, event_id): a letter of one connection carries
        that connection's payload alone; a whole message (moved by SQS itself, or while the configuration was
        unusable) every connection's it holds."""
        out = {}
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.dlq, MaxNumberOfMessages=10, VisibilityTimeout=3600, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not got:
                return out
            for m in got:
                attrs = m.get("MessageAttributes", {})
                # a letter SQS moved itself (received MaxReceiveCount times without an invocation that
                # finished) has no relay_reason: `relay dlq list` says so, and it holds a whole bundle
                reason = attrs.get("relay_reason", {}).get("StringValue") or "moved by SQS after MaxReceiveCount"
                for key in _carried(m["Body"]):
                    out.setdefault(key, []).append(reason)


def _carried(body: str) -> list[Delivery]:
    """(connection, event_id) of every AppLovin payload a message body carries (a bundle's events, or one's)."""
    message = json.loads(body)
    events = message["events"] if isinstance(message, dict) and "bundle" in message else [message]
    return [(c, e["event_id"]) for e in events for c in e.get("payloads", {}) if c in PIXELS.values()]


def _unusable_config():
    from relay.models.config import ConfigError
    from relay.models.errors import FieldError

    raise ConfigError([FieldError("applovin.mode", "a value the models refuse")], "environment")


def _empty(url: str) -> None:
    """An example starts with the queue empty, messages in flight included, as a new queue would be. PurgeQueue
    is allowed once a minute (moto enforces it as AWS does), and ReceiveMessage cannot reach messages a
    function made invisible: the emulator's queue is emptied."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues[url.rsplit("/", 1)[1]]
    queue._messages.clear()
    queue._pending_messages.clear()


@pytest.fixture
def machine_stack(monkeypatch, tmp_path):
    from aws_lambda_powertools.utilities import parameters

    from relay_tools.stack import create_stack, load_template

    parameters.clear_caches()
    with mock_aws():
        stack = create_stack(
            load_template(ROOT / "template.yaml"),
            boto3.Session(region_name="us-east-1"),
            parameters={**STACK_PARAMETERS, "MaxReceiveCount": str(MAX_RECEIVES)},
            secrets=MACHINE_SECRETS,
        )
        path = tmp_path / "connections.toml"
        path.write_text(CONNECTIONS_FILE)
        monkeypatch.setenv("RELAY_CONNECTIONS_FILE", str(path))
        for logical in ("IngestFunction", "AppLovinFunction"):
            for key, value in stack.function_environment(logical).items():
                monkeypatch.setenv(key, value)
        from relay.models.config import config_from_env
        from relay.models.connections_file import shipped_connections
        from relay_tools.local_archive import LocalFirehose

        clients = {n: boto3.client(n) for n in ("sqs", "s3", "sns", "kms", "dynamodb")}
        DeliveryMachine.firehose = LocalFirehose(stack, clients, log=lambda line: None)
        DeliveryMachine.archive_clients = clients
        DeliveryMachine.topic = stack.physical["EventsTopic"]
        DeliveryMachine.table = stack.physical["IdempotencyTable"]
        env = stack.function_environment("IngestFunction")
        DeliveryMachine.config = config_from_env(env, credentials=False, shipped=shipped_connections(str(path)))
        DeliveryMachine.replay_dir = str(tmp_path)
        yield stack
    parameters.clear_caches()


def test_the_delivery_machine_keeps_its_promises_under_every_interleaving(machine_stack):
    DeliveryMachine.stack = machine_stack
    DeliveryMachine.TestCase.settings = settings(
        max_examples=300 if LONG else int(os.environ.get("MACHINE_EXAMPLES", 100)),
        stateful_step_count=40 if LONG else 20,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    from hypothesis.stateful import run_state_machine_as_test

    DeliveryMachine.tally = {}
    started = time.monotonic()
    run_state_machine_as_test(DeliveryMachine, settings=DeliveryMachine.TestCase.settings)
    results = os.environ.get("RELAY_MACHINE_RESULTS")
    if results:  # `make reliability`, after a run that broke no invariant: the figures docs/reliability.md shows
        tally = DeliveryMachine.tally
        run = {
            "max_examples": DeliveryMachine.TestCase.settings.max_examples,
            "max_steps": DeliveryMachine.TestCase.settings.stateful_step_count,
            "examples": tally.get("examples", 0),
            "steps": tally.get("checks", 0) - tally.get("examples", 0),
            **{k: tally.get(k, 0) for k in ("accepted_events", "delivered_events", "dead_lettered_events")},
            **{k: tally.get(k, 0) for k in ("replays", "replays_stopped", "replayed_again")},
            "seconds": round(time.monotonic() - started, 1),
        }
        Path(results).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")


def test_an_aws_error_during_a_day_long_outage_fails_the_invocation_and_loses_nothing(machine_stack):
    """What the machine found: a claim's PutItem failing while the outage rule drains the queue fails that
    invocation (Lambda receives the batch again), and the events are still delivered once at quiescence."""
    DeliveryMachine.stack = machine_stack
    DeliveryMachine.tally = {}
    machine = DeliveryMachine()
    try:
        machine.send(n=1, kill=None, broken=False, source="default", again=False)
        machine.send(n=1, kill=None, broken=False, source="default", again=False)
        machine.receive()
        machine.aws_fails_once(operation="PutItem", throttled=False)
        machine.outage_past_the_window(answer="500")
        machine.teardown()
    finally:
        AwsFaults.current.clear()
        AwsFaults.current.killer = None
    assert {("applovin", "e0"), ("applovin", "e1")} <= machine.accepted


def test_a_replay_sends_an_id_accepted_anew_once_and_not_as_its_forgotten_first_acceptance(machine_stack):
    """What the machine found (the steps of its example): events accepted, never delivered and forgotten when the
    horizon passed, then accepted anew under the same ids (another acceptance, another bundle at the vendor), are
    in the archive twice; a replay that took the first line's bundle sent two of them once more beside their new
    acceptance. A replay now checks each line's identity against the ingest's claim and leaves a superseded line
    out."""
    import random

    class Picks:  # what the rules' `data.draw` would draw
        def __init__(self, *values):
            self.values = list(values)

        def draw(self, strategy):
            return self.values.pop(0)

    DeliveryMachine.stack = machine_stack
    DeliveryMachine.tally = {}
    machine = DeliveryMachine()
    try:
        machine.aws_fails_once(operation="SendMessageBatch", throttled=False)
        machine.horizon_passes()
        first = machine.send(n=4, kill=Kill(6, False), broken=False, source="us", again=False)
        machine.resend(request=first, order=random.Random(0), split=False, kill=None, fixed=False)
        machine.receive()
        machine.second_copy(Picks(machine.pool[0]))
        machine.resend(request=first, order=random.Random(1), split=False, kill=Kill(3, True), fixed=False)
        machine.archive_delivers()
        machine.receive()
        machine.horizon_passes()
        machine.archive_delivers()
        machine.horizon_passes()
        machine.aws_fails_once(operation="PutItem", throttled=True)
        anew = machine.send(n=4, kill=None, broken=False, source="us", again=True)
        machine.resend(request=anew, order=random.Random(2), split=True, kill=None, fixed=True)
        machine.aws_fails_once(operation="TransactWriteItems", throttled=True)
        machine.aws_fails_once(operation="TransactWriteItems", throttled=False)
        machine.time_passes(seconds=60)
        machine.receive()
        machine.invoke_unusable(Picks([1, 0]))
        machine.replay(again=False, which=0, killed_after=None)
        machine.archive_delivers()
        machine.receive()
        machine.aws_fails_once(operation="UpdateItem", throttled=False)
        machine.send(n=12, kill=Kill(2, True), broken=False, source="us", again=False)
        machine.invoke(Picks([0]), answer="429", only=None, kill=None, budget_ms=30_000)
        machine.receive()
        machine.teardown()
    finally:
        AwsFaults.current.clear()
        AwsFaults.current.killer = None
    assert DeliveryMachine.tally.get("replays") == 1
    # each id's first acceptance was never delivered (SQS dropped it): its second is, once, and the replay left
    # the first's archive line out
    assert [machine.vendor.accepted.get(("applovin.us", f"e{i}"), 0) for i in range(4)] == [1, 1, 1, 1]
