"""An enterprise PBX (README, "Extension billing for an enterprise PBX"): extensions of two
departments (groups), identified by their account code (every phone shows the company's main
number as caller id), billed postpaid with monthly limits; each extension user sees only its
own calls in the portal; the month is closed with a charge per department."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import select

from admin.app import create_app
from lua.credit import CreditEngine
from lua.keys import Keys
from ops import pbx_sim
from ops.settings import load_settings
from rating.book import RedisRateBook
from rating.money import stored_micros
from rating.price import Rate, price
from schema import AccountGroup, Cdr, Clid, migrate
from schema.db import make_engine, session_factory
from tests.test_back_office import token
from tests.test_listener import Rig, run_with
from workers.credit_ops import CreditRequest, perform
from workers.provision import provision_redis, seed
from workers.settle import settle_all

MAIN_NUMBER = "5550100"  # the caller id every phone of the company presents
PER_SECOND = Rate(0, 0, 0, 600_000, 1)  # 0.60/min in 1 s blocks

PBX = {
    "resellers": [
        {
            "name": "acme",
            "groups": [
                {
                    "name": "sales",
                    "limit_type": "postpaid",
                    "credit_limit": "100",  # the department's monthly budget
                    "clids": [
                        {
                            "clid": "2001",
                            "kind": "extension",
                            "limit_type": "postpaid",
                            "credit_limit": "0.01",
                        },  # passed this month: warned, never cut
                        {
                            "clid": "2002",
                            "kind": "extension",
                            "limit_type": "postpaid",
                            "credit_limit": "20",
                        },
                    ],
                },
                {
                    "name": "support",
                    "limit_type": "postpaid",
                    "credit_limit": "50",
                    "clids": [
                        {
                            "clid": "3001",
                            "kind": "extension",
                            "limit_type": "postpaid",
                            "credit_limit": "20",
                        }
                    ],
                },
            ],
        }
    ],
    # The department (group) pays the callshop rate: the same rows, so its monthly limit
    # counts the same money as its extensions' calls.
    "rates": [
        {
            "table": table,
            "rows": [{"dialprefix": "00", "rateinitial": "0.6", "billingblock": 1}],
        }
        for table in ("customer", "callshop")
    ],
}
NUMBERS = {"2001": "0049301111111", "2002": "0044202222222", "3001": "0033133333333"}


def test_departments_are_billed_per_extension_and_users_see_their_own_calls(
    fresh_mysql_url, redis_server, key_prefix, tmp_path
):
    engine = make_engine(fresh_mysql_url)
    migrate.upgrade(engine)
    factory = session_factory(engine)
    keys = Keys(key_prefix)
    credit, book = CreditEngine(redis_server, keys), RedisRateBook(redis_server, keys)
    with factory() as session, session.begin():
        seed(session, PBX, tmp_path)
    with factory() as session:
        provision_redis(session, credit, book)

    plans = [
        pbx_sim.CallPlan(MAIN_NUMBER, NUMBERS[ext], ring=0.2, talk=talk, accountcode=ext)
        for ext, talk in (("2001", 2.3), ("2001", 1.2), ("2002", 1.6), ("3001", 2.2))
    ]

    async def feed(server):
        await pbx_sim.run_generator(server, plans, cps=0)

    listener = asyncio.run(
        run_with(
            Rig(credit, book), key_prefix, feed, settle=1.0, ASTERBILL_PAYER_FIELD="accountcode"
        )
    )
    assert listener.hangups == []  # postpaid: accounted, never cut
    settle_all(factory, credit)

    with factory() as session:
        ext = {c.clid: c for c in session.scalars(select(Clid))}
        cdrs = session.scalars(select(Cdr)).all()
        groups = {g.name: g for g in session.scalars(select(AccountGroup))}
    by_ext = {n: [c for c in cdrs if c.clid_id == ext[n].id] for n in NUMBERS}
    assert {n: len(v) for n, v in by_ext.items()} == {"2001": 2, "2002": 1, "3001": 1}
    for number, calls in by_ext.items():
        assert {c.dst for c in calls} == {NUMBERS[number]}
        for c in calls:
            assert stored_micros(c.credit) == price(c.billsec, 10_000, PER_SECOND)
        assert ext[number].curcredit == sum((c.credit for c in calls), Decimal(0))
    assert ext["2001"].curcredit > ext["2001"].creditlimit  # over its monthly limit, not cut
    sales = sum(c.credit for c in by_ext["2001"] + by_ext["2002"])
    assert sales > 0
    assert groups["sales"].curcredit == sales
    assert groups["support"].curcredit == sum(c.credit for c in by_ext["3001"])

    # Each extension user logs in with its number and PIN and sees only its own calls.
    settings = load_settings(
        environ={
            "DATABASE_URL": fresh_mysql_url,
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "ASTERBILL_KEY_PREFIX": key_prefix,
            "ASTERBILL_SECRET_KEY": "test-secret-key-of-this-test",
            "ASTERBILL_DATA_DIR": str(tmp_path),
        },
        env_file=None,
    )
    app = create_app(settings)
    for number in NUMBERS:
        client = app.test_client()
        page = client.get("/portal/login").get_data(as_text=True)
        reply = client.post(
            "/portal/login",
            data={"username": number, "password": ext[number].pin, "csrf_token": token(page)},
        )
        assert reply.status_code == 302
        home = client.get("/portal/").get_data(as_text=True)
        assert NUMBERS[number] in home
        assert not any(n in home for e, n in NUMBERS.items() if e != number)

    # End of the month: each department's use is invoiced and paid (a charge), and the next
    # month starts from zero in MySQL and in Redis.
    for name in ("sales", "support"):
        group = groups[name]
        perform(
            factory,
            credit,
            CreditRequest("charge", "group", group.id, group.curcredit, comment="invoice 2026-11"),
        )
        assert credit.level(group.reseller_id, "group", group.id).used == 0
    with factory() as session:
        assert all(g.curcredit == 0 for g in session.scalars(select(AccountGroup)))
    engine.dispose()
