"""The archive, `relay replay`, `relay import` and `relay forget` through the local stack (docs/archive.md): the
real handlers, the archive's transformation writing to moto's S3, the vendor sandboxes counting what they get.

The stack runs relay.connections.example.toml: sources eu and us, for each vendor a connection eu and us."""

from __future__ import annotations

import csv
import gzip
import json
import time
from pathlib import Path

import boto3
import pytest

from relay.journey import decode
from relay_tools import importing
from relay_tools.config_file import load_config
from relay_tools.dev import LocalStack
from relay_tools.queues import LOCAL_CREDENTIALS

from ..conftest import web_event
from .test_local_stack import local_config, run, sandbox_requests, wait_for

SINCE = "2026-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    path = local_config(folder, "archive-regions", example="relay.connections.example.toml")
    local = LocalStack(load_config(path), log=lambda line: None).start()
    yield local, path, folder
    local.stop()


def now_ms() -> int:
    return int(time.time() * 1000)


def send(config: str, folder: Path, events: list[dict], source: str = "eu") -> dict:
    path = folder / f"send-{events[0]['event_id']}.json"
    path.write_text(json.dumps({"events": events}))
    code, out, err = run("send", str(path), "--source", source, "--config", config)
    assert code == 0, (out, err)
    return json.loads(out.split("\n", 1)[1])


def delivered(config: str, connection: str) -> list[str]:
    """The event ids the AppLovin sandbox of `connection` answered 200 for, one per delivery."""
    return [
        e["dedupe_id"]
        for r in sandbox_requests(config, "applovin")
        if r["connection"] == connection and r["status"] == 200
        for e in r["body"]["events"]
    ]


def replay(config: str, *args: str) -> dict:
    """`relay replay --json`, its checkpoint beside the configuration (never in the working directory)."""
    checkpoint = ["--checkpoint", str(Path(config).parent / f"replay-{abs(hash(args))}.json")]
    code, out, err = run(
        "replay", "--since", SINCE, "--config", config, "--json", "--rate", "10000", *checkpoint, *args
    )
    assert code == 0, (out, err)
    return json.loads(out)


def settle(local: LocalStack, config: str, connection: str, expected: dict[str, int]) -> None:
    """Wait until the sandbox of `connection` got each of these events as many times, then a little more for
    anything sent twice to show."""

    def done() -> bool:
        got = delivered(config, connection)
        return all(got.count(e) >= n for e, n in expected.items())

    wait_for(done, timeout=60)
    time.sleep(6)  # a batching window and more: a second copy would have been sent by now
    got = delivered(config, connection)
    assert {e: got.count(e) for e in expected} == expected


def test_replay_twice_sends_once_and_a_connection_added_later_gets_each_event_once(regions):
    local, config, folder = regions
    ids = [f"late-{i}" for i in range(3)]
    send(config, folder, [web_event(event_id=e, timestamp=now_ms()) for e in ids])
    settle(local, config, "applovin.eu", dict.fromkeys(ids, 1))
    local.archive.flush()
    first = replay(config, "--source", "eu")
    assert first["connections"]["applovin.eu"]["delivered"] == 3 and first["connections"]["applovin.eu"]["sent"] == 0
    assert replay(config, "--source", "eu")["connections"]["applovin.eu"]["sent"] == 0
    settle(local, config, "applovin.eu", dict.fromkeys(ids, 1))  # nothing sent again
    # the eu source may reach applovin.us from now on: the events it sent before go there once
    added = (
        Path(config)
        .read_text()
        .replace(
            'connections = ["applovin.eu", "appsflyer.eu", "adroll.eu"]',
            'connections = ["applovin.eu", "applovin.us", "appsflyer.eu", "adroll.eu"]',
        )
    )
    later = folder / "relay-added.toml"
    later.write_text(added)
    report = replay(str(later), "--source", "eu", "--event-id", ids[0], "--event-id", ids[1], "--event-id", ids[2])
    assert report["connections"]["applovin.us"] == {"sent": 3, "delivered": 0, "too_old": 0, "invalid": 0, "skipped": 0}
    assert report["connections"]["applovin.eu"]["delivered"] == 3
    settle(local, config, "applovin.us", dict.fromkeys(ids, 1))
    again = replay(str(later), "--source", "eu", "--event-id", ids[0], "--event-id", ids[1], "--event-id", ids[2])
    assert again["connections"]["applovin.us"]["sent"] == 0 and again["connections"]["applovin.us"]["delivered"] == 3
    settle(local, config, "applovin.us", dict.fromkeys(ids, 1))


def test_again_sends_once_per_replay_and_a_killed_replay_resumes(regions, monkeypatch, tmp_path):
    local, config, folder = regions
    ids = [f"lost-{i:02d}" for i in range(25)]
    for part in (ids[:9], ids[9:18], ids[18:]):  # three requests: three objects, three checkpoints
        send(config, folder, [web_event(event_id=e, timestamp=now_ms()) for e in part])
        time.sleep(1.5)
        local.archive.flush()
    settle(local, config, "applovin.eu", dict.fromkeys(ids, 1))
    args = ["--again", "--connection", "applovin.eu", "--ids-file", str(tmp_path / "ids.txt")]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    from relay.aws.sns import SnsPublisher

    publish, calls = SnsPublisher.publish, []

    def killed_after_two(self, messages):
        failed = publish(self, messages)
        calls.append(len(messages))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the replay is killed; SNS took what it published
        return failed

    monkeypatch.setattr(SnsPublisher, "publish", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        checkpoint = ["--checkpoint", str(Path(config).parent / f"replay-{abs(hash(tuple(args)))}.json")]
        run("replay", "--since", SINCE, "--config", config, "--json", "--rate", "10000", *checkpoint, *args)
    monkeypatch.setattr(SnsPublisher, "publish", publish)
    resumed = replay(config, *args)
    assert resumed["again"] is True
    settle(local, config, "applovin.eu", dict.fromkeys(ids, 2))  # once more each, killed or not
    rerun = replay(config, *args)
    assert rerun["connections"]["applovin.eu"]["sent"] == 0 and rerun["connections"]["applovin.eu"]["delivered"] == 25
    settle(local, config, "applovin.eu", dict.fromkeys(ids, 2))
    other = replay(config, *args, "--until", "2100-01-01T00:00:00Z")  # another replay: once more
    assert other["connections"]["applovin.eu"]["sent"] == 25
    settle(local, config, "applovin.eu", dict.fromkeys(ids, 3))


def test_an_import_of_1000_rows_reports_bad_rows_by_line_and_resumes_after_a_kill(regions, monkeypatch, tmp_path):
    local, config, _ = regions
    path = tmp_path / "crm.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Lead", "Amount", "Ip", "Agent", "Cookie", "Page", "Visitor"])
        for i in range(1000):
            amount = "abc" if i % 50 == 7 else f"{i}.50"
            cookie = f"{i:032x}-1741784485001"
            page = "https://eu.example.com/l"
            writer.writerow([f"crm-{i:04d}", amount, "203.0.113.9", "Mozilla/5.0", cookie, page, f"v-{i}"])
    args = ["import", str(path), "--config", config, "--source", "eu", "--rate", "100000", "--json"]
    args += ["--checkpoint", str(tmp_path / "import.json")]
    args += ["--map", "Lead=event_id", "--map", "Amount=value", "--map", "Ip=user.ip", "--map", "Agent=user.user_agent"]
    args += ["--map", "Cookie=vendor_ids.adroll.first_party_cookie", "--map", "Page=page_url"]
    args += ["--map", "Visitor=user.cookie_id"]
    args += ["--set", "source=web", "--set", "name=generate_lead", "--set", "currency=EUR"]
    args += ["--set", f"timestamp={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() - 86_400))}"]
    code, out, _ = run(*args, "--dry-run")
    report = json.loads(out)
    assert code == 1 and report["rows"] == 1000 and report["sent"] == 0 and not report["partial"]
    bad = [b["line"] for b in report["bad"]]
    assert bad == [i + 2 for i in range(1000) if i % 50 == 7]  # the header is line 1
    assert all(
        b["errors"] == ["value: must be a decimal number such as 12.34 (a JSON number or a string)"]
        for b in report["bad"]
    )
    client = importing.relay_client()
    sends = []

    class Killed:
        @staticmethod
        def send(*a, **kw):
            sends.append(1)
            answer = client.send(*a, **kw)
            if len(sends) == 4:
                raise KeyboardInterrupt  # killed after its 4th request was taken, before its checkpoint
            return answer

    monkeypatch.setattr(importing, "relay_client", lambda: Killed)
    with pytest.raises(KeyboardInterrupt):
        run(*args)
    monkeypatch.setattr(importing, "relay_client", lambda: client)
    code, out, _ = run(*args)
    report = json.loads(out)
    assert code == 1 and report["complete"] and report["resumed_from"] == 300 and report["sent"] == 980
    assert report["accepted"] == 680 and report["duplicates"] == 100 and not report["rejected"]
    good = [f"crm-{i:04d}" for i in range(1000) if i % 50 != 7]
    settle(local, config, "applovin.eu", dict.fromkeys(good, 1))
    code, out, _ = run(*args)
    assert json.loads(out)["sent"] == 980 and json.loads(out)["resumed_from"] == 980  # nothing left to send


def test_forget_leaves_no_trace_in_the_archive_the_journeys_or_relay_trace(regions):
    local, config, folder = regions
    person = {**web_event()["user"], "email": "grace@example.com", "phone": "+44 20 7946 0018"}
    send(config, folder, [web_event(event_id="gdpr-1", timestamp=now_ms(), user=person)])
    send(config, folder, [web_event(event_id="keep-1", timestamp=now_ms())])
    settle(local, config, "applovin.eu", {"gdpr-1": 1, "keep-1": 1})
    local.archive.flush()
    code, out, _ = run("trace", "gdpr-1", "--source", "eu", "--config", config)
    assert code == 0
    code, out, err = run("forget", "--email", "Grace@Example.com", "--config", config, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["events"] == [{"source": "eu", "event_id": "gdpr-1"}]
    assert report["journey_items"] >= 2 and report["claims_forgotten"] == 1
    s3 = local.clients["s3"]
    for item in s3.list_objects_v2(Bucket=local.archive.bucket).get("Contents", []):
        text = gzip.decompress(s3.get_object(Bucket=local.archive.bucket, Key=item["Key"])["Body"].read())
        assert b"gdpr-1" not in text
    assert b"keep-1" in b"".join(
        gzip.decompress(s3.get_object(Bucket=local.archive.bucket, Key=i["Key"])["Body"].read())
        for i in s3.list_objects_v2(Bucket=local.archive.bucket).get("Contents", [])
    )
    code, _, err = run("trace", "gdpr-1", "--source", "eu", "--config", config)
    assert code == 1 and "erased by relay forget" in err
    assert run("trace", "keep-1", "--source", "eu", "--config", config)[0] == 0
    ddb = boto3.Session(region_name="us-east-1", **LOCAL_CREDENTIALS).client(
        "dynamodb", endpoint_url=local.aws_endpoint
    )
    table = local.stack.physical["IdempotencyTable"]
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            if "data" in item:
                assert "gdpr-1" not in json.dumps(decode(item["data"]["B"]))
    dry = replay(config, "--event-id", "gdpr-1", "--dry-run")
    assert dry["events"] == 0
    code, _, err = run("forget", "--email", "Grace@Example.com", "--config", config)
    assert code == 1  # nothing left of the person
