"""Prepaid limits and deposits when nobody could cut a call, the settled-call memory, and the
per-call catch-up cap: the credit engine on a real Redis (lua/endCall-6.lua, answerCall-6.lua,
authorizeCall-1.lua, extendDue-4.lua)."""

from __future__ import annotations

import json

import pytest

from lua.credit import CreditEngine, Deny, EndMode, Outcome, Payer, Pricing
from lua.keys import Keys
from rating.price import Rate
from workers.settle import forget_settled

T0 = 1_795_000_000_000
CENT_A_SECOND = Rate(21, 0, 0, 300_000, 1, "Booth")  # 0.005 a second, 1 s blocks
PRICING = Pricing(CENT_A_SECOND, CENT_A_SECOND, CENT_A_SECOND)
PAYER = Payer(1, 10, 100)
META = json.dumps({"uniqueid": "c1", "flags": [], "review": ""}, separators=(",", ":"))


@pytest.fixture
def engine(redis_server, key_prefix) -> CreditEngine:
    return CreditEngine(redis_server, Keys(key_prefix))


def talk(engine: CreditEngine, call_id: str, seconds: int, payer: Payer = PAYER) -> None:
    """Answer at T0 and pay every boundary due before T0 + seconds (the listener's ticks)."""
    assert engine.answer(call_id, payer, PRICING, T0, meta=META).outcome == Outcome.OK
    while engine.extend_due(payer.reseller_id, T0 + seconds * 1000, 5000).paid:
        pass


def flags_of(engine: CreditEngine, call_id: str) -> list[str]:
    return json.loads(engine.client.hget(engine.keys.meta(1), call_id))["flags"]


def test_an_end_not_seen_is_never_charged_past_what_the_call_paid(engine):
    """Issue 11.2: prepaid 0.05 (10 blocks); Asterisk died 4 s after answer; the end estimated
    at the reconnect (20 s) is an upper bound, not what happened: charge what was paid."""
    engine.provision(PAYER, limits={"clid": ("prepaid", 50_000)})
    talk(engine, "c1", 4)
    assert engine.running_cost(1, "c1")[0] == 20_000  # billsec 1-4 paid

    ended = engine.end("c1", 1, T0 + 20_000, 20, meta=META, mode=EndMode.ESTIMATED)

    assert ended.customer == 20_000
    clid = engine.level(1, "clid", 100)
    assert (clid.used, clid.unbilled) == (20_000, 20_000)
    assert engine.level(1, "group", 10).used == 100_000  # no limit there: the estimate
    assert flags_of(engine, "c1") == ["capped_at_paid"]


def test_a_live_end_never_pushes_a_prepaid_level_or_a_deposit_past_its_limit(engine):
    """A hang-up that landed late (billsec past the paid time) costs at most the limit."""
    engine.provision(PAYER, limits={"group": ("prepaid", 40_000)}, deposit=60_000)
    talk(engine, "c1", 5)

    ended = engine.end("c1", 1, T0 + 14_000, 14, meta=META)

    assert (ended.customer, ended.callshop) == (60_000, 40_000)
    assert engine.level(1, "group", 10).available == 0
    assert engine.level(1, "clid", 100).unbilled == 60_000  # the deposit, not 70_000
    assert engine.level(1, "reseller", 1).used == 70_000  # no limit: the real price
    assert flags_of(engine, "c1") == ["capped_at_limit"]


def test_a_call_that_really_talked_past_its_paid_time_is_billed_and_blocks_its_level(engine):
    """Issue 11.11: the listener was down; Asterisk says 20 s: bill 20 s, flag it, refuse new
    calls on the level until a charge brings it back under its limit."""
    engine.provision(PAYER, limits={"clid": ("prepaid", 50_000)})
    talk(engine, "c1", 4)

    ended = engine.end("c1", 1, T0 + 20_000, 20, meta=META, mode=EndMode.REAL)

    assert ended.customer == 100_000
    assert engine.level(1, "clid", 100).available == -50_000
    assert flags_of(engine, "c1") == ["over_limit"]
    refused = engine.authorize(PAYER, PRICING)
    assert (refused.allowed, refused.reason) == (False, Deny.OVER_LIMIT_CLID)

    engine.credit_op(1, "charge-1", "charge", "clid", 100, 50_000)  # back at its limit
    assert engine.authorize(PAYER, PRICING).reason == Deny.NO_CREDIT_CLID
    engine.credit_op(1, "charge-2", "charge", "clid", 100, 5_000)
    assert engine.authorize(PAYER, PRICING).allowed


@pytest.mark.parametrize(
    ("limits", "deposit", "reason"),
    [
        ({"group": ("prepaid", 50_000)}, None, Deny.OVER_LIMIT_GROUP),
        ({"reseller": ("prepaid", 50_000)}, None, Deny.OVER_LIMIT_RESELLER),
        ({}, 50_000, Deny.DEPOSIT_EXCEEDED),
    ],
)
def test_every_level_over_its_limit_refuses_new_calls(engine, limits, deposit, reason):
    engine.provision(PAYER, limits=limits, deposit=deposit)
    talk(engine, "c1", 4)
    engine.end("c1", 1, T0 + 20_000, 20, meta=META, mode=EndMode.REAL)
    other_booth = Payer(1, 10, 101)
    engine.provision(other_booth, limits=limits)
    assert engine.authorize(PAYER, PRICING).reason == reason
    if reason != Deny.DEPOSIT_EXCEEDED:  # the group / reseller blocks its other booths too
        assert engine.authorize(other_booth, PRICING).reason == reason


def test_a_call_replayed_after_its_settlement_changes_nothing(engine):
    """Issue 11.13: the call was settled (gone from `ended`); its answer and end replayed
    later are refused by the settled-call memory."""
    engine.provision(PAYER, limits={"clid": ("prepaid", 1_000_000)})
    talk(engine, "c1", 10)
    engine.end("c1", 1, T0 + 10_500, 10, meta=META)
    forget_settled(engine, 1, ["c1"])  # settlement wrote it to MySQL and forgot it in Redis
    before = engine.client.hgetall(engine.keys.balances(1))

    assert engine.answer("c1", PAYER, PRICING, T0, meta=META).outcome == Outcome.ENDED
    assert engine.end("c1", 1, T0 + 10_500, 10, meta=META).outcome == Outcome.ENDED

    assert engine.client.hgetall(engine.keys.balances(1)) == before
    assert engine.client.hlen(engine.keys.calls(1)) == 0
    assert engine.client.hlen(engine.keys.ended(1)) == 0


def test_an_unpaid_call_is_remembered_too_and_the_memory_is_trimmed_by_time(engine):
    engine.provision(PAYER)
    engine.record_unpaid("refused", PAYER, T0, 0, T0 + 5_000, 0, META)
    assert engine.answer("refused", PAYER, PRICING, T0 + 1_000).outcome == Outcome.ENDED

    talk(engine, "late", 1)
    four_days = 4 * 24 * 3600 * 1000
    engine.end("late", 1, T0 + four_days, 1, meta=META)  # its end trims older ids
    remembered = {m.decode() for m in engine.client.zrange(engine.keys.done(1), 0, -1)}
    assert remembered == {"late"}


def test_one_call_with_a_huge_backlog_never_takes_the_run_from_a_prepaid_call(engine):
    """Issue 11.12: a no-limit call answered (by a bad timestamp) long ago had millions of
    boundaries to pay; it used the whole run and the prepaid call of the same reseller was
    never cut. Now each call pays at most `per_call` boundaries a run."""
    rich, poor = Payer(1, 10, 100), Payer(1, 10, 101)
    engine.provision(rich)
    engine.provision(poor, limits={"clid": ("prepaid", 10_000)})  # two blocks
    assert engine.answer("old", rich, PRICING, T0 - 10_000_000).outcome == Outcome.OK
    assert engine.answer("prepaid", poor, PRICING, T0).outcome == Outcome.OK

    batch = engine.extend_due(1, T0 + 3_000, limit=5000)

    assert [(c.call_id, c.reason) for c in batch.cut] == [("prepaid", "NO_CREDIT_CLID")]
    assert batch.paid == 300 + 1  # the old call's share, and the prepaid call's second block
    assert batch.next_due_ms < T0  # the old call is still behind: the next run goes on
