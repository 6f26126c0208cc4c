"""The credit-failure policy (ami_listener/policy.py) on a private Redis that really goes away
(killed, restarted on its append-only file), the end modes chosen by the biller, and
Asterisk timestamps bounded by the listener's clock (ami_listener/clock.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from ami_listener.billing import Biller
from ami_listener.clock import AsteriskClock
from ami_listener.service import Listener
from ami_listener.tracker import Call, CallTracker
from lua.credit import CreditEngine, Deny, Payer
from lua.keys import Keys
from ops import pbx_sim
from ops.redis_server import connect, server_binary
from ops.settings import load_settings
from rating.book import RedisRateBook
from rating.price import Rate
from rating.select import BookRow

T0 = 1_795_000_000_000  # ms
HALF_CENT = Rate(31, 0, 0, 300_000, 1, "Booth")  # 0.005 a second, 1 s blocks
PREPAID = Payer(1, 10, 8001)
POSTPAID = Payer(1, 10, 8002)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, that the test can kill and start again: its
    append-only file (fsync always) keeps every write across the restart."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port, self.process = folder, free_port(), None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(server_binary(), "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always"),
                *("--save", "", "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


def settings_for(url: str, ami_port: int = 5038, **extra):
    env = {
        "AMI_PORT": str(ami_port),
        "AMI_USER": "billing",
        "AMI_SECRET": "s3cret",
        "REDIS_URL": url,
        "ASTERBILL_GUARD_MS": "500",
        **extra,
    }
    return load_settings(environ=env, env_file=None)


def make_biller(url: str, policy: str = "terminate", clock=None, ami_port: int = 5038) -> Biller:
    client = connect(url, socket_timeout=2, socket_connect_timeout=1)
    keys = Keys("ab")
    engine, book = CreditEngine(client, keys), RedisRateBook(client, keys)
    book.replace([BookRow("customer", "00", 0, 0, 0, HALF_CENT)])
    engine.provision(PREPAID, payer_key="8001", limits={"clid": ("prepaid", 50_000)})
    engine.provision(POSTPAID, payer_key="8002", limits={"clid": ("postpaid", 0)})
    settings = settings_for(url, ami_port, ASTERBILL_CREDIT_FAILURE=policy)
    return Biller(engine, book, settings, clock=clock)


def booth_call(booth: str, dialed_ms: int, uniqueid: str = "") -> Call:
    return Call(
        call_id=uniqueid or f"{booth}.1",
        channel=f"PJSIP/{booth}-00000001",
        linkedid=uniqueid or f"{booth}.1",
        payer_key=booth,
        src=booth,
        number="00493012345678",
        accountcode="",
        dialed_us=dialed_ms * 1000,
    )


def answer(biller: Biller, call: Call, answered_ms: int) -> None:
    assert biller.on_dialed(call) is None
    call.answered_us, call.dial_status = answered_ms * 1000, "ANSWER"
    assert biller.on_answered(call) is None


def metas(engine: CreditEngine) -> dict[str, dict]:
    raw = engine.client.hgetall(engine.keys.meta(1))
    return {k.decode(): json.loads(v) for k, v in raw.items()}


# -- point 11: the listener cuts from its own paid-until table while Redis is away ---------


def test_terminate_cuts_a_prepaid_call_at_the_end_of_what_it_paid_while_redis_is_down(
    private_redis,
):
    biller = make_biller(private_redis.url)
    prepaid, postpaid = booth_call("8001", T0 - 1_000), booth_call("8002", T0 - 1_000)
    answer(biller, prepaid, T0)
    answer(biller, postpaid, T0)
    assert biller.tick(T0 + 1_600)[0] == []  # billsec 2 paid, due at answer + 3 s
    assert biller.paid_until == {prepaid.call_id: T0 + 3_000}

    private_redis.kill()
    assert biller.tick(T0 + 2_000) == ([], T0 + 3_000)  # not yet: wake for its cut
    hangups, _ = biller.tick(T0 + 2_600)

    assert [(h.call_id, h.reason) for h in hangups] == [(prepaid.call_id, "CREDIT_UNAVAILABLE")]
    assert biller.tick(T0 + 2_700)[0] == []  # asked once

    private_redis.start()  # back, with everything it had
    prepaid.ended_us = (T0 + 2_900) * 1000  # hung up at the cut: billsec 2
    biller.on_ended(prepaid)
    assert biller.engine.level(1, "clid", 8001).used == 10_000  # exactly what it paid


def test_continue_lets_calls_run_and_bills_what_happened_with_the_level_over_its_limit(
    private_redis,
):
    biller = make_biller(private_redis.url, policy="continue")
    call = booth_call("8001", T0 - 1_000)
    answer(biller, call, T0)
    private_redis.kill()
    assert biller.tick(T0 + 5_000) == ([], -1)  # nothing cut while Redis is away
    assert biller.tick(T0 + 9_000)[0] == []
    private_redis.start()

    call.ended_us = (T0 + 14_200) * 1000  # it talked 14 s against 10 s it could pay
    biller.on_ended(call)

    engine = biller.engine
    assert engine.level(1, "clid", 8001).used == 70_000
    flags = metas(engine)[call.call_id]["flags"]
    assert sorted(flags) == ["credit_unavailable", "over_limit"]
    assert engine.authorize(PREPAID, biller.engine.pricing(PREPAID, _rates())).reason == (
        Deny.OVER_LIMIT_CLID
    )
    refusal = biller.on_dialed(booth_call("8001", T0 + 20_000, "8001.2"))
    assert refusal is not None and refusal.reason == Deny.OVER_LIMIT_CLID


def _rates():
    return {"customer": HALF_CENT, "callshop": None, "reseller": None}


# -- point 2: an end not seen is never charged past what the call paid -------------------


def test_a_prepaid_call_that_ended_while_disconnected_is_charged_what_it_paid(private_redis):
    """Issue 11.2: booth prepaid 0.05 (10 one-second blocks), Asterisk killed 4 s after the
    answer, the listener ended the call at its reconnect (20 s): 0.10 against 0.05."""
    biller = make_biller(private_redis.url)
    call = booth_call("8001", T0 - 1_000)
    answer(biller, call, T0)
    biller.tick(T0 + 3_600)  # paid through billsec 4
    call.ended_us = (T0 + 20_000) * 1000
    call.review = "ended_while_disconnected"

    biller.on_ended(call)

    clid = biller.engine.level(1, "clid", 8001)
    assert clid.used == 20_000 <= clid.limit
    assert metas(biller.engine)[call.call_id]["flags"] == ["capped_at_paid"]


def test_an_adopted_call_that_talked_past_its_paid_time_is_billed_and_flagged(private_redis):
    """The listener was down: the call ran on uncut. Its real end is billed, flagged, and
    the booth is refused until it is back under its limit."""
    first = make_biller(private_redis.url)
    call = booth_call("8001", T0 - 1_000)
    answer(first, call, T0)  # then this listener dies
    second = make_biller(private_redis.url)
    [adopted] = second.orphans({call.uniqueid}, set(), T0 + 30_000)
    hangups, _ = second.tick(T0 + 30_000)  # cannot pay its elapsed blocks: cut at once
    assert [h.reason for h in hangups] == ["NO_CREDIT_CLID"]
    adopted.ended_us = (T0 + 30_300) * 1000

    second.on_ended(adopted)

    assert second.engine.level(1, "clid", 8001).used == 150_000  # 30 s, as it happened
    assert metas(second.engine)[call.call_id]["flags"] == ["over_limit"]


# -- point 11: refusals at dial reach Asterisk at once ------------------------------------


async def _listener_rig(url: str, policy: str):
    server = pbx_sim.AmiServer("billing", "s3cret")
    port = await server.start("127.0.0.1", 0)
    biller = make_biller(url, policy=policy, ami_port=port)
    listener = Listener(biller.settings, biller)
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(listener.logged_in.wait(), 10)
    for _ in range(100):  # the login's resync is done before Redis goes away
        if listener.resyncs:
            break
        await asyncio.sleep(0.02)
    return server, listener, task


async def _stop(server, listener, task):
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    listener.close()
    await server.close()


def test_terminate_refuses_a_call_dialled_while_redis_is_down_at_once(private_redis):
    """Before: the listener held its queue until Redis came back, and the call was hung up
    only then (84 calls talked free in the soak). Now the hang-up goes at once and the call
    is recorded, flagged, once Redis is back."""
    hung_up_while_down = []

    async def scenario():
        server, listener, task = await _listener_rig(private_redis.url, "terminate")
        try:
            private_redis.kill()
            plan = pbx_sim.CallPlan("8001", "00493012345678", ring=1.0, talk=2.0)
            calls = asyncio.create_task(pbx_sim.run_generator(server, [plan], cps=0))
            for _ in range(40):
                await asyncio.sleep(0.05)
                if listener.hangups:
                    break
            hung_up_while_down.extend(h.reason for h in listener.hangups)
            await calls
            private_redis.start()
            for _ in range(100):
                await asyncio.sleep(0.1)
                if not listener.deferred:
                    break
            await listener.queue.join()
        finally:
            await _stop(server, listener, task)
        return listener

    listener = asyncio.run(scenario())

    assert hung_up_while_down == ["CREDIT_UNAVAILABLE"]
    engine = listener.biller.engine
    [(call_id, record)] = engine.client.hgetall(engine.keys.ended(1)).items()
    assert record.decode().split(",")[5:8] == ["0", "0", "0"]
    assert "credit_unavailable" in metas(engine)[call_id.decode()]["flags"]


def test_retry_and_terminate_admits_a_dial_when_redis_is_back_within_the_window(
    private_redis,
):
    async def scenario():
        server, listener, task = await _listener_rig(private_redis.url, "retry_and_terminate")
        try:
            private_redis.kill()
            plan = pbx_sim.CallPlan("8002", "00493012345678", ring=0.8, talk=0.5)
            calls = asyncio.create_task(pbx_sim.run_generator(server, [plan], cps=0))
            await asyncio.sleep(0.6)
            private_redis.start()  # within the 2 s window
            await calls
            await asyncio.sleep(0.5)
            await listener.queue.join()
        finally:
            await _stop(server, listener, task)
        return listener

    listener = asyncio.run(scenario())

    assert listener.hangups == []
    engine = listener.biller.engine
    [record] = engine.client.hvals(engine.keys.ended(1))
    assert int(record.decode().split(",")[2]) > 0  # answered and billed
    assert listener.stats.retries >= 1


# -- point 12: Asterisk's timestamps bounded by the listener's clock ----------------------


def event(name: str, uniqueid: str, stamp: str, **headers) -> dict[str, str]:
    return {"Event": name, "Uniqueid": uniqueid, "Timestamp": stamp, **headers}


def test_a_timestamp_far_off_is_replaced_by_the_receive_time_and_the_call_flagged():
    clock = AsteriskClock()
    received = T0 * 1000
    for i in range(5):  # a healthy Asterisk, 20 ms of network
        clock.at(event("Newstate", f"x{i}", f"{T0 / 1000 + i - 0.02:.6f}"), received + i * 10**6)
    assert abs(clock.offset_us + 20_000) <= 1
    assert clock.at(event("DialEnd", "bad", "978307200.000000"), received) == received - 20_000
    assert clock.at(event("DialEnd", "huge", "99999999999999999999.5"), received) == (
        received - 20_000
    )
    assert clock.suspect("bad") and clock.suspect("huge") and not clock.suspect("x1")
    assert abs(clock.offset_us + 20_000) <= 1  # two bad events do not move the offset


def test_a_dialend_stamped_2001_never_bills_millions_of_blocks(private_redis):
    """Issue 11.12: a DialEnd stamped 2001 charged a no-limit booth 61,800.04 in 30 s."""
    tracker = CallTracker()
    biller = make_biller(private_redis.url, clock=tracker.clock)
    now_s = T0 / 1000
    steps = []
    for offset_s, e in [
        (0.0, event("Newchannel", "8002.9", f"{now_s:.6f}", ChannelStateDesc="Ring")),
        (0.1, event("DialBegin", "8002.9", f"{now_s + 0.1:.6f}", Channel="PJSIP/8002-9")),
        (0.2, event("Newstate", "8002.10", f"{now_s + 0.2:.6f}", ChannelStateDesc="Ring")),
        (1.0, event("DialEnd", "8002.9", "978307200.000000", Channel="PJSIP/8002-9")),
    ]:
        e.update({"CallerIDNum": "8002", "Exten": "00493012345678", "DialStatus": "ANSWER"})
        steps += tracker.feed(e, round((now_s + offset_s) * 1_000_000))
    call = steps[0].call
    biller.on_dialed(call)
    biller.on_answered(call)
    assert call.answered_us == T0 * 1000 + 1_000_000  # the receive time

    biller.tick(T0 + 30_000)
    call.ended_us = (T0 + 31_000) * 1000
    biller.on_ended(call)

    assert biller.engine.level(1, "clid", 8002).used == 150_000  # 30 s at 0.005
    assert "timestamp_replaced" in metas(biller.engine)[call.call_id]["flags"]


def test_an_asterisk_clock_60_s_ahead_never_delays_a_cut(private_redis):
    """Issue 11.12: due times are on Asterisk's clock; the scheduler asks with its own
    clock moved onto Asterisk's, so the prepaid booth is cut on time (it talked 25 s uncut)."""
    clock = AsteriskClock()
    ahead_us = 60_000_000
    for i in range(3):
        local_us = (T0 - 5_000 + i) * 1000
        clock.at(event("Newstate", f"y{i}", f"{(local_us + ahead_us) / 1e6:.6f}"), local_us)
    biller = make_biller(private_redis.url, clock=clock)
    call = booth_call("8001", T0 + 59_000)
    answer(biller, call, T0 + 60_000)  # on Asterisk's clock: answered at local T0
    now, cut_at = T0, None
    while cut_at is None and now < T0 + 12_000:  # the scheduler: wake at due - guard
        hangups, next_due = biller.tick(now)
        if hangups:
            assert [h.reason for h in hangups] == ["NO_CREDIT_CLID"]
            cut_at = now
        now = max(now + 100, next_due - 500) if next_due >= 0 else now + 100
    assert cut_at == T0 + 10_500  # 10 paid seconds from the answer, minus the guard


def test_terminate_cuts_at_once_a_prepaid_call_answered_while_redis_is_down(private_redis):
    """Its first block could not be paid: nothing was granted, so it is cut at once."""
    biller = make_biller(private_redis.url)
    prepaid, postpaid = booth_call("8001", T0 - 1_000), booth_call("8002", T0 - 1_000)
    assert biller.on_dialed(prepaid) is None and biller.on_dialed(postpaid) is None
    private_redis.kill()
    for call in (prepaid, postpaid):
        call.answered_us, call.dial_status = T0 * 1000, "ANSWER"
        with pytest.raises(redis.ConnectionError):
            biller.on_answered(call)
        biller.answer_unavailable(call)  # what the listener does with the failed step

    hangups, _ = biller.tick(T0 + 100)

    assert [(h.call_id, h.reason) for h in hangups] == [(prepaid.call_id, "CREDIT_UNAVAILABLE")]


# -- point 13: a call replayed after its settlement ---------------------------------------


def test_a_call_replayed_after_it_was_settled_and_forgotten_changes_no_balance(private_redis):
    from workers.settle import forget_settled

    biller = make_biller(private_redis.url)
    call = booth_call("8002", T0 - 1_000)
    answer(biller, call, T0)
    biller.tick(T0 + 4_600)
    call.ended_us = (T0 + 5_200) * 1000
    biller.on_ended(call)
    forget_settled(biller.engine, 1, [call.call_id])  # settled into MySQL, gone from Redis
    engine = biller.engine
    before = engine.client.hgetall(engine.keys.balances(1))

    replay = booth_call("8002", T0 - 1_000)  # every event of the call again
    assert biller.on_dialed(replay) is None
    replay.answered_us, replay.dial_status = T0 * 1000, "ANSWER"
    assert biller.on_answered(replay) is None
    assert biller.tick(T0 + 9_000)[0] == []
    replay.ended_us = (T0 + 5_200) * 1000
    biller.on_ended(replay)

    assert engine.client.hgetall(engine.keys.balances(1)) == before
    assert engine.client.hlen(engine.keys.calls(1)) == 0
    assert engine.client.hlen(engine.keys.ended(1)) == 0  # nothing new to settle


def test_continue_lets_a_call_dialled_while_redis_is_down_talk_and_bills_it_after(
    private_redis,
):
    async def scenario():
        server, listener, task = await _listener_rig(private_redis.url, "continue")
        try:
            private_redis.kill()
            plan = pbx_sim.CallPlan("8001", "00493012345678", ring=0.2, talk=1.5)
            await pbx_sim.run_generator(server, [plan], cps=0)
            await asyncio.sleep(0.3)
            await listener.queue.join()
            assert listener.hangups == [] and len(listener.deferred) == 3  # dial, answer, end
            private_redis.start()
            for _ in range(100):
                await asyncio.sleep(0.1)
                if not listener.deferred:
                    break
            await listener.queue.join()
        finally:
            await _stop(server, listener, task)
        return listener

    listener = asyncio.run(scenario())

    assert listener.hangups == []
    engine = listener.biller.engine
    [(call_id, record)] = engine.client.hgetall(engine.keys.ended(1)).items()
    fields = [int(x) for x in record.decode().split(",")]
    assert fields[4] == 1 and fields[5] == 5_000  # its real billsec, billed after
    assert engine.level(1, "clid", 8001).used == 5_000
    assert metas(engine)[call_id.decode()]["flags"] == ["credit_unavailable"]
