"""The benchmark's own measuring tools (bench/): what they measure, not how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import ROOT


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_the_memory_probe_reports_the_child_not_the_process_that_started_it():
    """`ru_maxrss` survives fork and exec: a probe started by a 200 MB process used to report 200 MB."""
    ballast = bytearray(200 * 1024 * 1024)  # this process now holds 200 MB more than the child will
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: resident, not just reserved
    code = (
        "import json, resource, sys; sys.path.insert(0, 'bench'); from probe import peak_rss_kb;"
        "print(json.dumps({'hwm': peak_rss_kb(resource)}))"
    )
    out = json.loads(
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    )
    assert out["hwm"] < 100 * 1024  # the child's own peak (a bare interpreter: ~10 MB), whatever it inherited
    del ballast


def test_the_benchmark_scripts_load_against_the_code_as_it_is():
    """`make bench` runs outside the suite: a module the relay moved or renamed breaks it here, not there."""
    code = "import sys; sys.path.insert(0, 'bench'); import bench_common, probe, run, stub"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_ingest_figures_name_each_line_at_one_and_at_100_events_per_request():
    """One round of `run.ingest`: the floor at one event per request and the ingest at 100 line by line,
    each line named for what it is, in the order the ingest does it; every ratio a positive number."""
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import run; r = run.ingest(1); "
        "print(json.dumps({k: (list(v) if k.endswith('_lines_ms_1') or k == 'lines_ms_100' else v) "
        "for k, v in r.items() if 'lines' in k or 'ratio' in k}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["floor_lines_ms_1"] == [
        "reference",
        "the claim: PutItem",
        "the message published: PublishBatch",
        "the settling record: PutItem",
    ]
    assert out["lines_ms_100"] == [
        "reference",
        "the mapping",
        "the claims: TransactWriteItems",
        "the 10 messages published: PublishBatch",
        "the settling record: PutItem",
    ]
    assert all(out[k] > 0 for k in ("ratio_vs_reference_1", "ratio_vs_reference_100", "floor_ratio_1"))


def test_the_vendor_figures_give_each_batch_its_efficiency_and_the_transports_alone():
    """One round of `run.throughput` against the stub (5 ms): for every vendor and batch size, the relay's
    efficiency and the transport's alone (the same requests sent bare), each an ideal time over a measured
    one, so above 0 and at most 1 (the stub answers no sooner than its latency)."""
    code = (
        "import json, subprocess, sys; sys.path.insert(0, 'bench'); import run;"
        "stub = subprocess.Popen([sys.executable, 'bench/stub.py', '5'], stdout=subprocess.PIPE, text=True);"
        "port = int(stub.stdout.readline());"
        "t = run.throughput(port, 0.005, 1); stub.kill();"
        "print(json.dumps({v: {n: [t[v][n]['efficiency']['median'], t[v][n]['transport_efficiency']['median']]"
        " for n in ('1', '10', '100')} for v in t}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(out) == ["adroll", "applovin", "appsflyer"]
    for vendor, sizes in out.items():
        for n, (relay, bare) in sizes.items():
            assert 0 < relay <= 1 and 0 < bare <= 1, (vendor, n, relay, bare)
