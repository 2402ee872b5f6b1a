"""The local stack (`relay dev`): everything of the deployed relay on one machine, from real parts.

- moto's server on loopback with the topic, queues, DLQs, redrive policies, subscriptions, filter
  policies, idempotency table and secrets created from template.yaml (relay.stack);
- the ingest endpoint: HTTP -> API Gateway HTTP API v2 event -> the real IngestFunction handler;
- one poller per vendor function: long-polls its queue, honours the template's batch size and batching
  window, invokes the real handler with real SQS records and deletes only what it did not report failed;
- vendor sandboxes (relay.sandbox) unless the config names a real endpoint.

As on Lambda, a vendor-function invocation ends at its timeout: once its deadline has passed, its next AWS
call or vendor request — or the answer to one in flight — ends it (`InvocationKilled`), whatever it was
doing, and SQS redelivers its batch.

For `relay soak` (relay.faults) the stack also takes a FaultPlan (the sandboxes inject vendor faults, and
vendor-function invocations crash after their work), a shorter vendor timeout and function timeout, and
`redelivery_seconds`: messages a crashed or partly failed invocation left behind become visible again
after that many seconds instead of the queue's VisibilityTimeout (minutes, sized for the deployed
functions' timeouts).

Template parameters and secrets are derived from the template's own wiring (which env var a parameter
feeds, which secret a function reads), so nothing about the stack is restated here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx

from relay.aws.ledger import INGEST, DeliveryLedger
from relay.aws.replay import ReplayGuard
from relay.aws.secrets import load_vendor_config
from relay.aws.sns import SnsPublisher
from relay.delivery.deadletter import DeadLetterQueue
from relay.delivery.retry import SourceQueue
from relay.delivery.sending import RetryPolicy, new_http_client
from relay.journey import JourneyTable
from relay.models.config import RelayConfig
from relay.models.environment import IngestEnvironment, VendorEnvironment, read_environment
from relay.models.names import VENDOR_TITLES, is_connection
from relay_tools import console
from relay_tools.apigw import http_api_event, response_body
from relay_tools.connections import deployed_file, has_connections, ingest_secret, toml_text, vendor_secret
from relay_tools.faults import FaultPlan
from relay_tools.queues import LOCAL_CREDENTIALS, VendorQueues
from relay_tools.sandbox import Sandboxes
from relay_tools.sqs_events import lambda_records
from relay_tools.stack import Stack, create_stack, load_template, parameter_defaults
from relay_tools.ui import Debugger, respond

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE_BUFFER_SECONDS = 1.0  # the archive's objects appear this soon (Firehose's buffer: minutes)


class InvocationKilled(BaseException):
    """A vendor-function invocation past its deadline (Lambda's timeout): no `except Exception` stops it."""


@dataclass
class LocalContext:
    """The Lambda context a local invocation gets: remaining time counts down from the function timeout."""

    function_name: str
    timeout_s: int
    memory_limit_in_mb: int = 256
    aws_request_id: str = "local"

    def __post_init__(self) -> None:
        self.aws_request_id = console.invoking(self.function_name)  # the console's log lines name this invocation
        self.deadline = time.monotonic() + self.timeout_s
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


def parameters_for(template: dict[str, Any], config: RelayConfig, endpoints: dict[str, str]) -> dict[str, str]:
    """Template parameters from the config: every RELAY_<SECTION>_<KEY> env var that is a `!Ref` of a
    parameter takes the config's <section>.<key> (RELAY_EVENTS takes the [events] overrides)."""
    out: dict[str, str] = {}
    variables = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    for var, value in variables.items():
        param = value.get("Ref") if isinstance(value, dict) else None
        if not var.startswith("RELAY_") or param not in template.get("Parameters", {}):
            continue
        if var == "RELAY_EVENTS":
            out[param] = json.dumps(
                {k: {v: n for v, n in o.items() if n is not None} for k, o in config.event_overrides.items()}
            )
            continue
        section_name, _, key = var[len("RELAY_") :].lower().partition("_")
        section = getattr(config, section_name, None)
        if section is None:
            if key == "enabled":
                out[param] = "false"
            continue
        value = getattr(section, key, None)
        if key == "endpoint" and value is None:
            value = endpoints.get(section_name)
        if value is not None:
            out[param] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def secrets_for(template: dict[str, Any], config: RelayConfig) -> dict[str, dict[str, Any]]:
    """Secret values by logical id, following which secret each function reads (relay_tools.connections)."""
    out: dict[str, dict[str, Any]] = {}
    for fn in _functions(template).values():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        if "RELAY_INGEST_SECRET_ARN" in env:
            out[env["RELAY_INGEST_SECRET_ARN"]["Ref"]] = ingest_secret(config)
        if "RELAY_VENDOR_SECRET_ARN" in env:
            out[env["RELAY_VENDOR_SECRET_ARN"]["Ref"]] = vendor_secret(config, env["RELAY_VENDOR"])
    return out


def count_events(request: httpx.Request) -> int:
    try:
        body = json.loads(request.content)
    except ValueError:
        return 0
    if isinstance(body, list):
        return len(body)
    return len(body["events"]) if isinstance(body, dict) and isinstance(body.get("events"), list) else 1


class LocalStack:
    def __init__(
        self,
        config: RelayConfig,
        template_path: str | Path = ROOT / "template.yaml",
        ingest_port: int | None = None,
        aws_port: int | None = None,
        sandbox_port: int | None = None,
        log: Callable[[str], None] | None = None,
        verbose: bool = False,
        faults: FaultPlan | None = None,
        redelivery_seconds: int | None = None,
        vendor_timeout_seconds: float | None = None,
        function_timeout_seconds: int | None = None,
        parameters: dict[str, str] | None = None,
        schedule_seconds: float | None = None,
    ):
        """`vendor_timeout_seconds`: each vendor request's total deadline (the relay's default unless set);
        `function_timeout_seconds`: every vendor function's timeout (the template's unless set);
        `parameters`: template parameters over those the config gives (MaxReceiveCount, say);
        `schedule_seconds`: how often the template's schedules run (their own rate unless set)."""
        self.parameters = parameters or {}
        self.schedule_seconds = schedule_seconds
        self.verbose = verbose
        self.faults = faults
        self.redelivery_seconds = redelivery_seconds
        self.vendor_timeout_seconds = vendor_timeout_seconds
        self.function_timeout_seconds = function_timeout_seconds
        self.function_env: dict[str, dict[str, str]] = {}  # logical id -> the environment its handler reads
        self.extra_env: dict[str, str] = {}  # what every function's environment adds to the template's
        self.killed: dict[str, int] = {}  # vendor -> invocations ended at their deadline
        self.dead_lettered: dict[str, list[tuple[str | None, str]]] = {}  # vendor -> (event_id, outcome) moved
        self._deadlines: dict[str, float] = {}  # vendor -> monotonic deadline of its running invocation
        for name, source in config.source_configs().items():
            if not source.secrets:
                where = "[ingest] secrets" if name == "default" else f"sources.{name}.secrets"
                raise ValueError(f"{where}: the local stack needs a signing secret for source '{name}'")
        self.config = config
        self.template = load_template(template_path)
        self.log = log or console.Console()  # whole lines, never run together
        self._pools: dict[str, str] = {}  # vendor -> its function's logical id (its send pool's log lines)
        self.failure: str | None = None  # why the stack stopped by itself (moto's server died)
        self.on_failure: Callable[[], None] | None = None  # told when it does (relay dev stops and exits 1)
        endpoint = urlsplit(config.local.aws_endpoint)
        self.ports = {
            "ingest": config.local.ingest_port if ingest_port is None else ingest_port,
            "aws": (endpoint.port or 5000) if aws_port is None else aws_port,
            "sandbox": config.local.sandbox_port if sandbox_port is None else sandbox_port,
        }
        self._stop = threading.Event()
        self.stop_seconds = 30.0  # what `stop()` waits for the threads, all together (a batch in progress)
        self._threads: list[threading.Thread] = []
        self._servers: list[Any] = []
        self.sandboxes: Sandboxes | None = None
        self.stack: Stack | None = None
        self.archive: Any = None  # relay_tools.local_archive.LocalFirehose, when the stack has an archive

    # -- lifecycle ----------------------------------------------------------------------------------

    def _environment(self) -> None:
        """The process-wide settings the functions' Powertools read (service, namespace), from the
        template's Globals; handler logs quiet to warnings and metrics off unless verbose. `stop()`
        restores what was there before."""
        glob = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        wanted = {
            key: glob[key]
            for key in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE")
            if isinstance(glob.get(key), str)
        }
        wanted["POWERTOOLS_TRACE_DISABLED"] = "1"  # no X-Ray daemon here
        if not self.verbose:
            wanted.update(LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
        self._saved_env = {key: os.environ.get(key) for key in wanted}
        for key, value in wanted.items():
            os.environ.setdefault(key, value)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        # an invocation that counts nothing has no metrics to publish: no news, no line on the console
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        from relay.observability import logger

        self._names = console.FunctionNames(self._pools, lambda name: f"arn:aws:lambda:{self.config.local.region}:"
                                    f"123456789012:function:{name}")  # fmt: skip
        logging.getLogger(logger.name).addFilter(self._names)
        # three vendor handlers share one Metrics object here; with metrics off nothing flushes the dimension
        warnings.filterwarnings("ignore", message="Dimension 'vendor' has already been added")

    def after_invocation(self) -> None:
        """With metrics off, Powertools keeps the metric set and prints it anyway once a metric holds 100
        values: drop it after each invocation (the handlers share one Metrics object here)."""
        if not self.verbose:
            from relay.observability import metrics

            metrics.clear_metrics()

    def _restore_environment(self) -> None:
        for key, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if hasattr(self, "_warnings"):
            self._warnings.__exit__(None, None, None)
        if hasattr(self, "_names"):
            from relay.observability import logger

            logging.getLogger(logger.name).removeFilter(self._names)

    def _start_moto(self) -> None:
        """moto's server in a child process: its CPU (a good half of the local stack's under load) does not
        compete with the handlers for this process's GIL."""
        port = self.ports["aws"] or _free_port()
        self.moto = subprocess.Popen(  # noqa: S603 - moto's own server module, fixed arguments
            # moto's server without the DynamoDB costs that made it grow with the square of the traffic
            [sys.executable, "-m", "relay_tools.moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.moto.poll() is not None:
                raise RuntimeError(f"moto's server exited at once (code {self.moto.returncode}): is port {port} free?")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.moto.kill()
                    raise RuntimeError(f"moto's server did not listen on 127.0.0.1:{port} within 30 s") from None
                time.sleep(0.1)
        self.aws_endpoint = f"http://127.0.0.1:{port}"
        self._spawn(self._watch_moto, "moto-watch")

    def _watch_moto(self) -> None:
        """moto's server is the stack's AWS: when it dies (killed, out of memory), the stack says so once and
        stops, instead of every poller logging connection errors until Ctrl-C."""
        while not self._stop.wait(0.5):
            code = self.moto.poll()
            if code is not None:
                self.failure = (
                    f"moto's server (the local AWS, {self.aws_endpoint}) exited with code {code}; the local stack "
                    "cannot go on without it: start it again"
                )
                self.log(f"relay dev: {self.failure}")
                self._stop.set()
                if self.on_failure is not None:
                    self.on_failure()
                return

    def _require_free_ports(self) -> None:
        """Refuse to start on a port another process holds (an earlier `relay dev`'s moto, say): the stack
        would otherwise talk to a server it did not start."""
        names = {"aws": "[local] aws_endpoint", "ingest": "[local] ingest_port", "sandbox": "[local] sandbox_port"}
        for key, what in names.items():
            port = self.ports[key]
            if not port:
                continue
            with socket.socket() as probe:
                # as the servers bind (SO_REUSEADDR): a port an earlier run left in TIME_WAIT is free again
                # at once; one a process listens on is not
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    raise RuntimeError(
                        f"port {port} ({what}) is in use by another process: stop it (an earlier relay dev?) "
                        "or choose another port"
                    ) from None

    def start(self) -> LocalStack:
        self._require_free_ports()
        self._environment()
        self._start_moto()
        endpoints: dict[str, str] = {}
        if any(s.enabled and s.endpoint is None for s in self.config.sections().values()):
            self.sandboxes = Sandboxes(self.config, self.ports["sandbox"], self.faults).start()
            endpoints = self.sandboxes.endpoints()
        if has_connections(self.config):  # deployed as a stack would be: the connections file, without secrets
            self._connections_dir = tempfile.TemporaryDirectory(prefix="relay-connections-")
            path = Path(self._connections_dir.name) / "connections.toml"
            path.write_text(toml_text(deployed_file(self.config, endpoints)))
            self.extra_env["RELAY_CONNECTIONS_FILE"] = str(path)
        session = boto3.Session(region_name=self.config.local.region, **LOCAL_CREDENTIALS)
        self.clients = {
            n: session.client(n, endpoint_url=self.aws_endpoint)
            for n in ("sns", "sqs", "dynamodb", "secretsmanager", "s3", "kms")
        }
        for client in self.clients.values():  # a vendor function past its deadline is ended at its next call
            client.meta.events.register("before-call", self.check_deadline)
            client.meta.events.register("after-call", self.check_deadline)
        self.stack = create_stack(
            self.template,
            session,
            name=self.config.local.stack_name,
            parameters={**parameters_for(self.template, self.config, endpoints), **self.parameters},
            secrets=secrets_for(self.template, self.config),
            endpoint_url=self.aws_endpoint,
        )
        self._start_archive()
        self._start_ingest()
        for logical, fn in _functions(self.template).items():
            env = fn["Properties"].get("Environment", {}).get("Variables", {})
            if "RELAY_VENDOR" in env:
                self._start_poller(logical, env["RELAY_VENDOR"])
        return self

    def stop(self) -> None:
        self._stop.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        # a vendor batch in progress finishes first, within one wait for all the threads together
        deadline = time.monotonic() + self.stop_seconds
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        running = [thread.name for thread in self._threads if thread.is_alive()]
        if running:
            self.log(f"relay dev: {', '.join(running)} still running after {self.stop_seconds:g} s: not waiting longer")
        if self.sandboxes:
            self.sandboxes.stop()
        if getattr(self, "_connections_dir", None) is not None:
            self._connections_dir.cleanup()
        moto = getattr(self, "moto", None)  # None when the stack refused to start
        if moto is not None:
            moto.terminate()
            try:
                moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                moto.kill()
                moto.wait()
        self._restore_environment()

    @property
    def ingest_url(self) -> str:
        host, port = self._servers[0].server_address[:2]
        return f"http://{host}:{port}/v1/events"

    def function_environment(self, logical: str) -> dict[str, str]:
        """A function's environment: the template's, and the connections file when the config declares one."""
        assert self.stack is not None
        return {**self.stack.function_environment(logical), **self.extra_env}

    # -- ingest -------------------------------------------------------------------------------------

    def _start_archive(self) -> None:
        """The archive's delivery (relay_tools.local_archive), when the stack has an archive."""
        from relay_tools.local_archive import LocalFirehose, has_archive

        assert self.stack is not None
        self.archive = LocalFirehose(self.stack, self.clients, self.log) if has_archive(self.stack) else None
        if self.archive is not None:
            archive = self.archive
            self._spawn(lambda: archive.run(self._stop, ARCHIVE_BUFFER_SECONDS), "archive")

    def _start_ingest(self) -> None:
        from relay_tools.functions import ingest_handler  # after _environment(): Powertools reads it at import

        assert self.stack is not None
        env = read_environment(IngestEnvironment, self.function_environment("IngestFunction"))
        ddb = self.clients["dynamodb"]
        handler = ingest_handler(
            environment=env,
            secrets_client=self.clients["secretsmanager"],
            publisher=SnsPublisher(env.topic_arn, self.clients["sns"]),
            replay_guard=ReplayGuard(env.replay_table, ddb) if env.replay_table else None,
            ledger=DeliveryLedger.for_function(INGEST, env, ddb),
        )
        timeout = self.stack.function_timeout("IngestFunction")
        local = self
        lock = threading.Lock()  # one invocation at a time, as one Lambda container
        debugger = self._debugger()

        class Ingest(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _invoke(self) -> None:
                if debugger.serves(urlsplit(self.path).path):  # the debugger page (only the local stack's)
                    respond(self, debugger)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                event = http_api_event(
                    self.command,
                    urlsplit(self.path).path,
                    dict(self.headers.items()),
                    body,
                    source_ip=self.client_address[0],
                )
                with lock:
                    try:
                        response = handler(event, LocalContext("IngestFunction", timeout))
                    finally:
                        console.done()
                    local.after_invocation()
                local.log(console.ingest_line(self.command, urlsplit(self.path).path, response))
                data = response_body(response)
                self.send_response(response["statusCode"])
                for key, value in (response.get("headers") or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_DELETE = _invoke  # noqa: N815

        server = ThreadingHTTPServer(("127.0.0.1", self.ports["ingest"]), Ingest)
        self._servers.append(server)
        self._spawn(server.serve_forever, "ingest")

    def _debugger(self) -> Debugger:
        """The debugger page over this stack's journeys and DLQs (relay_tools.ui)."""
        assert self.stack is not None
        physical, sqs = self.stack.physical, self.clients["sqs"]

        def queues(vendor: str) -> VendorQueues:
            logical = VENDOR_TITLES[vendor]
            return VendorQueues(sqs, physical[f"{logical}Queue"], physical[f"{logical}DeadLetterQueue"])

        return Debugger(JourneyTable(physical["IdempotencyTable"], self.clients["dynamodb"]), queues)

    @property
    def debugger_url(self) -> str:
        host, port = self._servers[0].server_address[:2]
        return f"http://{host}:{port}/"

    # -- vendor functions ---------------------------------------------------------------------------

    def check_deadline(self, **_: Any) -> None:
        """Ends the calling vendor-function invocation if its deadline has passed (botocore's before-call
        and after-call events, httpx's request and response hooks). The invocation is told by its thread:
        the poller `poller-<vendor>` or its send pool's `<vendor>-send_<n>`."""
        name = threading.current_thread().name
        vendor = name.removeprefix("poller-").split("-send", 1)[0]
        deadline = self._deadlines.get(vendor)
        if deadline is not None and time.monotonic() > deadline:
            raise InvocationKilled(vendor)

    def set_enabled(self, vendor: str, enabled: bool) -> None:
        """Turn a vendor on or off in its function's environment while the stack runs (a stack update that
        reaches the function while its messages are queued; the ingest keeps its own settings)."""
        for logical, env in self.function_env.items():
            if logical != "IngestFunction" and env.get("RELAY_VENDOR") == vendor:
                env[f"RELAY_{vendor.upper()}_ENABLED"] = "true" if enabled else "false"

    def _http_client(self, vendor: str) -> httpx.Client:
        started: dict[int, float] = {}

        def on_request(request: httpx.Request) -> None:
            self.check_deadline()
            started[id(request)] = time.perf_counter()

        def on_response(response: httpx.Response) -> None:
            self.check_deadline()  # the vendor took the request; the invocation never learns of its answer
            ms = (time.perf_counter() - started.pop(id(response.request), time.perf_counter())) * 1000
            first = response.request.url.path.strip("/").split("/")[0]  # a sandbox's path names the connection
            who = first if is_connection(first) and first.startswith(f"{vendor}.") else vendor
            self.log(f"{who:<9} {response.status_code}  {count_events(response.request):>3} event(s)  {ms:7.1f} ms")

        timeout = {} if self.vendor_timeout_seconds is None else {"timeout": self.vendor_timeout_seconds}
        return new_http_client(event_hooks={"request": [on_request], "response": [on_response]}, **timeout)

    def _start_poller(self, logical: str, vendor: str) -> None:
        from relay_tools.functions import vendor_handler

        assert self.stack is not None
        env = self.function_env[logical] = self.function_environment(logical)
        environment = read_environment(VendorEnvironment, env)
        self._pools[vendor] = logical
        source = self.stack.event_source(logical)
        queue_url, queue_arn = self.stack.physical[source.queue], self.stack.arns[source.queue]
        sqs, sm, ddb = self.clients["sqs"], self.clients["secretsmanager"], self.clients["dynamodb"]
        timeout_s = self.vendor_timeout_seconds
        policy = None if timeout_s is None else RetryPolicy(request_seconds=timeout_s)
        queue = DelayedMessages(queue_url, sqs)
        handler = vendor_handler(
            vendor,
            environment=environment,
            # read again at each invocation: `set_enabled` changes the settings while messages are queued
            load_config=lambda: load_vendor_config(read_environment(VendorEnvironment, env), sm),
            http_client=self._http_client(vendor),
            ledger=DeliveryLedger.for_function(vendor, environment, ddb),
            dead_letters=RecordedDeadLetters(environment.dlq_url, sqs, self.dead_lettered.setdefault(vendor, [])),
            policy=policy,
            queue=queue,
        )
        timeout = self.function_timeout_seconds or self.stack.function_timeout(logical)

        def poll() -> None:
            while not self._stop.is_set():
                try:
                    poll_once()
                except Exception as exc:  # noqa: BLE001 - an SQS call failed: the poller carries on, as Lambda's would
                    if not self._stop.is_set():
                        self.log(f"{vendor:<9} poller error: {type(exc).__name__}")
                        time.sleep(1)

        def poll_once() -> None:
            batch = self._receive(sqs, queue_url, source.batch_size, source.window_seconds)
            if batch:
                invoke(batch)

        def invoke(batch: list[dict[str, Any]]) -> None:
            event = lambda_records(batch, queue_arn, self.config.local.region)
            context = LocalContext(logical, timeout)
            try:
                self._deadlines[vendor] = context.deadline
                try:
                    response = handler(event, context)
                finally:  # the poller's own calls from here on are not the invocation's
                    self._deadlines.pop(vendor, None)
                    console.done()
                self.after_invocation()
                failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
                if self.faults and self.faults.crashes(vendor):
                    raise RuntimeError("injected crash after the handler's work")
            except InvocationKilled:
                self.killed[vendor] = self.killed.get(vendor, 0) + 1
                self.log(f"{vendor:<9} invocation ended at its {timeout} s timeout")
                self._redeliver_soon(sqs, queue_url, batch)
                return
            except Exception as exc:  # noqa: BLE001 - a crashed invocation: SQS redelivers everything
                self.log(f"{vendor:<9} handler error: {type(exc).__name__}")
                self._redeliver_soon(sqs, queue_url, batch)
                return
            # the function set the retry delay of what failed for the vendor's sake; the rest (in flight
            # elsewhere, no time left) would wait for the queue's visibility timeout
            delayed = queue.take()
            self._redeliver_soon(
                sqs, queue_url, [m for m in batch if m["MessageId"] in failed and m["ReceiptHandle"] not in delayed]
            )
            done = [m for m in batch if m["MessageId"] not in failed]
            for start in range(0, len(done), 10):
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start : start + 10])
                    ],
                )

        self._spawn(poll, f"poller-{vendor}")
        for schedule in self.stack.schedules(logical):
            every = self.schedule_seconds or schedule.every_seconds
            self._start_schedule(vendor, logical, handler, schedule.input, every)

    def _start_schedule(
        self, vendor: str, logical: str, handler: Callable[..., Any], event: dict[str, Any], every: float
    ) -> None:
        """The template's schedule for a function (EventBridge invoking it with a fixed input), every `every`
        seconds."""
        assert self.stack is not None
        timeout = self.function_timeout_seconds or self.stack.function_timeout(logical)

        def run() -> None:
            while not self._stop.wait(every):
                try:
                    try:
                        result = handler(dict(event), LocalContext(logical, timeout))
                    finally:
                        console.done()
                    self.after_invocation()
                    if result.get("moved"):
                        self.log(f"{vendor:<9} scheduled recovery: {result['moved']} dead letter back as the probe")
                except Exception as exc:  # noqa: BLE001 - as EventBridge would, the next run tries again
                    self.log(f"{vendor:<9} scheduled run error: {type(exc).__name__}")

        self._spawn(run, f"schedule-{vendor}")

    def _redeliver_soon(self, sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
        """Messages a crashed or partly failed invocation left without a retry delay of its own: visible again
        after `redelivery_seconds` (when set)."""
        if self.redelivery_seconds is None:
            return  # as on AWS: visible again after the queue's VisibilityTimeout
        for start in range(0, len(messages), 10):
            sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self.redelivery_seconds}
                    for i, m in enumerate(messages[start : start + 10])
                ],
            )

    def _receive(self, sqs: Any, url: str, batch_size: int, window: int) -> list[dict[str, Any]]:
        """Like Lambda's event source: wait for a first message, then fill the batch until it is full or
        the batching window has passed."""
        messages: list[dict[str, Any]] = []
        first = None
        while not self._stop.is_set() and len(messages) < batch_size:
            if first is not None and time.monotonic() - first >= window:
                break
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, batch_size - len(messages)),
                WaitTimeSeconds=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if got and first is None:
                first = time.monotonic()
            messages += got
            if not got and first is None and messages == []:
                return []
        return messages

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


class RecordedDeadLetters(DeadLetterQueue):
    """A vendor function's DLQ that notes (event_id, outcome) of every letter it moved."""

    def __init__(self, queue_url: str, client: Any, record: list[tuple[str | None, str]]):
        super().__init__(queue_url, client)
        self.record = record

    def send(self, letters: list[Any], now: Any = None) -> set[str]:
        failed = super().send(letters, now)
        self.record.extend((letter.event_id, letter.outcome) for letter in letters if letter.key not in failed)
        return failed


class DelayedMessages(SourceQueue):
    """A vendor function's queue that remembers which messages the function gave a retry delay."""

    def __init__(self, queue_url: str, client: Any):
        super().__init__(queue_url, client)
        self._delayed: set[str] = set()
        self._lock = threading.Lock()

    def delay(self, delays: Mapping[str, int]) -> int:
        with self._lock:
            self._delayed.update(delays)
        return super().delay(delays)

    def take(self) -> set[str]:
        """The receipt handles delayed since the last call."""
        with self._lock:
            out, self._delayed = self._delayed, set()
        return out


ACCOUNT = "123456789012"  # moto's default account


def sam_local_env(template: dict[str, Any], config: RelayConfig, host: str = "host.docker.internal") -> dict[str, Any]:
    """An `--env-vars` file for `sam local invoke/start-api` that points the functions (in Docker) at a
    running local stack: the same env var names as the template, resolved to the local stack's names."""
    local = config.local
    aws = urlsplit(local.aws_endpoint)
    aws_endpoint = f"{aws.scheme}://{host}:{aws.port or 5000}"
    sandbox = f"http://{host}:{local.sandbox_port}"
    endpoints = {
        "applovin": f"{sandbox}/applovin/v1/event",
        "appsflyer": f"{sandbox}/appsflyer",
        "adroll": f"{sandbox}/adroll/api",
    }
    stack = Stack(
        local.stack_name,
        local.region,
        template,
        {
            **parameter_defaults(template),
            **parameters_for(template, config, endpoints),
        },
    )
    for logical, resource in template["Resources"].items():
        name = f"{local.stack_name}-{logical}"
        kind = resource["Type"]
        if kind == "AWS::SNS::Topic":
            stack.physical[logical] = stack.arns[logical] = f"arn:aws:sns:{local.region}:{ACCOUNT}:{name}"
        elif kind == "AWS::SQS::Queue":
            stack.physical[logical] = f"{aws_endpoint}/{ACCOUNT}/{name}"
            stack.arns[logical] = f"arn:aws:sqs:{local.region}:{ACCOUNT}:{name}"
        elif kind == "AWS::DynamoDB::Table":
            stack.physical[logical] = name
        elif kind == "AWS::SecretsManager::Secret":
            stack.physical[logical] = name  # GetSecretValue takes the name as well as the ARN
        elif kind == "AWS::KMS::Key":  # the local stack names each key with an alias (relay_tools.stack)
            stack.physical[logical] = stack.arns[logical] = f"arn:aws:kms:{local.region}:{ACCOUNT}:alias/{name}"
    extra = {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": local.region,
    }
    return {logical: {**stack.function_environment(logical), **extra} for logical in _functions(template)}
