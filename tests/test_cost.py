"""The cost model behind `relay cost` and `make bench`: named prices, template facts, arithmetic."""

from __future__ import annotations

import io
import json

import pytest

from relay import cost
from relay.cli import main


@pytest.fixture(autouse=True)
def fixed_durations(monkeypatch, tmp_path):
    monkeypatch.setattr(cost, "BENCH_RESULTS", tmp_path / "none.json")  # the defaults, not a bench run


def line(lines, item):
    return next(x for x in lines if x.item == item).usd_per_million


def test_per_event_requests_are_priced_from_named_constants():
    lines = cost.cost_per_million(100)
    assert line(lines, "API Gateway HTTP API") == pytest.approx(
        10_000 / 1e6 * cost.API_GATEWAY_HTTP_PER_MILLION_REQUESTS
    )
    assert line(lines, "SNS PublishBatch") == pytest.approx(0.1 * cost.SNS_PER_MILLION_PUBLISH_REQUESTS)
    # one event per request: a PublishBatch per event (the model used to count one per ten events)
    assert line(cost.cost_per_million(1), "SNS PublishBatch") == pytest.approx(cost.SNS_PER_MILLION_PUBLISH_REQUESTS)
    assert line(lines, "SQS applovin") == pytest.approx(1.2 * cost.SQS_PER_MILLION_REQUESTS)
    # relay.ledger: one claim per event and one record per batch (100 events for AdRoll in the template)
    assert line(lines, "DynamoDB adroll") == pytest.approx(1.01 * cost.DYNAMODB_PER_MILLION_WRITE_UNITS)
    assert line(lines, "DynamoDB ingest") == pytest.approx(0.01 * cost.DYNAMODB_PER_MILLION_WRITE_UNITS)
    assert line(cost.cost_per_million(1), "DynamoDB ingest") == pytest.approx(cost.DYNAMODB_PER_MILLION_WRITE_UNITS)


def test_lambda_uses_the_template_memory_and_batch_sizes():
    memory, batches = cost._template_facts()
    assert batches == {"applovin": 100, "appsflyer": 50, "adroll": 100}
    assert set(memory) == {"ingest", "applovin", "appsflyer", "adroll"}
    invocations = 1e6 / batches["appsflyer"]
    gb_s = invocations * cost.DEFAULT_VENDOR_BATCH_MS["appsflyer"] / 1000 * memory["appsflyer"] / 1024
    expected = invocations / 1e6 * cost.LAMBDA_PER_MILLION_REQUESTS + gb_s * cost.LAMBDA_ARM_PER_GB_SECOND
    assert line(cost.cost_per_million(100), "Lambda appsflyer") == pytest.approx(expected)


def test_fewer_events_per_request_cost_more_and_totals_add_up():
    one, hundred = cost.report(10_000_000, 1), cost.report(10_000_000, 100)
    assert one["usd_per_million_events"] > hundred["usd_per_million_events"]
    assert hundred["usd_per_month"] == pytest.approx(hundred["usd_per_million_events"] * 10)
    assert hundred["usd_per_million_events"] == pytest.approx(sum(x["usd_per_million"] for x in hundred["lines"]))


def test_cli_prints_the_model_and_refuses_nonsense():
    out = io.StringIO()
    assert main(["cost", "--events-per-month", "5000000", "--json"], out, io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert data["events_per_request"] == 100 and data["prices_as_of"] == cost.PRICES_AS_OF
    err = io.StringIO()
    assert main(["cost", "--events-per-month", "0"], io.StringIO(), err) == 2
    assert "must be at least 1" in err.getvalue()
