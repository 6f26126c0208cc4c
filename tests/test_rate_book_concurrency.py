"""Issue 13 point 5: writers of one rate scope at the same time (whole-scope rebuilds after
imports, single-row saves of the back office) on real MariaDB and Redis, in threads. Whatever
the interleaving, Redis ends equal to MySQL and no writer fails."""

from __future__ import annotations

import threading

import pytest

from lua.keys import Keys
from rating.book import RedisRateBook, encode_rate
from rating.store import Target, book_rows, import_rates, sync_scope
from schema import CustomerRate, migrate
from schema.db import make_engine, session_factory
from tests.tenants import make_tenant

SCOPE_ROWS = 3_000


@pytest.fixture
def shop(fresh_mysql_url, redis_server, key_prefix):
    """A committed scope of SCOPE_ROWS customer rates (each thread reads it in its own
    session), synced to Redis."""
    engine = make_engine(fresh_mysql_url)
    migrate.upgrade(engine)
    factory = session_factory(engine)
    with factory() as s, s.begin():
        booth = make_tenant(s)
        target = Target("customer", booth.group.reseller_id, booth.group_id)
        rows = ((n, {"dialprefix": f"9{n:05d}", "rateinitial": "0.1"}) for n in range(SCOPE_ROWS))
        import_rates(s, target, rows)
    book = RedisRateBook(redis_server, Keys(key_prefix))
    with factory() as s:
        sync_scope(s, book, target)
    yield factory, book, target
    engine.dispose()


def run_in_threads(work, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # collected: the test shows every failure
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def redis_equals_mysql(factory, book: RedisRateBook, target: Target) -> None:
    key = book.keys.rate_scope(target.table, target.reseller_id, target.group_id)
    in_redis = {f.decode(): v.decode() for f, v in book.client.hgetall(key).items()}
    with factory() as s:
        in_mysql = {
            row.field: encode_rate(row.rate)
            for row in book_rows(s, target.table, target.reseller_id, target.group_id)
        }
    assert len(in_redis) == len(in_mysql)
    assert in_redis == in_mysql
    leftovers = list(book.client.scan_iter(match=f"{book.keys.prefix}*staging*"))
    assert leftovers == []


def add_rate(factory, target: Target, prefix: str) -> CustomerRate:
    with factory() as s, s.begin():
        row = CustomerRate(
            dialprefix=prefix,
            rateinitial=1,
            connectcharge=0,
            billingblock=60,
            reseller_id=target.reseller_id,
            group_id=target.group_id,
        )
        s.add(row)
    return row


def test_concurrent_scope_rebuilds_never_fail_and_keep_every_row(shop):
    factory, book, target = shop

    def rebuild_after_a_save(n: int) -> None:
        for i in range(6):
            add_rate(factory, target, f"7{n}{i:03d}")
            with factory() as s:
                sync_scope(s, book, target)

    assert run_in_threads(rebuild_after_a_save, 3) == []
    redis_equals_mysql(factory, book, target)


def test_single_row_saves_racing_rebuilds_leave_redis_equal_to_mysql(shop):
    from rating.store import key_of, refresh_keys

    factory, book, target = shop

    def save(n: int) -> None:
        for i in range(10):
            row = add_rate(factory, target, f"8{n}{i:03d}")
            with factory() as s:
                if n == 0:
                    sync_scope(s, book, target)  # an import in the same scope
                else:
                    refresh_keys(s, book, [key_of("customer", row)])
            if i % 3 == 0:  # and a change of a row another thread may be rebuilding
                with factory() as s, s.begin():
                    changed = s.get(CustomerRate, row.id)
                    changed.dialprefix = f"6{n}{i:03d}"
                with factory() as s:
                    refresh_keys(s, book, [key_of("customer", row), key_of("customer", changed)])

    assert run_in_threads(save, 4) == []
    redis_equals_mysql(factory, book, target)
