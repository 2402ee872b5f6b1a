"""The deployed form of a configuration's sources and connections (docs/connections.md): the connections file
without secrets, and the secrets in the shape Secrets Manager holds them. The local stack deploys a relay.toml
this way, so that its functions read their configuration exactly as deployed ones do."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from relay.ingest.signing import HEADER, sign
from relay.models.config import SECRET_KEYS, RelayConfig
from relay.models.names import DEFAULT, SOURCE_HEADER, split_connection


def has_connections(config: RelayConfig) -> bool:
    """Whether the configuration declares sources or named connections (else the template's parameters say it all)."""
    return config.sources is not None or any(split_connection(c)[1] != DEFAULT for c in config.sections())


def deployed_file(config: RelayConfig, endpoints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The connections file for `config`: its sources and named connections, without a secret; `endpoints`:
    the endpoint of each connection id that has none of its own (the local sandboxes)."""
    out: dict[str, Any] = {}
    if config.sources is not None:
        out["sources"] = {
            name: ({"connections": list(source.connections)} if source.connections is not None else {})
            for name, source in config.sources.items()
        }
    for connection, section in config.sections().items():
        vendor, name = split_connection(connection)
        if name == DEFAULT:
            continue
        values = section.model_dump(mode="json", exclude_none=True, exclude=set(SECRET_KEYS[vendor]))
        if "endpoint" not in values and connection in (endpoints or {}):
            values["endpoint"] = endpoints[connection]  # type: ignore[index]
        out.setdefault("connections", {}).setdefault(vendor, {})[name] = values
    return out


def ingest_secret(config: RelayConfig) -> dict[str, Any]:
    """The ingest's secret: the default source's secrets at its top, each other source's under "sources"."""
    out: dict[str, Any] = {}
    for name, source in config.source_configs().items():
        keys = [s.get_secret_value() for s in source.secrets]
        value = {"secret": keys[0], **({"previous": keys[1]} if keys[1:] else {})} if keys else {}
        if name == DEFAULT:
            out.update(value)
        elif value:
            out.setdefault("sources", {})[name] = value
    return out


def vendor_secret(config: RelayConfig, vendor: str) -> dict[str, Any]:
    """A vendor's secret: its default connection's keys at its top, each named connection's under "connections"."""
    out: dict[str, Any] = {}
    for connection, section in config.sections().items():
        of, name = split_connection(connection)
        if of != vendor:
            continue
        keys = {k: getattr(section, k).get_secret_value() for k in SECRET_KEYS[vendor] if getattr(section, k)}
        if name == DEFAULT:
            out.update(keys)
        elif keys:
            out.setdefault("connections", {})[name] = keys
    return out


def signing_source(config: RelayConfig, name: str | None = None) -> tuple[str, str]:
    """(source, its current signing secret) to sign with: `name`, else the only source, else the one named
    default; raises ValueError naming what is missing."""
    sources = config.source_configs()
    if name is None:
        name = next(iter(sources)) if len(sources) == 1 else DEFAULT
    if name not in sources:
        raise ValueError(f"--source: no source named '{name}' in the configuration (sources: {', '.join(sources)})")
    if not sources[name].secrets:
        where = "[ingest] secrets" if name == DEFAULT else f"sources.{name}.secrets"
        raise ValueError(f"{where}: no signing secret to sign with")
    return name, sources[name].secrets[0].get_secret_value()


def signed_headers(raw: bytes, config: RelayConfig, source: str | None = None) -> dict[str, str]:
    """The headers of a request signed as `source` (signing_source): the signature, and the source's name
    unless it is the default one."""
    name, secret = signing_source(config, source)
    headers = {"Content-Type": "application/json", HEADER: sign(raw, secret)}
    if name != DEFAULT:
        headers[SOURCE_HEADER] = name
    return headers


def toml_text(data: Mapping[str, Any]) -> str:
    """TOML for a file of tables of tables (what `deployed_file` makes): strings, numbers, booleans, lists."""
    lines: list[str] = []

    def table(path: list[str], values: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, Mapping)}
        if path and (scalars or not values):
            lines.append(
                f"[{'.'.join(json.dumps(p) if not p.replace('_', '').replace('-', '').isalnum() else p for p in path)}]"
            )
        for key, value in scalars.items():
            lines.append(f"{key} = {json.dumps(value)}")
        if path and (scalars or not values):
            lines.append("")
        for key, value in values.items():
            if isinstance(value, Mapping):
                table([*path, key], value)

    table([], data)
    return "\n".join(lines)
