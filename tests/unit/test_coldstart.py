"""A function's cold start (relay.coldstart): imports without the cycle collector, what they made frozen after.
Each case runs in a fresh interpreter: the collector's state and the freeze belong to the whole process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT / "tools")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("function", ["ingest", "applovin", "appsflyer", "adroll", "archive"])
def test_a_function_module_imports_without_the_collector_then_freezes_what_it_made(function):
    state = _run(
        "import gc, json, sys, relay.coldstart as c\n"
        "paused = []\n"
        "real = c.gc.disable\n"
        "c.gc.disable = lambda: (paused.append(True), real())[1]\n"
        f"sys.path.insert(0, 'functions/{function}')\n"
        "import app\n"
        "print(json.dumps({'paused': len(paused), 'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count()}))"
    )
    assert state["paused"] == 1 and state["enabled"]  # paused once, running again after the imports
    assert state["frozen"] > 10_000  # the modules' objects are in the permanent generation


def test_an_import_that_fails_resumes_the_collector_and_freezes_nothing():
    state = _run(
        "import gc, json\n"
        "from relay.coldstart import loading\n"
        "try:\n"
        "    with loading():\n"
        "        assert not gc.isenabled()\n"
        "        import relay_no_such_module  # noqa: F401\n"
        "except ImportError:\n"
        "    pass\n"
        "print(json.dumps({'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count()}))"
    )
    assert state == {"enabled": True, "frozen": 0}


def test_a_collector_paused_before_stays_paused_and_the_freeze_happens_once_per_process():
    state = _run(
        "import gc, json\n"
        "from relay.coldstart import loading\n"
        "gc.disable()\n"
        "with loading():\n"
        "    import relay.models.event  # noqa: F401\n"
        "paused = not gc.isenabled()\n"
        "first = gc.get_freeze_count()\n"
        "gc.enable()\n"
        "kept = [[i] for i in range(5000)]\n"
        "with loading():\n"
        "    import relay.vendors  # noqa: F401\n"
        "print(json.dumps({'paused': paused, 'first': first, 'second': gc.get_freeze_count()}))"
    )
    assert state["paused"]  # the wrap did not resume a collector someone else paused
    assert state["first"] > 0
    assert state["second"] <= state["first"]  # the second wrap froze nothing more (the 5,000 lists stay young)
