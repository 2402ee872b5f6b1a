"""`make bench`: forwarding throughput against a fixed-latency vendor stub (vs the ideal of each vendor's
protocol and vs a naive one-request-per-event loop, in the same run), ingest CPU per event, handler
import time vs `import boto3`, peak memory vs MemorySize, and cost per million events.

Writes bench/results.json and bench/results.png, prints a table. Figures are medians of repeated runs
with min/max. Nothing here is asserted by the test suite: targets are reported as pass/fail.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_common as bc  # noqa: E402

from relay.delivery.sending import SEND_WORKERS  # noqa: E402
from relay_tools.cost import report  # noqa: E402
from relay_tools.stack import Stack, load_template, parameter_defaults  # noqa: E402

VENDORS = ("applovin", "appsflyer", "adroll")
TRACED = "applovin_tracing_active"
WORKERS = SEND_WORKERS  # AppsFlyer requests in flight per function


def cpu_model() -> str:
    """The processor's name as Linux gives it (/proc/cpuinfo), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.machine()


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ideal_seconds(vendor: str, n: int, latency: float) -> float:
    per_request = 1 if vendor == "appsflyer" else 100
    in_flight = WORKERS if vendor == "appsflyer" else 1
    return math.ceil(math.ceil(n / per_request) / in_flight) * latency


def throughput(port: int, latency: float, repeat: int) -> dict:
    out: dict = {}
    for vendor in VENDORS:
        out[vendor] = {}
        for n in (1, 10, 100):
            event = bc.records(vendor, n)
            client = bc.new_http_client()
            bc.vendor_batch_once(vendor, n, port, client, event)  # warm the connection pool
            workers = WORKERS if vendor == "appsflyer" else 1
            bc.bare_once(vendor, n, port, client, workers, event)
            runs, bare = [], []
            for _ in range(repeat):  # relay and bare transport alternate: same conditions for both
                runs.append(bc.vendor_batch_once(vendor, n, port, client, event))
                bare.append(bc.bare_once(vendor, n, port, client, workers, event))
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            ideal = ideal_seconds(vendor, n, latency)
            out[vendor][str(n)] = {
                "events_per_s": stats([n / w for w in walls]),
                "wall_ms": stats([w * 1000 for w in walls]),
                "ideal_ms": ideal * 1000,
                "efficiency": stats([ideal / w for w in walls]),
                # the same requests sent bare: what this machine and httpx allow before the relay does anything
                "transport_efficiency": stats([ideal / w for w, _ in bare]),
                "cpu_ms_per_event": stats([c * 1000 / n for c in cpus]),
                "transport_cpu_ms_per_event": stats([c * 1000 / n for _, c in bare]),
                # the relay's own CPU: its total minus what the same requests cost sent bare, run by run
                "overhead_cpu_ms_per_event": stats([(c - b) * 1000 / n for c, (_, b) in zip(cpus, bare, strict=True)]),
            }
        # the naive loop takes seconds a run (a new connection and a round trip per event): a few runs tell it
        naive = [bc.naive_once(vendor, 100, port) for _ in range(max(1, min(3, repeat // 5)))]
        out[vendor]["naive_100"] = {
            "events_per_s": stats([100 / w for w in naive]),
            "wall_ms": stats([w * 1000 for w in naive]),
        }
        out[vendor]["ratio_vs_naive_100"] = (
            out[vendor]["100"]["events_per_s"]["median"] / out[vendor]["naive_100"]["events_per_s"]["median"]
        )
    return out


def ingest(repeat: int) -> dict:
    """The ingest's CPU per event, and in the same run the reference (bench_common.reference_once: sign,
    verify, parse and validate the same body, what no ingest can skip): their ratio is the target."""
    one, ref_one, floor_one, hundred, ref_hundred, lines_hundred = [], [], [], [], [], []
    for _ in range(repeat):  # interleaved: all see the same machine
        # each figure a tenth of a second of CPU or more: shorter ones catch the machine's jitter
        one.append(bc.ingest_once(1, 300))
        ref_one.append(bc.reference_once(1, 300))
        floor_one.append(bc.floor_once(1, 300))
        hundred.append(bc.ingest_once(100, 20))
        ref_hundred.append(bc.reference_once(100, 20))
        # at 100 per request, line by line: the reference just measured, the mapping, the floor's AWS calls
        calls = bc.floor_once(100, 20, reference=False)
        lines_hundred.append({"reference": ref_hundred[-1], "the mapping": bc.mapping_once(100, 20), **calls})
    out = {
        "cpu_ms_per_event_1": stats([c * 1000 for c, _ in one]),
        "cpu_ms_per_event_100": stats([c * 1000 for c, _ in hundred]),
        "reference_ms_per_event_1": stats([c * 1000 for c in ref_one]),
        "reference_ms_per_event_100": stats([c * 1000 for c in ref_hundred]),
        # the reference and the very AWS calls the ingest makes at one event per request, nothing else
        "floor_ms_per_event_1": stats([sum(lines.values()) * 1000 for lines in floor_one]),
        # its lines: the reference, then each AWS call in the order the ingest makes them
        "floor_lines_ms_1": {line: stats([lines[line] * 1000 for lines in floor_one]) for line in floor_one[0]},
        # at 100 per request: the reference, the mapping and the AWS calls; the rest is the ingest's own work
        "lines_ms_100": {line: stats([lines[line] * 1000 for lines in lines_hundred]) for line in lines_hundred[0]},
        "request_ms_1": stats([w * 1000 for _, w in one]),
        "request_ms_100": stats([w * 1000 for _, w in hundred]),
    }
    # each ratio the median of the run's pairs (measured one after the other), as the imports' are
    out["ratio_vs_reference_1"] = statistics.median(c / r for (c, _), r in zip(one, ref_one, strict=True))
    out["ratio_vs_reference_100"] = statistics.median(c / r for (c, _), r in zip(hundred, ref_hundred, strict=True))
    out["floor_ratio_1"] = statistics.median(sum(f.values()) / r for f, r in zip(floor_one, ref_one, strict=True))
    return out


LAMBDA_VENV = ROOT / ".venv-lambda"


def lambda_python() -> str:
    """An interpreter with only what a deployed function has: the layer's requirements (shared/
    requirements.txt) and boto3 (in the Lambda runtime). The dev .venv also holds the SAM CLI, whose
    packages (click, rich...) make some imports (httpx's CLI hook) look slower than on Lambda."""
    python = LAMBDA_VENV / "bin" / "python"
    stamp = LAMBDA_VENV / ".stamp"
    wanted = (ROOT / "shared" / "requirements.txt").read_text()
    if not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", str(LAMBDA_VENV)], check=True)
        requirements = str(ROOT / "shared" / "requirements.txt")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", requirements, "boto3"], check=True)
        stamp.write_text(wanted)
    return str(python)


LAYER_COPY = LAMBDA_VENV / "layer"


@functools.cache
def layer_path() -> str:
    """The relay package as `make build` ships it: a fresh copy with hash-checked bytecode (Lambda cannot
    write bytecode, so a layer without it compiles every module at each cold start; pip already compiled
    .venv-lambda's packages, as the runtime's boto3 is). Re-made every run from shared/relay."""
    import shutil

    lambda_python()
    shutil.rmtree(LAYER_COPY, ignore_errors=True)
    shutil.copytree(ROOT / "shared" / "relay", LAYER_COPY / "relay", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [lambda_python(), "-m", "compileall", "-q", "--invalidation-mode", "checked-hash", str(LAYER_COPY)],
        check=True,
    )
    return str(LAYER_COPY)


def function_env(parameters: dict[str, str] | None = None) -> dict[str, str]:
    """The Powertools settings template.yaml gives every function (its Globals), with the template's
    default parameters (so X-Ray tracing off unless `{"Tracing": "Active"}`)."""
    template = load_template(ROOT / "template.yaml")
    stack = Stack("bench", "us-east-1", template, {**parameter_defaults(template), **(parameters or {})})
    glob = template["Globals"]["Function"]["Environment"]["Variables"]
    return {k: str(stack.resolve(v)) for k, v in glob.items() if k.startswith("POWERTOOLS_")}


def probe(*args: str, env_over: dict[str, str] | None = None) -> dict:
    env = {
        **os.environ,
        # the layer as shipped; the tooling only for the harness's SQS event builder (relay_tools.sqs_events)
        "PYTHONPATH": os.pathsep.join([layer_path(), str(ROOT / "tools")]),
        **(env_over or function_env()),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    proc = subprocess.run(
        [lambda_python(), str(HERE / "probe.py"), *args], capture_output=True, text=True, env=env, check=True, cwd=ROOT
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def imports(runs: int) -> dict:
    """Interleaved rounds (boto3, then each function, `runs` times over), so that the machine's drift
    during the measurement weighs on the baseline and the functions alike. A function's ratio is the median
    of its ratios to the same round's `import boto3`: each pairs two imports a second apart, where a ratio of
    two medians could pair a quiet moment with a busy one."""
    targets = {"boto3": "boto3", **{fn: str(ROOT / "functions" / fn) for fn in ("ingest", *VENDORS)}}
    plain, traced = function_env(), function_env({"Tracing": "Active"})
    ms: dict[str, list[float]] = {name: [] for name in [*targets, TRACED]}
    for _ in range(runs):
        for name, target in targets.items():
            ms[name].append(probe("import", target, env_over=plain)["seconds"] * 1000)
        # the price of Tracing=Active (not a target: tracing is opt-in)
        ms[TRACED].append(probe("import", targets["applovin"], env_over=traced)["seconds"] * 1000)
    out = {name: stats(values) for name, values in ms.items()}
    for fn in ("ingest", *VENDORS):
        out[fn]["ratio_vs_boto3"] = statistics.median(f / b for f, b in zip(ms[fn], ms["boto3"], strict=True))
    return out


def memory(port: int) -> dict:
    template = load_template(ROOT / "template.yaml")
    default = template["Globals"]["Function"]["MemorySize"]
    out = {}
    names = {
        "ingest": "IngestFunction",
        "applovin": "AppLovinFunction",
        "appsflyer": "AppsFlyerFunction",
        "adroll": "AdRollFunction",
    }
    for kind, logical in names.items():
        size = template["Resources"][logical]["Properties"].get("MemorySize", default)
        rss = probe("rss", kind, str(port))["peak_rss_mb"]
        out[kind] = {"peak_rss_mb": rss, "memory_size_mb": size, "share": rss / size}
    return out


def targets(r: dict) -> list[dict]:
    t = r["throughput"]
    ingest = r["ingest"]
    rows = [
        ("AppLovin efficiency at batch 100, journeys on", t["applovin"]["100"]["efficiency"]["median"], ">=", 0.92),
        ("AdRoll efficiency at batch 100, journeys on", t["adroll"]["100"]["efficiency"]["median"], ">=", 0.92),
        ("AppsFlyer efficiency at batch 100, journeys on", t["appsflyer"]["100"]["efficiency"]["median"], ">=", 0.85),
        *[(f"{v} vs naive baseline at batch 100", t[v]["ratio_vs_naive_100"], ">=", 20.0) for v in VENDORS],
        *[
            (
                f"{v} relay CPU overhead per forwarded event (ms)",
                t[v]["100"]["overhead_cpu_ms_per_event"]["median"],
                "<=",
                0.2,
            )
            for v in VENDORS
        ],
        ("ingest CPU per event at 100/request vs its reference", ingest["ratio_vs_reference_100"], "<=", 2.5),
        ("ingest CPU per event at 1/request vs its reference", ingest["ratio_vs_reference_1"], "<=", 2.5),
        *[
            (f"{fn} import vs import boto3", r["imports"][fn]["ratio_vs_boto3"], "<=", 2.0)
            for fn in ("ingest", *VENDORS)
        ],
        *[(f"{fn} peak memory share of MemorySize", r["memory"][fn]["share"], "<=", 0.5) for fn in r["memory"]],
        *[
            (f"$ per million events, 3 vendors, {k}/request, DynamoDB {mode}", c["usd_per_million_events"], "<=", limit)
            for k, limit in (("1", 5.0), ("100", 1.25))
            for mode, c in (("on demand", r["cost"][k]), ("provisioned", r["cost_provisioned"][k]))
        ],
    ]
    return [
        {
            "target": name,
            "value": value,
            "op": op,
            "limit": limit,
            "pass": value >= limit if op == ">=" else value <= limit,
        }
        for name, value, op, limit in rows
    ]


def chart(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    t = r["throughput"]
    x = range(len(VENDORS))
    relay = [t[v]["100"]["events_per_s"]["median"] for v in VENDORS]
    naive = [t[v]["naive_100"]["events_per_s"]["median"] for v in VENDORS]
    axes[0].bar([i - 0.2 for i in x], relay, 0.4, label="relay")
    axes[0].bar([i + 0.2 for i in x], naive, 0.4, label="naive loop")
    axes[0].set_yscale("log")
    axes[0].set_xticks(list(x), VENDORS)
    axes[0].set_title(f"events/s, batch 100, vendor latency {r['latency_ms']:.0f} ms")
    axes[0].legend()
    for n, marker in (("1", "o"), ("10", "s"), ("100", "^")):
        axes[1].plot(VENDORS, [t[v][n]["efficiency"]["median"] for v in VENDORS], marker=marker, label=f"batch {n}")
    axes[1].axhline(0.9, linestyle="--", color="grey")
    axes[1].set_ylim(0, 1.1)
    axes[1].set_title("efficiency = ideal time / measured time")
    axes[1].legend()
    names = ["boto3", "ingest", *VENDORS]
    axes[2].bar(names, [r["imports"][n]["median"] for n in names])
    axes[2].set_title("import time, fresh interpreter (ms, median)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(r: dict) -> str:
    lines = [
        f"S2S Relay benchmark {r['when']} ({r['machine']}), vendor latency {r['latency_ms']} ms, "
        f"{r['repeat']} runs (median [min-max])",
        "",
    ]
    lines.append(
        f"{'vendor':<10}{'batch':>6}{'events/s':>22}{'ideal ms':>10}{'efficiency':>20}{'bare':>6}{'CPU ms/event':>14}"
        f"{'transport':>11}{'overhead':>10}"
    )
    for v in VENDORS:
        for n in ("1", "10", "100"):
            row = r["throughput"][v][n]
            e, f = row["events_per_s"], row["efficiency"]
            lines.append(
                f"{v:<10}{n:>6}{e['median']:>10.0f} [{e['min']:.0f}-{e['max']:.0f}]{row['ideal_ms']:>10.0f}"
                f"{f['median']:>10.2f} [{f['min']:.2f}-{f['max']:.2f}]{row['transport_efficiency']['median']:>6.2f}"
                f"{row['cpu_ms_per_event']['median']:>14.3f}"
                f"{row['transport_cpu_ms_per_event']['median']:>11.3f}{row['overhead_cpu_ms_per_event']['median']:>10.3f}"
            )
        nv = r["throughput"][v]["naive_100"]["events_per_s"]
        lines.append(
            f"{v:<10}{'naive':>6}{nv['median']:>10.1f} [{nv['min']:.1f}-{nv['max']:.1f}]   relay/naive = "
            f"{r['throughput'][v]['ratio_vs_naive_100']:.1f}x"
        )
    i = r["ingest"]
    lines += [
        "",
        f"ingest CPU per event: {i['cpu_ms_per_event_1']['median']:.3f} ms (1/request), "
        f"{i['cpu_ms_per_event_100']['median']:.3f} ms (100/request); "
        f"{i['ratio_vs_reference_1']:.1f}x and {i['ratio_vs_reference_100']:.1f}x the reference; "
        f"at 1/request the reference and the ingest's own AWS calls alone are {i['floor_ratio_1']:.1f}x",
    ]
    lines.append("import (ms): " + ", ".join(f"{k} {v['median']:.0f}" for k, v in r["imports"].items()))
    lines.append(
        "peak RSS (MB / MemorySize): "
        + ", ".join(f"{k} {v['peak_rss_mb']:.0f}/{v['memory_size_mb']}" for k, v in r["memory"].items())
    )
    lines.append(
        "cost per million events (all 3 vendors): "
        + ", ".join(f"${c['usd_per_million_events']:.2f} at {k}/request" for k, c in r["cost"].items())
    )
    lines += ["", "targets:"]
    lines += [
        f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['value']:.3f} (target {t['op']} {t['limit']})"
        for t in r["targets"]
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="vendor stub latency (default 50)")
    parser.add_argument("--repeat", type=int, default=15, help="runs per figure (default 15)")
    parser.add_argument("--import-runs", type=int, default=10, help="fresh interpreters per import figure")
    args = parser.parse_args()
    stub = subprocess.Popen(
        [sys.executable, str(HERE / "stub.py"), str(args.latency_ms)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(stub.stdout.readline())
        latency = args.latency_ms / 1000
        r = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "latency_ms": args.latency_ms,
            "repeat": args.repeat,
        }
        r["throughput"] = throughput(port, latency, args.repeat)
        r["ingest"] = ingest(args.repeat)
        r["imports"] = imports(args.import_runs)
        r["memory"] = memory(port)
        # the cost model interpolates an invocation's duration between these batch sizes
        vendor_wall = {v: {n: r["throughput"][v][n]["wall_ms"]["median"] for n in ("1", "10", "100")} for v in VENDORS}
        r["durations_ms"] = {
            "ingest_fixed": max(
                0.0, r["ingest"]["request_ms_1"]["median"] - r["ingest"]["cpu_ms_per_event_1"]["median"]
            ),
            "ingest_per_event": r["ingest"]["cpu_ms_per_event_100"]["median"],
            "vendor_wall": vendor_wall,
        }
        (HERE / "results.json").write_text(json.dumps({**r, "cost": {}}, indent=2))  # durations for the model
        r["cost"] = {str(k): report(1_000_000, k) for k in (1, 100)}
        r["cost_provisioned"] = {str(k): report(1_000_000, k, capacity="provisioned") for k in (1, 100)}
        r["targets"] = targets(r)
        (HERE / "results.json").write_text(json.dumps(r, indent=2))
        chart(r, HERE / "results.png")
        print(table(r))
    finally:
        stub.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
