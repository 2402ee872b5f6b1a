"""Strict JSON decoding for bodies from clients: UTF-8 only, no NaN/Infinity, no duplicate keys,
bounded nesting. Errors are short and never echo the input."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class JsonBodyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # built in C; only a shorter dict than its pairs has a repeated key to find
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonBodyError(f"duplicate key '{key[:64]}'")
            seen.add(key)
    return out


def _no_constants(name: str) -> Any:
    raise JsonBodyError(f"{name} is not valid JSON")


def _depth(value: Any, limit: int, level: int = 1) -> int:
    """Nesting depth of containers (scalars are not visited), stopping as soon as `limit` is passed.
    Recursion is bounded by `limit` (json.loads already refused what Python cannot recurse into)."""
    if type(value) is dict:
        children = value.values()
    elif type(value) is list:
        children = value
    else:
        return level - 1
    if level > limit:
        return level
    deepest = level
    for child in children:
        if type(child) is dict or type(child) is list:
            depth = _depth(child, limit, level + 1)
            if depth > limit:
                return depth
            deepest = max(deepest, depth)
    return deepest


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise JsonBodyError("body is not valid UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except JsonBodyError:
        raise
    except RecursionError:
        raise JsonBodyError(f"JSON is nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if _depth(value, max_depth) > max_depth:
        raise JsonBodyError(f"JSON is nested deeper than {max_depth} levels")
    return value
