"""Faults and load through the whole local stack (HTTP -> ingest -> SNS -> SQS -> vendor
functions -> vendor double), short form. `make reliability` runs the long form (3,000 events, 2 x 60 s)."""

from __future__ import annotations

import json
import os

import pytest

from relay_tools.cli import main
from relay_tools.faults import FaultPlan
from relay_tools.load import local_load
from relay_tools.soak import EMAIL_DOMAIN, SECRET, VENDORS, run_soak

SOAK_EVENTS = int(os.environ.get("SOAK_EVENTS", "300"))


def test_fault_soak_delivers_every_valid_event_exactly_once(output):
    # every second invocation of each vendor function crashes, so that a short run has crashes for sure
    # (the long form: 10 % of invocations at random)
    plan = FaultPlan(crash=0.0, crash_every=2, seed=11)
    report = run_soak(events=SOAK_EVENTS, plan=plan, verbose=True)
    print("\n".join(report.lines()))
    assert report.drained and report.ingest_errors == []
    assert report.faults["5xx"] > 0 and report.faults["429"] > 0 and report.faults["crash"] >= len(VENDORS)
    assert report.faults["invalid"] > 0
    # what production brings: answers dripped past the deadline, a latency tail, events near the size limit,
    # a vendor turned off mid-run whose dead letters are redriven once it is back on
    assert report.faults["drip"] > 0 and report.faults["slow"] > 0 and report.big_events > 0
    assert report.disabled == "adroll" and report.disabled_dead_lettered > 0 and report.redriven > 0
    expected_total = 0
    for vendor in VENDORS:
        assert report.expected[vendor] > 0
        assert report.delivered[vendor] == report.expected[vendor], vendor  # every valid event...
        assert report.duplicates[vendor] == 0, vendor  # ...exactly once, counted by event_id at the double
        assert report.lost[vendor] == 0 and report.valid_dead_lettered[vendor] == 0, vendor
        # every invalid one in the DLQ with its reason, one copy each: the vendor's refusal, unless the faults
        # kept the bisection from isolating it within MaxReceiveCount receives (then retries_exhausted)
        assert report.invalid_in_dlq[vendor] == report.invalid_expected[vendor] == report.dlq_messages[vendor]
        assert 0 < report.invalid_refused[vendor] <= report.invalid_in_dlq[vendor]
        expected_total += report.expected[vendor] + report.invalid_expected[vendor]
    assert expected_total >= SOAK_EVENTS  # web events go to two vendors
    assert report.clear_text_emails == 0
    assert report.passed
    text = output.text()
    assert '"VendorRetries"' in text and "moved to the dead-letter queue" in text  # the capture did capture
    # no clear-text email, IP, signing secret or vendor credential in any log line or metric
    for secret in (EMAIL_DOMAIN, "203.0.113.7", SECRET, "soak-applovin-key", "soak-appsflyer-key", "soak-adroll-token"):
        assert secret not in text, secret


@pytest.mark.parametrize(("per_request", "clients"), [(1, 4), (100, 1)])  # as make reliability runs them
def test_load_from_a_second_process_gets_no_errors(per_request, clients):
    report = local_load(
        seconds=float(os.environ.get("LOAD_SECONDS", "3")), per_request=per_request, concurrency=clients
    )
    print(report.line())
    assert report.requests > 0 and report.errors == 0, report.error_examples
    assert report.statuses == {"202": report.requests}
    assert report.events == report.requests * per_request
    assert report.latency_ms["p50"] <= report.latency_ms["p99"] <= report.latency_ms["max"]


def test_load_and_soak_cli_refuse_bad_arguments(capsys):
    assert main(["load", "--per-request", "101", "--seconds", "1"]) == 2
    assert main(["load", "--local", "--url", "http://127.0.0.1:9/v1/events"]) == 2
    assert main(["soak", "--events", "0"]) == 2
    err = capsys.readouterr().err
    assert "--per-request 1 to 100" in err and "--local starts its own local stack" in err
    assert "--events must be at least 1" in err


def test_load_against_an_unreachable_url_reports_errors_and_exits_1(tmp_path, capsys):
    config = tmp_path / "relay.toml"
    config.write_text(f"[ingest]\nsecrets = [{json.dumps(SECRET)}]\n")
    code = main(["load", "--url", "http://127.0.0.1:9/v1/events", "--config", str(config), "--seconds", "0.5"])
    out = capsys.readouterr().out
    assert code == 1 and "ConnectError" in out


def test_invocations_that_always_fail_after_their_work_deliver_once_and_sqs_parks_the_messages():
    """Every invocation crashes after delivering: SQS redelivers each batch until MaxReceiveCount (5 here;
    the template's default, a safety net above the retry window, would take minutes), then moves it to the
    DLQ itself. The ledger makes every redelivery a duplicate, so each
    event reached its vendor exactly once; the DLQ holds the messages SQS moved, all of them delivered."""
    plan = FaultPlan(server_error=0, throttled=0, timeout=0, reset=0, crash=1.0)
    report = run_soak(events=12, per_request=12, plan=plan, invalid_rate=0, parameters={"MaxReceiveCount": "5"})
    print("\n".join(report.lines()))
    assert report.drained and report.faults["crash"] >= 5
    for vendor in VENDORS:
        assert report.delivered[vendor] == report.expected[vendor] > 0, vendor
        assert report.duplicates[vendor] == 0 and report.lost[vendor] == 0, vendor
        assert report.moved_by_sqs[vendor] == report.expected[vendor], vendor  # parked, each one delivered
        assert report.dlq_messages[vendor] == 0 and report.valid_dead_lettered[vendor] == 0, vendor
    assert report.passed
