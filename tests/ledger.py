"""A MySQL ledger and a Redis credit engine with one provisioned booth, and calls on it."""

from __future__ import annotations

import pytest

from lua.credit import CreditEngine, Payer, Pricing
from lua.keys import Keys
from rating.price import Rate
from schema import migrate
from schema.db import make_engine, session_factory
from tests.tenants import make_tenant

T0 = 1_795_000_000_000
DE = Rate(5, 400_000, 60, 400_000, 60, "Germany")
BUY = Rate(6, 0, 0, 120_000, 60)
OWNER = Rate(7, 0, 0, 60_000, 60)


@pytest.fixture
def ledger(fresh_mysql_url, redis_server, key_prefix):
    engine = make_engine(fresh_mysql_url)
    migrate.upgrade(engine)
    factory = session_factory(engine)
    with factory() as session, session.begin():
        booth = make_tenant(session)
        payer = Payer(booth.group.reseller_id, booth.group_id, booth.id)
    credit = CreditEngine(redis_server, Keys(key_prefix))
    credit.provision(payer)
    yield factory, credit, payer
    engine.dispose()


def place_calls(credit, payer, billsecs):
    for i, billsec in enumerate(billsecs):
        credit.answer(
            f"call-{i}",
            payer,
            Pricing(DE, BUY, OWNER),
            T0,
            meta=f'{{"dst":"0049301234567","src":"8001","destination":"Germany",'
            f'"dialed_us":{(T0 - 3000) * 1000},"hangup_cause":16}}',
        )
        credit.end(f"call-{i}", payer.reseller_id, T0 + billsec * 1000 + 300, billsec)
