"""`sam build` with the real SAM CLI: no error, no warning, and an arm64 layer.

An x86_64 pydantic_core in an arm64 layer breaks every function at import, so every compiled
extension in the built layer must be an aarch64 ELF for CPython 3.13.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..conftest import ROOT

EM_AARCH64 = 183


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path.name} is not an ELF file"
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


SHIPPED = ROOT / "shared" / "connections.toml"
# a connections file as `relay config deployed` writes it: the build checks it and ships it in the layer
CONNECTIONS = """[sources.eu]
connections = ["applovin.eu"]

[connections.applovin.eu]
pixel_id = "eu-pixel"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """`make build` (the connections file checked, sam build, then the bytecode step) into a temporary build
    directory, with a connections file in shared/ for the duration of the build."""
    import subprocess

    out = tmp_path_factory.mktemp("sam-build")
    assert not SHIPPED.exists(), "shared/connections.toml is the user's: the build test would overwrite it"
    # this machine kind has 3.13 through pyenv (its shim exists even when 3.13 is not selected)
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.11.7:3.13.0"),
    }
    SHIPPED.write_text(CONNECTIONS)
    try:
        proc = subprocess.run(
            ["make", "-s", "build", f"BUILD_DIR={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
    finally:
        SHIPPED.unlink()
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    return out, log


def pyc_flags(path: Path) -> int:
    """PEP 552 flags of a .pyc: 0b11 = hash-based and checked against its source."""
    return int.from_bytes(path.read_bytes()[4:8], "little")


def test_every_module_ships_hash_checked_bytecode_for_python313(built):
    """Lambda's /opt and /var/task are read-only: a module without bytecode is compiled again at every cold
    start (measured: 880 ms instead of 290 ms to import a vendor function). Timestamp-based .pyc would not
    survive the zip's dates, hash-checked ones do."""
    out, _ = built
    for directory in (out / "RelayLayer" / "python", out / "AppLovinFunction"):
        sources = [p for p in directory.rglob("*.py") if "__pycache__" not in p.parts]
        missing = [
            str(p.relative_to(directory))
            for p in sources
            if not (p.parent / "__pycache__" / f"{p.stem}.cpython-313.pyc").is_file()
        ]
        assert sources and missing == []
    for module in (
        "relay/delivery/forwarding",
        "pydantic/main",
        "httpx/_client",
        "aws_lambda_powertools/logging/logger",
    ):
        path = out / "RelayLayer" / "python" / module
        assert pyc_flags(path.parent / "__pycache__" / f"{path.name}.cpython-313.pyc") == 0b11


# Every module the layer's package ships: the runtime, nothing that only runs on a developer's machine
# (a module added to shared/relay must be added here, on purpose).
LAYER_MODULES = {
    "relay/__init__.py",
    "relay/coldstart.py",
    "relay/observability.py",
    *(
        f"relay/models/{m}.py"
        for m in (
            "__init__",
            "codes",
            "config",
            "connections_file",
            "environment",
            "errors",
            "event",
            "event_names",
            "fields",
            "names",
            "pii",
            "sections",
        )
    ),
    *(
        f"relay/ingest/{m}.py"
        for m in (
            "__init__",
            "archiving",
            "bundling",
            "function",
            "jsonbody",
            "reading",
            "refused",
            "request",
            "signing",
            "status",
        )
    ),
    *(f"relay/journey/{m}.py" for m in ("__init__", "erasure", "record", "refusals", "trace")),
    *(f"relay/archive/{m}.py" for m in ("__init__", "lines", "outgoing", "reading", "sealing")),
    *(f"relay/queued/{m}.py" for m in ("__init__", "message", "routing")),
    *(
        f"relay/delivery/{m}.py"
        for m in (
            "__init__",
            "circuit",
            "deadletter",
            "deadline",
            "forwarding",
            "function",
            "lanes",
            "letters",
            "outcomes",
            "recovery",
            "redrive",
            "reporting",
            "response",
            "retry",
            "sending",
        )
    ),
    *(f"relay/vendors/{m}.py" for m in ("__init__", "adroll", "applovin", "appsflyer", "base")),
    *(
        f"relay/aws/{m}.py"
        for m in (
            "__init__",
            "bundle_claims",
            "clients",
            "ingest_claims",
            "ledger",
            "plain_json",
            "records",
            "replay",
            "secrets",
            "sns",
        )
    ),
}
# what must never reach Lambda: the developer tooling, servers, the AWS emulator, test and build tools
NOT_IN_LAYER = ("relay_tools", "moto", "werkzeug", "flask", "pytest", "hypothesis", "samcli", "cfnlint", "boto3")


def test_the_layer_ships_the_runtime_and_nothing_else(built):
    out, _ = built
    layer = out / "RelayLayer" / "python"
    shipped = {
        str(p.relative_to(layer)) for p in (layer / "relay").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped == LAYER_MODULES
    # the connections file at the layer's root, where relay.models.connections_file looks for it
    assert (layer / "connections.toml").read_text() == CONNECTIONS
    assert (layer / "relay" / "models" / "connections_file.py").resolve().parents[2] / "connections.toml" == (
        layer / "connections.toml"
    ).resolve()
    top = {p.name.split("-")[0].lower() for p in layer.iterdir()}
    assert not top & set(NOT_IN_LAYER), sorted(top & set(NOT_IN_LAYER))
    assert not list(layer.glob("*.egg-info"))


def test_a_connections_file_holding_a_secret_stops_the_build_before_sam(tmp_path):
    import subprocess

    assert not SHIPPED.exists()
    SHIPPED.write_text(CONNECTIONS.replace('pixel_id = "eu-pixel"', 'pixel_id = "eu-pixel"\napi_key = "k-SECRET"'))
    try:
        proc = subprocess.run(
            ["make", "-s", "build", f"BUILD_DIR={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
    finally:
        SHIPPED.unlink()
    assert proc.returncode != 0
    assert "connections.applovin.eu.api_key: is a secret" in proc.stderr
    assert "k-SECRET" not in proc.stdout + proc.stderr
    assert not list(tmp_path.iterdir())  # sam build never ran


def test_runtime_code_reads_no_files_and_imports_no_tooling():
    """The layer's code reads its environment, AWS and the vendors: never a file of the repository. One module
    reads one file: relay.models.connections_file, the connections file shipped in the layer."""
    import ast

    for path in (ROOT / "shared" / "relay").rglob("*.py"):
        if path.name == "connections_file.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
        }
        assert not names & {"open", "read_text", "read_bytes", "__file__", "tomllib"}, path
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        assert not {m for m in imported if m.split(".")[0] in ("relay_tools", "moto", "pytest")}, path


def test_build_has_no_warning(built):
    _, log = built
    assert "Build Succeeded" in log
    lowered = log.lower()
    assert "warning" not in lowered and "error" not in lowered, log


def test_layer_extensions_are_aarch64_for_python313(built):
    out, _ = built
    layer = out / "RelayLayer" / "python"
    assert (layer / "relay" / "delivery" / "forwarding.py").is_file() and (
        layer / "relay" / "ingest" / "request.py"
    ).is_file()
    extensions = list(layer.rglob("*.so"))
    assert any(p.name.startswith("_pydantic_core.cpython-313-aarch64") for p in extensions), extensions
    wrong = [str(p.relative_to(layer)) for p in extensions if elf_machine(p) != EM_AARCH64]
    assert wrong == [], f"non-arm64 extensions in the layer: {wrong}"


def test_the_archive_function_ships_its_aes_gcm_for_arm64(built):
    """ArchiveFunction seals personal fields with AES-GCM (relay.archive.sealing): `cryptography`, its own
    requirement (not the layer's: no other function loads it), built for arm64."""
    out, _ = built
    function = out / "ArchiveFunction"
    extensions = [p for p in function.rglob("*.so") if p.parent.name == "bindings" or "cryptography" in p.parts]
    assert extensions and all(elf_machine(p) == EM_AARCH64 for p in extensions), extensions
    assert not list((out / "RelayLayer" / "python").glob("cryptography*"))


@pytest.mark.parametrize(
    "function", ["IngestFunction", "AppLovinFunction", "AppsFlyerFunction", "AdRollFunction", "ArchiveFunction"]
)
def test_functions_are_built(built, function):
    out, _ = built
    assert (out / function / "app.py").is_file()
