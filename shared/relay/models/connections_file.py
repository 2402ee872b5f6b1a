"""The connections file: sources and connections declared as code (docs/connections.md).

Locally the whole configuration is one TOML file (`relay.toml`, secrets included). Deployed, the sources and
connections are a TOML file shipped in the functions' layer, ``shared/connections.toml`` in the repository
(``/opt/python/connections.toml`` in Lambda), with no secret in it: the signing secrets and vendor keys stay in
Secrets Manager (docs/decisions/0009). A relay without the file has one connection per vendor and one source,
from the template's parameters.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relay.models.errors import FieldError
from relay.models.sections import SECRET_KEYS, ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "connections.toml"
DEPLOYED_KEYS = ("sources", "connections")


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file's tables; raises ConfigError naming the file and what is wrong with it."""
    import tomllib  # read only where a file exists: not on a function's import path otherwise

    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([FieldError(str(p), "file not found")], str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([FieldError(str(p), f"cannot be read ({type(exc).__name__})")], str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([FieldError(str(p), f"is not valid TOML: {exc}")], str(p)) from None


def deployed_errors(data: Mapping[str, Any]) -> list[FieldError]:
    """What a deployed connections file may not hold: another section (the template's parameters set those)
    or a secret (Secrets Manager holds those)."""
    errors = [
        FieldError(
            key,
            f"is not set in the connections file: only {' and '.join(DEPLOYED_KEYS)} are (the rest are "
            "the template's parameters)",
        )
        for key in data
        if key not in DEPLOYED_KEYS
    ]
    sources = data.get("sources")
    for name, source in (sources if isinstance(sources, dict) else {}).items():
        if isinstance(source, dict) and "secrets" in source:
            errors.append(FieldError(f"sources.{name}.secrets", _IN_SECRETS_MANAGER))
    connections = data.get("connections")
    for vendor, named in (connections if isinstance(connections, dict) else {}).items():
        for name, section in (named if isinstance(named, dict) else {}).items():
            for key in SECRET_KEYS.get(vendor, ()):
                if isinstance(section, dict) and key in section:
                    errors.append(FieldError(f"connections.{vendor}.{name}.{key}", _IN_SECRETS_MANAGER))
    return errors


_IN_SECRETS_MANAGER = 'is a secret: put it in Secrets Manager (docs/connections.md, "Secrets"), not in this file'


def shipped_connections(path: str | None = None) -> dict[str, Any]:
    """The deployed connections file's sources and connections (`path`, else the file shipped in the layer;
    {} without one); raises ConfigError when it holds what it may not (`relay config check --deployed` refuses
    it before a deploy)."""
    return _read_deployed(Path(path) if path else SHIPPED)


@functools.cache
def _read_deployed(path: Path) -> dict[str, Any]:
    """Read once per container: the file is part of the deployed code."""
    if not path.exists():
        return {}
    data = read_toml(path)
    errors = deployed_errors(data)
    if errors:
        raise ConfigError(errors, path.name)
    return data
