"""S2S Relay core: canonical events, vendor mappings, PII hashing and request signing.

This package is the Lambda layer (`shared/` in the repository, `/opt/python/relay` on Lambda).
"""

__version__ = "0.1.0"
