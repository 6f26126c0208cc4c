"""Moving a booth to a shop of another reseller.

A booth's live state (credit used, unbilled calls, totals, lock, deposit: the `c<id>.*`
fields of its reseller's balances hash, README "Redis keys") lives under the hash tag of its
reseller. A move across resellers therefore moves those fields to the new tag and removes
them from the old one, so nothing restarts at 0 and nothing stale stays behind.

A call still running, or ended but not yet settled, points at the old tag (its state and its
ended record are there, and settlement charges the levels named in them): such a move is
refused until the calls are settled. A move inside one reseller keeps the same hash and needs
nothing of this.
"""

from __future__ import annotations

from lua.credit import CreditEngine
from ops.errors import InvalidInput
from workers.settle import read_ended


def open_calls(engine: CreditEngine, reseller_id: int, clid_id: int) -> int:
    """Calls of this booth that Redis is billing or that wait for settlement."""
    running = sum(1 for c, _, _ in engine.paid_by_live_calls(reseller_id) if c == clid_id)
    unsettled = sum(1 for call in read_ended(engine, reseller_id, None) if call.clid_id == clid_id)
    return running + unsettled


def check_move(engine: CreditEngine, clid_id: int, old_reseller: int, new_reseller: int) -> None:
    if old_reseller == new_reseller:
        return
    busy = open_calls(engine, old_reseller, clid_id)
    if busy:
        raise InvalidInput(
            f"this booth has {busy} call(s) running or not yet settled under its reseller: "
            "move it to another reseller's shop once they are settled"
        )


def move_live_state(
    engine: CreditEngine, clid_id: int, old_reseller: int, new_reseller: int
) -> int:
    """Carry the booth's `c<id>.*` balance fields from the old tag to the new one. Returns
    how many fields moved."""
    if old_reseller == new_reseller:
        return 0
    client, keys = engine.client, engine.keys
    old, new = keys.balances(old_reseller), keys.balances(new_reseller)
    fields = dict(client.hscan_iter(old, match=f"c{clid_id}.*", count=100))
    if fields:
        client.hset(new, mapping=fields)  # two tags: two slots, so two steps (set, then drop)
        client.hdel(old, *fields)
    return len(fields)
