"""The dependency-free clients in clients/: the shared signature test vectors, retries of a 503, exit
codes, and an end-to-end send to the local stack for each."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from relay.ingest.signing import sign, verify
from relay_tools.config_file import load_config
from relay_tools.dev import LocalStack

from ..conftest import ROOT
from .test_local_stack import free_port, local_config, sandbox_requests, wait_for

VECTOR_FILE = json.loads((ROOT / "clients" / "test-vectors.json").read_text(encoding="utf-8"))
VECTORS, GET_VECTORS = VECTOR_FILE["vectors"], VECTOR_FILE["get_vectors"]
RETRY_AFTER, EXCHANGES = VECTOR_FILE["retry_after_vectors"], VECTOR_FILE["retry_after_sends"]
CLIENTS = {
    "python": [sys.executable, str(ROOT / "clients" / "python" / "relay_client.py")],
    "node": ["node", str(ROOT / "clients" / "node" / "relay-client.mjs")],
    "shell": ["bash", str(ROOT / "clients" / "shell" / "relay-send.sh")],
    "go": [],  # built once per run (go_binary)
    "php": ["php", str(ROOT / "clients" / "php" / "relay-send.php")],
}
NEEDS = {"python": [], "node": ["node"], "shell": ["bash", "curl", "openssl"], "go": ["go"], "php": ["php"]}
SECRET = "client-test-secret"


def client(name: str) -> list[str]:
    missing = [tool for tool in NEEDS[name] if not shutil.which(tool)]
    if missing:
        pytest.fail(f"the {name} client needs {missing} on PATH (.ci/run installs golang-go and php-cli)")
    if name == "go" and not CLIENTS["go"]:
        CLIENTS["go"] = [go_binary()]
    return CLIENTS[name]


def go_binary() -> str:
    """`go build` of clients/go/cmd/relay-send into a temporary directory, once."""
    import os
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="relay-send-go-")) / "relay-send"
    env = {
        **os.environ,
        "GOCACHE": str(out.parent / "cache"),
        "GOPATH": str(out.parent / "path"),
        "GOFLAGS": "-mod=mod",
    }
    proc = subprocess.run(
        ["go", "build", "-o", str(out), "./cmd/relay-send"],
        cwd=ROOT / "clients" / "go",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return str(out)


def run(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*client(name), *args], capture_output=True, text=True, timeout=120, env=env)


def test_the_vectors_are_the_relays_own_signatures():
    for v in VECTORS:
        body = v["body"].encode("utf-8")
        assert sign(body, v["secret"], v["timestamp"]) == v["header"], v["name"]
        verify(body, v["header"], [v["secret"]], now=v["timestamp"])
    assert any(not v["body"].isascii() for v in VECTORS) and any(not v["secret"].isascii() for v in VECTORS)


@pytest.mark.parametrize("name", CLIENTS)
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_client_signs_the_test_vectors(name, vector, tmp_path):
    body = tmp_path / "body.json"
    body.write_bytes(vector["body"].encode("utf-8"))
    proc = run(
        name, "--secret", vector["secret"], "--timestamp", str(vector["timestamp"]), "--print-signature", str(body)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == vector["header"]


def test_the_get_vectors_are_the_relays_own_signatures():
    from relay.ingest.status import signed_message

    for v in GET_VECTORS:
        assert signed_message(v["event_id"]).decode() == v["signed"], v["name"]
        assert sign(v["signed"].encode(), v["secret"], v["timestamp"]) == v["header"], v["name"]
    assert any(not v["event_id"].isascii() for v in GET_VECTORS)


@pytest.mark.parametrize("name", CLIENTS)
@pytest.mark.parametrize("vector", GET_VECTORS, ids=[v["name"] for v in GET_VECTORS])
def test_every_client_signs_the_get_vectors(name, vector):
    args = ["--secret", vector["secret"], "--timestamp", str(vector["timestamp"]), "--print-signature"]
    proc = run(name, *args, "--status", vector["event_id"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == vector["header"]


class Scripted:
    """A loopback ingest that answers the scripted (status, headers, body) in turn and keeps what it got."""

    def __init__(self, answers: list[tuple[int, dict[str, str], dict]]):
        self.answers, self.received = list(answers), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers.items()), body))
                status, headers, answer = outer.answers.pop(0)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for key, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def body_file(tmp_path):
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"events": [{"event_id": "c-1", "name": "purchase"}]}))
    return path


@pytest.mark.parametrize("name", CLIENTS)
def test_a_503_is_resent_after_its_retry_after_signed_anew(name, body_file):
    accepted = {"accepted": [{"index": 0, "event_id": "c-1", "destinations": ["applovin"]}], "rejected": []}
    ingest = Scripted([(503, {"Retry-After": "0"}, {"error": "busy"}), (202, {}, accepted)])
    try:
        proc = run(name, "--url", ingest.url, "--secret", SECRET, str(body_file))
    finally:
        ingest.close()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == accepted
    assert len(ingest.received) == 2
    for headers, body in ingest.received:  # the exact bytes of the file, each send with a valid signature
        assert body == body_file.read_bytes()
        verify(body, headers["X-Relay-Signature"], [SECRET])


@pytest.mark.parametrize("vector", RETRY_AFTER, ids=[v["name"] for v in RETRY_AFTER])
@pytest.mark.parametrize("name", CLIENTS)
def test_every_client_waits_what_each_retry_after_asks(name, vector):
    """RFC 9110's Retry-After, as every client reads it: `--retry-wait VALUE --timestamp NOW` prints the wait."""
    value = vector["retry_after"] if vector["retry_after"] is not None else ""
    proc = run(name, "--secret", SECRET, "--retry-wait", value, "--timestamp", str(vector["now"]))
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip()) == vector["wait"], (vector, proc.stdout)


@pytest.mark.parametrize("exchange", EXCHANGES, ids=[e["name"] for e in EXCHANGES])
@pytest.mark.parametrize("name", CLIENTS)
def test_every_client_replays_the_retry_after_exchanges(name, exchange, body_file):
    """Whole exchanges against a loopback relay (waits capped at 0 s with --max-retry-wait): how many sends,
    each signed anew, and the exit code; every resend is announced on stderr with the Retry-After it read."""
    accepted = {"accepted": [{"index": 0, "event_id": "c-1", "destinations": ["applovin"]}], "rejected": []}
    bodies = {202: accepted, 400: {"accepted": [], "rejected": []}, 503: {"error": "busy", "not_enqueued": ["c-1"]}}
    answers = [
        (status, {"Retry-After": value} if value is not None else {}, bodies[status])
        for status, value in exchange["answers"]
    ]
    ingest = Scripted(answers)
    try:
        proc = run(name, "--url", ingest.url, "--secret", SECRET, "--max-retry-wait", "0", str(body_file))
    finally:
        ingest.close()
    assert (len(ingest.received), proc.returncode) == (exchange["sends"], exchange["exit"]), proc.stderr
    assert proc.stderr.count("503: sending again in 0 s") == exchange["sends"] - 1
    for headers, body in ingest.received:
        verify(body, headers["X-Relay-Signature"], [SECRET])


@pytest.mark.parametrize("name", CLIENTS)
def test_a_4xx_exits_1_and_says_which_events_were_refused(name, body_file):
    refused = {
        "accepted": [],
        "rejected": [{"index": 0, "event_id": "c-1", "errors": [{"field": "source", "message": "Field required"}]}],
    }
    ingest = Scripted([(400, {}, refused)])
    try:
        proc = run(name, "--url", ingest.url, "--secret", SECRET, str(body_file))
    finally:
        ingest.close()
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == refused
    assert proc.stderr.splitlines() == ["rejected events[0] c-1: source: Field required"]


@pytest.mark.parametrize("name", CLIENTS)
def test_every_client_lists_each_rejected_event_and_each_vendors_invalid_one_alike(name, body_file):
    """One line per rejected event and per vendor that found an accepted one invalid (vendors by name),
    naming every field, the same in every client (the shell client too: an awk reader of the answer), escapes
    decoded."""
    answer = {
        "accepted": [
            {"index": 0, "event_id": "c-1", "destinations": ["applovin"], "invalid": {
                "appsflyer": [{"field": "app_id", "message": "is required"}],
                "adroll": [{"field": "identifiers.first_party_cookie", "message": "is required: AdRoll needs it"}]}},
        ],
        "rejected": [
            {"index": 1, "event_id": "c-2", "errors": [
                {"field": "value", "message": "must be less than 10^15"},
                {"field": "currency", "message": '"EURO" is not ISO 4217 \u2014 caf\u00e9 \U0001f600'}]},
        ],
    }  # fmt: skip
    ingest = Scripted([(202, {}, answer)])
    try:
        proc = run(name, "--url", ingest.url, "--secret", SECRET, str(body_file))
    finally:
        ingest.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "rejected events[1] c-2: value: must be less than 10^15; "
        'currency: "EURO" is not ISO 4217 \u2014 caf\u00e9 \U0001f600',
        "invalid for adroll: events[0] c-1: identifiers.first_party_cookie: is required: AdRoll needs it",
        "invalid for appsflyer: events[0] c-1: app_id: is required",
    ]


PROGRAMS = {"python": "relay_client.py", "node": "relay-client.mjs", "shell": "relay-send.sh", "go": "relay-send",
            "php": "relay-send.php"}  # fmt: skip


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_client_prints_the_same_help_and_never_a_secrets_value(flag):
    import os

    env = {**os.environ, "RELAY_SECRET": "secret-from-the-environment", "RELAY_URL": "http://127.0.0.1:9/v1/events"}
    helps = {}
    for name in CLIENTS:
        proc = run(name, flag, env=env)
        assert (proc.returncode, proc.stderr) == (0, ""), name
        assert "secret-from-the-environment" not in proc.stdout, name
        helps[name] = proc.stdout.replace(PROGRAMS[name], "PROG")
    assert len(set(helps.values())) == 1, helps
    text = helps["python"]
    for option in ("--url", "--secret", "--source", "--status", "--print-signature", "--timestamp", "--max-retry-wait",
                   "--retry-wait", "--help"):  # fmt: skip
        assert f" {option}" in text, option
    for name in CLIENTS:  # an option no client has is refused alike
        proc = run(name, "--no-such-option", env=env)
        assert proc.returncode == 2 and "--no-such-option" in proc.stderr, name


@pytest.mark.parametrize("name", CLIENTS)
def test_an_unreachable_relay_exits_2_and_missing_arguments_are_named(name, body_file):
    proc = run(name, "--url", f"http://127.0.0.1:{free_port()}/v1/events", "--secret", SECRET, str(body_file))
    assert proc.returncode == 2 and "cannot reach" in proc.stderr
    proc = run(name, str(body_file), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "--secret" in proc.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config_path = local_config(tmp_path_factory.mktemp("clients"), "clients")
    config = load_config(config_path)
    local = LocalStack(config, log=lambda line: None).start()
    yield local, config_path, config.ingest.secrets[0].get_secret_value()
    local.stop()


@pytest.mark.parametrize("name", CLIENTS)
def test_every_client_delivers_an_event_through_the_local_stack(name, stack, tmp_path):
    local, config, secret = stack
    event = json.loads((ROOT / "events" / "samples" / "web_purchase.json").read_text())
    event_id = f"client-{name}-{uuid.uuid4().hex[:8]}"
    event["event_id"] = event_id
    body = tmp_path / "events.json"
    body.write_text(json.dumps({"events": [event]}))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "RELAY_URL": local.ingest_url, "RELAY_SECRET": secret}
    proc = run(name, str(body), env=env)
    assert proc.returncode == 0, proc.stderr
    (accepted,) = json.loads(proc.stdout)["accepted"]
    assert accepted["event_id"] == event_id and accepted["destinations"] == ["applovin", "adroll"]
    sent = lambda: [  # noqa: E731
        r for r in sandbox_requests(config, "applovin") if any(e["dedupe_id"] == event_id for e in r["body"]["events"])
    ]
    assert wait_for(sent)[0]["status"] == 200
    # what became of it: GET /v1/events/{event_id}, signed by the client; then an id the relay never saw
    proc = run(name, "--status", event_id, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["event_id"] == event_id
    outcome = lambda: json.loads(run(name, "--status", event_id, env=env).stdout)["vendors"]["applovin"]["outcome"]  # noqa: E731
    wait_for(lambda: outcome() == "delivered")
    unknown = run(name, "--status", f"never-{event_id}", env=env)
    assert unknown.returncode == 1 and "404" in unknown.stderr


def documented_commands() -> list[tuple[str, list[str]]]:
    """docs/clients.md's table: each client's directory and the commands of its `command` cell, in order."""
    text = (ROOT / "docs" / "clients.md").read_text()
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`clients/"):
            path = ROOT / cells[0].strip("`")
            rows.append((str(path if path.is_dir() else path.parent), re.findall(r"`([^`]+)`", cells[3])))
    return rows


def test_every_command_in_the_clients_page_runs_as_written(stack, tmp_path):
    """Each client's command from docs/clients.md, run in its directory as written (URL, SECRET and
    FILE.json filled in, the directory on PATH), sends an event the local stack accepts; the page's way of
    reading the signing secret prints the secret's value."""
    import os

    local, _, secret = stack
    rows = documented_commands()
    assert len(rows) == len(CLIENTS)
    go_env = {"GOCACHE": str(tmp_path / "gocache"), "GOPATH": str(tmp_path / "gopath"), "GOFLAGS": "-mod=mod"}
    for n, (directory, commands) in enumerate(rows):
        event = json.loads((ROOT / "events" / "samples" / "web_purchase.json").read_text())
        event["event_id"] = f"documented-{n}-{uuid.uuid4().hex[:8]}"
        body = tmp_path / f"events-{n}.json"
        body.write_text(json.dumps({"events": [event]}))
        env = {**os.environ, **go_env, "PATH": f"{directory}:{os.environ['PATH']}"}
        for command in commands:
            filled = command.replace("URL", local.ingest_url).replace("SECRET", secret).replace("FILE.json", str(body))
            proc = subprocess.run(
                filled, shell=True, cwd=directory, env=env, capture_output=True, text=True, timeout=300
            )  # noqa: S602
            assert proc.returncode == 0, (command, proc.stderr)
        assert json.loads(proc.stdout)["accepted"][0]["event_id"] == event["event_id"], commands
    (ROOT / "clients" / "go" / "relay-send").unlink(missing_ok=True)  # what `go build -o relay-send` made
    page = (ROOT / "docs" / "clients.md").read_text()
    reader = re.search(r"--output text \| (python3 -c '[^']+')", page).group(1)
    stored = json.dumps({"secret": "the-current-one", "previous": "an-older-one"})
    proc = subprocess.run(reader, shell=True, input=stored, capture_output=True, text=True, timeout=30)  # noqa: S602
    assert proc.stdout == "the-current-one\n"


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    """The local stack of relay.connections.example.toml: sources eu and us, a connection eu and us per vendor."""
    config_path = local_config(
        tmp_path_factory.mktemp("clients-regions"), "clients-regions", example="relay.connections.example.toml"
    )
    config = load_config(config_path)
    local = LocalStack(config, log=lambda line: None).start()
    yield local, config_path, config
    local.stop()


@pytest.mark.parametrize("name", CLIENTS)
def test_every_client_sends_and_reads_as_a_source(name, regions, tmp_path):
    """--source (or RELAY_SOURCE): the request signed with that source's secret and named in X-Relay-Source,
    so it reaches that source's connections; the GET of its status reads that source's event."""
    local, config, relay = regions
    event = json.loads((ROOT / "events" / "samples" / "web_purchase.json").read_text())
    event["event_id"] = event_id = f"source-{name}-{uuid.uuid4().hex[:8]}"
    body = tmp_path / "events.json"
    body.write_text(json.dumps({"events": [event]}))
    secret = relay.source("us").secrets[0].get_secret_value()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "RELAY_URL": local.ingest_url, "RELAY_SECRET": secret}
    proc = run(name, "--source", "us", str(body), env=env)
    assert proc.returncode == 0, proc.stderr
    (accepted,) = json.loads(proc.stdout)["accepted"]
    assert accepted["destinations"] == ["applovin.us", "adroll.us"]
    status = lambda: json.loads(run(name, "--status", event_id, env={**env, "RELAY_SOURCE": "us"}).stdout)  # noqa: E731
    wait_for(lambda: status()["vendors"]["applovin.us"]["outcome"] == "delivered")
    refused = run(name, str(body), env=env)  # us's secret without naming the source: no default source here
    assert refused.returncode == 1 and secret not in refused.stdout + refused.stderr
