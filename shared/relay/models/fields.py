"""The field types of the canonical event (relay.models.event): each with its rule, its error message naming
what is wrong, and the JSON Schema the OpenAPI document shows for it."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, StringConstraints, WithJsonSchema

from relay.models.codes import COUNTRIES, CURRENCIES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Uuid = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        pattern=r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
    ),
]
MAX_EVENT_ID_LENGTH = 128


def is_event_id(value: Any) -> bool:
    """An event_id: 1 to MAX_EVENT_ID_LENGTH printable characters (Python's `str.isprintable`: letters,
    marks, numbers, punctuation, symbols and the ASCII space; no control, format, surrogate, private-use
    or unassigned character, no line or paragraph separator). The one rule the ingest, the queued message
    check and the error reports share."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_EVENT_ID_LENGTH and value.isprintable()


def _event_id(value: str) -> str:
    if not value.isprintable():
        raise ValueError(
            "must be printable text: no control characters (newline, tab...), format, surrogate or unassigned"
            " characters"
        )
    return value


EventId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_EVENT_ID_LENGTH),
    AfterValidator(_event_id),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EVENT_ID_LENGTH,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
            "description": "The idempotency key: printable text (no control, format, surrogate, private-use or"
            " unassigned character, no line or paragraph separator; the pattern shows the control characters)",
        }
    ),
]
MAX_DECIMAL_PLACES = 20  # floats such as 0.1 + 0.2 = 0.30000000000000004 still pass


def _money(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("must be a decimal number such as 12.34 (a JSON number or a string)")
    if isinstance(value, str) and not value.isascii():  # Decimal() also reads other scripts' digits
        raise ValueError("must be written with the ASCII digits 0-9")
    try:  # Decimal() itself ignores surrounding whitespace in a string
        number = Decimal(value if isinstance(value, str | int) else str(value))
    except ArithmeticError:
        raise ValueError("must be a decimal number such as 12.34 (a JSON number or a string)") from None
    if not number.is_finite():
        raise ValueError("must be a finite decimal number")
    # the exponent, not arithmetic: abs() of 1e999999999 would overflow the decimal context
    if number and number.adjusted() >= 15:
        raise ValueError("must be less than 10^15 in absolute value")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:  # 1e-999999999 would print a billion zeros
        raise ValueError(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return number


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}]}),
]


def _code_of(codes: frozenset[str], rule: str) -> Callable[[Any], Any]:
    """A validator of a code from a list (in any case: it is upper-cased)."""

    def check(value: Any) -> Any:
        if isinstance(value, str):
            code = value.strip().upper()
            if code not in codes:
                raise ValueError(rule)
            return code
        return value

    return check


_currency = _code_of(CURRENCIES, "must be an ISO 4217 currency code such as USD or EUR")
_country = _code_of(COUNTRIES, "must be an ISO 3166-1 alpha-2 country code such as US or DE")


_IPV4 = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")


def _ip(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if _IPV4.fullmatch(text):  # already canonical dotted IPv4: the common case, without ipaddress
            return text
        if "%" in text:  # a zone (fe80::1%eth0) names an interface of the client's host: nothing a vendor can use
            raise ValueError("must be an IPv4 or IPv6 address without a zone (%...)")
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address") from None
    return value


_PLAIN_HTTP_URL = re.compile(r"https?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[^\s]*)?")


def _http_url(value: Any) -> Any:
    if isinstance(value, str):
        if _PLAIN_HTTP_URL.fullmatch(value):  # the common case, without urlsplit
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL such as https://example.com/page")
        return value.strip()
    return value


def _timestamp(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, bool):
        raise ValueError("must be an ISO-8601 string with a UTC offset or epoch milliseconds")
    if isinstance(value, int):
        if not 0 <= value < 10**14:
            raise ValueError("epoch milliseconds out of range")
        return EPOCH + timedelta(milliseconds=value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be an ISO-8601 date-time such as 2025-03-12T13:01:25.001Z") from None
        if parsed.tzinfo is None:
            raise ValueError("ISO-8601 timestamp needs a UTC offset (Z or +hh:mm)")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T01:00+03:04 is before year 1 in UTC (found by make reliability)
            raise ValueError("is out of range once converted to UTC") from None
    raise ValueError("must be an ISO-8601 string with a UTC offset or epoch milliseconds")


Currency = Annotated[str, BeforeValidator(_currency), WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{3}$"})]
Country = Annotated[str, BeforeValidator(_country), WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2}$"})]
IpAddress = Annotated[
    str, BeforeValidator(_ip), WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
]
HttpUrl = Annotated[
    str,
    StringConstraints(max_length=4096),
    BeforeValidator(_http_url),
    WithJsonSchema({"type": "string", "format": "uri"}),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time", "description": "ISO-8601 with a UTC offset"},
                {"type": "integer", "minimum": 0, "description": "epoch milliseconds"},
            ]
        }
    ),
]
