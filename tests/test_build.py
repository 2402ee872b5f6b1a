"""`sam build` with the real SAM CLI: no error, no warning, and an arm64 layer.

An x86_64 pydantic_core in an arm64 layer breaks every function at import, so every compiled
extension in the built layer must be an aarch64 ELF for CPython 3.13.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import ROOT, run_sam

EM_AARCH64 = 183


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path.name} is not an ELF file"
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sam-build")
    # this machine kind has 3.13 through pyenv (its shim exists even when 3.13 is not selected)
    proc = run_sam(
        "build",
        "--template-file",
        str(ROOT / "template.yaml"),
        "--build-dir",
        str(out),
        "--base-dir",
        str(ROOT),
        timeout=900,
        PYENV_VERSION=os.environ.get("PYENV_VERSION", "3.11.7:3.13.0"),
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    return out, log


def test_build_has_no_warning(built):
    _, log = built
    assert "Build Succeeded" in log
    lowered = log.lower()
    assert "warning" not in lowered and "error" not in lowered, log


def test_layer_extensions_are_aarch64_for_python313(built):
    out, _ = built
    layer = out / "RelayLayer" / "python"
    assert (layer / "relay" / "vendor_handler.py").is_file() and (layer / "relay" / "ingest_handler.py").is_file()
    extensions = list(layer.rglob("*.so"))
    assert any(p.name.startswith("_pydantic_core.cpython-313-aarch64") for p in extensions), extensions
    wrong = [str(p.relative_to(layer)) for p in extensions if elf_machine(p) != EM_AARCH64]
    assert wrong == [], f"non-arm64 extensions in the layer: {wrong}"


@pytest.mark.parametrize("function", ["IngestFunction", "AppLovinFunction", "AppsFlyerFunction", "AdRollFunction"])
def test_functions_are_built(built, function):
    out, _ = built
    assert (out / function / "app.py").is_file()
