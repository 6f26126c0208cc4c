"""The real listener (panoramisk) against the simulated Asterisk over TCP, on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time

import pytest

from ami_listener.billing import Biller
from ami_listener.service import Listener
from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from ops import pbx_sim
from ops.settings import load_settings
from rating.book import RedisRateBook
from rating.price import Rate, price
from rating.select import BookRow
from tests.ami_captures import billing_cdrs, capture_files
from tests.conftest import REDIS_SERVER

PER_SECOND = Rate(11, 0, 0, 60_000_000, 1, "Per second")  # 1.00 a second, 1 s blocks
PER_MINUTE = Rate(12, 100_000, 0, 600_000, 60, "Per minute")


def settings_for(port: int, key_prefix: str, **extra):
    env = {
        "AMI_PORT": str(port),
        "AMI_USER": "billing",
        "AMI_SECRET": "s3cret",
        "ASTERBILL_KEY_PREFIX": key_prefix,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_GUARD_MS": "500",
        **extra,
    }
    return load_settings(environ=env, env_file=None)


@dataclasses.dataclass
class Rig:
    engine: CreditEngine
    book: RedisRateBook
    listener: Listener | None = None


@pytest.fixture
def rig(redis_server, key_prefix) -> Rig:
    keys = Keys(key_prefix)
    engine, book = CreditEngine(redis_server, keys), RedisRateBook(redis_server, keys)
    book.replace(
        [
            BookRow("customer", "00", 0, 0, 0, PER_MINUTE),
            BookRow("customer", "7777", 0, 0, 0, PER_MINUTE),
        ]
    )
    for booth in range(8001, 8011):
        engine.provision(Payer(1, 10, booth), payer_key=str(booth))
    return Rig(engine, book)


async def run_with(
    rig: Rig, key_prefix: str, feed, settle: float = 1.5, biller=Biller, errors: int = 0, **extra
) -> Listener:
    """Start the simulator and the listener, run `feed(server)`, let the last events in."""
    server = pbx_sim.AmiServer("billing", "s3cret")
    port = await server.start("127.0.0.1", 0)
    settings = settings_for(port, key_prefix, **extra)
    listener = Listener(settings, biller(rig.engine, rig.book, settings))
    rig.listener = listener
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.logged_in.wait(), 10)
        await feed(server)
        await asyncio.sleep(settle)
        await listener.queue.join()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        listener.close()
        await server.close()
    assert listener.stats.errors == errors
    return listener


def ended_records(rig: Rig, reseller_id: int = 1) -> dict[str, list[int]]:
    raw = rig.engine.client.hgetall(rig.engine.keys.ended(reseller_id))
    return {k.decode(): [int(x) for x in v.decode().split(",")] for k, v in raw.items()}


def read_metas(rig: Rig, reseller_id: int) -> dict[str, dict]:
    raw = rig.engine.client.hgetall(rig.engine.keys.meta(reseller_id))
    return {k.decode(): json.loads(v) for k, v in raw.items()}


@pytest.mark.parametrize("path", capture_files(), ids=[p.name for p in capture_files()])
def test_every_capture_replays_through_the_listener(rig, key_prefix, path):
    speed = 4.0 if "ts-" in path.name else 20.0

    async def feed(server):
        await pbx_sim.replay(server, path, speed=speed)

    listener = asyncio.run(run_with(rig, key_prefix, feed))

    cdrs = billing_cdrs(path)
    # a callback's leg A is billed as `<uniqueid>:a` (ASTERBILL_CALLBACK_LEGS=a, the default)
    ended = {k.partition(":")[0]: v for k, v in ended_records(rig).items()}
    unknown = ended_records(rig, reseller_id=0)  # callers that are no booth: recorded, free
    # Every booth Dial that Asterisk wrote a CDR for waits for settlement, once, with
    # Asterisk's disposition; answered ones are priced by their billsec, the others cost 0.
    assert set(cdrs) <= set(ended) | set(unknown)
    assert not set(ended) & set(unknown)
    metas = {
        k.partition(":")[0]: v for k, v in {**read_metas(rig, 0), **read_metas(rig, 1)}.items()
    }
    for call_id, cdr in cdrs.items():
        record = ended.get(call_id) or unknown[call_id]
        answered = cdr["Disposition"] == "ANSWERED"
        assert (record[2] > 0) == answered
        if not answered:
            assert metas[call_id]["disposition"] == cdr["Disposition"]
            assert record[4:8] == [0, 0, 0, 0]
    for record in ended.values():
        billsec = record[4]
        assert record[5] == price(billsec, 10_000, PER_MINUTE)  # the customer price
    assert listener.tracker.calls == {}
    assert rig.engine.client.hlen(rig.engine.keys.calls(1)) == 0  # nothing left running


def test_a_prepaid_booth_is_hung_up_at_the_boundary_and_pays_exactly_two_blocks(rig, key_prefix):
    rig.book.replace([BookRow("customer", "00", 0, 0, 0, PER_SECOND)])
    rig.engine.provision(
        Payer(1, 10, 8001), payer_key="8001", limits={"clid": ("prepaid", 2_000_000)}
    )  # two 1 s blocks

    async def feed(server):
        plan = pbx_sim.CallPlan("8001", "00493012345678", ring=0.3, talk=10)
        await pbx_sim.run_generator(server, [plan], cps=0)

    listener = asyncio.run(run_with(rig, key_prefix, feed, settle=0.5))

    [request] = listener.hangups
    assert request.reason == "NO_CREDIT_CLID"
    [record] = ended_records(rig).values()
    assert record[4] == 2  # billsec: cut before the third second started
    assert record[5] == 2_000_000
    clid = rig.engine.level(1, "clid", 8001)
    assert (clid.used, clid.available) == (2_000_000, 0)


def test_a_locked_booth_is_never_connected(rig, key_prefix):
    rig.engine.provision(Payer(1, 10, 8002), payer_key="8002", locked=True)

    async def feed(server):
        plan = pbx_sim.CallPlan("8002", "00442071234567", ring=2.0, talk=5)
        await pbx_sim.run_generator(server, [plan], cps=0)

    listener = asyncio.run(run_with(rig, key_prefix, feed, settle=0.5))

    assert [h.reason for h in listener.hangups] == ["LOCKED"]
    # recorded for settlement at cost 0, with the reason; nothing was debited
    [(call_id, record)] = ended_records(rig).items()
    assert record[:3] == [8002, 10, 0] and record[4:8] == [0, 0, 0, 0]
    assert read_metas(rig, 1)[call_id]["flags"] == ["locked"]
    assert rig.engine.level(1, "clid", 8002).used == 0


def test_unanswered_calls_can_be_dropped_by_setting(rig, key_prefix):
    async def feed(server):
        plan = pbx_sim.CallPlan("8003", "00442071234567", ring=0.3, talk=0, answer=False)
        await pbx_sim.run_generator(server, [plan], cps=0)

    asyncio.run(run_with(rig, key_prefix, feed, settle=0.5, ASTERBILL_UNANSWERED="drop"))
    assert ended_records(rig) == {}


def test_concurrent_generated_calls_are_all_billed(rig, key_prefix):
    plans = pbx_sim.random_plans(
        12,
        booths=5,
        seed=3,
        answer_ratio=0.75,
        talk=(0.5, 2.5),
        numbers=["00493012345678", "00441234567"],
    )
    for plan in plans:
        plan.ring = 0.2

    async def feed(server):
        await pbx_sim.run_generator(server, plans, cps=20)

    asyncio.run(run_with(rig, key_prefix, feed, settle=1.0))

    ended = ended_records(rig)
    assert len(ended) == len(plans)  # the unanswered ones too, at cost 0
    assert sum(r[2] > 0 for r in ended.values()) == sum(p.answer for p in plans)
    total = sum(r[5] for r in ended.values())
    booths_used = sum(rig.engine.level(1, "clid", b).used for b in range(8001, 8006))
    assert booths_used == total


def test_a_call_that_ends_while_asterisk_is_unreachable_is_billed_to_the_connection_loss(
    rig, key_prefix
):
    """Issue 11 point 4: Asterisk goes away with a call up; the call ends meanwhile; the
    listener comes back later. The call ends where the evidence ends, when the connection
    was lost (1 s talked by then), not at the reconnect (the old code billed the talk up to
    the reconnect, 3-4 s), and is flagged for review."""
    from tests.test_cli import free_port

    port = free_port()
    moments = {}

    async def scenario():
        server = pbx_sim.AmiServer("billing", "s3cret")
        await server.start("127.0.0.1", port)
        settings = settings_for(port, key_prefix)
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            plan = pbx_sim.CallPlan("8003", "00493012345678", ring=0.2, talk=2.5)
            call = asyncio.create_task(pbx_sim.run_generator(server, [plan], cps=0))
            await asyncio.sleep(1.5)  # answered about 1.3 s ago
            moments["lost"] = time.time()
            listener.logged_in.clear()
            server.drop_sessions()
            await server.close()  # nobody answers at this port now
            await call  # the call ends while nobody listens
            await asyncio.sleep(1.0)
            await server.start("127.0.0.1", port)
            await asyncio.wait_for(listener.logged_in.wait(), 15)
            moments["back"] = time.time()
            await asyncio.sleep(1.0)
            await listener.queue.join()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()
        return listener

    listener = asyncio.run(scenario())

    assert listener.stats.errors == 0 and listener.resyncs >= 2
    [(call_id, record)] = ended_records(rig).items()
    # the call had ended by the reconnect, 3 s or more after its answer
    assert moments["back"] - moments["lost"] > 2.0
    assert record[4] == 1  # billsec: answer -> connection lost
    assert abs(record[3] - moments["lost"] * 1000) < 300  # end_ms: the loss
    assert read_metas(rig, 1)[call_id]["review"] == "ended_while_disconnected"
    assert rig.engine.client.hlen(rig.engine.keys.calls(1)) == 0


def test_a_restarted_listener_adopts_live_calls_and_ends_those_gone(rig, key_prefix):
    """Listener 1 answers two calls and dies; one call ends while nobody listens; listener 2
    adopts the call still up and ends the other, flagged, at listener 1's last heartbeat
    (the last moment it was known to run; not listener 2's start, issue 11 point 4)."""
    moments = {}
    plans = [
        pbx_sim.CallPlan("8004", "00493012345678", ring=0.2, talk=0.8),
        pbx_sim.CallPlan("8005", "00493012345678", ring=0.2, talk=3.0),
    ]

    async def scenario():
        server = pbx_sim.AmiServer("billing", "s3cret")
        port = await server.start("127.0.0.1", 0)
        settings = settings_for(port, key_prefix)
        first = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(first.run())
        await asyncio.wait_for(first.logged_in.wait(), 10)
        calls = asyncio.create_task(pbx_sim.run_generator(server, plans, cps=0))
        await asyncio.sleep(0.6)
        task.cancel()
        first.close()
        server.drop_sessions()
        moments["died"] = time.time()
        await asyncio.sleep(0.8)  # 8004 hangs up while no listener runs
        second = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(second.run())
        await asyncio.wait_for(second.logged_in.wait(), 10)
        await calls
        await asyncio.sleep(0.8)
        await second.queue.join()
        task.cancel()
        second.close()
        await server.close()
        return second

    second = asyncio.run(scenario())
    assert second.stats.errors == 0
    ended = ended_records(rig)
    assert len(ended) == 2
    metas = {
        k.decode(): v.decode()
        for k, v in rig.engine.client.hgetall(rig.engine.keys.meta(1)).items()
    }
    flagged = [c for c, m in metas.items() if "ended_while_listener_down" in m]
    assert len(flagged) == 1
    gone = ended[flagged[0]]
    assert moments["died"] * 1000 - 400 <= gone[3] <= moments["died"] * 1000  # end_ms
    adopted = next(c for c in ended if c not in flagged)
    assert ended[adopted][4] in (2, 3)  # its real billsec, from its Hangup event
    assert rig.engine.client.hlen(rig.engine.keys.calls(1)) == 0


def test_one_failing_call_never_stops_the_others(rig, key_prefix):
    """An exception while billing one call is logged with its ids; the others are billed."""

    class FailingOnce(Biller):
        def on_answered(self, call):
            if call.src == "8006":
                raise RuntimeError("boom")
            return super().on_answered(call)

    plans = [
        pbx_sim.CallPlan("8006", "00493012345678", ring=0.2, talk=0.5),
        pbx_sim.CallPlan("8007", "00493012345678", ring=0.3, talk=0.5),
    ]

    async def feed(server):
        await pbx_sim.run_generator(server, plans, cps=0)

    listener = asyncio.run(
        run_with(rig, key_prefix, feed, settle=0.5, biller=FailingOnce, errors=1)
    )
    assert listener.stats.errors == 1
    ended = {r[0]: (call_id, r) for call_id, r in ended_records(rig).items()}
    assert ended[8007][1][5] == price(ended[8007][1][4], 10_000, PER_MINUTE)  # billed
    # the failed one is recorded at cost 0 and flagged for a person to look at
    failed_id, failed = ended[8006]
    assert failed[5:8] == [0, 0, 0] and failed[2] > 0
    assert read_metas(rig, 1)[failed_id]["flags"] == ["answered_not_billed"]


def test_a_wrong_secret_never_logs_in_and_never_crashes(rig, key_prefix):
    async def scenario():
        server = pbx_sim.AmiServer("billing", "another secret")
        port = await server.start("127.0.0.1", 0)
        settings = settings_for(port, key_prefix)
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        await asyncio.sleep(2.5)  # Asterisk answers a bad secret after 1 s and hangs up
        alive = not task.done()
        task.cancel()
        listener.close()
        await server.close()
        return listener, alive, server.actions

    listener, alive, actions = asyncio.run(scenario())
    assert alive and not listener.logged_in.is_set()
    assert [a["Action"] for a in actions][:1] == ["Login"]
    assert listener.stats.errors == 0


def test_garbage_on_the_wire_is_survived(rig, key_prefix):
    """Malformed frames and unknown events between real ones: the call is still billed."""

    async def feed(server):
        server.send_raw(b"this is not AMI at all\r\n\r\n")
        server.send_raw(b"Event: FancyNewEvent\r\nPrivilege: call,all\r\nFoo: bar\r\n\r\n")
        server.send_raw(b"Event: Hangup\r\nUniqueid: never-seen\r\nChannel: SIP/x-1\r\n\r\n")
        server.send_raw(b"Event: DialEnd\r\nUniqueid: 42\r\nDialStatus: ANSWER\r\n\r\n")
        plan = pbx_sim.CallPlan("8008", "00493012345678", ring=0.2, talk=1.2)
        await pbx_sim.run_generator(server, [plan], cps=0)

    listener = asyncio.run(run_with(rig, key_prefix, feed, settle=0.5))
    [record] = ended_records(rig).values()
    assert record[4] == 1 and record[5] == price(1, 10_000, PER_MINUTE)
    assert listener.tracker.counters.ignored >= 1


def test_a_redis_outage_delays_billing_but_loses_no_step(rig, key_prefix):
    """The answer and the end fail twice each as if Redis were down: the listener waits,
    retries in order, and the call is billed exactly once."""
    import redis

    class Flaky(Biller):
        def __init__(self, *args):
            super().__init__(*args)
            self.failures = {"answer": 2, "end": 2}

        def _fail(self, what):
            if self.failures[what]:
                self.failures[what] -= 1
                raise redis.ConnectionError("connection refused (simulated outage)")

        def on_answered(self, call):
            self._fail("answer")
            return super().on_answered(call)

        def on_ended(self, call):
            self._fail("end")
            return super().on_ended(call)

    async def feed(server):
        plan = pbx_sim.CallPlan("8009", "00493012345678", ring=0.2, talk=1.3)
        await pbx_sim.run_generator(server, [plan], cps=0)

    listener = asyncio.run(run_with(rig, key_prefix, feed, settle=1.0, biller=Flaky))

    assert listener.stats.retries == 4
    [record] = ended_records(rig).values()
    assert record[0] == 8009 and record[5] == price(record[4], 10_000, PER_MINUTE)
    assert rig.engine.level(1, "clid", 8009).used == record[5]


def test_a_callback_is_originated_and_both_legs_billed_by_their_own_numbers(rig, key_prefix):
    """Originate through panoramisk: the OriginateResponse event is read from the action's
    reply (panoramisk never hands it to event handlers), and the two legs are billed."""
    rig.book.replace(
        [
            BookRow("customer", "0049", 0, 0, 0, PER_SECOND),  # leg A: the customer in Germany
            BookRow("customer", "0044", 0, 0, 0, PER_MINUTE),  # leg B: the UK number
        ]
    )
    rig.engine.provision(Payer(1, 10, 8008), payer_key="8008")
    results = []
    seen_events = []

    async def feed(server):
        listener = rig.listener
        listener.manager.register_event("OriginateResponse", lambda m, e: seen_events.append(e))
        results.append(
            await listener.originate_callback("004930555111", "00447700900123", "8008", "shop1")
        )
        while server.channels:
            await asyncio.sleep(0.1)

    asyncio.run(
        run_with(
            rig,
            key_prefix,
            feed,
            settle=1.5,  # the simulated callback sends no Cdr: leg A waits for it 1 s
            ASTERBILL_CALLBACK_LEGS="both",
            ASTERBILL_CALLBACK_CHANNEL="Local/{number}@pstn-sim",
        )
    )

    [result] = results
    assert result.answered and result.uniqueid and result.reason == "4"
    assert seen_events == []  # the pitfall: handlers never see it; the reply had it
    ended = ended_records(rig)
    assert set(ended) == {f"{result.uniqueid}:a", f"{result.uniqueid}:b"}
    leg_a, leg_b = ended[f"{result.uniqueid}:a"], ended[f"{result.uniqueid}:b"]
    assert leg_a[0] == leg_b[0] == 8008  # the booth that asked for the callback pays both
    assert leg_a[5] == price(leg_a[4], 10_000, PER_SECOND)  # priced by A's number
    assert leg_b[5] == price(leg_b[4], 10_000, PER_MINUTE)  # priced by B's number
    assert leg_a[4] >= leg_b[4] >= 2  # A talks from its own answer, B from B's answer


def test_panoramisk_pitfalls_empty_last_header_and_a_listener_built_outside_the_loop(
    rig, key_prefix
):
    """A Listener object made outside any event loop still connects (its panoramisk Manager
    is built inside the running loop), and a Cdr whose last header is empty (`UserField: `,
    which panoramisk 1.4 drops) arrives with every other header and bills nothing twice."""
    server_port = {}
    seen = []

    async def serve_and_feed(listener):
        server = pbx_sim.AmiServer("billing", "s3cret")
        server_port["port"] = await server.start("127.0.0.1", server_port["port"])
        listener.manager.register_event("Cdr", lambda manager, e: seen.append(dict(e)))
        await asyncio.wait_for(listener.logged_in.wait(), 10)
        plan = pbx_sim.CallPlan("8001", "00442071234567", ring=0.2, talk=1.2)
        await pbx_sim.run_generator(server, [plan], cps=0)
        await asyncio.sleep(0.5)
        await listener.queue.join()
        await server.close()

    from tests.test_cli import free_port

    server_port["port"] = free_port()
    settings = settings_for(server_port["port"], key_prefix)
    listener = Listener(settings, Biller(rig.engine, rig.book, settings))  # no loop running

    async def main():
        task = asyncio.create_task(listener.run())
        await asyncio.sleep(0)
        try:
            await serve_and_feed(listener)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()

    asyncio.run(main())

    [cdr] = [e for e in seen if e.get("Event") == "Cdr"]
    assert cdr["Destination"] == "00442071234567" and cdr["Disposition"] == "ANSWERED"
    assert cdr.get("UserField", "") == ""  # dropped by panoramisk, or empty: never needed
    [record] = ended_records(rig).values()
    assert record[5] == price(record[4], 10_000, PER_MINUTE)
