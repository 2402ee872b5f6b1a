"""`relay dev` as a newcomer meets it: it starts again at once after Ctrl-C, says so and exits when moto's
server dies, shows each ingest request, names the function of every log line, and never runs lines
together or prints Powertools' "No application metrics" warning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from relay.ingest.signing import sign
from relay_tools.config_file import load_config

from .test_local_stack import free_port, local_config, run, wait_for

FUNCTIONS = {"IngestFunction", "AppLovinFunction", "AppsFlyerFunction", "AdRollFunction"}


class Dev:
    """`relay dev` in a child process, its stdout and stderr collected line by line."""

    def __init__(self, config: str, env: dict[str, str] | None = None, sigint_ignored: bool = False):
        """`sigint_ignored`: started as a non-interactive shell starts a command in the background (`cmd &`),
        SIGINT ignored (inherited across exec; Python then installs no KeyboardInterrupt handler)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay_tools.cli", "dev", "--config", config],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, ls=lines: ls.extend(s), daemon=True).start()
        wait_for(lambda: any("Ctrl-C stops" in line for line in self.out) or self.proc.poll() is not None, 60)
        assert self.proc.poll() is None, "".join(self.err)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.proc.kill()


def time_wait_on(port: int) -> bool:
    """Whether a TCP connection on 127.0.0.1:`port` is in TIME_WAIT (/proc/net/tcp state 06)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "06" for r in rows)


def post(url: str, secret: str, body: dict, key: str | None = None) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(raw, key or secret)}
    return httpx.post(url, content=raw, headers=headers, timeout=30)


def test_relay_dev_shows_each_request_names_each_lines_function_and_starts_again_at_once(tmp_path):
    ports = {"aws": free_port(), "ingest": free_port(), "sandbox": free_port()}
    config = local_config(tmp_path, "console", ports)
    secret = load_config(config).ingest.secrets[0].get_secret_value()
    url = f"http://127.0.0.1:{ports['ingest']}/v1/events"
    sample = json.loads((Path(__file__).parents[2] / "events" / "samples" / "web_purchase.json").read_text())
    dev = Dev(config, {"LOG_LEVEL": "INFO"})
    try:
        assert post(url, secret, {"events": [sample]}).status_code == 202
        refused = post(url, secret, {"events": [sample]}, key="not-the-secret")
        assert refused.status_code == 401
        assert httpx.get(f"http://127.0.0.1:{ports['ingest']}/v1/events/nobody", timeout=30).status_code == 401
        wait_for(lambda: any('"AppLovinFunction"' in line for line in dev.out), 60)  # its invocation logged
        code, listed, _ = run("refused", "--config", config, "--since", "1h", "--json")  # the running stack's
        assert code == 0
        assert [(r["request_id"], r["reason"]) for r in json.loads(listed)][-1] == (
            refused.json()["request_id"],
            "signature_mismatch",
        )
    finally:
        assert dev.stop() == 0
    out = "".join(dev.out)
    lines = out.splitlines()
    assert "ingest    202    1 event(s)  1 accepted, 0 rejected" in lines
    request_id = refused.json()["request_id"]
    assert f"ingest    401  signature_mismatch: {refused.json()['error']}  (request {request_id})" in lines
    assert any(line.startswith("ingest    401  GET /v1/events/nobody  signature_missing") for line in lines)
    assert "No application metrics" not in out + "".join(dev.err)
    logged = []
    for line in lines:  # whole lines: a console line or one JSON log record, never two run together
        if line.startswith("{"):
            logged.append(json.loads(line))
    assert logged, "LOG_LEVEL=INFO: the functions' records are on the console"
    for record in logged:
        if "function_name" in record:
            assert record["function_name"] in FUNCTIONS, record
            wrote = "IngestFunction" if record["message"] in ("ingest request", "status request") else None
            assert wrote is None or record["function_name"] == wrote, record
            if record["function_name"] != "IngestFunction":
                assert "correlation_id" not in record, record  # the ingest's request id is not theirs
    vendors = {r["function_name"] for r in logged if r.get("function_name") not in (None, "IngestFunction")}
    assert "AppLovinFunction" in vendors
    # Ctrl-C, then at once the same ports: those in TIME_WAIT are free to listen on again
    assert time_wait_on(ports["ingest"]) or time_wait_on(ports["aws"]), "the test made no TIME_WAIT"
    again = Dev(config)
    assert again.stop() == 0


def test_relay_dev_exits_with_a_clear_message_when_motos_server_dies(tmp_path):
    config = local_config(tmp_path, "moto-dies")
    dev = Dev(config)
    try:
        children = Path(f"/proc/{dev.proc.pid}/task/{dev.proc.pid}/children").read_text().split()
        (moto,) = [pid for pid in children if "moto_server" in Path(f"/proc/{pid}/cmdline").read_text()]
        os.kill(int(moto), signal.SIGKILL)
        assert dev.proc.wait(timeout=60) == 1
    finally:
        dev.proc.kill()
    time.sleep(0.2)  # the reader threads take the last lines
    err = "".join(dev.err)
    assert "moto's server (the local AWS" in err and "exited with code -9" in err
    assert "Traceback" not in err + "".join(dev.out)
    assert sum("poller error" in line for line in dev.out) <= 3  # said once, not logged until Ctrl-C


def test_relay_dev_stops_on_sigint_when_started_with_sigint_ignored(tmp_path):
    """A CI step or a script that starts `relay dev` in the background (`relay dev &`) hands it SIGINT ignored;
    `kill -INT` (what Ctrl-C sends) still stops it, cleanly."""
    dev = Dev(local_config(tmp_path, "sigint-ignored"), sigint_ignored=True)
    assert dev.stop() == 0
    wait_for(lambda: "stopped.\n" in dev.out, 10)  # its last line, once the reader thread has taken it
    assert "Traceback" not in "".join(dev.err)
