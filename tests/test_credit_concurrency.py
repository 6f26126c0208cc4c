"""Hundreds of calls sharing one prepaid group and one reseller balance, driven the way the
listener drives them (ticks at the next due time minus the guard), in random scenarios.

Invariants after every step: no prepaid balance below zero, no deposit exceeded. At the end:
each call's debits equal its final price at every level; the sum over calls equals the change
of `used` at every level, to the micro-unit; a call refused at dial was never charged."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lua.credit import CreditEngine, Outcome, Payer, Pricing
from lua.keys import Keys
from rating.price import Rate, price

T0 = 1_795_000_000_000
RESELLER, GROUP = 3, 30
RATES = [
    Rate(1, 400_000, 60, 400_000, 60),
    Rate(2, 100_000, 0, 600_000, 1),
    Rate(3, 0, 0, 120_000, 6),
    Rate(4, 50_000, 30, 250_000, 30),
    Rate(5, 0, 60, 300_000, 60),  # free first minute
]


@dataclass
class Booth:
    clid_id: int
    limit_type: str
    limit: int
    deposit: int | None


@st.composite
def scenarios(draw):
    booths = [
        Booth(
            100 + i,
            draw(st.sampled_from(["prepaid", "postpaid", "none"])),
            draw(st.integers(1_000_000, 40_000_000)),
            draw(st.none() | st.integers(2_000_000, 30_000_000)),
        )
        for i in range(draw(st.integers(1, 8)))
    ]
    calls = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(booths) - 1),  # booth
                st.integers(0, 480).map(lambda q: q * 250),  # dial time offset, ms
                st.integers(0, 80).map(lambda q: q * 250),  # ring time, ms
                st.integers(0, 400_000),  # planned talk, ms
                st.sampled_from(RATES),
                st.sampled_from(RATES),
                st.sampled_from(RATES),
                st.sampled_from([10_000, 10_000, 15_000, 5_000]),  # customer multiple
            ),
            min_size=100,
            max_size=300,
        )
    )
    return {
        "booths": booths,
        "group": (
            draw(st.sampled_from(["prepaid", "postpaid"])),
            draw(st.integers(5_000_000, 80_000_000)),
        ),
        "reseller": ("prepaid", draw(st.integers(10_000_000, 120_000_000))),
        "guard": draw(st.sampled_from([100, 250, 500, 1000])),
        "calls": calls,
    }


def check_balances(engine: CreditEngine, booths: list[Booth]) -> None:
    """No prepaid level above its limit, no deposit exceeded (one HGETALL)."""
    raw = engine.client.hgetall(engine.keys.balances(RESELLER))
    bal = {k.decode(): v.decode() for k, v in raw.items()}
    levels = [f"g{GROUP}", f"r{RESELLER}", *(f"c{b.clid_id}" for b in booths)]
    for level in levels:
        if bal[f"{level}.type"] == "prepaid":
            assert int(bal[f"{level}.used"]) <= int(bal[f"{level}.limit"]), level
        if f"{level}.deposit" in bal:
            assert int(bal[f"{level}.unbilled"]) <= int(bal[f"{level}.deposit"]), level


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_concurrent_calls_never_overspend_and_balance_to_the_micro_unit(
    redis_server, key_prefix, scenario
):
    engine = CreditEngine(redis_server, Keys(f"{key_prefix}{next(COUNTER)}"))
    booths = scenario["booths"]
    for booth in booths:
        engine.provision(
            Payer(RESELLER, GROUP, booth.clid_id),
            limits={
                "clid": (booth.limit_type, booth.limit),
                "group": scenario["group"],
                "reseller": scenario["reseller"],
            },
            deposit=booth.deposit,
        )
    guard = scenario["guard"]
    events: list[tuple[int, int, str, int]] = []  # (time, order, kind, call index)
    seq = itertools.count()
    for i, (_, dial, *_rest) in enumerate(scenario["calls"]):
        heapq.heappush(events, (T0 + dial, next(seq), "dial", i))

    pricing: dict[int, Pricing] = {}
    answered: dict[int, int] = {}
    ended: dict[int, tuple[int, tuple[int, int, int]]] = {}
    refused: set[int] = set()
    cut_at: dict[int, int] = {}

    ticks: set[int] = set()

    def schedule_tick(due_ms: int) -> None:
        """Like the listener: wake once at (next due - guard), not once per call."""
        if due_ms >= 0 and due_ms - guard not in ticks:
            ticks.add(due_ms - guard)
            heapq.heappush(events, (due_ms - guard, next(seq), "tick", -1))

    def end_call(i: int, now: int) -> None:
        if i in ended:
            return
        billsec = (now - answered[i]) // 1000
        result = engine.end(f"call{i}", RESELLER, now, billsec)
        assert result.outcome == Outcome.OK
        ended[i] = (billsec, (result.customer, result.callshop, result.reseller))

    while events:
        now, _, kind, i = heapq.heappop(events)
        if kind == "dial":
            booth_index, _, ring, talk, rc, rg, rr, mult = scenario["calls"][i]
            payer = Payer(RESELLER, GROUP, booths[booth_index].clid_id)
            pricing[i] = Pricing(rc, rg, rr, customer_multiple=mult)
            if not engine.authorize(payer, pricing[i]).allowed:
                refused.add(i)
                continue
            heapq.heappush(events, (now + ring, next(seq), "answer", i))
        elif kind == "answer":
            booth_index, _, ring, talk, *_ = scenario["calls"][i]
            payer = Payer(RESELLER, GROUP, booths[booth_index].clid_id)
            step = engine.answer(f"call{i}", payer, pricing[i], now)
            answered[i] = now
            if step.outcome == Outcome.HANGUP:  # credit spent by others while it rang
                end_call(i, now)
            else:
                schedule_tick(step.due_ms)
                heapq.heappush(events, (now + talk, next(seq), "hangup", i))
        elif kind == "tick":
            ticks.discard(now)
            batch = engine.extend_due(RESELLER, now + guard)
            for cut in batch.cut:
                index = int(cut.call_id.removeprefix("call"))
                assert cut.hangup_before_ms > now
                cut_at[index] = cut.hangup_before_ms
                # AMI Hangup takes a little while, but less than the guard time.
                heapq.heappush(events, (now + guard // 2, next(seq), "hangup", index))
            schedule_tick(batch.next_due_ms)
        elif kind == "hangup":
            end_call(i, now)
        check_balances(engine, booths)

    # Every answered call ended; its debits were exactly its final price at each level.
    assert set(ended) == set(answered)
    used = {("group", GROUP): 0, ("reseller", RESELLER): 0}
    for i, (billsec, finals) in ended.items():
        p = pricing[i]
        assert finals == (
            price(billsec, p.customer_multiple, p.customer),
            price(billsec, p.callshop_multiple, p.callshop),
            price(billsec, p.reseller_multiple, p.reseller),
        )
        if i in cut_at:
            assert answered[i] + (billsec + 1) * 1000 <= cut_at[i]  # never entered the block
        clid = ("clid", booths[scenario["calls"][i][0]].clid_id)
        used[clid] = used.get(clid, 0) + finals[0]
        used[("group", GROUP)] += finals[1]
        used[("reseller", RESELLER)] += finals[2]
    for (level, level_id), total in used.items():
        assert engine.level(RESELLER, level, level_id).used == total, (level, level_id)
    # Nothing is left running, and refused calls left no trace.
    assert redis_server.hlen(engine.keys.calls(RESELLER)) == 0
    assert redis_server.zcard(engine.keys.due(RESELLER)) == 0
    for i in refused:
        assert not redis_server.hexists(engine.keys.ended(RESELLER), f"call{i}")


COUNTER = itertools.count()
