"""applovin: deliver queued canonical events (the logic is in the layer: relay.vendor_handler, relay.forwarding)."""

from relay.delivery.handler import vendor_handler

lambda_handler = vendor_handler("applovin")
