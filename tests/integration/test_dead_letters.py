"""Dead letters that always move (issue #14): batched by SQS's count and size limits, attributes SQS can
carry, a vendor disabled while its messages wait, and a crash between a bundle's move and its batch record.
Vendor functions in-process on moto from template.yaml; tests/aws_limits.py makes moto as strict as AWS."""

from __future__ import annotations

import json
import time

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from relay.aws.ledger import DeliveryLedger
from relay.models.environment import VendorEnvironment, read_environment
from relay_tools.functions import vendor_handler

from ..conftest import FakeClock, FakeLambdaContext, drain, use_function_env, web_event
from .test_bundles import publish_bundle
from .test_vendor_functions import Vendor, publish, queued, receive


def letters_of(stack, logical: str) -> dict[str, dict[str, str]]:
    out = {}
    for m in drain(stack.physical[logical]):
        attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
        assert attrs["relay_event_id"] not in out, "moved twice"
        out[attrs["relay_event_id"]] = attrs
    return out


@pytest.mark.aws_limit_errors_expected
def test_the_limits_check_refuses_what_aws_would(aws_stack, aws_limits):
    sqs, ddb, sns = boto3.client("sqs"), boto3.client("dynamodb"), boto3.client("sns")
    dlq = aws_stack.physical["AdRollDeadLetterQueue"]
    big = [{"Id": str(i), "MessageBody": "x" * 190_000} for i in range(10)]
    with pytest.raises(ClientError, match="BatchRequestTooLong"):
        sqs.send_message_batch(QueueUrl=dlq, Entries=big)
    with pytest.raises(ClientError, match="InvalidMessageContents"):
        sqs.send_message(QueueUrl=dlq, MessageBody="no \uffff here")
    with pytest.raises(ClientError, match="ValidationException"):
        table = aws_stack.physical["IdempotencyTable"]
        ddb.put_item(TableName=table, Item={"id": {"S": "k"}, "v": {"S": "x" * 410_000}})
    entries = [{"Id": str(i), "Message": "m"} for i in range(11)]
    with pytest.raises(ClientError, match="TooManyEntriesInBatchRequest"):
        sns.publish_batch(TopicArn=aws_stack.physical["EventsTopic"], PublishBatchRequestEntries=entries)
    assert [op for op, _ in aws_limits] == [
        "sqs.SendMessageBatch",
        "sqs.SendMessage",
        "dynamodb.PutItem",
        "sns.PublishBatch",
    ]
    assert drain(dlq) == []  # nothing got through


def test_ten_big_dead_letters_are_moved_in_batches_sqs_takes(aws_stack, monkeypatch):
    """Ten ~190 KB events the vendor refuses: one SendMessageBatch of all ten would be refused whole."""
    use_function_env(monkeypatch, aws_stack, "AdRollFunction")
    events = [web_event(event_id=f"big{i}", properties={"blob": "x" * 190_000}) for i in range(10)]
    publish(aws_stack, "adroll", events)
    mock = Vendor(lambda r: httpx.Response(400, text="payload refused"))
    handler = vendor_handler("adroll", http_client=mock.client())
    response = handler(receive(aws_stack, "adroll", 10), FakeLambdaContext(FakeClock()))
    assert response == {"batchItemFailures": []}  # every one moved, none left to retry
    letters = letters_of(aws_stack, "AdRollDeadLetterQueue")
    assert sorted(letters) == [f"big{i}" for i in range(10)]
    assert {a["relay_reason"] for a in letters.values()} == {"adroll rejected the request (400)"}


def test_a_vendor_answer_sqs_cannot_carry_is_kept_readable_in_the_dead_letter(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    publish(aws_stack, "applovin", [web_event(event_id="odd")])
    mock = Vendor(lambda r: httpx.Response(422, text="bad\x00value \uffff here"))
    handler = vendor_handler("applovin", http_client=mock.client())
    assert handler(receive(aws_stack, "applovin", 1), FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    letters = letters_of(aws_stack, "AppLovinDeadLetterQueue")
    assert letters["odd"]["relay_vendor_response"] == "bad\ufffdvalue \ufffd here"


def test_a_vendor_disabled_while_its_messages_wait_dead_letters_them_with_the_reason(aws_stack, monkeypatch):
    use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    publish(aws_stack, "applovin", [web_event(event_id="w1"), web_event(event_id="w2")])
    monkeypatch.setenv("RELAY_APPLOVIN_ENABLED", "false")  # a stack update while the messages were queued
    mock = Vendor()
    handler = vendor_handler("applovin", http_client=mock.client())
    assert handler(receive(aws_stack, "applovin", 2), FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    assert mock.requests == []
    letters = letters_of(aws_stack, "AppLovinDeadLetterQueue")
    assert sorted(letters) == ["w1", "w2"]
    assert {a["relay_outcome"] for a in letters.values()} == {"disabled"}
    assert letters["w1"]["relay_reason"] == (
        "applovin is disabled in the relay's configuration (RELAY_APPLOVIN_ENABLED); enable it and redrive its "
        "DLQ to send these events"
    )


class Killed(BaseException):
    """Lambda ended the invocation."""


class DiesBeforeItsBatchRecord(DeliveryLedger):
    def settle(self, *args, **kwargs):
        raise Killed


def test_a_crash_after_a_bundles_dead_letter_move_neither_sends_nor_moves_it_again(aws_stack, monkeypatch):
    env = use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    bodies = [queued(web_event(event_id=f"e{i}")) for i in range(3)]

    def answer(request):
        sent = [e["dedupe_id"] for e in json.loads(request.content)["events"]]
        return httpx.Response(400 if "e1" in sent else 200, text="bad: e1")

    publish_bundle(aws_stack, "applovin", bodies)
    records = receive(aws_stack, "applovin", 1)
    mock = Vendor(answer)
    dying = DiesBeforeItsBatchRecord.for_function("applovin", read_environment(VendorEnvironment, env))
    with pytest.raises(Killed):
        vendor_handler("applovin", http_client=mock.client(), ledger=dying)(records, FakeLambdaContext(FakeClock()))
    assert sorted(letters_of(aws_stack, "AppLovinDeadLetterQueue")) == ["e1"]  # moved, then the crash
    # SQS delivers the bundle again once the dead invocation's lease is over
    later = DeliveryLedger.for_function(
        "applovin", read_environment(VendorEnvironment, env), clock=lambda: time.time() + 3600
    )
    mock.requests.clear()
    handler = vendor_handler("applovin", http_client=mock.client(), ledger=later)
    assert handler(records, FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    sent = [e["dedupe_id"] for b in mock.bodies() for e in b["events"]]
    assert "e1" not in sent  # not sent again
    assert letters_of(aws_stack, "AppLovinDeadLetterQueue") == {}  # and not moved a second time


def test_a_bundle_a_disabled_vendor_could_not_take_is_moved_whole_and_delivered_once(aws_stack, monkeypatch):
    """Disabled, the function moves the bundle as it is (not each event alone); the invocation then dies
    before SQS deletes the bundle, which comes back once the vendor is on again and is delivered. The DLQ
    copy redriven later is the same bundle: the ledger drops it, where lone copies of its events would
    have been sent a second time."""
    env = use_function_env(monkeypatch, aws_stack, "AppLovinFunction")
    publish_bundle(aws_stack, "applovin", [queued(web_event(event_id=f"e{i}")) for i in range(3)])
    records = receive(aws_stack, "applovin", 1)
    mock = Vendor()
    monkeypatch.setenv("RELAY_APPLOVIN_ENABLED", "false")
    handler = vendor_handler("applovin", http_client=mock.client())
    assert handler(records, FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    (letter,) = drain(aws_stack.physical["AppLovinDeadLetterQueue"])
    assert json.loads(letter["Body"]) == json.loads(records["Records"][0]["body"])  # the bundle, whole
    assert letter["MessageAttributes"]["relay_outcome"]["StringValue"] == "disabled"
    assert "relay_event_id" not in letter["MessageAttributes"]
    monkeypatch.setenv("RELAY_APPLOVIN_ENABLED", "true")
    # the invocation died before the delete: SQS delivers the bundle again
    handler = vendor_handler(
        "applovin",
        http_client=mock.client(),
        ledger=DeliveryLedger.for_function("applovin", read_environment(VendorEnvironment, env)),
    )
    assert handler(records, FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    # and an operator redrives the DLQ copy (a new SQS message with the same body)
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=aws_stack.physical["AppLovinQueue"], MessageBody=letter["Body"])
    assert handler(receive(aws_stack, "applovin", 1), FakeLambdaContext(FakeClock())) == {"batchItemFailures": []}
    sent = [e["dedupe_id"] for b in mock.bodies() for e in b["events"]]
    assert sorted(sent) == ["e0", "e1", "e2"]  # each once
