"""Rating engine benchmark: `python -m ops.bench.rating [--rows 1000000]`.

1. Lookups + prices per second through Lua (pipelined), against a no-op EVALSHA on the same
   Redis in the same run, and through the Python reference.
2. Import of a generated N-row rate file into MariaDB, and sync of the book into Redis.
3. Lookup cost with a 1,000-row book and with the N-row book.
Uses a scratch database (created and dropped) and a scratch Redis key prefix (removed).
"""

from __future__ import annotations

import argparse
import platform
import random
import secrets
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from lua.keys import Keys
from lua.scripts import Scripts
from ops.redis_server import connect
from rating import ratefiles
from rating.book import RedisRateBook
from rating.engines import PriceQuery, price_lua
from rating.money import format_micros
from rating.price import Rate, price
from rating.select import BookRow, RateBook
from rating.store import Target, import_rates, sync_all
from schema import migrate
from schema.db import make_engine, session_factory

BATCH = 100


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def numbers(count: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return [f"00{rnd.randint(1, 999)}{rnd.randint(10**8, 10**9)}" for _ in range(count)]


def generated_book(rows: int) -> list[BookRow]:
    """Prefixes 00 + 1..9 digits, like a real international deck."""
    out, i = [], 0
    length = 2
    while i < rows:
        for p in range(10 ** (length - 1), 10**length):
            if i >= rows:
                break
            i += 1
            out.append(BookRow("customer", f"00{p}", 0, 0, 0, Rate(i, 0, 0, 100_000 + i, 60)))
        length += 1
    return out


def noop_rate(client, calls: int) -> float:
    noop = client.register_script("return 0")
    pipe = client.pipeline(transaction=False)
    start = time.perf_counter()
    for i in range(calls):
        noop(client=pipe)
        if (i + 1) % BATCH == 0:
            pipe.execute()
    pipe.execute()
    return calls / (time.perf_counter() - start)


def lua_lookup_price_rate(book: RedisRateBook, queries: list[str]) -> float:
    start = time.perf_counter()
    for s in range(0, len(queries), BATCH):
        found = book.lookup_many([(n, 1, 10) for n in queries[s : s + BATCH]])
        calls = [PriceQuery(f["customer"], 10_000, 125) for f in found if f["customer"]]
        price_lua(book.client, calls)
    return len(queries) / (time.perf_counter() - start)


def lookup_only_rate(book: RedisRateBook, queries: list[str]) -> float:
    start = time.perf_counter()
    for s in range(0, len(queries), BATCH):
        book.lookup_many([(n, 1, 10) for n in queries[s : s + BATCH]])
    return len(queries) / (time.perf_counter() - start)


def python_rate(rows: list[BookRow], queries: list[str]) -> float:
    reference = RateBook(rows)
    start = time.perf_counter()
    for n in queries:
        row = reference.select("customer", n, 1, 10)
        if row:
            price(125, 10_000, row.rate)
    return len(queries) / (time.perf_counter() - start)


def import_and_sync(
    mysql_server: str, redis_url: str, rows: int, queries: list[str]
) -> dict[str, float]:
    name = f"abbench_{secrets.token_hex(4)}"
    server = make_engine(f"{mysql_server}/")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine = make_engine(f"{mysql_server}/{name}")
    client = connect(redis_url)
    book = RedisRateBook(client, Keys(f"abbench{secrets.token_hex(3)}"))
    try:
        migrate.upgrade(engine)
        factory = session_factory(engine)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "deck.csv"
            with open(path, "w") as f:
                f.write("dialprefix,destination,rateinitial,billingblock\n")
                for b in generated_book(rows):
                    rate = format_micros(b.rate.per_minute)
                    f.write(f"{b.dialprefix},Zone {b.rate.id % 97},{rate},60\n")
            start = time.perf_counter()
            with factory() as session, session.begin():
                report = import_rates(
                    session,
                    Target("customer"),
                    ratefiles.mapped_rows(ratefiles.read_cells(path), {}),
                )
            imported = time.perf_counter() - start
        start = time.perf_counter()
        with factory() as session:
            synced_rows = sync_all(session, book)
        synced = time.perf_counter() - start
        assert report.inserted == rows == synced_rows
        big_rate = lookup_only_rate(book, queries)
        return {"import_s": imported, "sync_s": synced, "lookups_per_s_big": big_rate}
    finally:
        book.clear()
        engine.dispose()
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--mysql", default="mysql+mysqldb://root@127.0.0.1:3306")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    print(f"machine: {platform.node()} {platform.machine()} {platform.python_version()}")
    client = connect(args.redis)
    Scripts(client)
    queries = numbers(args.queries)
    small = generated_book(1_000)
    book = RedisRateBook(client, Keys(f"abbench{secrets.token_hex(3)}"))
    book.replace(small)
    try:
        ceiling = noop_rate(client, args.queries)
        lua = lua_lookup_price_rate(book, queries)
        lookups_small = lookup_only_rate(book, queries)
        py = python_rate(small, queries)
    finally:
        book.clear()
    print(f"no-op EVALSHA, pipelined x{BATCH}:        {ceiling:10,.0f} /s")
    print(
        f"Lua lookup + price (1k-row book):     {lua:10,.0f} calls/s "
        f"({lua / ceiling:.0%} of no-op; a lookup is 2 script runs: reseller + global tag)"
    )
    print(f"Lua lookup only (1k-row book):        {lookups_small:10,.0f} /s")
    print(f"Python reference select + price:      {py:10,.0f} /s")
    figures = import_and_sync(args.mysql, args.redis, args.rows, queries)
    print(f"import {args.rows:,} rows into MariaDB:  {figures['import_s']:8.1f} s")
    print(f"sync {args.rows:,} rows into Redis:      {figures['sync_s']:8.1f} s")
    print(f"import + sync:                        {figures['import_s'] + figures['sync_s']:8.1f} s")
    big = figures["lookups_per_s_big"]
    print(
        f"Lua lookup only ({args.rows:,}-row book): {big:10,.0f} /s "
        f"({big / lookups_small:.0%} of the 1k-row book's rate, same numbers)"
    )


if __name__ == "__main__":
    main()
