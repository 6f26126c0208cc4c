"""Rate books in Redis, read by lua/lookupRates-n.lua.

Layout (lua/keys.py): one hash per (table, reseller, group) scope under the reseller's hash
tag; field `<dialprefix>|<numlen>`, value `id|connect|initblock|rateinitial|billingblock|
destination` (money in micro-units). A lookup is one HMGET of all prefixes of the number per
scope, one script run per hash tag (the reseller's and the global `{r0}`), pipelined.

`replace` builds every scope hash of a new book under staging keys, then swaps each tag's
hashes in with one MULTI/EXEC (RENAME, and DEL of scopes that no longer exist): a lookup sees
the old book or the new one, never half of each. `upsert` / `remove` / `set_fields` apply
single rows. Each rebuild stages under its own key (a random token), and `lock(reseller)`
makes the writers of one tag take turns (rating/store.py holds it while it reads MySQL and
writes here), so two rebuilds, or a rebuild and a single-row change, never interleave.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterable

import redis

from lua.keys import Keys
from lua.scripts import Scripts
from rating.price import Rate
from rating.select import TABLES, BookRow, scopes

BATCH_FIELDS = 5_000
LOCK_TTL_S = 300  # a lock outlives its holder by at most this (a crashed process)
LOCK_WAIT_S = 120  # how long a writer waits for its turn before giving up


def encode_rate(rate: Rate) -> str:
    return (
        f"{rate.id}|{rate.connect}|{rate.initblock}|{rate.per_minute}|{rate.block}|"
        f"{rate.destination}"
    )


def decode_rate(value: str | bytes) -> Rate:
    if isinstance(value, bytes):
        value = value.decode()
    rid, connect, initblock, per_minute, block, destination = value.split("|", 5)
    return Rate(int(rid), int(connect), int(initblock), int(per_minute), int(block), destination)


class RedisRateBook:
    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts | None = None) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts or Scripts(client)

    def _scope_key(self, row: BookRow) -> str:
        return self.keys.rate_scope(row.table, row.reseller_id, row.group_id)

    # -- writing -------------------------------------------------------------------------
    def replace(self, rows: Iterable[BookRow]) -> int:
        """Swap in a whole new book (all tables, all scopes). Returns the number of rows."""
        by_tag: dict[int, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
        count = 0
        for row in rows:
            by_tag[row.reseller_id][self._scope_key(row)][row.field] = encode_rate(row.rate)
            count += 1
        old_tags = {int(t) for t in self.client.smembers(self.keys.rate_tags())}
        for reseller_id in old_tags | set(by_tag):
            self._replace_tag(reseller_id, by_tag.get(reseller_id, {}))
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.rate_tags())
        if by_tag:
            pipe.sadd(self.keys.rate_tags(), *by_tag)
        pipe.execute()
        return count

    def lock(self, reseller_id: int):
        """The writers' lock of one tag (redis-py Lock: a context manager)."""
        return self.client.lock(
            self.keys.rate_lock(reseller_id), timeout=LOCK_TTL_S, blocking_timeout=LOCK_WAIT_S
        )

    def _stage(self, scopes_: dict[str, dict[str, str]], token: str) -> None:
        """Write each scope's new fields under its staging key (not yet visible)."""
        pipe = self.client.pipeline(transaction=False)
        for key, fields in scopes_.items():
            staging = self.keys.staging(key, token)
            pipe.delete(staging)
            items = list(fields.items())
            for start in range(0, len(items), BATCH_FIELDS):
                pipe.hset(staging, mapping=dict(items[start : start + BATCH_FIELDS]))
                if len(pipe) >= 50:
                    pipe.execute()
        pipe.execute()

    def replace_tag(self, reseller_id: int, rows: Iterable[BookRow]) -> int:
        """Swap in every scope of one tag (rows of other tags are refused)."""
        scopes_: dict[str, dict[str, str]] = defaultdict(dict)
        count = 0
        for row in rows:
            if row.reseller_id != reseller_id:
                raise ValueError(f"row {row.rate.id} is not under reseller {reseller_id}")
            scopes_[self._scope_key(row)][row.field] = encode_rate(row.rate)
            count += 1
        self._replace_tag(reseller_id, scopes_)
        pipe = self.client.pipeline(transaction=False)
        (pipe.sadd if scopes_ else pipe.srem)(self.keys.rate_tags(), reseller_id)
        pipe.execute()
        return count

    def _replace_tag(self, reseller_id: int, scopes_: dict[str, dict[str, str]]) -> None:
        token = secrets.token_hex(8)
        self._stage(scopes_, token)
        index = self.keys.rate_index(reseller_id)
        stale = {k.decode() for k in self.client.smembers(index)} - set(scopes_)
        swap = self.client.pipeline(transaction=True)  # MULTI/EXEC: one atomic step per tag
        for key in scopes_:
            swap.rename(self.keys.staging(key, token), key)
        if stale:
            swap.delete(*stale)
        swap.delete(index)
        if scopes_:
            swap.sadd(index, *scopes_)
        swap.execute()

    def replace_scope(
        self, table: str, reseller_id: int, group_id: int, rows: Iterable[BookRow]
    ) -> int:
        """Swap in the new content of one scope (after an import or a delete)."""
        key = self.keys.rate_scope(table, reseller_id, group_id)
        fields = {}
        for row in rows:
            if (row.table, row.reseller_id, row.group_id) != (table, reseller_id, group_id):
                raise ValueError(
                    f"row {row.rate.id} is not in scope {table} {reseller_id}/{group_id}"
                )
            fields[row.field] = encode_rate(row.rate)
        token = secrets.token_hex(8)
        self._stage({key: fields} if fields else {}, token)
        swap = self.client.pipeline(transaction=True)
        if fields:
            swap.rename(self.keys.staging(key, token), key)
            swap.sadd(self.keys.rate_index(reseller_id), key)
            swap.sadd(self.keys.rate_tags(), reseller_id)
        else:
            swap.delete(key)
            swap.srem(self.keys.rate_index(reseller_id), key)
        swap.execute()
        return len(fields)

    def upsert(self, row: BookRow, previous: BookRow | None = None) -> None:
        """Add or change one row; `previous` is its old version when its key changed."""
        if previous is not None and (previous.field, previous.scope) != (row.field, row.scope):
            self.remove(previous)
        key = self._scope_key(row)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, row.field, encode_rate(row.rate))
        pipe.sadd(self.keys.rate_index(row.reseller_id), key)
        pipe.sadd(self.keys.rate_tags(), row.reseller_id)
        pipe.execute()

    def remove(self, row: BookRow) -> None:
        self.client.hdel(self._scope_key(row), row.field)

    def set_fields(
        self, table: str, reseller_id: int, group_id: int, fields: dict[str, Rate | None]
    ) -> None:
        """Set (a Rate) or delete (None) some fields of one scope, in one MULTI/EXEC."""
        key = self.keys.rate_scope(table, reseller_id, group_id)
        pipe = self.client.pipeline(transaction=True)
        gone = [f for f, rate in fields.items() if rate is None]
        kept = {f: encode_rate(rate) for f, rate in fields.items() if rate is not None}
        if gone:
            pipe.hdel(key, *gone)
        if kept:
            pipe.hset(key, mapping=kept)
            pipe.sadd(self.keys.rate_index(reseller_id), key)
            pipe.sadd(self.keys.rate_tags(), reseller_id)
        pipe.execute()

    def clear(self) -> None:
        """Delete the whole book (scratch books of the operator tools, tests)."""
        self.replace(())
        self.client.delete(self.keys.rate_tags())

    # -- reading -------------------------------------------------------------------------
    def lookup(self, number: str, reseller_id: int, group_id: int) -> dict[str, Rate | None]:
        """The rate of each table for this call, as lua/lookupRates-n.lua finds it."""
        return self.lookup_many([(number, reseller_id, group_id)])[0]

    def lookup_many(self, queries: list[tuple[str, int, int]]) -> list[dict[str, Rate | None]]:
        """Many lookups in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        plans = []
        for number, reseller_id, group_id in queries:
            if not number.isdigit() and number != "":
                raise ValueError(f"number {number!r} must be digits")
            # Scope chains, split by hash tag; each tag's keys keep the chain order per table.
            by_tag: dict[int, list[tuple[str, list[str]]]] = defaultdict(list)
            for table in TABLES:
                per_tag: dict[int, list[str]] = defaultdict(list)
                for r, g in scopes(table, reseller_id, group_id):
                    per_tag[r].append(self.keys.rate_scope(table, r, g))
                for r, keys in per_tag.items():
                    by_tag[r].append((table, keys))
            order = []
            for groups in by_tag.values():
                keys = [k for _, ks in groups for k in ks]
                args = [number, len(groups), *(len(ks) for _, ks in groups)]
                self.scripts.lookup_rates(keys=keys, args=args, client=pipe)
                order.append([t for t, _ in groups])
            plans.append(order)
        replies = iter(pipe.execute())
        results = []
        for order in plans:
            found: dict[str, Rate | None] = dict.fromkeys(TABLES)
            # Tags were added reseller first, then global: the first hit per table wins.
            for tables in order:
                for table, value in zip(tables, next(replies), strict=True):
                    if found[table] is None and value:
                        found[table] = decode_rate(value)
            results.append(found)
        return results
