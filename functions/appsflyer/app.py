"""appsflyer: deliver queued canonical events (the logic is in the layer: relay.forwarding)."""

from relay.handlers import vendor_handler

lambda_handler = vendor_handler("appsflyer")
