"""End to end: simulated Asterisk -> listener -> Redis -> RQ worker -> MariaDB -> reconcile.

Prepaid, postpaid and no-limit levels, concurrent calls sharing the callshop's balance, a
prepaid booth cut at its boundary, an unanswered call and an unknown caller. The worker and
the reconcile check are the real commands, in their own processes.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import select

from lua.credit import CreditEngine
from lua.keys import Keys
from ops import pbx_sim
from rating.book import RedisRateBook
from rating.money import stored_micros
from rating.price import Rate, price
from schema import AccountGroup, Cdr, Clid, Reseller, migrate
from schema.db import make_engine, session_factory
from tests.conftest import REDIS_SERVER
from tests.test_cli import run
from tests.test_listener import Rig, run_with
from workers.provision import provision_redis, seed

GERMANY = "00493012345678"
# per-second blocks everywhere, so every second of talk shows in every price
CUSTOMER = Rate(0, 50_000, 0, 600_000, 1)  # 0.05 connect, 0.60/min
CALLSHOP = Rate(0, 0, 0, 300_000, 1)
RESELLER = Rate(0, 0, 0, 120_000, 1)

TREE = {
    "resellers": [
        {
            "name": "e2e-reseller",
            "limit_type": "prepaid",
            "credit_limit": "1000",
            "groups": [
                {
                    "name": "e2e-shop",
                    "limit_type": "postpaid",
                    "credit_limit": "0.02",  # passed during the test: postpaid is never cut
                    "clids": [
                        {"clid": "8001"},  # no limit
                        {"clid": "8002", "limit_type": "postpaid", "credit_limit": "1"},
                        # connect + exactly one more second: cut at the boundary of second 2
                        {"clid": "8003", "limit_type": "prepaid", "credit_limit": "0.06"},
                        {"clid": "8004"},
                        {"clid": "8005", "limit_type": "prepaid", "credit_limit": "100"},
                    ],
                }
            ],
        }
    ],
    "rates": [
        {
            "table": "customer",
            "rows": [
                {
                    "dialprefix": "0049",
                    "connectcharge": "0.05",
                    "initblock": 0,
                    "rateinitial": "0.6",
                    "billingblock": 1,
                }
            ],
        },
        {
            "table": "callshop",
            "reseller": "e2e-reseller",
            "rows": [{"dialprefix": "00", "rateinitial": "0.3", "billingblock": 1}],
        },
        {
            "table": "reseller",
            "rows": [{"dialprefix": "00", "rateinitial": "0.12", "billingblock": 1}],
        },
    ],
}


def test_calls_flow_from_asterisk_to_the_ledger(
    fresh_mysql_url, redis_server, key_prefix, tmp_path
):
    engine = make_engine(fresh_mysql_url)
    migrate.upgrade(engine)
    factory = session_factory(engine)
    keys = Keys(key_prefix)
    credit, book = CreditEngine(redis_server, keys), RedisRateBook(redis_server, keys)
    with factory() as session, session.begin():
        seed(session, TREE, tmp_path)
    with factory() as session:
        provision_redis(session, credit, book)

    plans = [
        pbx_sim.CallPlan("8001", GERMANY, ring=0.3, talk=2.4),
        pbx_sim.CallPlan("8001", GERMANY, ring=0.5, talk=1.3),  # the same booth, twice at once
        pbx_sim.CallPlan("8002", GERMANY, ring=0.4, talk=3.2),
        pbx_sim.CallPlan("8003", GERMANY, ring=0.3, talk=6.0),  # cut by its prepaid limit
        pbx_sim.CallPlan("8004", GERMANY, ring=1.0, talk=0, answer=False),
        pbx_sim.CallPlan("8005", GERMANY, ring=0.2, talk=1.1),
        pbx_sim.CallPlan("9999", GERMANY, ring=0.2, talk=1.6),  # no such booth
    ]

    async def feed(server):
        await pbx_sim.run_generator(server, plans, cps=0)

    listener = asyncio.run(run_with(Rig(credit, book), key_prefix, feed, settle=1.0))
    assert [h.reason for h in listener.hangups] == ["NO_CREDIT_CLID"]

    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }
    worker = run("worker", "--burst", env=env, cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr

    with factory() as session:
        cdrs = session.scalars(select(Cdr)).all()
        booths = {c.id: c.clid for c in session.scalars(select(Clid))}
        by_booth = {}
        for cdr in cdrs:
            by_booth.setdefault(booths.get(cdr.clid_id, "unknown"), []).append(cdr)
        levels = {
            "clid": {c.clid: c for c in session.scalars(select(Clid))},
            "group": session.scalar(select(AccountGroup)),
            "reseller": session.scalar(select(Reseller)),
        }
    assert len(cdrs) == len(plans)  # every call once, the unanswered and the unknown too
    assert {b: len(v) for b, v in by_booth.items()} == {
        "8001": 2,
        "8002": 1,
        "8003": 1,
        "8004": 1,
        "8005": 1,
        "unknown": 1,
    }
    for cdr in cdrs:
        if cdr.clid_id is None or cdr.disposition != "ANSWERED":
            assert (cdr.credit, cdr.callshop_credit, cdr.reseller_credit) == (0, 0, 0)
            continue
        assert stored_micros(cdr.credit) == price(cdr.billsec, 10_000, CUSTOMER)
        assert stored_micros(cdr.callshop_credit) == price(cdr.billsec, 10_000, CALLSHOP)
        assert stored_micros(cdr.reseller_credit) == price(cdr.billsec, 10_000, RESELLER)
        # the number that chose the rates, and the rate of each level, in words
        assert cdr.rated_number == GERMANY
        assert cdr.rate_memo == (
            f"customer 0049 (#{cdr.customer_rate_id}): 0.6/min, connect 0.05 for 0 s, "
            f"1 s blocks | callshop 00 (#{cdr.callshop_rate_id}): 0.3/min, 1 s blocks | "
            f"reseller 00 (#{cdr.reseller_rate_id}): 0.12/min, 1 s blocks"
        )
    [cut] = by_booth["8003"]
    assert (cut.billsec, cut.credit) == (1, Decimal("0.06"))  # never beyond its limit
    assert by_booth["8004"][0].disposition in ("NO ANSWER", "BUSY")
    assert by_booth["unknown"][0].review_reason == "unknown_payer"
    assert (by_booth["unknown"][0].rated_number, by_booth["unknown"][0].rate_memo) == (GERMANY, "")
    # the ledger: each level's curcredit is the sum of its own price over its calls
    for number, clid in levels["clid"].items():
        assert clid.curcredit == sum((c.credit for c in by_booth.get(number, [])), Decimal(0))
    booth_cdrs = [c for c in cdrs if c.clid_id is not None]
    assert levels["group"].curcredit == sum(c.callshop_credit for c in booth_cdrs)
    assert levels["group"].curcredit > levels["group"].creditlimit  # postpaid: passed, not cut
    assert levels["reseller"].curcredit == sum(c.reseller_credit for c in booth_cdrs)
    # Redis has handed everything over, and agrees with MySQL to the micro-unit
    assert credit.resellers_with_calls("ended") == []
    check = run("reconcile", "--check", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    engine.dispose()
