"""ArchiveFunction: Amazon Data Firehose's data transformation for the archive of accepted events.

Firehose hands it the ingest's archive messages (SNS delivers them to the stream); it answers each record with
the archive's lines, personal fields sealed, and the partition keys (source, day). The logic is
`relay.archive.lines` in the layer.
"""

from __future__ import annotations

import functools
from typing import Any

from relay.coldstart import loading

with loading():  # the cold start's imports (relay.coldstart)
    from relay.archive.lines import transform
    from relay.archive.sealing import Sealer
    from relay.models.environment import ArchiveEnvironment, get_environment
    from relay.observability import logger, metrics, traced


@functools.cache
def sealer() -> Sealer:
    """The container's Sealer: one KMS data key an hour."""
    return Sealer(get_environment(ArchiveEnvironment).key_id)


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any, seal: Sealer | None = None) -> dict[str, Any]:
    """A Firehose transformation event in, its records out. `seal`: injected by tests and the local stack."""
    return transform(event, seal or sealer())
