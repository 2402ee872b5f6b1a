"""The cost model cannot drift from the code: the relay runs through the local stack while botocore's event
hooks count every billed AWS call and DynamoDB's write and read units (relay_tools.metering), and the counts
per event are compared with the model's (relay_tools.billed) at 1 and 100 events per request."""

from __future__ import annotations

import json
import math
import time

import boto3
import pytest

from relay.queued.message import EVENTS_PER_MESSAGE
from relay_tools import billed
from relay_tools.config_file import load_config
from relay_tools.cost import template_facts
from relay_tools.dev import LocalStack
from relay_tools.journey_cost import ingest_journey_units, raw_events, vendor_journey_units
from relay_tools.metering import Meter
from relay_tools.queues import LOCAL_CREDENTIALS

from .test_local_stack import local_config, run, wait_for

LOGICAL = {"applovin": "AppLovinFunction", "adroll": "AdRollFunction", "appsflyer": "AppsFlyerFunction"}
QUEUES = {"applovin": "AppLovinQueue", "adroll": "AdRollQueue", "appsflyer": "AppsFlyerQueue"}
# each sample reaches two vendors with the example configuration (AppsFlyer takes app events only)
PHASES = {"web_purchase.json": ("applovin", "adroll"), "ios_app_purchase.json": ("appsflyer", "adroll")}


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("billed")
    config = local_config(folder)
    stack = LocalStack(load_config(config), log=lambda _: None).start()
    raw = {
        name: boto3.client(name, endpoint_url=stack.aws_endpoint, region_name="us-east-1", **LOCAL_CREDENTIALS)
        for name in ("dynamodb", "sqs")
    }
    table = stack.stack.physical["IdempotencyTable"]
    yield stack, config, raw, table, folder
    stack.stop()


def events(sample: str, n: int, tag: str) -> list[dict]:
    """The events relay_tools.journey_cost prices (a journey of copies would compress better than real
    traffic's), a minute old."""
    return raw_events(sample, n, tag, int(time.time() * 1000) - 60_000)


def drained(stack, raw) -> bool:
    for vendor in LOGICAL:
        url = stack.stack.physical[QUEUES[vendor]]
        attributes = raw["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if int(attributes["ApproximateNumberOfMessages"]) or int(attributes["ApproximateNumberOfMessagesNotVisible"]):
            return False
    return True


@pytest.mark.parametrize("per_request", [1, 100])
@pytest.mark.parametrize("sample", list(PHASES))
def test_billed_calls_and_capacity_per_event_are_the_cost_models(metered, per_request, sample):
    stack, config, raw, table, folder = metered
    vendors = PHASES[sample]
    n = 200 if per_request == 100 else 40
    meter = Meter(raw["dynamodb"], {table: [("journey_minute", "at")]}, stack._pools)
    meter.install(stack.clients)
    time.sleep(1.5)  # the pollers' receives under way (1 s long polls) end: each call from now on is whole
    meter.reset()
    try:
        batch = events(sample, n, f"{sample[:3]}{per_request}")
        for start in range(0, n, per_request):
            path = folder / f"send-{start}.json"
            path.write_text(json.dumps({"events": batch[start : start + per_request]}))
            code, out, err = run("send", str(path), "--config", config)
            assert code == 0, (out, err)
        wait_for(lambda: drained(stack, raw), timeout=120)
        time.sleep(6)  # the last invocations finish and their pollers delete
    finally:
        meter.uninstall(stack.clients)
    requests = n // per_request
    _, batches = template_facts()
    observed = {}
    for vendor in vendors:
        url = stack.stack.physical[QUEUES[vendor]]
        observed[vendor] = meter.received[url] / len(meter.invocations[LOGICAL[vendor]])
    model = billed.per_event(per_request, vendors, batches, messages_per_invocation=observed)
    messages = math.ceil(per_request / EVENTS_PER_MESSAGE) * requests
    report = {"per_request": per_request, "sample": sample, "observed_messages_per_invocation": observed}
    # the ingest: one invocation per request, one PublishBatch per 10 messages, its DynamoDB writes
    assert len(meter.invocations["IngestFunction"]) == requests == n * model.api_requests
    assert meter.calls[("IngestFunction", "sns", "PublishBatch")] == requests * math.ceil(messages / requests / 10)
    # SNS bills each 64 KB of a PublishBatch: the model's 2,000 bytes per event are an upper bound
    # (the archive's own message is published apart, priced by relay_tools.archive_cost)
    report["sns_billed"] = (meter.publish_billed["IngestFunction"] / n, model.sns_publish)
    assert meter.publish_billed["IngestFunction"] / n <= model.sns_publish
    ingest = meter.write_units["IngestFunction"] / n
    expected = model.write_units["ingest"] + ingest_journey_units(per_request) / per_request
    report["ingest_write_units"] = (ingest, expected)
    # each vendor: the messages its queue delivered, its invocations' DynamoDB writes and reads
    for vendor in vendors:
        logical = LOGICAL[vendor]
        url = stack.stack.physical[QUEUES[vendor]]
        assert meter.received[url] == messages, (vendor, meter.received[url], messages)
        invocations = len(meter.invocations[logical])
        per_invocation = round(observed[vendor] * min(per_request, EVENTS_PER_MESSAGE))
        journey = invocations * vendor_journey_units(vendor, max(1, per_invocation)) / n
        report[vendor] = {
            "write_units": (meter.write_units[logical] / n, model.write_units[vendor] + journey),
            "read_units": (meter.read_units[logical] / n, model.read_units[vendor]),
            "deletes": (meter.calls[(f"poller-{vendor}", "sqs", "DeleteMessageBatch")], invocations),
            # SNS's delivery of each message, the poller's receives that got messages, its deletes
            "sqs": (
                (meter.delivered_billed[url] + meter.receive_billed[url] + invocations) / n,
                model.sqs[vendor],
            ),
        }
    print(json.dumps(report, indent=1, default=str))
    assert ingest == pytest.approx(expected, rel=0.1), report
    for vendor in vendors:
        (w, wm), (r, rm), (d, i) = (
            report[vendor]["write_units"],
            report[vendor]["read_units"],
            report[vendor]["deletes"],
        )
        assert w == pytest.approx(wm, rel=0.1) and r == pytest.approx(rm, rel=0.1), report
        assert d == i, report  # one DeleteMessageBatch per invocation: a batch of up to 10 messages
        # SQS requests: the model's 2,000 bytes per event bound the billed 64 KB chunks from above; the count
        # of deliveries, receives and deletes is the model's
        sqs, modelled = report[vendor]["sqs"]
        assert modelled * 0.75 <= sqs <= modelled, report
