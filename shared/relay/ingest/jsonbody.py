"""Strict JSON decoding for bodies from clients: UTF-8 only, no NaN/Infinity, no duplicate keys,
bounded nesting. Errors are short and never echo the input."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from relay.models.errors import FieldError, join_path

MAX_DEPTH = 32
JSON_TYPES = ("application/json",)

# SQS carries only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF. Queued messages are JSON,
# whose writer escapes the control characters, so the characters it would still refuse are lone surrogates
# (which JSON's \uD800 escapes can make), U+FFFE and U+FFFF.
UNCARRIED = re.compile("[\ud800-\udfff\ufffe\uffff]")
# a quick look at the raw body (UTF-8 of U+FFFE/U+FFFF, or an escape that may make one of them): only a
# body where this matches has its strings walked
_MAYBE_UNCARRIED = re.compile(rb"\xef\xbf[\xbe\xbf]|\\u[dD][89a-fA-F]|\\u[fF][fF][fF][eEfF]")


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


NON_FINITE = "must be a finite number (within ±1.8e308): it overflows a double"


def _finite_or_flagged(found: list[bool]) -> Callable[[str], float]:
    """json's `parse_float`: a number such as 1e400 reads as inf, which no JSON writer may write back (RFC 8259
    has no Infinity): it is flagged, and `non_finite` then tells where it is. Every fraction or exponent of
    the body goes through it: a tenth of a microsecond each, where a search of the whole text for what an
    overflowing number must hold took 14 µs per event of a 100-event body (three times the parse itself)."""

    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            found.append(True)
        return value

    return parse


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH, non_finite: list[bool] | None = None) -> Any:
    """Decode a client's body. `non_finite`: a list that gets an entry when a number overflows a double (the
    caller then refuses the events holding one, naming the field: `non_finite`)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise JsonBodyError("body is not valid UTF-8") from None
    flagged = _finite_or_flagged(non_finite if non_finite is not None else [])
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=flagged)
    except JsonBodyError:
        raise
    except RecursionError:
        raise JsonBodyError(f"JSON is nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # Python refuses to convert an integer of more than sys.get_int_max_str_digits() digits
        raise JsonBodyError(f"not valid JSON: an integer has more than {sys.get_int_max_str_digits()} digits") from None
    if _depth(value, max_depth) > max_depth:
        raise JsonBodyError(f"JSON is nested deeper than {max_depth} levels")
    return value


def may_hold_uncarried(raw: bytes) -> bool:
    """Whether a raw body may hold a character SQS cannot carry (then `uncarried` tells where). Two substring
    searches rule out most bodies at a fraction of the pattern's cost."""
    if b"\xef\xbf" not in raw and b"\\u" not in raw:
        return False
    return _MAYBE_UNCARRIED.search(raw) is not None


def uncarried(value: Any, path: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str] | None:
    """The path of the first key or string in `value` holding a character SQS cannot carry, and that
    character; None when there is none."""
    for where, text in _strings(value, path):
        found = UNCARRIED.search(text)
        if found:
            return where, found.group()
    return None


def non_finite(value: Any, path: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """The path of the first number in `value` that is not finite; None when there is none."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = non_finite(child, (*path, key))
        if found is not None:
            return found
    return None


def _strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield (*path, "(a key)"), key  # not the key itself: an error names the field, never echoes input
            yield from _strings(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, (*path, index))


@dataclass(frozen=True, slots=True)
class Suspect:
    """What a body may hold that no event may, told by a quick look at the whole body: a character SQS cannot
    carry (`may_hold_uncarried`), a number that overflowed a double (`loads`). Only then is
    each event walked, to refuse the one holding it and name the field."""

    uncarried: bool = True
    non_finite: bool = True

    def refusal(self, raw_event: Any) -> FieldError | None:
        if self.uncarried and (found := uncarried(raw_event)):
            path, char = found
            reason = f"holds U+{ord(char):04X}, a character SQS cannot carry (lone surrogates, U+FFFE and U+FFFF)"
            return FieldError(join_path(path), reason)
        if self.non_finite and (where := non_finite(raw_event)) is not None:
            return FieldError(join_path(where), NON_FINITE)
        return None


def json_content_type(value: str | None) -> bool:
    """Whether a Content-Type header says JSON in UTF-8 (no charset, or utf-8)."""
    if not value:
        return False
    media, _, params = value.partition(";")
    if media.strip().lower() not in JSON_TYPES:
        return False
    charset = params.strip().lower()
    return not charset.startswith("charset=") or charset in ("charset=utf-8", 'charset="utf-8"')
