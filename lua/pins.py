"""Clid PINs in Redis, for the card IVR of the FastAGI server (which never reads MySQL).

MySQL's `clids.pin` is the source; provisioning (workers/provision.py) copies a digest of it
here: `pins` maps sha256(PIN) to the payer key, `pin_of` the payer key back to its digest, so
a changed PIN drops the old one. Only digests are kept in Redis.
"""

from __future__ import annotations

import hashlib

import redis

from lua.keys import Keys


def pin_digest(pin: str) -> str:
    return hashlib.sha256(pin.strip().encode()).hexdigest()


class PinStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client, self.keys = client, keys

    def set_pin(self, payer_key: str, pin: str) -> None:
        digest = pin_digest(pin)
        old = self.client.hget(self.keys.pin_of(), payer_key)
        pipe = self.client.pipeline(transaction=True)
        if old is not None and _text(old) != digest:
            pipe.hdel(self.keys.pins(), _text(old))
        pipe.hset(self.keys.pins(), digest, payer_key)
        pipe.hset(self.keys.pin_of(), payer_key, digest)
        pipe.execute()

    def owner(self, pin: str) -> str | None:
        """The payer key whose PIN this is, or None."""
        value = self.client.hget(self.keys.pins(), pin_digest(pin))
        return None if value is None else _text(value)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
