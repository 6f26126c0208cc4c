"""The credit engine on a real Redis: exact debits block by block, replays, broken state."""

from __future__ import annotations

import heapq

import pytest

from lua.credit import (
    NO_RATE,
    CreditEngine,
    CreditError,
    Deny,
    Outcome,
    Payer,
    Pricing,
)
from lua.keys import Keys
from rating import csvfiles
from rating.price import Rate, price
from tests.rating_data import vector_rows

T0 = 1_795_000_000_000  # ms since the epoch: a fixed "now"
DE = Rate(5, 400_000, 60, 400_000, 60, "Germany")  # 0.4 for 60 s, then 0.4/min per minute
BUY = Rate(6, 0, 0, 120_000, 60)
OWNER = Rate(7, 0, 0, 60_000, 60)
PRICING = Pricing(DE, BUY, OWNER)
PAYER = Payer(1, 10, 100)


@pytest.fixture
def engine(redis_server, key_prefix) -> CreditEngine:
    return CreditEngine(redis_server, Keys(key_prefix))


def snapshot(engine: CreditEngine, reseller_id: int = 1) -> dict:
    k = engine.keys
    c = engine.client
    return {
        "balances": c.hgetall(k.balances(reseller_id)),
        "calls": c.hgetall(k.calls(reseller_id)),
        "due": c.zrange(k.due(reseller_id), 0, -1, withscores=True),
        "ended": c.hgetall(k.ended(reseller_id)),
        "ops": c.hgetall(k.applied_ops(reseller_id)),
    }


def test_the_blog_example_is_paid_block_by_block(engine):
    engine.provision(PAYER)
    assert engine.authorize(PAYER, PRICING).allowed

    step = engine.answer("c1", PAYER, PRICING, T0)
    assert step == (step.__class__(Outcome.OK, T0 + 61_000))  # billsec 61 is the next block
    assert engine.running_cost(1, "c1") == (400_000, 120_000, 60_000)

    step = engine.extend("c1", 1, 61)
    assert step.due_ms == T0 + 121_000
    step = engine.extend("c1", 1, 121)
    assert engine.running_cost(1, "c1") == (1_200_000, 360_000, 180_000)

    ended = engine.end("c1", 1, T0 + 150_400, 150)
    assert (ended.customer, ended.callshop, ended.reseller) == (1_200_000, 360_000, 180_000)
    clid = engine.level(1, "clid", 100)
    assert (clid.used, clid.totals, clid.unbilled) == (
        1_200_000,
        (1_200_000, 360_000, 180_000),
        1_200_000,
    )
    assert engine.level(1, "group", 10).used == 360_000
    assert engine.level(1, "reseller", 1).used == 180_000


def test_every_public_vector_is_debited_exactly_through_answer_extend_end(engine):
    """All vectors as concurrent calls; the clock steps across every block boundary through
    the batch extend, each call hangs up half a second after its billsec is reached."""
    calls = []
    for i, row in enumerate(vector_rows("price-vectors.csv")):
        q = csvfiles.parse_price_query(row)
        if q.billsec <= 0:
            continue
        payer = Payer(1, 1000 + i, 5000 + i)
        engine.provision(payer)
        pricing = Pricing(q.rate, q.rate, q.rate, q.multiple, q.multiple, q.multiple)
        assert engine.answer(f"v{i}", payer, pricing, T0).outcome == Outcome.OK
        expected = price(q.billsec, q.multiple, q.rate)
        assert int(row["price"].replace(".", "")) == expected
        calls.append((T0 + q.billsec * 1000 + 500, f"v{i}", q.billsec, expected, payer))
    heapq.heapify(calls)
    while calls:
        end_ms, call_id, billsec, expected, payer = heapq.heappop(calls)
        while (batch := engine.extend_due(1, end_ms, limit=5000)).paid:
            assert batch.cut == []
        assert engine.running_cost(1, call_id) == (expected, expected, expected), call_id
        ended = engine.end(call_id, 1, end_ms, billsec)
        assert (ended.customer, ended.callshop, ended.reseller) == (expected,) * 3, call_id
        assert engine.level(1, "clid", payer.clid_id).used == expected
        assert engine.level(1, "group", payer.group_id).used == expected


def test_every_step_replayed_changes_nothing(engine):
    engine.provision(PAYER, limits={"clid": ("prepaid", 10_000_000)})
    engine.answer("c1", PAYER, PRICING, T0)
    before = snapshot(engine)
    assert engine.answer("c1", PAYER, PRICING, T0).outcome == Outcome.ALREADY
    assert snapshot(engine) == before

    engine.extend("c1", 1, 61)
    after_extend = snapshot(engine)
    assert engine.extend("c1", 1, 61).outcome == Outcome.ALREADY
    assert engine.extend("c1", 1, 1).outcome == Outcome.ALREADY
    assert snapshot(engine) == after_extend

    first = engine.end("c1", 1, T0 + 90_000, 90)
    after_end = snapshot(engine)
    again = engine.end("c1", 1, T0 + 95_000, 95)
    assert again.outcome == Outcome.ALREADY
    assert (again.customer, again.callshop, again.reseller) == (
        first.customer,
        first.callshop,
        first.reseller,
    )
    assert engine.answer("c1", PAYER, PRICING, T0).outcome == Outcome.ENDED
    assert engine.extend("c1", 1, 121).outcome == Outcome.ENDED
    assert snapshot(engine) == after_end


def test_a_credit_operation_replayed_applies_once(engine):
    engine.provision(PAYER, limits={"group": ("prepaid", 0)})
    assert engine.credit_op(1, "op-1", "charge", "group", 10, 5_000_000) == (Outcome.OK, 0)
    assert engine.credit_op(1, "op-1", "charge", "group", 10, 5_000_000) == (Outcome.ALREADY, 0)
    assert engine.level(1, "group", 10).used == -5_000_000
    assert engine.level(1, "group", 10).available == 5_000_000
    engine.credit_op(1, "op-2", "refund", "group", 10, 1_000_000)
    engine.credit_op(1, "op-3", "set_limit", "group", 10, 2_000_000)
    engine.credit_op(1, "op-4", "set_limit_type", "group", 10, "postpaid")
    group = engine.level(1, "group", 10)
    assert (group.used, group.limit, group.limit_type) == (-4_000_000, 2_000_000, "postpaid")


def test_a_prepaid_booth_with_credit_for_two_blocks_is_cut_at_the_third(engine):
    engine.provision(PAYER, limits={"clid": ("prepaid", 800_000)})
    auth = engine.authorize(PAYER, PRICING)
    assert (auth.allowed, auth.seconds) == (True, 120)

    engine.answer("c1", PAYER, PRICING, T0)
    assert engine.extend("c1", 1, 61).outcome == Outcome.OK
    cut = engine.extend("c1", 1, 121)

    assert (cut.outcome, cut.due_ms, cut.reason) == (Outcome.HANGUP, T0 + 121_000, "NO_CREDIT_CLID")
    assert engine.client.zcard(engine.keys.due(1)) == 0  # no longer scheduled
    ended = engine.end("c1", 1, T0 + 120_600, 120)  # hung up within the guard time
    assert ended.customer == 800_000
    assert engine.level(1, "clid", 100).available == 0
    assert engine.authorize(PAYER, PRICING) == engine.authorize(PAYER, PRICING)
    assert engine.authorize(PAYER, PRICING).reason == Deny.NO_CREDIT_CLID


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        ({"group": ("prepaid", 100_000)}, Deny.NO_CREDIT_GROUP),
        ({"reseller": ("prepaid", 50_000)}, Deny.NO_CREDIT_RESELLER),
        ({"clid": ("prepaid", 399_999)}, Deny.NO_CREDIT_CLID),
    ],
)
def test_authorize_names_the_level_that_cannot_pay(engine, limits, reason):
    engine.provision(PAYER, limits=limits)
    assert engine.authorize(PAYER, PRICING).reason == reason


def test_postpaid_and_unlimited_levels_are_accounted_never_cut(engine):
    engine.provision(PAYER, limits={"clid": ("postpaid", 0), "group": ("none", 0)})
    assert engine.authorize(PAYER, PRICING).seconds == -1
    engine.answer("c1", PAYER, PRICING, T0)
    assert engine.extend("c1", 1, 61).outcome == Outcome.OK
    assert engine.level(1, "clid", 100).available == -800_000


def test_a_locked_booth_is_refused_and_unlocking_lets_it_call(engine):
    engine.provision(PAYER, locked=True)
    assert engine.authorize(PAYER, PRICING).reason == Deny.LOCKED
    engine.credit_op(1, "unlock-1", "unlock", "clid", 100)
    assert engine.authorize(PAYER, PRICING).allowed


def test_the_booth_deposit_bounds_unbilled_calls_until_check_out(engine):
    engine.provision(PAYER, deposit=1_000_000)
    engine.answer("c1", PAYER, PRICING, T0)
    engine.extend("c1", 1, 61)
    engine.end("c1", 1, T0 + 100_000, 100)  # 0.8 unbilled
    assert engine.authorize(PAYER, PRICING).reason == Deny.DEPOSIT_REACHED  # 0.8 + 0.4 > 1

    engine.credit_op(1, "checkout-1", "checkout", "clid", 100, 800_000)  # the booth paid
    assert engine.level(1, "clid", 100).unbilled == 0
    assert engine.authorize(PAYER, PRICING).seconds == 120
    with pytest.raises(CreditError, match="ERR_CHECKOUT_TOO_LARGE"):
        engine.credit_op(1, "checkout-2", "checkout", "clid", 100, 1)


def test_a_level_without_a_rate_pays_nothing(engine):
    engine.provision(PAYER)
    engine.answer("c1", PAYER, Pricing(DE, NO_RATE, NO_RATE), T0)
    ended = engine.end("c1", 1, T0 + 30_000, 30)
    assert (ended.customer, ended.callshop, ended.reseller) == (400_000, 0, 0)


def test_the_due_index_holds_only_the_next_boundary_of_each_call(engine):
    engine.provision(PAYER)
    engine.answer("a", PAYER, PRICING, T0)
    engine.answer("b", PAYER, Pricing(Rate(9, 0, 0, 60_000, 6), BUY, OWNER), T0 + 500)
    due = engine.client.zrange(engine.keys.due(1), 0, -1, withscores=True)
    # b paid billsec 1-6: it may run until its billsec reaches 7, at answer + 7 s.
    assert due == [(b"b", T0 + 7_500), (b"a", T0 + 61_000)]

    batch = engine.extend_due(1, T0 + 7_499)  # not yet
    assert (batch.paid, batch.next_due_ms) == (0, T0 + 7_500)
    batch = engine.extend_due(1, T0 + 7_500)
    assert (batch.paid, batch.next_due_ms) == (1, T0 + 13_500)
    batch = engine.extend_due(1, T0 + 26_000)  # a lagging caller catches up in one run
    assert (batch.paid, batch.next_due_ms) == (3, T0 + 31_500)  # 13.5, 19.5, 25.5 s
    assert engine.running_cost(1, "b")[0] == price(30, 10_000, Rate(9, 0, 0, 60_000, 6))


class TestBrokenState:
    def test_an_unprovisioned_level_is_an_error_and_writes_nothing(self, engine):
        before = snapshot(engine)
        with pytest.raises(CreditError, match="ERR_UNKNOWN_LEVEL c100"):
            engine.answer("c1", PAYER, PRICING, T0)
        with pytest.raises(CreditError, match="ERR_UNKNOWN_LEVEL"):
            engine.credit_op(1, "op", "charge", "clid", 100, 1)
        assert snapshot(engine) == before

    def test_a_key_of_the_wrong_type_is_an_error(self, engine):
        engine.client.set(engine.keys.balances(1), "oops")
        with pytest.raises(CreditError, match="WRONGTYPE"):
            engine.authorize(PAYER, PRICING)

    def test_a_corrupt_call_is_reported_not_charged(self, engine):
        engine.provision(PAYER)
        engine.answer("c1", PAYER, PRICING, T0)
        engine.client.hset(engine.keys.calls(1), "c1", "garbage,1,2")
        before = snapshot(engine)
        with pytest.raises(CreditError, match="ERR_CORRUPT_CALL c1"):
            engine.extend("c1", 1, 61)
        with pytest.raises(CreditError, match="ERR_CORRUPT_CALL c1"):
            engine.end("c1", 1, T0 + 70_000, 70)
        assert snapshot(engine) == before
        batch = engine.extend_due(1, T0 + 61_000)
        assert [(c.call_id, c.reason) for c in batch.cut] == [("c1", "CORRUPT_CALL")]
        assert engine.client.zcard(engine.keys.due(1)) == 0

    def test_an_unknown_call_is_an_error(self, engine):
        engine.provision(PAYER)
        with pytest.raises(CreditError, match="ERR_UNKNOWN_CALL nope"):
            engine.extend("nope", 1, 1)
        with pytest.raises(CreditError, match="ERR_UNKNOWN_CALL nope"):
            engine.end("nope", 1, T0, 0)

    @pytest.mark.parametrize(
        ("end_ms", "billsec"),
        [(T0 - 1, 0), (T0 + 10_000, 12), (T0 + 10_000, -1), (T0 + 10**12, 10**9)],
    )
    def test_impossible_times_are_refused_and_change_nothing(self, engine, end_ms, billsec):
        engine.provision(PAYER)
        engine.answer("c1", PAYER, PRICING, T0)
        before = snapshot(engine)
        with pytest.raises(CreditError, match="ERR_BAD_TIME"):
            engine.end("c1", 1, end_ms, billsec)
        assert snapshot(engine) == before

    @pytest.mark.parametrize("answer_ms", [-5, 10**15])
    def test_an_absurd_answer_time_is_refused(self, engine, answer_ms):
        engine.provision(PAYER)
        with pytest.raises(CreditError, match="ERR_BAD_ARGS"):
            engine.answer("c1", PAYER, PRICING, answer_ms)
        assert engine.client.hlen(engine.keys.calls(1)) == 0

    def test_a_rate_deleted_mid_call_does_not_matter(self, engine, redis_server):
        """The call carries its rates: deleting the rate book mid-call changes nothing."""
        engine.provision(PAYER)
        engine.answer("c1", PAYER, PRICING, T0)
        for key in redis_server.scan_iter(match=f"{engine.keys.prefix}*rates*"):
            redis_server.delete(key)
        assert engine.extend("c1", 1, 61).outcome == Outcome.OK
        assert engine.end("c1", 1, T0 + 61_500, 61).customer == 800_000

    def test_bad_credit_operations_are_refused(self, engine):
        engine.provision(PAYER)
        for kind, level, value in [
            ("charge", "clid", -1),
            ("charge", "clid", "x"),
            ("set_limit_type", "group", "gold"),
            ("lock", "group", ""),
            ("fly", "clid", 1),
        ]:
            with pytest.raises(CreditError, match="ERR_BAD_ARGS"):
                engine.credit_op(
                    1, f"op-{kind}-{value}", kind, level, 10 if level == "group" else 100, value
                )
        assert engine.client.hlen(engine.keys.applied_ops(1)) == 0


def test_a_batch_larger_than_lua_can_unpack_at_once_is_paid_whole(engine):
    """Thousands of calls and levels in one run (Lua's unpack holds a few thousand values)."""
    pricing = Pricing(Rate(3, 0, 0, 60_000, 1), BUY, OWNER)
    pipe_calls = 3_000
    for i in range(pipe_calls):
        payer = Payer(1, 10 + i % 50, 1_000 + i)
        engine.provision(payer)
        engine.answer(f"c{i}", payer, pricing, T0)
    batch = engine.extend_due(1, T0 + 2_000, limit=10_000)
    assert (batch.paid, batch.cut) == (pipe_calls, [])
    assert engine.running_cost(1, "c2999") == (2_000, 120_000, 60_000)
    assert engine.level(1, "clid", 3_999).used == 2_000


def test_admission_finds_the_payer_the_rates_and_the_multiples(engine):
    from rating.book import RedisRateBook
    from rating.select import BookRow

    book = RedisRateBook(engine.client, engine.keys)
    book.replace(
        [BookRow("customer", "0049", 0, 1, 0, DE), BookRow("callshop", "00", 0, 0, 0, BUY)]
    )
    engine.provision(PAYER, payer_key="8001", multiples=(15_000, 10_000, 5_000))

    auth, payer, pricing = engine.admit("8001", "0049301234567", book)
    assert auth.allowed and payer == PAYER
    assert (pricing.customer, pricing.callshop, pricing.reseller) == (DE, BUY, NO_RATE)
    assert (pricing.customer_multiple, pricing.reseller_multiple) == (15_000, 5_000)

    assert engine.admit("9999", "0049301234567", book)[0].reason == Deny.UNKNOWN_PAYER
    assert engine.admit("8001", "0033123", book)[0].reason == Deny.NO_RATE


def test_the_ended_call_keeps_what_settlement_needs(engine):
    engine.provision(PAYER)
    engine.answer("c1", PAYER, PRICING, T0, meta='{"dst": "0049301234567"}')
    assert engine.client.hget(engine.keys.meta(1), "c1") == b'{"dst": "0049301234567"}'
    engine.end("c1", 1, T0 + 61_000, 61, meta='{"dst": "0049301234567", "cause": 16}')
    record = engine.client.hget(engine.keys.ended(1), "c1").decode().split(",")
    assert record == [
        "100",
        "10",
        str(T0),
        str(T0 + 61_000),
        "61",
        "800000",
        "240000",
        "120000",
        "5",
        "6",
        "7",
        "0",
    ]
    assert b'"cause": 16' in engine.client.hget(engine.keys.meta(1), "c1")


def test_the_short_call_rule_frees_the_customer_only(engine):
    engine.provision(PAYER, limits={"clid": ("prepaid", 1_000_000)})
    engine.answer("short", PAYER, PRICING, T0)
    engine.answer("long", PAYER, PRICING, T0)
    assert engine.level(1, "clid", 100).used == 800_000  # both paid their first block

    short = engine.end("short", 1, T0 + 5_400, 5, short_call_seconds=5)
    long = engine.end("long", 1, T0 + 6_400, 6, short_call_seconds=5)

    assert (short.customer, short.callshop, short.reseller) == (0, 120_000, 60_000)
    assert long.customer == 400_000
    clid = engine.level(1, "clid", 100)
    assert (clid.used, clid.unbilled) == (400_000, 400_000)  # the short call was refunded
