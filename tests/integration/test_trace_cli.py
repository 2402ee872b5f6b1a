"""`relay trace EVENT_ID` against a deployed stack's Outputs (moto CloudFormation), and its errors."""

from __future__ import annotations

import io
import json
import socket

import boto3
import httpx

from relay_tools.cli import main

from .test_journey import deliver, lead, post
from .test_vendor_functions import Vendor


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


def deployed(table: str) -> None:
    """A deployed stack, as far as `relay trace` looks at it: its IdempotencyTableName output."""
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "relay-prod-marker"}}},
        "Outputs": {"IdempotencyTableName": {"Value": table}},
    }
    boto3.client("cloudformation").create_stack(StackName="relay-prod", TemplateBody=json.dumps(template))


def test_trace_prints_the_journey_and_exits_0_or_1(aws_stack, monkeypatch):
    post(aws_stack, monkeypatch, [lead("order-2001")])
    deliver(aws_stack, monkeypatch, "applovin", 1, Vendor(lambda request: httpx.Response(200, text='{"ok":1}')))
    deployed(aws_stack.physical["IdempotencyTable"])
    code, out, err = run("trace", "order-2001", "--stack", "relay-prod", "--region", "us-east-1", "--json")
    assert code == 0, err
    journey = json.loads(out)
    assert journey["event_id"] == "order-2001" and journey["vendors"]["applovin"]["outcome"] == "delivered"
    assert journey["vendors"]["applovin"]["attempts"][0]["response"] == '{"ok":1}'
    assert journey["vendors"]["adroll"] == {
        "outcome": "pending",
        "reason": "queued for this vendor; no invocation has received it yet",
        "attempts": [],
        "request": None,
    }
    code, out, _ = run("trace", "order-2001", "--stack", "relay-prod", "--region", "us-east-1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("order-2001  accepted ")
    assert "  applovin   delivered (HTTP 200)" in lines
    assert any(line.startswith("    1. ") and "HTTP 200" in line and '{"ok":1}' in line for line in lines)
    assert "  appsflyer  skipped: no appsflyer event is mapped to 'generate_lead'" in lines
    code, out, err = run("trace", "never-sent", "--stack", "relay-prod", "--region", "us-east-1")
    assert code == 1 and out == "" and "no event 'never-sent' is known" in err


def test_trace_errors_are_one_line_and_exit_2(aws_stack, tmp_path):
    code, _, err = run("trace", "x", "--stack", "missing", "--region", "us-east-1")
    assert code == 2 and "cannot reach the journeys in stack missing" in err and "Traceback" not in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "relay.toml"
    config.write_text(f'[local]\naws_endpoint = "http://127.0.0.1:{port}"\n')
    code, _, err = run("trace", "x", "--config", str(config))
    assert code == 2 and "cannot read the journey of 'x'" in err and "Traceback" not in err
