"""template.yaml: valid for the real SAM CLI (with cfn-lint), and the layer is built for arm64."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml

from .conftest import ROOT

BIN = Path(sys.executable).parent


def test_sam_validate_lint_passes():
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    proc = subprocess.run(
        [str(BIN / "sam"), "validate", "--lint", "--template-file", str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr
    assert re.search(r"^[EW]\d{4}", proc.stdout + proc.stderr, re.M) is None  # no cfn-lint error or warning


def test_layer_is_the_shared_package_built_for_arm64_python313():
    layer = cfn_yaml.load(str(ROOT / "template.yaml"))["Resources"]["RelayLayer"]
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert (ROOT / "shared" / "requirements.txt").is_file() and (ROOT / "shared" / "relay" / "__init__.py").is_file()
