"""The cost model behind `relay cost` and `make bench`: named prices, template facts, arithmetic."""

from __future__ import annotations

import io
import json

import pytest

from relay_tools import billed, cost
from relay_tools.cli import main


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
    # 100 events per request: 10 bundles of 10 (20 KB each) in one PublishBatch of 200 KB, billed as 4
    assert line(lines, "SNS PublishBatch") == pytest.approx(0.04 * cost.SNS_PER_MILLION_PUBLISH_REQUESTS)
    # one event per request: a PublishBatch per event (the model once counted one per ten events)
    assert line(cost.cost_per_million(1), "SNS PublishBatch") == pytest.approx(cost.SNS_PER_MILLION_PUBLISH_REQUESTS)
    # SQS per bundle of 10: a send, a tenth of a receive of 200 KB (4 billed) and a tenth of a delete
    assert line(lines, "SQS applovin") == pytest.approx((1 + 0.5) / 10 * cost.SQS_PER_MILLION_REQUESTS)
    # one event per request: a send per event; each request's message arrives alone, and a waiting receive
    # takes it (tests/local/test_billed.py measures this); a delete per invocation of ten
    assert line(cost.cost_per_million(1), "SQS applovin") == pytest.approx(2.1 * cost.SQS_PER_MILLION_REQUESTS)
    # relay.ledger at the vendors: one claim per message (a bundle of 10) and one record per invocation of
    # 10 messages; one event per request: one claim per event
    # 10 messages, plus the circuit's state read once per invocation (half a read unit)
    read = cost.CIRCUIT_READ_UNITS * cost.DYNAMODB_PER_MILLION_READ_UNITS
    assert line(lines, "DynamoDB adroll") == pytest.approx(0.11 * cost.DYNAMODB_PER_MILLION_WRITE_UNITS + 0.01 * read)
    assert line(cost.cost_per_million(1), "DynamoDB adroll") == pytest.approx(
        1.1 * cost.DYNAMODB_PER_MILLION_WRITE_UNITS + 0.1 * read
    )
    # the ingest: each event claimed once for all vendors, in a transaction (2 units each) when the request
    # holds several, by a PutItem (1 unit) when alone; per request the settling record, and the replay guard
    # when ReplayGuard=true (off by default)
    assert line(lines, "DynamoDB ingest") == pytest.approx(2.01 * cost.DYNAMODB_PER_MILLION_WRITE_UNITS)
    assert line(cost.cost_per_million(1), "DynamoDB ingest") == pytest.approx(2 * cost.DYNAMODB_PER_MILLION_WRITE_UNITS)
    guarded = cost.cost_per_million(1, replay_guard=True)
    assert line(guarded, "DynamoDB ingest") == pytest.approx(3 * cost.DYNAMODB_PER_MILLION_WRITE_UNITS)


def test_lambda_uses_the_template_memory_and_batch_sizes():
    memory, batches = cost.template_facts()
    assert batches == {"applovin": 10, "appsflyer": 5, "adroll": 10}  # messages of up to 10 events
    assert set(memory) == {"ingest", "applovin", "appsflyer", "adroll"}
    invocations = 1e6 / 50  # 5 messages of 10 events
    walls = cost.DEFAULT_VENDOR_WALL_MS["appsflyer"]
    ms = walls[10] + (walls[100] - walls[10]) * 40 / 90  # 50 events: between the measured 10 and 100
    gb_s = invocations * ms / 1000 * memory["appsflyer"] / 1024
    expected = invocations / 1e6 * cost.LAMBDA_PER_MILLION_REQUESTS + gb_s * cost.LAMBDA_ARM_PER_GB_SECOND
    assert line(cost.cost_per_million(100), "Lambda appsflyer") == pytest.approx(expected)


def test_invocation_duration_is_interpolated_between_measured_batches():
    walls = {1: 50.0, 10: 60.0, 100: 150.0}
    assert cost.invocation_ms(walls, 1) == 50.0
    assert cost.invocation_ms(walls, 55) == pytest.approx(105.0)
    assert cost.invocation_ms(walls, 200) == pytest.approx(300.0)  # beyond the largest: proportional


def test_the_message_size_the_model_assumes_covers_the_samples():
    """SNS and SQS bill bundles by size: the model's bytes per event hold the largest sample's message."""
    from relay.models.event import EventParseError, parse_event
    from relay.queued.message import queued_body
    from relay.queued.routing import Router
    from relay_tools.config_file import load_config

    from ..conftest import ROOT

    router = Router(load_config(ROOT / "relay.example.toml"))
    sizes = []
    for path in sorted((ROOT / "events" / "samples").glob("*.json")):
        try:
            event = parse_event(json.loads(path.read_text()), max_event_age_days=10_000)
        except EventParseError:  # the samples of refusals
            continue
        sizes.append(len(queued_body(event, router.route(event)).encode()))
    assert len(sizes) >= 5 and max(sizes) <= cost.QUEUED_BYTES_PER_EVENT, sizes


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


def test_an_outage_costs_the_receives_of_what_waits_on_the_retry_schedule():
    # the waits double from 21 s (on average) to 45 min: 8 receives in the first hour, 39 in a day
    assert cost.receives_in(1) == 8 and cost.receives_in(24) == 39
    hour = cost.outage_cost("applovin", 1)
    assert hour["receives_per_message"] == 8
    # a million events in messages of 10: 800,000 receives, 80,000 invocations of 10 messages
    sqs = (800_000 / 10 * 4 + 80_000) / 1e6 * cost.SQS_PER_MILLION_REQUESTS  # a receive of 200 KB bills as 4
    lam = 80_000 / 1e6 * cost.LAMBDA_PER_MILLION_REQUESTS + 80_000 * 0.05 * 0.5 * cost.LAMBDA_ARM_PER_GB_SECOND
    ddb = 80_000 * cost.CIRCUIT_READ_UNITS / 1e6 * cost.DYNAMODB_PER_MILLION_READ_UNITS
    assert hour["usd"] == pytest.approx(sqs + lam + ddb)
    day = cost.outage_cost("appsflyer", 24)
    assert day["usd"] > cost.outage_cost("applovin", 24)["usd"] > hour["usd"]  # AppsFlyer: batches of 5 messages
    assert day["usd"] < 2.0  # a day of outage costs less per million waiting events than delivering them


def test_the_journey_keeps_100_events_per_request_within_two_dollars_per_million():
    with_journey, without = cost.report(10_000_000, 100), cost.report(10_000_000, 100, journey=False)
    journeys = line(cost.cost_per_million(100), "DynamoDB journeys")
    assert with_journey["usd_per_million_events"] == pytest.approx(without["usd_per_million_events"] + journeys)
    assert 0 < journeys and with_journey["usd_per_million_events"] <= 2.00
    assert not any(x["item"] == "DynamoDB journeys" for x in without["lines"])


def test_journey_units_are_measured_on_the_relays_own_items():
    from relay_tools.journey_cost import ingest_journey_units, vendor_journey_units

    # one item per request or invocation, not per event: 100 events cost far fewer than 100 units
    assert 2 <= vendor_journey_units("applovin", 100) < 25
    assert vendor_journey_units("applovin", 100) > vendor_journey_units("applovin", 10)
    assert 1 <= ingest_journey_units(100) < 10  # it rides on the batch record the ingest writes anyway
    out = io.StringIO()
    assert main(["cost", "--events-per-month", "1000000", "--no-journey"], out, io.StringIO()) == 0
    assert "journeys off" in out.getvalue() and "DynamoDB journeys" not in out.getvalue()


def test_the_archive_cost_model_bounds_the_samples_sizes():
    """ARCHIVE_BYTES_PER_EVENT, LINE_BYTES_PER_EVENT and GZIP_RATIO (relay_tools.archive_cost) hold for every
    bundled sample: what the ingest puts in an archive message, the line the transformation writes, and the
    gzip of a hundred such lines."""
    import gzip
    import json
    from pathlib import Path

    from relay.archive.lines import archive_record
    from relay.archive.outgoing import Accepted, archive_messages
    from relay_tools import archive_cost

    from .test_archive import KnownKey

    samples = sorted((Path(__file__).parents[2] / "events" / "samples").glob("*.json"))
    lines = []
    for path in samples:
        event = json.loads(path.read_text())
        connections = ["applovin.eu", "appsflyer.eu", "adroll.eu"]
        ((message, _),) = archive_messages("eu", 1_765_000_000.0, [Accepted(event, connections, "ab" * 16)])[0]
        assert len(message.body) - len('{"archive":1,"source":"eu","accepted_at":1765000000.0,"events":[]}') <= (
            archive_cost.ARCHIVE_BYTES_PER_EVENT
        ), path.name
        data, _ = archive_record(message.body.encode(), KnownKey())
        assert len(data) <= archive_cost.LINE_BYTES_PER_EVENT, path.name
        lines.append(data)
    hundred = b"".join(
        lines[i % len(lines)].replace(b'"event_id":"', f'"event_id":"{i}-'.encode(), 1) for i in range(100)
    )
    assert len(gzip.compress(hundred)) <= archive_cost.GZIP_RATIO * len(hundred)
    per_request = {k: sum(line.usd_per_million for line in archive_cost.archive_cost(k)) for k in (1, 100)}
    assert per_request[100] < per_request[1]  # fewer, larger archive messages
    assert sum(line.usd_per_million for line in archive_cost.replay_cost()) > 0


def test_capacity_names_the_first_limit_and_what_each_scale_needs():
    from relay_tools import capacity

    one = capacity.report(1)
    rate = int(cost.template_default("ApiThrottlingRateLimit"))
    assert one["first_limit"].startswith("API throttling") and one["sustained"] == rate
    # 10x: the API's rate, and every limit below 10x the rate, must be raised; nothing above it is listed
    below = {r["limit"] for r in one["limits"] if r["events_per_second"] < rate * 10}
    assert set(one["scale"][10]) == below and one["scale"][10][one["first_limit"]] == f"{rate * 10:,} requests/s"
    hundred = capacity.report(100)
    api = next(r for r in hundred["limits"] if r["limit"].startswith("API throttling"))
    assert api["events_per_second"] == rate * 100
    assert hundred["sustained"] == min(r["events_per_second"] for r in hundred["limits"] if r["steady"])
    # the DynamoDB rows divide its limits by the model's write units per event
    units = sum(billed.per_event(100, batches=cost.template_facts()[1]).write_units.values())
    table = next(r for r in hundred["limits"] if r["limit"] == "DynamoDB table quota")
    assert table["events_per_second"] == pytest.approx(capacity.DYNAMODB_TABLE_WRITES / units)


def test_the_billed_units_are_what_the_cost_lines_price():
    units = billed.per_event(1, batches=cost.template_facts()[1])
    assert units.api_requests == 1 and units.write_units["ingest"] == 2  # a claim, the settling record
    assert units.write_units["applovin"] == pytest.approx(1.1)  # a claim per message, a record per 10
    lines = cost.cost_per_million(1)
    assert line(lines, "DynamoDB applovin") == pytest.approx(
        1.1 * cost.DYNAMODB_PER_MILLION_WRITE_UNITS
        + units.read_units["applovin"] * cost.DYNAMODB_PER_MILLION_READ_UNITS
    )


def test_provisioned_capacity_prices_each_unit_by_the_capacity_hour_auto_scaling_keeps_used():
    on_demand = cost.cost_per_million(100, capacity="on-demand")
    provisioned = cost.cost_per_million(100, capacity="provisioned")
    units = billed.per_event(100, batches=cost.template_facts()[1])
    assert cost.provisioned_utilization() == 0.70  # the template's TargetValue
    hour = 1e6 / (3600 * 0.70)  # unit-hours per million units at 70% used
    assert line(provisioned, "DynamoDB ingest") == pytest.approx(units.write_units["ingest"] * hour * 0.00065)
    assert line(provisioned, "DynamoDB applovin") == pytest.approx(
        (units.write_units["applovin"] * 0.00065 + units.read_units["applovin"] * 0.00013) * hour
    )
    # nothing but DynamoDB changes
    for a, b in zip(on_demand, provisioned, strict=True):
        assert a.item == b.item and (a.item.startswith("DynamoDB") or a.usd_per_million == b.usd_per_million)
    assert cost.report(1_000_000, 100)["capacity"] == "on-demand"  # the template's default


def test_the_minimum_provisioned_capacity_is_a_fixed_cost_only_when_provisioned(monkeypatch):
    from relay_tools import stack_cost

    line_ = next(x for x in stack_cost.per_stack() if x.item == "DynamoDB minimum capacity")
    assert line_.usd_per_month == 0 and "TableCapacity=provisioned: $5.69" in line_.basis
    monkeypatch.setattr(cost, "template_default", lambda name: "provisioned")
    line_ = next(x for x in stack_cost.per_stack() if x.item == "DynamoDB minimum capacity")
    # 5 write and 5 read units on the table and on its index, all month
    assert line_.usd_per_month == pytest.approx(730 * (10 * 0.00065 + 10 * 0.00013))


def test_cli_prices_either_capacity_mode_and_names_a_wrong_one(capsys):
    out = io.StringIO()
    args = ["cost", "--events-per-month", "1000000", "--events-per-request", "100", "--json"]
    assert main([*args, "--capacity", "provisioned"], out, io.StringIO()) == 0
    result = json.loads(out.getvalue())
    assert result["capacity"] == "provisioned" and result["usd_per_million_events"] < 1.25
    with pytest.raises(SystemExit) as exit_:  # argparse: the usage and the error on stderr, exit 2
        main([*args, "--capacity", "reserved"], io.StringIO(), io.StringIO())
    assert exit_.value.code == 2
    assert "argument --capacity: invalid choice: 'reserved'" in capsys.readouterr().err
