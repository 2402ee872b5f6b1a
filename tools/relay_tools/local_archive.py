"""The archive's delivery on the local stack: what SNS, Amazon Data Firehose and its transformation do on AWS,
from the template's own settings (docs/archive.md).

moto's SNS does not deliver to Firehose subscriptions, and moto's Firehose neither runs a transformation nor
partitions. So the local stack subscribes a tap queue to the topic with the archive subscription's filter policy
and raw delivery (what SNS would hand the stream), and `LocalFirehose` hands what it reads to the real
ArchiveFunction handler as a Firehose transformation event, then writes each partition's lines gzip-compressed
to moto's S3 under the stream's Prefix (partition keys from the function, as Firehose's dynamic partitioning
does) with the stream's KMS key — the objects a deployed stack writes, after a buffer of `interval` seconds
rather than the stream's minutes.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from relay.archive.sealing import Sealer
from relay_tools.functions import archive_handler
from relay_tools.stack import Stack

STREAM, SUBSCRIPTION = "ArchiveStream", "ArchiveSubscription"


def has_archive(stack: Stack) -> bool:
    return STREAM in stack.resources and stack.condition(stack.resources[STREAM].get("Condition", "ArchiveOn"))


class LocalFirehose:
    def __init__(self, stack: Stack, clients: dict[str, Any], log: Callable[[str], None] = print):
        self.stack = stack
        self.sqs, self.s3, self.sns, self.log = clients["sqs"], clients["s3"], clients["sns"], log
        props = stack.resources[STREAM]["Properties"]["ExtendedS3DestinationConfiguration"]
        self.bucket = stack.physical[props["BucketARN"]["Fn::GetAtt"][0]]
        self.prefix, self.error_prefix = props["Prefix"], props["ErrorOutputPrefix"]
        self.key_arn = stack.resolve(props["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"])
        function = stack.resources["ArchiveFunction"]["Properties"]["Environment"]["Variables"]
        self.handler = archive_handler(Sealer(str(stack.resolve(function["RELAY_ARCHIVE_KEY_ID"])), clients["kms"]))
        self.name = f"{stack.name}-{STREAM}"
        self.objects = 0
        self._lock = threading.Lock()
        self._tap()

    def _tap(self) -> None:
        """The queue standing in for the stream: subscribed as the archive's subscription is."""
        props = self.stack.resources[SUBSCRIPTION]["Properties"]
        self.queue_url = self.sqs.create_queue(QueueName=f"{self.stack.name}-ArchiveTap")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self.sns.subscribe(
            TopicArn=self.stack.resolve(props["TopicArn"]),
            Protocol="sqs",
            Endpoint=arn["QueueArn"],
            Attributes={
                "RawMessageDelivery": str(props.get("RawMessageDelivery", False)).lower(),
                "FilterPolicy": json.dumps(props["FilterPolicy"]),
                "FilterPolicyScope": props.get("FilterPolicyScope", "MessageAttributes"),
            },
        )

    def run(self, stop: threading.Event, interval: float) -> None:
        """Deliver every `interval` seconds until `stop` is set (the local stack's thread)."""
        while not stop.wait(interval):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - as Firehose retries, the next round delivers what is left
                self.log(f"archive    delivery error: {type(exc).__name__}")

    def flush(self) -> int:
        """Deliver what the tap holds now; returns how many archive messages were delivered."""
        with self._lock:
            done = 0
            while True:
                got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
                messages = got.get("Messages", [])
                if not messages:
                    return done
                self._deliver(messages)
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                )
                done += len(messages)

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        now = time.time()
        event = {
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": f"arn:aws:firehose:{self.stack.region}:123456789012:deliverystream/{self.name}",
            "region": self.stack.region,
            "records": [
                {
                    "recordId": m["MessageId"],
                    "approximateArrivalTimestamp": int(now * 1000),
                    "data": base64.b64encode(m["Body"].encode("utf-8")).decode(),
                }
                for m in messages
            ],
        }
        try:
            answer = self.handler(event, _Context())
        except Exception as exc:  # noqa: BLE001 - as Firehose after its retries: the records kept as received
            self.log(f"archive    transformation failed: {type(exc).__name__}")
            self._put(self._error_prefix(now), b"".join(self._error_record(r, exc, now) for r in event["records"]), now)
            return
        partitions: dict[str, list[bytes]] = {}
        for record in answer["records"]:
            if record["result"] != "Ok":  # Dropped: counted by the function, kept nowhere
                continue
            prefix = partition_prefix(self.prefix, record["metadata"]["partitionKeys"])
            partitions.setdefault(prefix, []).append(base64.b64decode(record["data"]))
        for prefix, parts in partitions.items():
            self._put(prefix, b"".join(parts), now)

    def _error_record(self, record: dict[str, Any], exc: Exception, now: float) -> bytes:
        """Firehose's record of a transformation that failed: the record's data as received."""
        failed = {
            "attemptsMade": 4,
            "arrivalTimestamp": record["approximateArrivalTimestamp"],
            "errorCode": "Lambda.FunctionError",
            "errorMessage": f"The Lambda function returned an error: {type(exc).__name__}",
            "attemptEndingTimestamp": int(now * 1000),
            "rawData": record["data"],
            "lambdaArn": _Context.invoked_function_arn,
        }
        return json.dumps(failed).encode() + b"\n"

    def _error_prefix(self, now: float) -> str:
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        prefix = self.error_prefix.replace("!{firehose:error-output-type}", "processing-failed")
        return re.sub(r"!\{timestamp:yyyy-MM-dd\}", day, prefix)

    def _put(self, prefix: str, data: bytes, now: float) -> None:
        """One object as Firehose names it: <stream>-<version>-<YYYY-MM-DD-HH-MM-SS>-<random>.gz"""
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d-%H-%M-%S")
        key = f"{prefix}{self.name}-1-{stamp}-{uuid.uuid4()}.gz"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=gzip.compress(data),
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=self.key_arn,
        )
        self.objects += 1


def partition_prefix(template: str, keys: dict[str, str]) -> str:
    """The stream's Prefix with the partition keys the transformation gave (Firehose's dynamic partitioning)."""
    return re.sub(r"!\{partitionKeyFromLambda:(\w+)\}", lambda m: keys[m.group(1)], template)


class _Context:
    function_name = "ArchiveFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ArchiveFunction"
    aws_request_id = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000
