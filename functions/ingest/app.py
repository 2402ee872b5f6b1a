"""IngestFunction: POST /v1/events (the logic is in the layer: relay.ingest)."""

from relay.handlers import ingest_handler

lambda_handler = ingest_handler()
