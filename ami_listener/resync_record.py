"""The record of the listener's last resync: which calls Asterisk listed as live, and when.

The listener calls `record_resync` at the end of each resync (Listener._resync); `reconcile
--check` reads it to report calls Redis is still billing that Asterisk did not list then.
"""

from __future__ import annotations

import json

import redis

from lua.keys import Keys


def record_resync(client: redis.Redis, keys: Keys, live: set[str], at_ms: int) -> None:
    """One HSET: the uniqueids CoreShowChannels listed, and the moment it was asked."""
    client.hset(keys.last_resync(), mapping={"at_ms": at_ms, "live": json.dumps(sorted(live))})


def last_resync(client: redis.Redis, keys: Keys) -> tuple[int, set[str]] | None:
    """(at_ms, live uniqueids) of the last resync, or None when no listener recorded one."""
    at_ms, live = client.hmget(keys.last_resync(), ["at_ms", "live"])
    if at_ms is None or live is None:
        return None
    return int(at_ms), set(json.loads(live))
