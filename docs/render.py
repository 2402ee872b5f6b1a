"""Render the documentation's figures and reference from the files that hold them, never by hand.

    python docs/render.py            # rewrite the generated blocks of docs/*.md
    python docs/render.py --check    # exit 1 when a page does not show what the files hold

A block stands between ``<!-- render:NAME -->`` and ``<!-- /render:NAME -->`` in a page:

- docs/performance.md: `bench/results.json` (`make bench`);
- docs/reliability.md: `reliability/*.json` (`make reliability`; the state machine's in
  `reliability/state-machine.json`);
- docs/cli.md: the `relay` command's own argument parser;
- docs/operations.md: the template's alarms, the delivery outcomes and every skip and invalid reason.

`make docs` runs it before `mkdocs build --strict`; a test runs `--check`.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from relay.models.names import VENDOR_TITLES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

VENDORS = VENDOR_TITLES  # (as the template names their resources)
FAULTS = (
    ("5xx", "5xx"),
    ("429", "429s with Retry-After"),
    ("timeout", "holds past the deadline"),
    ("drip", "answers dripped past the deadline"),
    ("slow", "late answers (the latency tail)"),
    ("reset", "connection resets"),
    ("invalid", "requests refused for an invalid event"),
    ("crash", "invocations crashed after their work"),
)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def soak(data: dict[str, Any]) -> str:
    rows = [
        "| vendor | valid deliveries expected | delivered | duplicates | lost | invalid events | in the DLQ with"
        " a reason (the refusal) | DLQ messages (relay) | moved by SQS | vendor requests |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for vendor, name in VENDORS.items():
        lost = data["lost"].get(vendor, 0) + data["valid_dead_lettered"].get(vendor, 0)
        rows.append(
            f"| {name} | {_n(data['expected'][vendor])} | {_n(data['delivered'][vendor])} |"
            f" {_n(data['duplicates'][vendor])} | {_n(lost)} | {_n(data['invalid_expected'][vendor])} |"
            f" {_n(data['invalid_in_dlq'][vendor])} ({_n(data.get('invalid_refused', {}).get(vendor, 0))}) |"
            f" {_n(data['dlq_messages'][vendor])} |"
            f" {_n(data['moved_by_sqs'][vendor])} | {_n(sum(data['vendor_requests'][vendor].values()))} |"
        )
    faults = data.get("faults", {})
    injected = ", ".join(f"{_n(faults[k])} {label}" for k, label in FAULTS if faults.get(k))
    killed = data.get("killed") or {}
    ended = ", ".join(f"{VENDORS[v]} {n}" for v, n in sorted(killed.items()) if n) or "none"
    lines = [
        f"{_n(data['events'])} events in {_n(data['ingest_requests'])} signed requests of {data['per_request']};"
        f" {_n(sum(data['expected'].values()))} valid vendor deliveries expected.",
        f"Faults injected: {injected}.",
        f"Invocations ended at their timeout: {ended}. Events near the size limit: {_n(data.get('big_events', 0))}.",
    ]
    if data.get("disabled"):
        lines.append(
            f"{VENDORS[data['disabled']]} turned off in its function mid-run: {_n(data['disabled_dead_lettered'])}"
            f" events dead-lettered as `disabled` ({_n(data['redriven'])} messages), redriven once it was back on."
        )
    if data.get("peak_mb"):
        lines.append(
            f"The local stack's peak memory: {_n(data['peak_mb'])} MB, moto's server {_n(data['moto_peak_mb'])} MB of"
            " it (at most 2,048 MB: `relay_tools.memory`)."
        )
    verdict = "**passed**: exactly once, nothing lost" if data["passed"] else "**failed**"
    lines.append(f"Drained in {data['drain_seconds']:.0f} s; {verdict}.")
    return "\n".join(rows) + "\n\n" + "\n".join(f"- {line}" for line in lines)


def load(runs: list[dict[str, Any]]) -> str:
    rows = [
        "| events per request | clients | requests | requests/s | events/s | p50 | p99 | max | resent after a 503 |"
        " errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        ms = run["latency_ms"]
        rows.append(
            f"| {run['per_request']} | {run['concurrency']} | {_n(run['requests'])} | {run['requests_per_s']:.1f} |"
            f" {run['events_per_s']:.1f} | {_n(ms['p50'])} ms | {_n(ms['p99'])} ms | {_n(ms['max'])} ms |"
            f" {_n(run.get('resends', 0))} | {_n(run['errors'])} |"
        )
    return "\n".join(rows)


def _range(stat: dict[str, float], digits: int = 0, scale: float = 1.0) -> str:
    f = f"{{:,.{digits}f}}"
    return f"{f.format(stat['median'] * scale)} [{f.format(stat['min'] * scale)}–{f.format(stat['max'] * scale)}]"


def bench_run(r: dict[str, Any]) -> str:
    return (
        f"Run of {r['when'][:10]} on {r['machine']}; vendor latency {r['latency_ms']:g} ms; every figure the median of"
        f" {r['repeat']} runs, [min–max]."
    )


def bench_throughput(r: dict[str, Any]) -> str:
    rows = [
        "| vendor | batch | events/s | ideal (ms) | efficiency | transport alone | CPU ms per event | transport"
        " | relay overhead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for vendor, name in VENDORS.items():
        for n in ("1", "10", "100"):
            row = r["throughput"][vendor][n]
            rows.append(
                f"| {name} | {n} | {_range(row['events_per_s'])} | {row['ideal_ms']:,.0f} |"
                f" {_range(row['efficiency'], 3)} | {row['transport_efficiency']['median']:.3f} |"
                f" {row['cpu_ms_per_event']['median']:.3f} |"
                f" {row['transport_cpu_ms_per_event']['median']:.3f} |"
                f" {row['overhead_cpu_ms_per_event']['median']:.3f} |"
            )
        naive = r["throughput"][vendor]["naive_100"]["events_per_s"]
        rows.append(
            f"| {name} | naive loop, 100 | {_range(naive, 1)} | | relay ÷ naive:"
            f" {r['throughput'][vendor]['ratio_vs_naive_100']:.1f}× | | | | |"
        )
    return "\n".join(rows)


def bench_functions(r: dict[str, Any]) -> str:
    ingest, imports, memory = r["ingest"], r["imports"], r["memory"]
    rows = [
        "| function | import (ms) | × `import boto3` | peak RSS, batch of 100 (MB) | share of MemorySize |",
        "|---|---|---|---|---|",
    ]
    rows.append(f"| (`import boto3`) | {_range(imports['boto3'])} | 1 | | |")
    for fn, name in (("ingest", "ingest"), *VENDORS.items()):
        m = memory[fn]
        rows.append(
            f"| {name} | {_range(imports[fn])} | {imports[fn]['ratio_vs_boto3']:.2f} |"
            f" {m['peak_rss_mb']:.0f} of {m['memory_size_mb']} | {m['share']:.2f} |"
        )
    if "applovin_tracing_active" in imports:
        traced = imports["applovin_tracing_active"]
        ratio = traced["median"] / imports["boto3"]["median"]
        rows.append(f"| AppLovin, `Tracing=Active` | {_range(traced)} | {ratio:.2f} | | |")
    lines = [
        "\n".join(rows),
        "",
        f"Ingest CPU per event: {_range(ingest['cpu_ms_per_event_1'], 3)} ms at 1 event per request,"
        f" {_range(ingest['cpu_ms_per_event_100'], 3)} ms at 100.",
    ]
    if "ratio_vs_reference_1" in ingest:
        lines[-1] += (
            " Its reference, what no ingest can skip (sign, verify, read the JSON, validate the canonical events;"
            " `bench_common.reference_once`), measured in the same run:"
            f" {_range(ingest['reference_ms_per_event_1'], 3)} ms and"
            f" {_range(ingest['reference_ms_per_event_100'], 3)} ms, so the ingest spends"
            f" {ingest['ratio_vs_reference_1']:.1f} and {ingest['ratio_vs_reference_100']:.1f} times its reference."
        )
    if "floor_ratio_1" in ingest:
        lines[-1] += (
            " At one event per request, the reference and the very AWS calls the ingest makes (the claim, the"
            " `PublishBatch`, the settling record: their parameters as the ingest built them, through the same"
            " clients, nothing else; `bench_common.floor_once`) take"
            f" {_range(ingest['floor_ms_per_event_1'], 3)} ms, {ingest['floor_ratio_1']:.1f} times the reference:"
            " no ingest making those calls through botocore can go under that."
        )
    if "floor_lines_ms_1" in ingest:
        floor = ingest["floor_lines_ms_1"]
        reference = floor["reference"]["median"]
        names = {"reference": "the reference (sign, verify, read, validate)"}
        rows = ["| the floor at one event per request, line by line | ms | × the reference |", "|---|---|---|"]
        for line, values in floor.items():
            role, _, operation = line.partition(": ")
            label = names.get(line, f"{role}: `{operation}`")
            rows.append(f"| {label} | {_range(values, 3)} | {values['median'] / reference:.2f} |")
        total = sum(v["median"] for v in floor.values())
        rows.append(f"| **the floor** (sum of the medians) | {total:.3f} | {total / reference:.2f} |")
        lines += ["", "\n".join(rows)]
    if "lines_ms_100" in ingest:
        ingest_ms = ingest["cpu_ms_per_event_100"]["median"]
        lines += ["", _ingest_lines(ingest["lines_ms_100"], ingest_ms, ingest["ratio_vs_reference_100"])]
    return "\n".join(lines)


def _ingest_lines(measured: dict, ingest_ms: float, ratio: float) -> str:
    """The ingest at 100 events per request, line by line: the reference, the mapping, each AWS call, and the
    rest (the ingest's median less the lines' medians); its last line the target's `ratio` (run by run)."""
    reference = measured["reference"]["median"]
    names = {
        "reference": "the reference (sign, verify, read, validate)",
        "the mapping": "the mapping: every event routed to each connection, its queued message made",
    }
    rows = ["| the ingest at 100 events per request, line by line | ms per event | × the reference |", "|---|---|---|"]
    for line, values in measured.items():
        role, _, operation = line.partition(": ")
        label = names.get(line, f"{role}: `{operation}`")
        rows.append(f"| {label} | {_range(values, 4)} | {values['median'] / reference:.2f} |")
    rest = ingest_ms - sum(v["median"] for v in measured.values())
    rows.append(
        "| the rest: each event's answer entry, messages and bundles, the journey, the calls' parameters"
        f" and answers | {rest:.4f} | {rest / reference:.2f} |"
    )
    rows.append(f"| **the ingest** (its median; the target's ratio, run by run) | {ingest_ms:.4f} | {ratio:.2f} |")
    return "\n".join(rows)


def bench_cost() -> str:
    """The cost model's lines (relay_tools.cost), with the last benchmark's durations (bench/results.json)."""
    from relay_tools.cost import report

    costs = {k: report(1_000_000, k) for k in (1, 100)}
    rows = ["| events per request | USD per million events, all three vendors |", "|---|---|"]
    for k, c in costs.items():
        rows.append(f"| {k} | ${c['usd_per_million_events']:.2f} |")
    rows += [
        "",
        f"Prices as of {costs[1]['prices_as_of']} (us-east-1), DynamoDB {costs[1]['capacity']}, per line of the"
        " model at 100 events per request:",
        "",
    ]
    rows += ["| item | USD per million events | basis |", "|---|---|---|"]
    rows += [f"| {line['item']} | {line['usd_per_million']:.4f} | {line['basis']} |" for line in costs[100]["lines"]]
    return "\n".join(rows)


def bench_targets(r: dict[str, Any]) -> str:
    rows = ["| target | measured | |", "|---|---|---|"]
    for t in r["targets"]:
        rows.append(
            f"| {t['target']} {t['op']} {t['limit']:g} | {t['value']:.3f} | {'met' if t['pass'] else '**missed**'} |"
        )
    return "\n".join(rows)


def cli_reference() -> str:
    """`relay --help` and every subcommand's, from the parser the command itself uses."""
    from relay_tools.cli import build_parser

    parser = build_parser()
    out = [_usage(parser, "relay")]
    for name, sub in _subcommands(parser):
        out.append(f"### `relay {name}`\n\n" + _usage(sub, f"relay {name}"))
        for action, deeper in _subcommands(sub):
            out.append(f"#### `relay {name} {action}`\n\n" + _usage(deeper, f"relay {name} {action}"))
    return "\n\n".join(out)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return list(action.choices.items())
    return []


def _usage(parser: argparse.ArgumentParser, prog: str) -> str:
    parser.prog = prog
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        parser.print_help()
    return "```text\n" + buffer.getvalue().rstrip() + "\n```"


def _text(node: ast.expr) -> str:
    """A string argument as the reader sees it: a literal, or an f-string with its fields as `{…}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            _text(v) if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}" for v in node.values
        )
    return "{" + ast.unparse(node) + "}"


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def reasons() -> str:
    """Every skip reason and vendor-rule error the code can give, read from the code itself."""
    sources = {
        "routing (every vendor)": ROOT / "shared/relay/queued/routing.py",
        "AppLovin": ROOT / "shared/relay/vendors/applovin.py",
        "AppsFlyer": ROOT / "shared/relay/vendors/appsflyer.py",
        "AdRoll": ROOT / "shared/relay/vendors/adroll.py",
    }
    rows = ["| where | kind | field | reason |", "|---|---|---|---|"]
    for where, path in sources.items():
        calls = [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Call)]
        for node in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "Skipped" and node.args:
                rows.append(f"| {where} | skipped | | {_cell(_text(node.args[0]))} |")
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "errors":
                if func.attr == "add" and len(node.args) == 2:
                    rows.append(f"| {where} | invalid | {_cell(_text(node.args[0]))} | {_cell(_text(node.args[1]))} |")
                elif func.attr == "require" and len(node.args) == 3:
                    reason = "is required: " + _text(node.args[2])
                    rows.append(f"| {where} | invalid | {_cell(_text(node.args[1]))} | {_cell(reason)} |")
    return "\n".join(rows)


def refusal_reasons() -> str:
    """Every reason the ingest refuses a request for, with its status, from relay.journey.refusals.REASONS."""
    from relay.journey.refusals import REASONS

    rows = ["| status | `reason` | when |", "|---|---|---|"]
    rows += [f"| {status} | `{reason}` | {when} |" for reason, (status, when) in REASONS.items()]
    return "\n".join(rows)


def outcomes() -> str:
    """The delivery outcomes, from the Outcome enum's own lines."""
    source = (ROOT / "shared/relay/delivery/outcomes.py").read_text(encoding="utf-8")
    rows = ["| outcome | meaning |", "|---|---|"]
    for value, comment in re.findall(r'^    [A-Z_]+ = "([a-z_]+)"  # (.+)$', source, re.M):
        rows.append(f"| `{value}` | {comment} |")
    return "\n".join(rows)


def journey_outcomes() -> str:
    """An event's outcomes at a vendor as its journey says them (relay.journey.record.OUTCOMES)."""
    from relay.journey.record import OUTCOMES

    rows = ["| outcome | meaning |", "|---|---|"]
    rows += [f"| `{name}` | {meaning} |" for name, meaning in OUTCOMES.items()]
    return "\n".join(rows)


def journey_cost() -> str:
    """What keeping the journeys costs, from the cost model (relay_tools.cost, relay_tools.journey_cost)."""
    from relay_tools.cost import cost_per_million

    rows = ["| events per request | journeys | total with journeys | total without |", "|---|---|---|---|"]
    basis = {}
    for k in (100, 10, 1):
        on = cost_per_million(k)
        journeys = next(line for line in on if line.item == "DynamoDB journeys")
        basis.setdefault("first", journeys.basis)
        total_on = sum(line.usd_per_million for line in on)
        total_off = sum(line.usd_per_million for line in cost_per_million(k, journey=False))
        rows.append(f"| {k} | ${journeys.usd_per_million:.3f} | ${total_on:.2f} | ${total_off:.2f} |")
    rows += [
        "",
        "USD per million events, every event to all three vendors, us-east-1 prices, 1 million events a month "
        f"(`relay cost --events-per-month N [--no-journey]` for yours). At 100 per request, {basis['first']}.",
    ]
    return "\n".join(rows)


COST_GROUPS = {  # a line of the cost model -> its group in the cost curve
    "API Gateway": "API Gateway",
    "Lambda": "Lambda",
    "SNS": "SNS",
    "SQS": "SQS",
    "DynamoDB journeys": "DynamoDB journeys",
    "DynamoDB": "DynamoDB ledger",
    "Secrets": "Secrets Manager",
}
COST_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]


def _cost_groups(k: int, capacity: str) -> dict[str, float]:
    from relay_tools.cost import cost_per_million

    groups = dict.fromkeys(dict.fromkeys(COST_GROUPS.values()), 0.0)
    for line in cost_per_million(k, events_per_month=10_000_000, capacity=capacity):
        group = next(g for prefix, g in COST_GROUPS.items() if line.item.startswith(prefix))
        groups[group] += line.usd_per_million
    return groups


def cost_curve() -> str:
    """The cost per million events against events per request (1, 10, 100), DynamoDB on demand and
    provisioned: an SVG of stacked bars drawn from the cost model (relay_tools.cost, durations from
    bench/results.json), and its table."""
    bars = [(k, mode) for k in (1, 10, 100) for mode in ("on-demand", "provisioned")]
    data = {bar: _cost_groups(*bar) for bar in bars}
    top = max(sum(g.values()) for g in data.values())
    width, height, bar_width, left, base = 760, 320, 56, 40, 270
    scale = (base - 20) / top
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="USD per million events against events per request" font-family="sans-serif" font-size="12">',
        f'<line x1="{left}" y1="{base}" x2="{left + 3 * (2 * bar_width + 50)}" y2="{base}" stroke="#333"/>',
    ]
    for i, (k, mode) in enumerate(bars):
        x, y = left + 10 + (i // 2) * (2 * bar_width + 50) + (i % 2) * (bar_width + 4), base
        for (group, usd), colour in zip(data[(k, mode)].items(), COST_COLOURS, strict=True):
            h = usd * scale
            y -= h
            svg.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar_width}" height="{h:.1f}" fill="{colour}">'
                f"<title>{group}: ${usd:.2f}</title></rect>"
            )
        total = sum(data[(k, mode)].values())
        svg.append(f'<text x="{x + bar_width / 2}" y="{y - 4:.1f}" text-anchor="middle">${total:.2f}</text>')
        label = "on demand" if mode == "on-demand" else "provisioned"
        svg.append(f'<text x="{x + bar_width / 2}" y="{base + 14}" text-anchor="middle" font-size="10">{label}</text>')
        if i % 2 == 0:
            svg.append(f'<text x="{x + bar_width + 2}" y="{base + 30}" text-anchor="middle">{k} per request</text>')
    legend = list(data[bars[0]])
    for j, (group, colour) in enumerate(zip(legend, COST_COLOURS, strict=True)):
        y = 24 + j * 18
        svg.append(f'<rect x="{width - 170}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        svg.append(f'<text x="{width - 152}" y="{y}">{group}</text>')
    svg.append("</svg>")
    rows = ["", "| events per request | DynamoDB | " + " | ".join(legend) + " | total |"]
    rows.append("|---" * (len(legend) + 3) + "|")
    for k, mode in bars:
        cells = " | ".join(f"{usd:.3f}" for usd in data[(k, mode)].values())
        rows.append(f"| {k} | {mode} | {cells} | **{sum(data[(k, mode)].values()):.2f}** |")
    return "\n".join(["".join(svg), *rows])


def capacity() -> str:
    """What one stack sustains with the defaults, the first limit, and what to raise for 10x and 100x
    (relay_tools.capacity)."""
    from relay_tools.capacity import report

    out = []
    for k in (1, 100):
        r = report(k)
        out += [
            f"**{k} event{'s' if k > 1 else ''} per request**: one stack sustains {r['sustained']:,.0f} events/s; the"
            f" first limit is {r['first_limit']}; 10x is {r['sustained'] * 10:,.0f} events/s.",
            "",
            "| limit | events/s it allows | default | for 10x | for 100x | raised by |",
            "|---|---|---|---|---|---|",
        ]
        for row in r["limits"]:
            need = [r["scale"][f].get(row["limit"], "") for f in (10, 100)]
            out.append(
                f"| {row['limit']} | {row['events_per_second']:,.0f} | {row['default']} | {need[0]} | {need[1]} |"
                f" {row['raise_with'] if any(need) else ''} |"
            )
        out.append("")
    return "\n".join(out).rstrip()


OUTAGE_KINDS = {"503": "503", "401": "401", "timeout": "every request timing out"}


def outage(runs: list[dict[str, Any]]) -> str:
    """`relay outage` runs: per vendor, what waited, what was delivered, the requests made while it was down."""
    rows = [
        "| run | vendor | outage | events expected | delivered | duplicates | lost | left in the DLQ |"
        " events sent while down | vendor requests while down | share | dead-lettered, then redriven |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for n, run in enumerate(runs, 1):
        for vendor, o in run["outages"].items():
            waited = run["waited"][vendor]
            share = run["requests_while_down"][vendor] / max(waited, 1)
            rows.append(
                f"| {n} | {VENDORS[vendor]} | {OUTAGE_KINDS[o['kind']]} for {o['hours']:g} h |"
                f" {_n(run['expected'][vendor])} | {_n(run['delivered'][vendor])} | {_n(run['duplicates'][vendor])} |"
                f" {_n(run['lost'][vendor])} | {_n(run['dlq_left'][vendor])} | {_n(waited)} |"
                f" {_n(run['requests_while_down'][vendor])} | {share:.1%} | {_n(run['exhausted'].get(vendor, 0))} |"
            )
        verdict = "**passed**" if run["passed"] else "**failed**"
        notes.append(
            f"- Run {n}: 1 h = {run['hour_seconds']:g} s, retry window {run['window_hours']:g} h, a probe every"
            f" {run['probe_seconds']} s; drained in {run['seconds']:.0f} s; {verdict}."
        )
    return "\n".join(rows + [""] + notes)


def outage_cost() -> str:
    """What a vendor outage adds, per million events waiting, from the cost model."""
    from relay_tools.cost import outage_cost as model

    hours = (1, 6, 24)
    rows = [
        "| vendor | " + " | ".join(f"{h} h" for h in hours) + " |",
        "|---|" + "---|" * len(hours),
    ]
    for vendor, name in VENDORS.items():
        rows.append(f"| {name} | " + " | ".join(f"${model(vendor, h)['usd']:.2f}" for h in hours) + " |")
    receives = " / ".join(f"{model('applovin', h)['receives_per_message']:.0f}" for h in hours)
    rows += ["", f"Receives per waiting message: {receives}. USD per million events waiting, us-east-1 prices."]
    return "\n".join(rows)


def alarms() -> str:
    """The template's CloudWatch alarms: what each watches and what it means."""
    from relay_tools.stack import load_template

    resources = load_template(ROOT / "template.yaml")["Resources"]
    rows = ["| alarm | metric | fires when |", "|---|---|---|"]
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        query = next((m["Expression"] for m in props.get("Metrics", []) if isinstance(m.get("Expression"), str)), "")
        found = re.search(r"SELECT \w+\((\w+)\) FROM SCHEMA\((\w+).*GROUP BY (\w+)", query)
        if found:  # a Metrics Insights query: one contributor per value of its GROUP BY
            metric = f"`{found[2]}` / `{found[1]}` per {found[3]} (Metrics Insights)"
        elif "Metrics" in props:  # metric math: the metrics it combines
            stats = [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
            names = list(dict.fromkeys((s["Namespace"], s["MetricName"]) for s in stats))
            metric = " and ".join(f"`{ns}` / `{name}`" for ns, name in names)
            if len(names) < len(stats):  # one metric of several resources
                metric += f" of {len(stats)} functions"
        else:
            metric = f"`{props.get('Namespace', 'S2SRelay')}` / `{props['MetricName']}`"
        rows.append(f"| `{name}` | {metric} | {props['AlarmDescription']} |")
    return "\n".join(rows)


def stack_cost() -> str:
    """What one stack costs a month whatever its traffic, what a connection adds, and N stacks against one."""
    from relay_tools.stack_cost import monthly, per_connection, per_stack

    rows = ["| per stack | USD per month | basis |", "|---|---|---|"]
    rows += [f"| {line.item} | {line.usd_per_month:.2f} | {line.basis} |" for line in per_stack()]
    rows += ["", "| per named connection | USD per month | basis |", "|---|---|---|"]
    rows += [f"| {line.item} | {line.usd_per_month:.2f} | {line.basis} |" for line in per_connection()]
    rows += ["", "| connections per vendor | one stack | one stack per connection | saved |", "|---|---|---|---|"]
    for n in (1, 2, 10, 50, 100):
        one, many = monthly(n), monthly(n, stacks=n)
        rows.append(f"| {n} | ${one:,.2f} | ${many:,.2f} | ${many - one:,.2f} |")
    return "\n".join(rows)


def archive_cost() -> str:
    """What the archive costs per million accepted events (1 and 100 per request), and a replay per million."""
    from relay_tools.archive_cost import archive_cost, archive_fixed_per_source_per_month, replay_cost

    one, hundred = archive_cost(1), archive_cost(100)
    rows = ["| archive | 1 event per request | 100 events per request | basis (100 per request) |", "|---|---|---|---|"]
    for a, b in zip(one, hundred, strict=True):
        rows.append(f"| {a.item} | ${a.usd_per_million:.3f} | ${b.usd_per_million:.3f} | {b.basis} |")
    total = [sum(line.usd_per_million for line in lines) for lines in (one, hundred)]
    rows.append(f"| **per million events archived** | **${total[0]:.2f}** | **${total[1]:.2f}** | |")
    fixed = archive_fixed_per_source_per_month()
    rows += [
        "",
        f"Each source adds about ${fixed:.2f} a month whatever its traffic: an object per 5-minute buffer.",
        "",
    ]
    rows += ["| replay | USD per million events replayed | basis |", "|---|---|---|"]
    replay = replay_cost()
    rows += [f"| {line.item} | {line.usd_per_million:.3f} | {line.basis} |" for line in replay]
    rows.append(
        f"| **per million events replayed to 3 connections** | **{sum(x.usd_per_million for x in replay):.2f}** | |"
    )
    return "\n".join(rows)


def state_machine(run: dict[str, Any]) -> str:
    rows = [
        "| examples run (max_examples) | steps run (most per example) | accepted events | delivered once"
        " | in the DLQ with a reason | replays (killed or stopped) | sends by --again replays | seconds |",
        "|---|---|---|---|---|---|---|---|",
        f"| {_n(run['examples'])} ({_n(run['max_examples'])}) | {_n(run['steps'])} ({run['max_steps']}) |"
        f" {_n(run['accepted_events'])} | {_n(run['delivered_events'])} | {_n(run['dead_lettered_events'])} |"
        f" {_n(run.get('replays', 0) + run.get('replays_stopped', 0))} ({_n(run.get('replays_stopped', 0))}) |"
        f" {_n(run.get('replayed_again', 0))} | {run['seconds']:,.0f} |",
    ]
    return "\n".join(rows)


def blocks() -> dict[str, dict[str, str]]:
    """page -> block name -> its text."""
    read = lambda path: json.loads((ROOT / path).read_text())  # noqa: E731
    bench = read("bench/results.json")
    return {
        "performance.md": {
            "bench-run": bench_run(bench),
            "bench-throughput": bench_throughput(bench),
            "bench-functions": bench_functions(bench),
            "bench-cost": bench_cost(),
            "bench-targets": bench_targets(bench),
            "stack-cost": stack_cost(),
            "archive-cost": archive_cost(),
            "cost-curve": cost_curve(),
            "capacity": capacity(),
        },
        "reliability.md": {
            "soak": soak(read("reliability/soak.json")),
            "load": load([read("reliability/load-1.json"), read("reliability/load-100.json")]),
            "outage": outage(
                [
                    read("reliability/outage.json"),
                    read("reliability/outage-window.json"),
                    read("reliability/outage-silence.json"),
                ]
            ),
            "outage-cost": outage_cost(),
            "state-machine": state_machine(read("reliability/state-machine.json")),
        },
        "cli.md": {"cli": cli_reference()},
        "decisions/0010-the-archive-and-replays.md": {"archive-cost": archive_cost()},
        "operations.md": {"alarms": alarms(), "outcomes": outcomes(), "reasons": reasons()},
        "troubleshooting.md": {"journey-outcomes": journey_outcomes()},
        "ingest-api.md": {"refusal-reasons": refusal_reasons()},
        "debugger.md": {"journey-cost": journey_cost()},
    }


def render(text: str, rendered: dict[str, str], page: str) -> str:
    for name, body in rendered.items():
        pattern = re.compile(rf"(<!-- render:{name} -->\n)(?:.*?\n)?(<!-- /render:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"docs/{page} has no <!-- render:{name} --> block")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is not up to date")
    args = parser.parse_args(argv)
    stale = []
    for page, rendered in blocks().items():
        path = DOCS / page
        text = path.read_text()
        new = render(text, rendered, page)
        if new != text:
            stale.append(page)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"generated blocks differ from their sources in docs/{', docs/'.join(stale)}: run python docs/render.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
