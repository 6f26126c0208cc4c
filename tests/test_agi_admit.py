"""`agi://HOST/admit` over real TCP and a real Redis: every status, and ASTERBILL_MAXSEC equal
to an independent computation from the price function and to where the listener cuts."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ami_listener.agi.admission import Admitter
from ami_listener.agi.server import build_scripts, start
from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from ops.settings import load_settings
from rating.book import RedisRateBook
from rating.price import Rate, price
from rating.select import BookRow
from tests import agi_client

T0 = 1_795_000_000_000
PAYER = Payer(1, 10, 100)
DE = Rate(5, 400_000, 60, 400_000, 60, "Germany")  # 0.4 for 60 s, then 0.4/min in 60 s blocks
BUY = Rate(6, 50_000, 30, 120_000, 6, "Germany buy")
OWNER = Rate(7, 0, 0, 60_000, 1, "Germany owner")
NUMBER = "004930123456"


@pytest.fixture
def rig(redis_server, key_prefix):
    keys = Keys(key_prefix)
    engine = CreditEngine(redis_server, keys)
    RedisRateBook(redis_server, keys).replace(
        [
            BookRow("customer", "0049", 0, 0, 0, DE),
            BookRow("callshop", "0049", 0, 0, 0, BUY),
            BookRow("reseller", "0049", 0, 0, 0, OWNER),
            BookRow("callshop", "0033", 0, 0, 0, BUY),  # no customer rate for France
        ]
    )
    settings = load_settings({"ASTERBILL_KEY_PREFIX": key_prefix}, env_file=None)
    return engine, settings


def admit(rig, *calls: dict) -> list[agi_client.AgiCall]:
    """Run the server and these AGI sessions (keyword arguments of agi_client.call)."""
    engine, settings = rig

    async def scenario():
        _, server = await start(build_scripts(engine, settings), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await asyncio.gather(
                *(agi_client.call(port, c.pop("script", "admit"), **c) for c in calls)
            )

    return asyncio.run(scenario())


def provision(engine, **kwargs):
    engine.provision(PAYER, payer_key="8001", **kwargs)


def test_a_booth_without_limits_is_admitted_without_a_maximum(rig):
    engine, _ = rig
    provision(engine)
    (call,) = admit(rig, {})
    assert call.variables == {
        "ASTERBILL_STATUS": "OK",
        "ASTERBILL_MAXSEC": "",
        "ASTERBILL_DESTINATION": "Germany",
        "ASTERBILL_REASON": "",
    }
    assert call.closed_by_server


@pytest.mark.parametrize(
    ("setup", "status", "reason"),
    [
        ({"locked": True}, "LOCKED", "LOCKED"),
        ({"limits": {"clid": ("prepaid", 100_000)}}, "NO_CREDIT", "NO_CREDIT_CLID"),
        ({"deposit": 100_000}, "NO_CREDIT", "DEPOSIT_REACHED"),
        ({"limits": {"group": ("prepaid", 10_000)}}, "NO_CREDIT_GROUP", "NO_CREDIT_GROUP"),
        ({"limits": {"reseller": ("prepaid", 0)}}, "NO_CREDIT_RESELLER", "NO_CREDIT_RESELLER"),
        (
            {"limits": {"clid": ("prepaid", 1_000_000)}, "used": (1_000_001, 0, 0)},
            "NO_CREDIT",
            "OVER_LIMIT_CLID",
        ),
        (
            {"limits": {"group": ("prepaid", 1_000_000)}, "used": (0, 2_000_000, 0)},
            "NO_CREDIT_GROUP",
            "OVER_LIMIT_GROUP",
        ),
        (
            {"limits": {"reseller": ("prepaid", 5)}, "used": (0, 0, 6)},
            "NO_CREDIT_RESELLER",
            "OVER_LIMIT_RESELLER",
        ),
    ],
)
def test_every_refusal_of_the_engine_is_a_documented_status(rig, setup, status, reason):
    engine, _ = rig
    provision(engine, **setup)
    (call,) = admit(rig, {})
    assert call.variables["ASTERBILL_STATUS"] == status
    assert call.variables["ASTERBILL_REASON"] == reason
    assert call.variables["ASTERBILL_MAXSEC"] == ""


def test_a_booth_whose_unbilled_calls_passed_the_deposit_is_no_credit(rig, redis_server):
    engine, _ = rig
    provision(engine, deposit=1_000_000)
    redis_server.hset(engine.keys.balances(1), "c100.unbilled", 1_000_001)
    (call,) = admit(rig, {})
    assert (call.variables["ASTERBILL_STATUS"], call.variables["ASTERBILL_REASON"]) == (
        "NO_CREDIT",
        "DEPOSIT_EXCEEDED",
    )


def test_unknown_caller_no_rate_and_a_number_as_argument(rig):
    engine, _ = rig
    provision(engine)
    unknown, no_rate, by_arg = admit(
        rig,
        {"callerid": "5550000"},
        {"extension": "0033123456"},
        {"extension": "s", "args": ["0049301111"]},
    )
    assert unknown.variables["ASTERBILL_STATUS"] == "UNKNOWN"
    assert no_rate.variables["ASTERBILL_STATUS"] == "NO_RATE"
    assert by_arg.variables["ASTERBILL_STATUS"] == "OK"
    assert by_arg.variables["ASTERBILL_DESTINATION"] == "Germany"


def test_the_payer_field_setting_picks_the_peer(rig, key_prefix):
    engine, _ = rig
    engine.provision(PAYER, payer_key="SIP/8001", locked=True)
    settings = load_settings(
        {"ASTERBILL_KEY_PREFIX": key_prefix, "ASTERBILL_PAYER_FIELD": "peer"}, env_file=None
    )
    (call,) = admit((engine, settings), {"callerid": "5551234", "channel": "SIP/8001-0000002a"})
    assert call.variables["ASTERBILL_STATUS"] == "LOCKED"


def test_redis_down_answers_error_and_the_server_goes_on(rig, key_prefix, caplog):
    from ops.redis_server import connect

    dead = CreditEngine(connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.2), Keys())
    settings = rig[1]
    with caplog.at_level(logging.WARNING, "asterbill.agi"):
        first, second = admit((dead, settings), {}, {})
    assert first.variables["ASTERBILL_STATUS"] == "ERROR"
    assert first.variables["ASTERBILL_REASON"] == "CREDIT_UNAVAILABLE"
    assert second.variables["ASTERBILL_STATUS"] == "ERROR"
    assert "Redis does not answer" in caplog.text


# -- ASTERBILL_MAXSEC ------------------------------------------------------------------------


def affordable(avail: int, rate: Rate, multiple: int, horizon: int = 20_000) -> int:
    """Independent of the engine: the longest billsec whose price at this level fits."""
    best = 0
    for billsec in range(horizon):
        if price(billsec, multiple, rate) <= avail:
            best = billsec
    assert best < horizon - 1, "raise the horizon"
    return best


CASES = {
    "clid prepaid, connect charge and init block": dict(
        limits={"clid": ("prepaid", 2_000_000)}, expect=("c",)
    ),
    "clid prepaid with a customer multiple": dict(
        limits={"clid": ("prepaid", 3_141_592)}, multiples=(12_500, 10_000, 10_000), expect=("c",)
    ),
    "a deposit tighter than the limit": dict(
        limits={"clid": ("prepaid", 9_000_000)}, deposit=1_700_000, expect=("c", "d")
    ),
    "the group's 6 s blocks after a 30 s init, with its multiple": dict(
        limits={"clid": ("prepaid", 9_000_000), "group": ("prepaid", 777_777)},
        multiples=(10_000, 15_000, 10_000),
        expect=("c", "g"),
    ),
    "the reseller's per-second rate with its multiple": dict(
        limits={"reseller": ("prepaid", 123_456)},
        multiples=(10_000, 10_000, 20_000),
        expect=("r",),
    ),
    "a call already running paid its first block": dict(
        limits={"clid": ("prepaid", 2_500_000)}, running=True, expect=("c",)
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_maxsec_is_what_the_levels_can_pay_and_where_the_listener_cuts(rig, case):
    engine, _ = rig
    spec = dict(CASES[case])
    expect, running = spec.pop("expect"), spec.pop("running", False)
    provision(engine, **spec)
    pricing = engine.pricing(PAYER, {"customer": DE, "callshop": BUY, "reseller": OWNER})
    if running:
        assert engine.answer("other", PAYER, pricing, T0 - 5_000).outcome == "OK"

    (call,) = admit(rig, {})
    assert call.variables["ASTERBILL_STATUS"] == "OK"
    maxsec = int(call.variables["ASTERBILL_MAXSEC"])

    # Independently: each bounding level's balance against the price function.
    bounds = []
    for level in expect:
        name = {"c": "clid", "g": "group", "r": "reseller", "d": "clid"}[level]
        state = engine.level(1, name, {"clid": 100, "group": 10, "reseller": 1}[name])
        avail = state.deposit - state.unbilled if level == "d" else state.available
        rate, mult = {
            "c": (DE, pricing.customer_multiple),
            "d": (DE, pricing.customer_multiple),
            "g": (BUY, pricing.callshop_multiple),
            "r": (OWNER, pricing.reseller_multiple),
        }[level]
        bounds.append(affordable(avail, rate, mult))
    assert maxsec == min(bounds)

    if running:
        # It hangs up inside the block it paid: nothing more is taken from the credit that
        # MAXSEC counted (a running call that kept talking would share it: see README).
        assert engine.end("other", 1, T0 + 25_000, 30).customer == DE.connect
    # The listener's view: answer, then pay boundaries until the engine says cut.
    assert engine.answer("this", PAYER, pricing, T0).outcome == "OK"
    cut = None
    while cut is None:
        batch = engine.extend_due(1, T0 + 10**8)
        cut = next((c for c in batch.cut if c.call_id == "this"), None)
        assert batch.paid or cut, "never cut"
    # Paid through billsec MAXSEC, cut when billsec would reach MAXSEC + 1.
    assert cut.hangup_before_ms == T0 + (maxsec + 1) * 1000


def test_the_listener_cuts_the_admitted_call_after_exactly_maxsec(redis_server, key_prefix):
    """End to end: the MAXSEC the dialplan gets is the billsec at which the real listener
    (over AMI, against the simulated Asterisk) hangs the same booth up."""
    from ops import pbx_sim
    from tests.test_listener import Rig, ended_records, run_with

    keys = Keys(key_prefix)
    engine, book = CreditEngine(redis_server, keys), RedisRateBook(redis_server, keys)
    # 0.50 pays the first 2 s, then 1.00 a second: 3.60 pays 2 + 3 s.
    book.replace([BookRow("customer", "00", 0, 0, 0, Rate(13, 500_000, 2, 60_000_000, 1, "X"))])
    engine.provision(PAYER, payer_key="8001", limits={"clid": ("prepaid", 3_600_000)})
    settings = load_settings({"ASTERBILL_KEY_PREFIX": key_prefix}, env_file=None)
    (call,) = admit((engine, settings), {"extension": "00493012345678"})
    maxsec = int(call.variables["ASTERBILL_MAXSEC"])
    assert maxsec == 5

    async def feed(server):
        await pbx_sim.run_generator(
            server, [pbx_sim.CallPlan("8001", "00493012345678", ring=0.2, talk=9)], cps=0
        )

    listener = asyncio.run(run_with(Rig(engine, book), key_prefix, feed, settle=0.5))
    assert [h.reason for h in listener.hangups] == ["NO_CREDIT_CLID"]
    (record,) = ended_records(Rig(engine, book)).values()
    assert record[4] == maxsec  # billsec
    assert record[5] == 3_500_000  # and it paid what MAXSEC promised


rates = st.builds(
    Rate,
    id=st.just(9),
    connect=st.integers(0, 2_000_000),
    initblock=st.integers(0, 120),
    per_minute=st.integers(1, 5_000_000),
    block=st.integers(1, 90),
    destination=st.just("Random"),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rate=rates,
    multiple=st.integers(5_000, 30_000),
    limit=st.integers(0, 20_000_000),
    deposit=st.none() | st.integers(0, 20_000_000),
)
def test_maxsec_is_the_longest_affordable_billsec_for_random_rates(
    redis_server, key_prefix, rate, multiple, limit, deposit
):
    """Through the AGI's admission code (no TCP): MAXSEC against a brute force over the
    price function, for the clid's prepaid limit and its deposit."""
    keys = Keys(f"{key_prefix}h")
    engine = CreditEngine(redis_server, keys)
    RedisRateBook(redis_server, keys).replace([BookRow("customer", "00", 0, 0, 0, rate)])
    engine.provision(
        PAYER,
        payer_key="8001",
        limits={"clid": ("prepaid", limit)},
        deposit=deposit,
        multiples=(multiple, 10_000, 10_000),
    )
    settings_ = load_settings({"ASTERBILL_KEY_PREFIX": keys.prefix}, env_file=None)
    admission = Admitter(engine, RedisRateBook(redis_server, keys), settings_).admit("8001", "0049")
    bound = min(limit, limit if deposit is None else deposit)
    # The price never falls as billsec grows: the last billsec it fits is found by doubling,
    # then halving, on the price function alone.
    lo, hi = 0, 1
    while price(hi, multiple, rate) <= bound:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if price(mid, multiple, rate) <= bound else (lo, mid)
    best = lo
    if best == 0:  # not one second paid (or not even the first block)
        assert admission.status == "NO_CREDIT"
    else:
        assert admission.status == "OK"
        assert admission.maxsec == best
    for key in redis_server.scan_iter(match=f"{keys.prefix}*"):
        redis_server.delete(key)
