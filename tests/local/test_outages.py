"""Vendor outages through the whole local stack, time compressed (relay_tools.outage), short form.
`make reliability` runs the long form (1 h = 5 s) and renders both runs in docs/reliability.md."""

from __future__ import annotations

from relay_tools.cli import main
from relay_tools.outage import run_outage
from relay_tools.soak import EMAIL_DOMAIN, SECRET


def _no_secrets(text: str) -> None:
    for secret in (EMAIL_DOMAIN, SECRET, "soak-applovin-key", "soak-appsflyer-key", "soak-adroll-token"):
        assert secret not in text, secret


def test_a_day_of_vendor_outages_costs_no_event_and_few_requests(output):
    """AppsFlyer 503 for 6 h, AdRoll 401 for 2 h, AppLovin timing out for 1 h, traffic arriving throughout
    (1 h = 4 s): each valid event delivered exactly once, nothing left in the DLQs, and the requests made to
    a vendor while it was down within the circuit's budget (a send pool, the failures that open it, a probe
    per interval) — a bound that holds whatever traffic the machine manages, where their share of the
    waiting events (docs/reliability.md) depends on it."""
    report = run_outage(hour_seconds=4.0)
    print("\n".join(report.lines()))
    assert report.drained and report.ingest_errors == []
    assert set(report.outages) == {"appsflyer", "adroll", "applovin"}
    for vendor in report.outages:
        assert report.expected[vendor] > 0 and report.waited[vendor] > 0, vendor
        assert report.delivered[vendor] == report.expected[vendor], vendor
        assert report.duplicates[vendor] == 0 and report.lost[vendor] == 0, vendor
        assert report.dlq_left[vendor] == 0 and report.exhausted[vendor] == 0, vendor  # the window held
        assert report.requests_while_down[vendor] <= report.request_budget(vendor), vendor
    # AppsFlyer (a request per event) and AdRoll met their outages for sure; AppLovin's hour (4 s) may fall
    # between two of its invocations (they gather messages for up to 5 s)
    assert report.requests_while_down["appsflyer"] > 0 and report.requests_while_down["adroll"] > 0
    assert report.passed
    _no_secrets(output.text())


def test_an_outage_longer_than_the_window_is_redriven_automatically_and_delivered_once(output):
    """AdRoll refuses the credentials for 6 h with a 3 h window: the events that waited longest are
    dead-lettered as retries_exhausted, then moved back by the function once AdRoll answers, and delivered
    once; the DLQ ends empty without anyone touching it."""
    report = run_outage(hour_seconds=2.0, window_hours=3.0, outages={"adroll": ("401", 6.0)})
    print("\n".join(report.lines()))
    assert report.drained and report.ingest_errors == []
    assert report.exhausted["adroll"] > 0  # given up at the end of the window...
    assert report.delivered["adroll"] == report.expected["adroll"]  # ...and delivered after all
    assert report.duplicates["adroll"] == 0 and report.lost["adroll"] == 0 and report.dlq_left["adroll"] == 0
    assert report.passed
    text = output.text()
    assert "dead letters back to the adroll queue" in text
    _no_secrets(text)


def test_an_outage_longer_than_the_window_followed_by_silence_recovers_on_the_schedule(output):
    """Issue #24, item 7: traffic stops an hour into a 10 h AdRoll outage (1 h window): every event is
    dead-lettered hours before AdRoll answers again, and none arrives after. The scheduled run sends one dead
    letter back as the probe; its invocation redrives the rest; every event is delivered once and the DLQ ends
    empty."""
    report = run_outage(hour_seconds=2.0, window_hours=1.0, outages={"adroll": ("401", 10.0)}, traffic_hours=2.0)
    print("\n".join(report.lines()))
    assert report.drained and report.ingest_errors == []
    assert report.exhausted["adroll"] > 0
    assert report.delivered["adroll"] == report.expected["adroll"] > 0
    assert report.duplicates["adroll"] == 0 and report.lost["adroll"] == 0 and report.dlq_left["adroll"] == 0
    assert "scheduled recovery" in output.text()


def test_the_outage_cli_refuses_bad_arguments(capsys):
    assert main(["outage", "--outage", "adroll=500:2"]) == 2
    assert "KIND one of 503, 401, timeout" in capsys.readouterr().err
    assert main(["outage", "--outage", "acme=503:2"]) == 2
    assert main(["outage", "--outage", "adroll=503:0"]) == 2
    assert main(["outage", "--hour-seconds", "0"]) == 2
    assert main(["outage", "--traffic-hours", "0"]) == 2
    assert "--hour-seconds must be 0 to 60" in capsys.readouterr().err
