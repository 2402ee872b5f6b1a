"""relay.toml: the relay's configuration for the CLI and the local stack (deployed functions read their environment)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from relay.models.config import ConfigError, RelayConfig, config_from_mapping
from relay.models.errors import FieldError


def load_config(path: str | os.PathLike[str]) -> RelayConfig:
    """Read and validate a relay.toml; raises ConfigError naming the key and the reason."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([FieldError(str(p), "file not found")], str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([FieldError(str(p), f"cannot be read ({type(exc).__name__})")], str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([FieldError(str(p), f"is not valid TOML: {exc}")], str(p)) from None
    return config_from_mapping(data, str(p))
