"""The local stack (`relay dev`) with real parts: moto's server on loopback, the real handlers behind an
HTTP server and SQS pollers, the vendor sandboxes; driven through the `relay` CLI."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time

import boto3
import pytest

from relay.aws.sns import Message, SnsPublisher
from relay.models.event import parse_event
from relay_tools.cli import main
from relay_tools.config_file import load_config
from relay_tools.demo import run_demo
from relay_tools.dev import LocalStack, sam_local_env
from relay_tools.queues import LOCAL_CREDENTIALS
from relay_tools.stack import load_template

from ..conftest import NOW, ROOT, web_event

SAMPLES = ROOT / "events" / "samples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


def local_config(
    folder,
    stack_name: str = "s2s-relay-local",
    ports: dict[str, int] | None = None,
    example: str = "relay.example.toml",
) -> str:
    """An example configuration with its local stack on `ports` (default: free ones) and its own name
    (moto's state is per process)."""
    ports = ports or {"aws": free_port(), "ingest": free_port(), "sandbox": free_port()}
    example = (ROOT / example).read_text().split("[local]")[0]
    path = folder / "relay.toml"
    path.write_text(
        example + f'[local]\naws_endpoint = "http://127.0.0.1:{ports["aws"]}"\nstack_name = "{stack_name}"\n'
        f"ingest_port = {ports['ingest']}\nsandbox_port = {ports['sandbox']}\n"
    )
    return str(path)


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    config_path = local_config(tmp_path_factory.mktemp("dev"))
    lines: list[str] = []
    stack = LocalStack(load_config(config_path), log=lines.append).start()
    yield stack, config_path, lines
    stack.stop()


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


def sandbox_requests(config: str, vendor: str) -> list[dict]:
    code, out, _ = run("sandbox", "requests", "--vendor", vendor, "--json", "--config", config)
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    """The local stack of relay.connections.example.toml: sources eu and us, a connection eu and us per vendor."""
    config_path = local_config(
        tmp_path_factory.mktemp("regions"), "regions-test", example="relay.connections.example.toml"
    )
    stack = LocalStack(load_config(config_path), log=lambda line: None).start()
    yield stack, config_path
    stack.stop()


def test_each_source_sends_to_its_own_connections_through_the_cli(regions):
    stack, config = regions
    code, out, _ = run("send", str(SAMPLES / "web_purchase.json"), "--source", "eu", "--config", config)
    assert code == 0 and out.startswith("HTTP 202")
    assert json.loads(out.split("\n", 1)[1])["accepted"][0]["destinations"] == ["applovin.eu", "adroll.eu"]
    code, out, _ = run("send", str(SAMPLES / "web_purchase.json"), "--source", "us", "--config", config)
    assert json.loads(out.split("\n", 1)[1])["accepted"][0]["destinations"] == ["applovin.us", "adroll.us"]

    def applovin() -> list[dict]:
        code, out, _ = run("sandbox", "requests", "--vendor", "applovin", "--json", "--config", config)
        return [json.loads(line) for line in out.splitlines()] if len(out.splitlines()) >= 2 else []

    rows = sorted(wait_for(applovin), key=lambda r: r["connection"])
    assert [(r["connection"], r["status"]) for r in rows] == [("applovin.eu", 200), ("applovin.us", 200)]
    assert rows[0]["url"] == "/applovin.eu/v1/event?pixel_id=eu-pixel"
    assert rows[1]["url"] == "/applovin.us/v1/event?pixel_id=us-pixel"
    assert [e["dedupe_id"] for e in rows[0]["body"]["events"]] == ["web-purchase-0001"]
    # the same event id from each source is each source's own: both delivered, and traced apart
    code, out, _ = run("trace", "web-purchase-0001", "--source", "us", "--config", config, "--json")
    assert code == 0 and sorted(json.loads(out)["vendors"]) == ["adroll.us", "applovin.us", "appsflyer.us"]
    # no source named, and no default one: the CLI says which to name
    code, _, err = run("send", str(SAMPLES / "web_purchase.json"), "--config", config)
    assert code == 2 and "--source: no source named 'default'" in err and "eu, us" in err


def test_resources_come_from_the_template(dev):
    stack, _, _ = dev
    sqs = stack.clients["sqs"]
    attrs = sqs.get_queue_attributes(QueueUrl=stack.stack.physical["AppsFlyerQueue"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert attrs["VisibilityTimeout"] == "360"  # 6 x AppsFlyerFunction's 60 s timeout, as in template.yaml
    template = stack.template["Parameters"]["MaxReceiveCount"]["Default"]
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == int(template) == 100
    # the vendor functions get their queue, and the [delivery] settings, from the template's wiring
    env = stack.function_env["AppsFlyerFunction"]
    assert env["RELAY_QUEUE_URL"] == stack.stack.physical["AppsFlyerQueue"]
    assert env["RELAY_DELIVERY_RETRY_WINDOW_HOURS"] == str(stack.config.delivery.retry_window_hours)
    subs = stack.clients["sns"].list_subscriptions()["Subscriptions"]
    filters = [
        json.loads(
            stack.clients["sns"].get_subscription_attributes(SubscriptionArn=s["SubscriptionArn"])["Attributes"][
                "FilterPolicy"
            ]
        )
        for s in subs
    ]
    policies = sorted(f["destinations"][0] for f in filters if "destinations" in f)
    assert policies == ["adroll", "applovin", "appsflyer"]
    # the archive's tap, subscribed as ArchiveSubscription is (relay_tools.local_archive)
    archive = stack.template["Resources"]["ArchiveSubscription"]["Properties"]["FilterPolicy"]
    assert [f for f in filters if "destinations" not in f] == [archive] == [{"archive": [{"exists": True}]}]
    assert stack.stack.event_source("AppLovinFunction").batch_size == 10  # messages of up to 10 events


def test_send_flows_to_the_sandboxes(dev):
    stack, config, lines = dev
    code, out, _ = run("send", str(SAMPLES / "lead.json"), "--config", config)
    assert code == 0 and out.startswith("HTTP 202")
    assert json.loads(out.split("\n", 1)[1])["accepted"][0]["destinations"] == ["applovin", "adroll"]
    got = wait_for(
        lambda: [
            r
            for r in sandbox_requests(config, "applovin")
            if any(e["dedupe_id"] == "web-lead-0001" for e in r["body"]["events"])
        ]
    )
    assert got[0]["status"] == 200
    wait_for(lambda: any(r["status"] == 200 for r in sandbox_requests(config, "adroll")))
    assert any(line.startswith("applovin  200") for line in lines)  # one printed line per vendor request
    code, out, _ = run("sandbox", "requests", "--config", config)
    assert code == 0 and "request(s)" in out


def test_appsflyer_sample_reaches_its_sandbox_under_one_kilobyte(dev):
    _, config, _ = dev
    assert run("send", str(SAMPLES / "android_add_to_cart.json"), "--config", config)[0] == 0
    got = wait_for(lambda: sandbox_requests(config, "appsflyer"))
    assert got[0]["status"] == 200 and got[0]["path"] == "/appsflyer/inappevent/com.example.app"
    assert len(json.dumps(got[0]["body"], separators=(",", ":")).encode()) <= 1024


def test_bad_requests_get_4xx_at_the_http_endpoint(dev):
    stack, config, _ = dev
    code, out, _ = run("send", str(SAMPLES / "invalid.json"), "--config", config)
    assert code == 1 and out.startswith("HTTP 400")
    import httpx

    response = httpx.post(stack.ingest_url, content=b'{"events": []}', headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and response.json()["error"] == "missing X-Relay-Signature header"
    assert response.json()["request_id"]


def test_send_to_nothing_is_a_clear_error(tmp_path):
    code, _, err = run(
        "send",
        str(SAMPLES / "lead.json"),
        "--url",
        f"http://127.0.0.1:{free_port()}/v1/events",
        "--config",
        str(ROOT / "relay.example.toml"),
    )
    assert code == 2 and "is `relay dev` running?" in err and "Traceback" not in err


def test_dlq_tooling_works_against_the_running_local_stack(dev):
    stack, config, _ = dev
    # an event that reached the queue but breaks AppLovin's rules (e.g. the config changed since ingest)
    broken = parse_event(web_event(event_id="no-ip", user={"cookie_id": "c"}), now=NOW)
    publisher = SnsPublisher(stack.stack.physical["EventsTopic"], stack.clients["sns"])
    assert publisher.publish([Message("0", broken.model_dump_json(exclude_none=True), ["applovin"])]) == []

    def listed():
        code, out, _ = run("dlq", "list", "--vendor", "applovin", "--config", config, "--json")
        return [json.loads(line) for line in out.splitlines() if json.loads(line)["event_id"] == "no-ip"]

    (row,) = wait_for(listed)
    assert row["outcome"] == "invalid" and row["reason"].startswith("user.ip: is required")


def test_sam_local_env_file_is_current_and_points_at_the_local_stack(dev):
    stack, _, _ = dev
    committed = json.loads((ROOT / "env.local.json").read_text())
    config = load_config(ROOT / "relay.example.toml")
    template = load_template(ROOT / "template.yaml")
    assert committed == sam_local_env(template, config), "env.local.json is stale: run `make sam-env`"
    for logical in ("IngestFunction", "AppLovinFunction", "AppsFlyerFunction", "AdRollFunction"):
        names = set(stack.stack.function_environment(logical))
        assert names <= set(committed[logical])  # the template's own env var names
    # same resource names as the running local stack (which runs on other ports here)
    port = stack.aws_endpoint.rsplit(":", 1)[1]
    local_dlq = stack.stack.physical["AdRollDeadLetterQueue"]
    assert (
        committed["AdRollFunction"]["RELAY_DLQ_URL"].replace("host.docker.internal:5000", f"127.0.0.1:{port}")
        == local_dlq
    )
    secret = committed["AdRollFunction"]["RELAY_VENDOR_SECRET_ARN"]
    session = boto3.Session(region_name="us-east-1", **LOCAL_CREDENTIALS)
    value = session.client("secretsmanager", endpoint_url=stack.aws_endpoint).get_secret_value(SecretId=secret)
    assert json.loads(value["SecretString"]) == {"token": "replace-with-server-access-token"}


def test_demo_runs_every_sample_to_an_outcome():
    lines: list[str] = []
    config = load_config(ROOT / "relay.example.toml")
    # moto's backends are per process: another stack name keeps this run apart from the `dev` fixture's
    config = config.model_copy(update={"local": config.local.model_copy(update={"stack_name": "demo-test"})})
    assert run_demo(config, out=lines.append) == 0
    text = "\n".join(lines)
    for sample in SAMPLES.glob("*.json"):
        assert sample.name in text
    assert "web-purchase-0001     applovin    delivered (HTTP 200)" in text
    assert "ios-purchase-0001     appsflyer   delivered (HTTP 200)" in text
    assert "invalid.json              invalid-0001          -           rejected by the ingest (400)" in text
    assert "no answer within" not in text


def test_demo_of_the_connections_example_delivers_each_source_to_its_own_connections():
    lines: list[str] = []
    config = load_config(ROOT / "relay.connections.example.toml")
    config = config.model_copy(update={"local": config.local.model_copy(update={"stack_name": "demo-connections"})})
    assert run_demo(config, out=lines.append) == 0
    rows = [line.split() for line in lines if line.startswith("web_purchase.json")]
    assert sorted((r[1][1:-1], r[3], " ".join(r[4:])) for r in rows) == [
        ("eu", "adroll.eu", "delivered (HTTP 200)"),
        ("eu", "applovin.eu", "delivered (HTTP 200)"),
        ("eu", "appsflyer.eu", "skipped: AppsFlyer's S2S in-app events API takes app events only (source is 'web')"),
        ("us", "adroll.us", "delivered (HTTP 200)"),
        ("us", "applovin.us", "delivered (HTTP 200)"),
        ("us", "appsflyer.us", "skipped: AppsFlyer's S2S in-app events API takes app events only (source is 'web')"),
    ]
    assert "no answer within" not in "\n".join(lines)


def test_the_local_stack_ends_a_vendor_invocation_past_its_deadline(tmp_path):
    """As Lambda does at a function's timeout: the invocation's next AWS call or vendor request, from its
    poller or its send pool, ends it; other threads (the ingest) are not concerned."""
    import threading
    import time

    from relay.models.config import config_from_mapping
    from relay_tools.dev import InvocationKilled, LocalStack

    stack = LocalStack(config_from_mapping({"ingest": {"secrets": ["s"]}}), log=lambda line: None)
    stack._deadlines["applovin"] = time.monotonic() - 1
    stack._deadlines["adroll"] = time.monotonic() + 60
    outcomes: dict[str, str] = {}

    def call(name: str) -> None:
        try:
            stack.check_deadline()
            outcomes[name] = "ran"
        except InvocationKilled:
            outcomes[name] = "ended"

    for name in ("poller-applovin", "applovin-send_3", "poller-adroll", "adroll-send_0", "ingest"):
        thread = threading.Thread(target=call, args=(name,), name=name)
        thread.start()
        thread.join()
    assert outcomes == {
        "poller-applovin": "ended",
        "applovin-send_3": "ended",
        "poller-adroll": "ran",
        "adroll-send_0": "ran",
        "ingest": "ran",
    }


def test_the_readmes_first_signed_event_works_with_curl_and_openssl(dev):
    """The README's curl + openssl snippet, run as written (only the port is this stack's), gets a 202 and
    reaches AppLovin and AdRoll; AppsFlyer is skipped with its reason."""
    import re
    import shutil
    import subprocess

    if not (shutil.which("curl") and shutil.which("openssl")):
        pytest.fail("curl and openssl are needed (the README's first event uses them)")
    stack, config, _ = dev
    section = (ROOT / "README.md").read_text().split("## Your first signed event", 1)[1]
    script = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    assert "http://127.0.0.1:3000/v1/events" in script
    script = script.replace("http://127.0.0.1:3000/v1/events", stack.ingest_url)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    (accepted,) = answer["accepted"]
    assert accepted["event_id"] == "readme-0001" and accepted["destinations"] == ["applovin", "adroll"]
    assert "app events only" in accepted["skipped"]["appsflyer"]
    for vendor in ("applovin", "adroll"):  # the order id reaches both (transaction_id, order_id)
        sent = lambda v=vendor: [r for r in sandbox_requests(config, v) if "readme-order-1" in json.dumps(r["body"])]  # noqa: E731
        assert wait_for(sent)[0]["status"] == 200, vendor


def test_send_new_id_resends_a_sample_as_a_new_event(dev):
    _, config, _ = dev
    sample = str(SAMPLES / "page_view.json")
    answers = []
    for _ in range(2):
        code, out, _ = run("send", sample, "--config", config, "--new-id")
        assert code == 0 and out.startswith("HTTP 202")
        answers.append(json.loads(out.split("\n", 1)[1])["accepted"][0])
    first, second = answers
    assert first["event_id"] != second["event_id"] and first["event_id"].startswith("web-pv-0001-")
    assert "duplicate" not in second  # without --new-id the second send would be answered duplicate


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
def test_relay_dev_stops_its_children_on_sigterm_and_sighup(tmp_path, signal_name):
    import signal
    import subprocess
    import sys

    ports = {"aws": free_port(), "ingest": free_port(), "sandbox": free_port()}
    config = local_config(tmp_path, "sig", ports)
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay_tools.cli", "dev", "--config", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:
            if "Ctrl-C stops" in line:
                break
        assert _listening(ports["aws"]) and _listening(ports["ingest"])
        proc.send_signal(getattr(signal, signal_name))
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert not _listening(ports["aws"]), "moto's server outlived relay dev"
    assert not _listening(ports["ingest"]) and not _listening(ports["sandbox"])


def test_relay_dev_refuses_a_port_another_process_holds_and_names_it(tmp_path):
    ports = {"aws": free_port(), "ingest": free_port(), "sandbox": free_port()}
    config = local_config(tmp_path, "sig", ports)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["aws"]))
        holder.listen()
        code, _, err = run("dev", "--config", config)
    assert code == 2
    assert f"port {ports['aws']} ([local] aws_endpoint) is in use by another process" in err


def test_the_restricted_example_config_delivers_the_restricted_lead_sample():
    """`make demo`'s second run: restricted_lead.json through relay.restricted.example.toml."""
    lines: list[str] = []
    config = load_config(ROOT / "relay.restricted.example.toml")
    assert config.applovin.mode == "restricted_lead_gen"
    config = config.model_copy(update={"local": config.local.model_copy(update={"stack_name": "demo-restricted"})})
    assert run_demo(config, out=lines.append, paths=[SAMPLES / "restricted_lead.json"]) == 0
    text = "\n".join(lines)
    assert re.search(r"restricted-lead-0001 +applovin +delivered \(HTTP 200\)", text), text
    assert "web_purchase.json" not in text


def test_the_local_stacks_moto_holds_its_memory_through_transactions(dev):
    """moto keeps every model object it made, and TransactWriteItems deep-copies the table per item: its
    server grew with the square of the ingest requests (relay_tools.moto_server takes both costs off). Thirty
    transactions of 100 items leave moto's server small, and a failed one still rolls back."""
    import uuid
    from pathlib import Path

    stack, _, _ = dev
    ddb, table = stack.clients["dynamodb"], stack.stack.physical["IdempotencyTable"]

    def rss_mb() -> int:
        return int(Path(f"/proc/{stack.moto.pid}/status").read_text().split("VmRSS:")[1].split()[0]) // 1024

    before = rss_mb()
    for _ in range(30):
        puts = [{"Put": {"TableName": table, "Item": {"id": {"S": f"mem-{uuid.uuid4()}"}, "status": {"S": "CLAIMED"}},
                         "ConditionExpression": "attribute_not_exists(id)"}} for _ in range(100)]  # fmt: skip
        ddb.transact_write_items(TransactItems=puts)
    grown = rss_mb() - before
    assert grown < 300, f"moto's server grew {grown} MB through 3,000 claims"  # tracked copies: about 4 GB
    taken = puts[0]["Put"]["Item"]["id"]["S"]
    fresh = {"Put": {"TableName": table, "Item": {"id": {"S": "mem-rolled-back"}}}}
    again = {"Put": {**puts[0]["Put"], "Item": {"id": {"S": taken}}}}
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[fresh, again])
    assert "Item" not in ddb.get_item(TableName=table, Key={"id": {"S": "mem-rolled-back"}})


def test_stopping_waits_for_its_threads_once_in_all_and_names_those_still_running(tmp_path):
    """`stop()` gives a batch in progress time to finish, one wait for all its threads together (not one
    per thread: Ctrl-C must stop `relay dev` soon whatever runs), then says which it stopped without."""
    lines: list[str] = []
    stack = LocalStack(load_config(local_config(tmp_path)), log=lines.append)
    stack.stop_seconds = 0.2
    held = threading.Event()
    for name in ("poller-applovin", "poller-adroll"):  # two batches that never end
        stack._spawn(held.wait, name)
    stack._spawn(lambda: stack._stop.wait(), "schedule-applovin")  # one that ends when told
    try:
        stack.stop()
    finally:
        held.set()
    assert lines == ["relay dev: poller-applovin, poller-adroll still running after 0.2 s: not waiting longer"]
