"""relay.toml: the relay's configuration for the CLI and the local stack (deployed functions read their environment,
the connections file shipped with them and Secrets Manager)."""

from __future__ import annotations

import os

from relay.models.config import RelayConfig, config_from_mapping
from relay.models.connections_file import read_toml


def load_config(path: str | os.PathLike[str]) -> RelayConfig:
    """Read and validate a relay.toml; raises ConfigError naming the key and the reason."""
    return config_from_mapping(read_toml(path), str(path))
