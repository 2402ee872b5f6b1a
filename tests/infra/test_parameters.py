"""Template numbers (issue #24, item 9): every numeric parameter is read as the type it is declared.

CloudFormation applies MinValue/MaxValue to a `Number` and lets any fraction through; it applies
AllowedPattern to a `String` only. So a parameter the relay reads as an integer is a String whose pattern
admits exactly the integers of its range, and a `Number` is one the relay reads as a number (fractions
included). Each parameter's minimum, maximum and a fraction go through the functions' environment models
as the template hands them over; nothing that CloudFormation accepts may make a function refuse its
environment (every request would then fail)."""

from __future__ import annotations

import re

import pytest

from relay.models.config import config_from_env, delivery_from_env
from relay.models.environment import IngestEnvironment, VendorEnvironment, read_environment

from ..conftest import ROOT

FUNCTIONS = {
    "IngestFunction": IngestEnvironment,
    "AppLovinFunction": VendorEnvironment,
    "AppsFlyerFunction": VendorEnvironment,
    "AdRollFunction": VendorEnvironment,
}


def _parameters() -> dict:
    from relay_tools.stack import load_template

    return load_template(ROOT / "template.yaml")["Parameters"]


def _integer_range(pattern: str) -> tuple[int, int]:
    """The integers a String parameter's pattern admits: one contiguous range, nothing else."""
    admitted = [n for n in range(0, 200_001) if re.fullmatch(pattern, str(n))]
    assert admitted, pattern
    low, high = admitted[0], admitted[-1]
    assert admitted == list(range(low, high + 1)), f"{pattern} admits a broken range"
    return low, high


def _numeric() -> dict[str, dict]:
    """Every Number, and every String whose default is a whole number (the integer parameters)."""
    return {
        name: param
        for name, param in _parameters().items()
        if param["Type"] == "Number" or (str(param.get("Default", "")).isdigit() and str(param["Default"]).isascii())
    }


NUMERIC = _numeric()


def test_the_numeric_parameters_are_found():
    assert {"SignatureToleranceSeconds", "MaxEventAgeDays", "MaxReceiveCount", "RetryWindowHours"} <= set(NUMERIC)
    assert len(NUMERIC) >= 12


# the Number parameters are read as numbers: fractions are among their values (the next test)
INTEGERS = sorted(name for name, param in NUMERIC.items() if param["Type"] != "Number")


@pytest.mark.parametrize("name", INTEGERS)
def test_an_integer_parameter_refuses_fractions_at_deploy(name):
    param = NUMERIC[name]
    assert param.get("ConstraintDescription"), name
    assert "MinValue" not in param and "MaxValue" not in param, f"{name}: CloudFormation ignores them on a String"
    low, high = _integer_range(param["AllowedPattern"])
    assert low <= int(param["Default"]) <= high
    for refused in (f"{low}.5", f"{high}.0", "1e3", "", " 1", "+1", "0x10", f"{high + 1}", "\u0661"):
        assert not re.fullmatch(param["AllowedPattern"], refused), (name, refused)
    assert f"from {low} to {high}" in param["ConstraintDescription"], name


@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_each_value_cloudformation_accepts_is_one_the_functions_read(aws_stack, name):
    param = NUMERIC[name]
    if param["Type"] == "Number":
        low, high = float(param["MinValue"]), float(param["MaxValue"])
        values = [param["MinValue"], param["MaxValue"], str((low + high) / 2 + 0.25)]
    else:
        low, high = _integer_range(param["AllowedPattern"])
        values = [str(low), str(high)]
    for value in values:
        aws_stack.parameters[name] = str(value)
        for logical, model in FUNCTIONS.items():
            env = aws_stack.function_environment(logical)
            read_environment(model, env)  # raises InvalidEnvironment
            delivery_from_env(env)
            config_from_env(env, credentials=False)
