"""The functions' handlers as Lambda runs them (`functions/<name>/app.py`), with injected dependencies.

The local stack and the tests call these: each handler is the module-level, decorated `lambda_handler` that
ships, given an `IngestFunction` or `VendorFunction` holding the clients and configuration to use.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from relay.delivery.function import VendorFunction
from relay.ingest.function import IngestFunction

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@functools.cache
def app_module(name: str) -> ModuleType:
    """`functions/<name>/app.py`, imported under a name of its own (every function's module is `app`)."""
    path = FUNCTIONS / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"s2s_relay_function_{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ingest_handler(**dependencies: Any) -> Handler:
    """IngestFunction's lambda_handler with an `IngestFunction(**dependencies)`."""
    return functools.partial(app_module("ingest").lambda_handler, function=IngestFunction(**dependencies))


def vendor_handler(vendor: str, **dependencies: Any) -> Handler:
    """A vendor function's lambda_handler with a `VendorFunction(vendor, **dependencies)`."""
    return functools.partial(app_module(vendor).lambda_handler, function=VendorFunction(vendor, **dependencies))


def archive_handler(sealer: Any) -> Handler:
    """ArchiveFunction's lambda_handler (Firehose's transformation) with a `relay.archive.sealing.Sealer`."""
    return functools.partial(app_module("archive").lambda_handler, seal=sealer)
