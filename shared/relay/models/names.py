"""The names of vendors, connections and sources (docs/connections.md).

A **connection** is a named instance of a vendor (one AppLovin pixel, one AppsFlyer app pair, one AdRoll
advertisable). Its id is ``<vendor>.<name>`` (``applovin.eu``); the connection named ``default`` (what a
single-connection relay configures in its ``[applovin]`` section) is written as its vendor alone
(``applovin``), the name every earlier answer, message and ledger record gave it. A **source** is a named
sender with its own signing secrets; a request names it in the ``X-Relay-Source`` header, and a request
without one comes from the source ``default``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import StringConstraints

VENDORS: tuple[str, ...] = ("applovin", "appsflyer", "adroll")
# each vendor as people write it: in tables and messages, and the prefix of its resources in template.yaml
VENDOR_TITLES = {"applovin": "AppLovin", "appsflyer": "AppsFlyer", "adroll": "AdRoll"}
Vendor = Literal["applovin", "appsflyer", "adroll"]
DEFAULT = "default"
SOURCE_HEADER = "X-Relay-Source"
NAME_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
Name = Annotated[str, StringConstraints(strip_whitespace=True, pattern=f"^{NAME_PATTERN}$")]
CONNECTION_PATTERN = f"({'|'.join(VENDORS)})(\\.{NAME_PATTERN})?"
ConnectionRef = Annotated[str, StringConstraints(strip_whitespace=True, pattern=f"^{CONNECTION_PATTERN}$")]
_CONNECTION = re.compile(CONNECTION_PATTERN)
_NAME = re.compile(NAME_PATTERN)


def connection_id(vendor: str, name: str) -> str:
    """The id of `vendor`'s connection `name`: ``applovin.eu``, or ``applovin`` for the one named default."""
    return vendor if name == DEFAULT else f"{vendor}.{name}"


def split_connection(ref: str) -> tuple[str, str]:
    """(vendor, name) of a connection id or of its long form (``applovin.default`` is ``applovin``)."""
    vendor, _, name = ref.partition(".")
    return vendor, name or DEFAULT


def normal_connection(ref: str) -> str:
    """The id a reference names (``applovin.default`` -> ``applovin``)."""
    return connection_id(*split_connection(ref))


def is_connection(ref: object) -> bool:
    return isinstance(ref, str) and _CONNECTION.fullmatch(ref) is not None


def is_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def vendor_of(connection: str) -> str:
    return connection.partition(".")[0]


REPLAY_PATTERN = r"[0-9a-f]{16}"  # a `relay replay --again`'s id (relay_tools.replay)
_REPLAY = re.compile(REPLAY_PATTERN)


def is_replay_id(value: object) -> bool:
    return isinstance(value, str) and _REPLAY.fullmatch(value) is not None


def ledger_name(connection: str, source: str = DEFAULT, replay: str = "") -> str:
    """The ledger's namespace for one connection's claims of one source's events (relay.aws.records): event
    ids are scoped per source, so two sources may use the same ids. The default source's claims keep the
    connection's id alone (``applovin``: what a single-connection relay wrote); another's add ``@<source>``.
    `replay`: a ``relay replay --again``'s id, whose sends are claimed apart (``applovin!<id>``): once per
    replay, whatever was delivered before (docs/archive.md)."""
    name = connection if source == DEFAULT else f"{connection}@{source}"
    return f"{name}!{replay}" if replay else name


def namespace_parts(namespace: str) -> tuple[str, str]:
    """(connection, source) of a ledger namespace: `ledger_name` read back (a replay's id dropped)."""
    connection, _, source = namespace.partition("!")[0].partition("@")
    return connection, source or DEFAULT
