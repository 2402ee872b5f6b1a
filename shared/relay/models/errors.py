"""Field-level errors: one shape for model, config and vendor-rule errors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

RULE_ERROR = "relay_rule"


@dataclass(frozen=True, slots=True)
class FieldError:
    """An error that names the field (dotted path, `items[0].price`) and the rule it broke."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def rule_error(field: str, message: str) -> PydanticCustomError:
    """Raise from a model validator: `field` is relative to the model being validated."""
    return PydanticCustomError(RULE_ERROR, message, {"field": field})


def join_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "":
            out += f".{part}" if out else str(part)
    return out or "(event)"


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field (unknown fields are rejected)"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def from_validation_error(exc: ValidationError, prefix: Iterable[Any] = ()) -> list[FieldError]:
    """Turn a pydantic ValidationError into FieldErrors. Never echoes the input value."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc: list[Any] = [*prefix, *err["loc"]]
        if err["type"] == RULE_ERROR:
            loc += str((err.get("ctx") or {}).get("field", "")).split(".")
        # pydantic names tagged-union / function-validator branches in the location; drop them
        loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        out.append(FieldError(join_path(loc), _message(err)))
    return out
