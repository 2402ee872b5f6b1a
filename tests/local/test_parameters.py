"""Template parameters the local stack honours as a deployed stack would: provisioned capacity for the table
and its index (TableCapacity), and the replay guard (ReplayGuard)."""

from __future__ import annotations

import json
import time

import boto3
import httpx

from relay.ingest.signing import sign
from relay_tools.config_file import load_config
from relay_tools.dev import LocalStack
from relay_tools.queues import LOCAL_CREDENTIALS

from .test_local_stack import SAMPLES, local_config, run, sandbox_requests, wait_for


def test_provisioned_capacity_and_the_replay_guard_as_parameters(tmp_path):
    config = local_config(tmp_path)
    parameters = {"TableCapacity": "provisioned", "TableMaxCapacity": "100", "ReplayGuard": "true"}
    stack = LocalStack(load_config(config), log=lambda _: None, parameters=parameters).start()
    try:
        ddb = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint, region_name="us-east-1", **LOCAL_CREDENTIALS)
        table = ddb.describe_table(TableName=stack.stack.physical["IdempotencyTable"])["Table"]
        assert table["BillingModeSummary"]["BillingMode"] == "PROVISIONED"
        throughput = table["ProvisionedThroughput"]
        assert (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]) == (5, 5)
        index = table["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]
        assert (index["ReadCapacityUnits"], index["WriteCapacityUnits"]) == (5, 5)
        assert stack.function_environment("IngestFunction")["RELAY_REPLAY_TABLE"] == table["TableName"]
        # the relay works on it: the sample reaches its vendor
        code, out, err = run("send", str(SAMPLES / "web_purchase.json"), "--config", config)
        assert code == 0, (out, err)
        event_id = json.loads((SAMPLES / "web_purchase.json").read_text())["event_id"]
        wait_for(
            lambda: any(
                r["status"] == 200 and any(e["dedupe_id"] == event_id for e in r["body"]["events"])
                for r in sandbox_requests(config, "applovin")
            )
        )
        # with the guard, the same signature twice: the second is refused as a replay
        raw = json.dumps({"events": [json.loads((SAMPLES / "lead.json").read_text())]}).encode()
        secret = load_config(config).ingest.secrets[0].get_secret_value()
        headers = {"content-type": "application/json", "x-relay-signature": sign(raw, secret, int(time.time()))}
        assert httpx.post(stack.ingest_url, content=raw, headers=headers).status_code == 202
        again = httpx.post(stack.ingest_url, content=raw, headers=headers)
        assert again.status_code == 401 and again.json()["reason"] == "signature_replayed"
    finally:
        stack.stop()


def test_by_default_the_table_is_on_demand_and_there_is_no_replay_guard(tmp_path):
    stack = LocalStack(load_config(local_config(tmp_path)), log=lambda _: None).start()
    try:
        ddb = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint, region_name="us-east-1", **LOCAL_CREDENTIALS)
        table = ddb.describe_table(TableName=stack.stack.physical["IdempotencyTable"])["Table"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert stack.function_environment("IngestFunction")["RELAY_REPLAY_TABLE"] == ""
    finally:
        stack.stop()
