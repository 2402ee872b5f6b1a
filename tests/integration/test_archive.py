"""The archive through the real parts, in moto: the ingest's archive message on SNS, the subscription's filter,
the real ArchiveFunction as Firehose's transformation (relay_tools.local_archive), the objects in S3 and
their sealed fields opened with KMS (docs/archive.md)."""

from __future__ import annotations

import gzip
import json

import boto3
import pytest

from relay.archive.reading import read_line, source_of_key
from relay.archive.sealing import Opener, SealError
from relay.ingest.signing import sign
from relay.models import pii
from relay_tools.local_archive import LocalFirehose

from ..conftest import NOW_MS, SECRETS, drain, web_event
from .test_hostile import Ingest

PERSON = {"email": "Ada@Example.com", "phone": "+1 650 555 1212", "first_name": "Ada", "last_name": "Lovelace"}


@pytest.fixture
def archived(aws_stack, monkeypatch):
    """The ingest of the stack, and its archive's delivery (what SNS, Firehose and the transformation do)."""
    clients = {n: boto3.client(n) for n in ("sqs", "s3", "sns", "kms")}
    firehose = LocalFirehose(aws_stack, clients, log=lambda line: None)
    return Ingest(aws_stack, monkeypatch), firehose


def objects(firehose) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=firehose.bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=firehose.bucket, Key=k)["Body"].read() for k in keys}


def test_every_accepted_event_is_archived_sealed_partitioned_and_encrypted_with_the_archive_key(aws_stack, archived):
    ingest, firehose = archived
    events = [web_event(event_id=f"o-{i}", user={**web_event()["user"], **PERSON}) for i in range(12)]
    events.append({"event_id": "bad"})  # refused: never archived
    status, body = ingest.post(json.dumps({"events": events}).encode())
    assert status == 202 and len(body["rejected"]) == 1
    assert ingest.archived == 1 and ingest.published == 2  # one archive message; two bundles for the vendors
    queued = drain(aws_stack.physical["AppLovinQueue"])
    assert all("archive" not in m["Body"][:20] for m in queued)  # the vendor queues never take it
    assert firehose.flush() == 1
    ((key, body_bytes),) = objects(firehose).items()
    assert key.startswith("events/source=default/dt=") and key.endswith(".gz")
    head = boto3.client("s3").head_object(Bucket=firehose.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == aws_stack.arns["ArchiveKey"]
    text = gzip.decompress(body_bytes)
    for clear in (b"Ada@Example.com", b"ada@example.com", b"650 555 1212", b"Lovelace", b"203.0.113.7"):
        assert clear not in text, clear
    lines = [read_line(raw, source_of_key(key)) for raw in text.splitlines()]
    assert sorted(a.event_id for a in lines) == sorted(f"o-{i}" for i in range(12))
    columns = boto3.client("glue").get_table(DatabaseName=aws_stack.physical["ArchiveDatabase"], Name="events")
    names = {c["Name"] for c in columns["Table"]["StorageDescriptor"]["Columns"]}
    assert all(set(a.line) <= names for a in lines)  # what Athena reads: every key of a line is a column
    assert {a.bundle for a in lines} == {json.loads(m["Body"])["bundle"] for m in queued}  # its identity
    opener = Opener(boto3.client("kms"))
    event = lines[0].event(opener)
    assert event == next(e for e in events if e["event_id"] == lines[0].event_id)
    assert lines[0].line["email_sha256"] == pii.hash_email("ada@example.com")
    with pytest.raises(SealError):  # another event's sealed fields do not open on this line
        opener.unseal(lines[1].line["sealed"], lines[0].event_id)


def test_a_resend_archives_the_events_again_under_the_bundle_their_claims_record(archived):
    """An ingest killed after publishing and before archiving is answered by its client's resend: what the
    resend finds queued already is archived (a replay sends an event archived twice once)."""
    ingest, firehose = archived
    raw = json.dumps({"events": [web_event(event_id=f"r-{i}") for i in range(3)]}).encode()
    assert ingest.post(raw)[0] == 202
    # the same signature again (ReplayGuard=false): a resend like any other, its events duplicates
    status, body = ingest.post(raw, signed=True)
    assert status == 202 and all(e.get("duplicate") for e in body["accepted"])
    status, body = ingest.post(
        raw, {"x-relay-signature": sign(raw, SECRETS["signing"], NOW_MS // 1000 - 1)}, signed=False
    )
    assert status == 202 and all(e.get("duplicate") for e in body["accepted"])
    firehose.flush()
    lines = [json.loads(raw) for body in objects(firehose).values() for raw in gzip.decompress(body).splitlines()]
    assert sorted(line["event_id"] for line in lines) == [f"r-{i}" for i in range(3) for _ in range(3)]
    assert len({line["bundle"] for line in lines}) == 1


def test_an_archive_message_sns_refuses_changes_nothing_in_the_answer_and_is_counted(archived, aws_faults, output):
    ingest, firehose = archived
    aws_faults.fail(
        "PublishBatch",
        "InternalError",
        when=lambda p: "archive" in p["PublishBatchRequestEntries"][0]["MessageAttributes"],
    )
    status, body = ingest.post(json.dumps({"events": [web_event(event_id="n-1")]}).encode())
    assert status == 202 and body["accepted"][0]["destinations"]
    assert firehose.flush() == 0
    text = output.text()
    assert '"message":"events not archived"' in text and '"ArchiveFailures":[1.0]' in text


def test_replay_and_forget_find_a_deployed_stack_from_its_outputs(aws_stack, archived, monkeypatch, tmp_path):
    """`--stack NAME`: the archive's bucket, the topic and the table from the stack's outputs, the routing from
    its IngestFunction's settings (moto's CloudFormation and Lambda standing in for the deployed stack)."""
    import io
    import time

    from relay_tools.apigw import http_api_event
    from relay_tools.cli import main
    from relay_tools.functions import ingest_handler

    from ..conftest import FakeLambdaContext

    _, firehose = archived
    # accepted now, by the clock the replay reads the ledger with (the other tests' ingest runs in 2025)
    handler = ingest_handler(clock=time.time)
    event = web_event(event_id="deployed-1", timestamp=int(time.time() * 1000), user={**web_event()["user"], **PERSON})
    raw = json.dumps({"events": [event]}).encode()
    headers = {"content-type": "application/json", "x-relay-signature": sign(raw, SECRETS["signing"], int(time.time()))}
    assert handler(http_api_event("POST", "/v1/events", headers, raw), FakeLambdaContext())["statusCode"] == 202
    firehose.flush()
    role = boto3.client("iam").create_role(RoleName="relay", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    env = aws_stack.function_environment("IngestFunction")
    template = {
        "Resources": {
            "IngestFunction": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.13",
                    "Handler": "app.lambda_handler",
                    "Role": role,
                    "Code": {"ZipFile": "def lambda_handler(event, context):\n    return None\n"},
                    "Environment": {"Variables": env},
                },
            }
        },
        "Outputs": {
            "ArchiveBucketName": {"Value": firehose.bucket},
            "EventsTopicArn": {"Value": aws_stack.physical["EventsTopic"]},
            "IdempotencyTableName": {"Value": aws_stack.physical["IdempotencyTable"]},
        },
    }
    boto3.client("cloudformation").create_stack(StackName="relay-prod", TemplateBody=json.dumps(template))
    monkeypatch.chdir(tmp_path)  # the replay's checkpoint
    out, err = io.StringIO(), io.StringIO()
    code = main(["replay", "--stack", "relay-prod", "--since", "2020-01-01T00:00:00Z", "--dry-run", "--json"], out, err)
    assert code == 0, err.getvalue()
    report = json.loads(out.getvalue())
    assert report["events"] == 1 and report["connections"]["applovin"]["sent"] == 1  # nothing delivered it yet
    out, err = io.StringIO(), io.StringIO()
    code = main(["forget", "--stack", "relay-prod", "--email", "ada@example.com", "--json"], out, err)
    assert code == 0, err.getvalue()
    assert json.loads(out.getvalue())["events"] == [{"source": "default", "event_id": "deployed-1"}]
    out, err = io.StringIO(), io.StringIO()
    assert main(["replay", "--stack", "missing", "--since", "2020-01-01T00:00:00Z"], out, err) == 2
    assert "relay:" in err.getvalue() and "Traceback" not in err.getvalue()
