"""`relay dlq list|redrive|purge` against the local stack (moto's server on loopback, resources from
template.yaml) and against a deployed stack's Outputs (moto CloudFormation)."""

from __future__ import annotations

import io
import json
import socket

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from relay.delivery.deadletter import NO_REASON, DeadLetter, DeadLetterQueue
from relay_tools.cli import main
from relay_tools.sqs_events import lambda_records
from relay_tools.stack import create_stack, load_template

from ..conftest import ROOT


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def server():
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    yield f"http://{host}:{port}"
    srv.stop()


@pytest.fixture
def local(server, tmp_path):
    """A fresh local stack (its own name) on the moto server, and a relay.toml pointing at it."""
    name = f"t{tmp_path.name[-12:].replace('_', '')}"
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
    stack = create_stack(load_template(ROOT / "template.yaml"), session, name=name, endpoint_url=server)
    config = tmp_path / "relay.toml"
    config.write_text(f'[local]\naws_endpoint = "{server}"\nstack_name = "{name}"\n')
    sqs = session.client("sqs", endpoint_url=server)
    return stack, str(config), sqs


def dead_letter(sqs, stack, event_ids: list[str], connection: str = "applovin") -> None:
    """Put messages into the AppLovin DLQ the way the vendor function does (for `connection`)."""
    source = stack.physical["AppLovinQueue"]
    for event_id in event_ids:
        sqs.send_message(
            QueueUrl=source,
            MessageBody=json.dumps({"event_id": event_id}),
            MessageAttributes={"destinations": {"DataType": "String.Array", "StringValue": '["applovin"]'}},
        )
    messages = []
    while len(messages) < len(event_ids):
        messages += sqs.receive_message(
            QueueUrl=source, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
    records = lambda_records(messages, stack.arns["AppLovinQueue"], "us-east-1")["Records"]
    letters = [
        DeadLetter(
            r,
            connection,
            json.loads(r["body"])["event_id"],
            "rejected",
            "applovin rejected the request (400)",
            400,
            "Invalid event",
        )
        for r in records
    ]
    assert DeadLetterQueue(stack.physical["AppLovinDeadLetterQueue"], sqs).send(letters) == set()
    for m in messages:
        sqs.delete_message(QueueUrl=source, ReceiptHandle=m["ReceiptHandle"])


def test_list_shows_reason_status_when_attempts_and_does_not_consume(local):
    stack, config, sqs = local
    dead_letter(sqs, stack, ["bad-1", "bad-2"])
    code, out, _ = run("dlq", "list", "--vendor", "applovin", "--config", config, "--json")
    assert code == 0
    rows = sorted((json.loads(line) for line in out.splitlines()), key=lambda r: r["event_id"])
    assert [r["event_id"] for r in rows] == ["bad-1", "bad-2"]
    assert rows[0]["reason"] == "applovin rejected the request (400)"
    assert rows[0]["status"] == "400" and rows[0]["outcome"] == "rejected" and rows[0]["attempts"] == "1"
    assert rows[0]["when"][:4] >= "2025"
    code, out, _ = run("dlq", "list", "--vendor", "applovin", "--config", config)
    assert code == 0 and out.startswith("2 message(s) in the applovin dead-letter queue")
    assert "    rejected: applovin rejected the request (400)" in out
    assert run("dlq", "list", "applovin", "--config", config) == (0, out, "")  # the vendor as a word
    code, _, err = run("dlq", "list", "applovin", "--vendor", "adroll", "--config", config)
    assert code == 2 and "name two vendors" in err


def test_redrive_one_then_all_back_to_the_source_queue(local):
    stack, config, sqs = local
    dead_letter(sqs, stack, ["r1", "r2", "r3"])
    code, out, _ = run("dlq", "redrive", "--vendor", "applovin", "--config", config, "--event-id", "r2")
    assert (code, out) == (0, "moved 1 message(s) back to the applovin queue\n")
    (message,) = sqs.receive_message(QueueUrl=stack.physical["AppLovinQueue"], MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert json.loads(message["Body"]) == {"event_id": "r2"}
    assert set(message["MessageAttributes"]) == {"destinations"}  # the relay_* reasons stay behind
    code, out, _ = run("dlq", "list", "--vendor", "applovin", "--config", config, "--json")
    assert sorted(json.loads(line)["event_id"] for line in out.splitlines()) == ["r1", "r3"]
    code, out, err = run("dlq", "redrive", "--vendor", "applovin", "--config", config, "--event-id", "nope")
    assert code == 1 and "not in the DLQ: nope" in err
    code, out, _ = run("dlq", "redrive", "--vendor", "applovin", "--config", config)
    assert out == "moved 2 message(s) back to the applovin queue\n"
    code, out, _ = run("dlq", "list", "--vendor", "applovin", "--config", config, "--json")
    assert out == ""


def test_purge_needs_yes(local):
    stack, config, sqs = local
    dead_letter(sqs, stack, ["p1"])
    code, _, err = run("dlq", "purge", "--vendor", "applovin", "--config", config)
    assert code == 2 and "add --yes to confirm" in err
    code, _, err = run("dlq", "purge", "--config", config, "--yes")
    assert code == 2 and "purge needs the vendor" in err
    dead_letter(sqs, stack, ["p2", "p3"])
    code, out, _ = run("dlq", "purge", "applovin", "--config", config, "--yes", "--event-id", "p2")
    assert (code, out) == (0, "deleted 1 message(s) from the applovin dead-letter queue\n")
    left = run("dlq", "list", "applovin", "--config", config, "--json")[1]
    assert sorted(json.loads(line)["event_id"] for line in left.splitlines()) == ["p1", "p3"]
    code, _, err = run("dlq", "purge", "applovin", "--config", config, "--yes", "--event-id", "p2")
    assert code == 1 and "not in the DLQ: p2" in err
    assert run("dlq", "list", "--vendor", "applovin", "--config", config, "--json")[1].count("p1") == 1
    assert run("dlq", "purge", "applovin", "--config", config, "--yes")[0] == 0
    assert run("dlq", "list", "--vendor", "applovin", "--config", config, "--json")[1] == ""


def test_local_stack_not_running_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "relay.toml"
    config.write_text(f'[local]\naws_endpoint = "http://127.0.0.1:{port}"\n')
    code, out, err = run("dlq", "list", "--vendor", "adroll", "--config", str(config))
    assert code == 2 and out == ""
    assert "cannot reach adroll's queues in the local stack (is `relay dev` running?)" in err
    assert "Traceback" not in err


CFN = {
    "Resources": {
        "AdRollQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "deployed-adroll"}},
        "AdRollDeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "deployed-adroll-dlq"}},
    },
    "Outputs": {
        "AdRollQueueUrl": {"Value": {"Ref": "AdRollQueue"}},
        "AdRollDeadLetterQueueUrl": {"Value": {"Ref": "AdRollDeadLetterQueue"}},
    },
}


def test_deployed_stack_outputs_locate_the_queues():
    with mock_aws():
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="relay-prod", TemplateBody=json.dumps(CFN)
        )
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.get_queue_url(QueueName="deployed-adroll-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=dlq, MessageBody='{"event_id": "old"}')  # moved by SQS redrive: no reason
        code, out, _ = run(
            "dlq", "list", "--vendor", "adroll", "--stack", "relay-prod", "--region", "us-east-1", "--json"
        )
        assert code == 0
        row = json.loads(out)
        assert row["event_id"] == "old"
        assert row["reason"] == NO_REASON
        code, _, err = run("dlq", "list", "--vendor", "applovin", "--stack", "relay-prod", "--region", "us-east-1")
        assert code == 2 and "stack relay-prod has no output AppLovinQueueUrl" in err
        code, _, err = run("dlq", "list", "--vendor", "adroll", "--stack", "missing", "--region", "us-east-1")
        assert code == 2 and "cannot reach adroll's queues in stack missing" in err


def test_list_covers_every_vendor_by_default_and_shows_the_vendors_answer(local):
    stack, config, sqs = local
    dead_letter(sqs, stack, ["all-1"])
    code, out, _ = run("dlq", "list", "--config", config, "--json")
    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["vendor"] == "applovin" and row["event_id"] == "all-1" and row["vendor_response"] == "Invalid event"
    code, out, _ = run("dlq", "list", "--config", config)
    assert code == 0
    assert "1 message(s) in the applovin dead-letter queue" in out and "0 message(s) in the adroll" in out
    assert "    applovin answered: Invalid event" in out
    run("dlq", "purge", "--vendor", "applovin", "--config", config, "--yes")


def test_redrive_and_purge_need_a_vendor(local, capsys):
    _, config, _ = local
    code, _, err = run("dlq", "purge", "--yes", "--config", config)
    assert code == 2 and "purge needs the vendor" in err
    code, _, err = run("dlq", "redrive", "--config", config)  # or --connection, which names its vendor
    assert code == 2 and "redrive needs --vendor" in err


def test_list_and_redrive_one_connections_letters(local):
    stack, config, sqs = local
    dead_letter(sqs, stack, ["eu-1", "eu-2"], "applovin.eu")
    dead_letter(sqs, stack, ["us-1"], "applovin.us")
    dead_letter(sqs, stack, ["d-1"])
    code, out, _ = run("dlq", "list", "--connection", "applovin.eu", "--config", config, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted((r["event_id"], r["connection"]) for r in rows) == [
        ("eu-1", "applovin.eu"),
        ("eu-2", "applovin.eu"),
    ]
    code, out, _ = run("dlq", "list", "--connection", "applovin", "--config", config)
    assert out.startswith("1 message(s) of applovin in the applovin dead-letter queue")
    assert "  d-1  applovin  status=400" in out
    code, out, _ = run("dlq", "redrive", "--connection", "applovin.eu", "--config", config, "--event-id", "eu-2")
    assert (code, out) == (0, "moved 1 message(s) back to the applovin queue\n")
    code, out, _ = run("dlq", "redrive", "--connection", "applovin.us", "--config", config)
    assert out == "moved 1 message(s) back to the applovin queue\n"
    code, out, _ = run("dlq", "list", "--vendor", "applovin", "--config", config, "--json")
    assert sorted(json.loads(line)["event_id"] for line in out.splitlines()) == ["d-1", "eu-1"]
    with pytest.raises(SystemExit) as exc:  # purge empties a vendor's whole DLQ: it takes no --connection
        run("dlq", "purge", "--connection", "applovin.eu", "--config", config, "--yes")
    assert exc.value.code == 2
    code, _, err = run("dlq", "list", "--vendor", "adroll", "--connection", "applovin.eu", "--config", config)
    assert code == 2 and "not a connection of --vendor adroll" in err
