"""IngestFunction: POST /v1/events (the logic is in the layer: relay.ingest_handler, relay.ingest)."""

from relay.ingest.handler import ingest_handler

lambda_handler = ingest_handler()
