"""Sealing an archived event's personal fields: AES-256-GCM under a data key from the archive's KMS key
(envelope encryption). The ArchiveFunction asks KMS for one data key per container and hour (`Sealer`), not one
call per event; each sealed value carries its data key encrypted by KMS, and the event's id as associated data
(a sealed value moved to another line does not open). `relay replay` opens them with kms:Decrypt, once per data
key (`Opener`)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import pydantic_core

DATA_KEY_SECONDS = 3600  # a data key seals for an hour at most, then KMS gives a new one
NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed value that cannot be opened (another event's, altered, or a key KMS refuses)."""


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # the archive's function and the CLI only

    return AESGCM(key)


class Sealer:
    """Seals with a data key of `key_id` (the archive's KMS key), renewed every DATA_KEY_SECONDS."""

    def __init__(self, key_id: str, client: Any = None, clock: Callable[[], float] = time.time):
        self.key_id = key_id
        self._client = client
        self.clock = clock
        self._key: tuple[float, Any, str] | None = None  # (made at, AESGCM, its encrypted data key, base64)

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("kms")
        return self._client

    def _current(self) -> tuple[Any, str]:
        now = self.clock()
        if self._key is None or now - self._key[0] >= DATA_KEY_SECONDS:
            made = self.client.generate_data_key(KeyId=self.key_id, KeySpec="AES_256")
            self._key = (now, _aesgcm(made["Plaintext"]), base64.b64encode(made["CiphertextBlob"]).decode())
        return self._key[1], self._key[2]

    def seal(self, values: Mapping[str, Any], event_id: str) -> dict[str, str]:
        """`values` (JSON) sealed for the event `event_id`: {"key": the data key, encrypted; "data": the rest}."""
        aead, key = self._current()
        nonce = os.urandom(NONCE_BYTES)
        data = aead.encrypt(nonce, pydantic_core.to_json(dict(values)), event_id.encode("utf-8"))
        return {"key": key, "data": base64.b64encode(nonce + data).decode()}


class Opener:
    """Opens sealed values: asks KMS to decrypt each data key once."""

    def __init__(self, client: Any):
        self.client = client
        self._keys: dict[str, Any] = {}

    def unseal(self, sealed: Mapping[str, Any], event_id: str) -> dict[str, Any]:
        try:
            key = str(sealed["key"])
            if key not in self._keys:
                plain = self.client.decrypt(CiphertextBlob=base64.b64decode(key))["Plaintext"]
                self._keys[key] = _aesgcm(plain)
            raw = base64.b64decode(str(sealed["data"]))
            opened = self._keys[key].decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], event_id.encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - KMS refused, or the value was altered: said in one line
            raise SealError(f"sealed: cannot be opened ({type(exc).__name__})") from None
        values = pydantic_core.from_json(opened)
        if not isinstance(values, dict):
            raise SealError("sealed: does not hold a JSON object")
        return values
