"""The listener's AMI connection when Asterisk goes away: actions never outlive their
connection, every action has a timeout, the boundary scheduler never waits on AMI, and the
reconnect is fast unless the login is refused. The simulator plays Asterisk, with its faults
(killed, restarted with its channel counters reset, one client dropped, a stuck action)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from ami_listener.billing import Biller
from ami_listener.service import BackoffManager, Listener
from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from ops import pbx_sim
from rating.book import RedisRateBook
from rating.select import BookRow
from tests.test_cli import free_port
from tests.test_listener import PER_SECOND, Rig, run_with, settings_for


@pytest.fixture
def rig(redis_server, key_prefix) -> Rig:
    """Every number starting 00 costs 1.00 a second, in 1 s blocks; booths have no limit."""
    keys = Keys(key_prefix)
    engine, book = CreditEngine(redis_server, keys), RedisRateBook(redis_server, keys)
    book.replace([BookRow("customer", "00", 0, 0, 0, PER_SECOND)])
    for booth in (8001, 8002):
        engine.provision(Payer(1, 10, booth), payer_key=str(booth))
    return Rig(engine, book)


async def until(condition, timeout: float = 10.0, step: float = 0.05) -> None:
    """Wait for `condition()` to hold (a deadline against hanging, not a speed check)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(step)


def prepaid(rig, booth: int, blocks: int) -> None:
    """`booth` may pay `blocks` one-second blocks of PER_SECOND (1.00 each)."""
    rig.engine.provision(
        Payer(1, 10, booth), payer_key=str(booth), limits={"clid": ("prepaid", blocks * 10**6)}
    )


def test_a_hangup_asked_for_while_asterisk_is_down_is_never_sent_after_it_restarts(rig, key_prefix):
    """Booth 8001's paid time runs out while Asterisk is down. Asterisk comes back with its
    channel counters reset and a new call of booth 8001 gets exactly the old call's channel
    name. The old Hangup is never sent: the new call talks on."""
    prepaid(rig, 8001, blocks=2)
    seen = {}

    async def scenario():
        server = pbx_sim.AmiServer("billing", "s3cret")
        port = await server.start("127.0.0.1", 0)
        settings = settings_for(port, key_prefix)
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            first = pbx_sim.Generator(server)
            old = asyncio.create_task(
                first.call(pbx_sim.CallPlan("8001", "00493012345678", ring=0.2, talk=30))
            )
            await until(lambda: rig.engine.live_calls(1))  # answered and paying
            [old_id] = first.channels
            seen["old"] = (old_id, first.channels[old_id])
            listener.logged_in.clear()
            await server.kill()  # no Hangup, no Cdr: the call just vanishes (capture 24)
            await until(lambda: listener.hangups)  # its paid time ran out meanwhile
            prepaid(rig, 8001, blocks=100)  # the booth's next customer can pay
            await server.come_back()
            second = pbx_sim.Generator(server)
            new = asyncio.create_task(
                second.call(pbx_sim.CallPlan("8001", "00442071234567", ring=0.2, talk=2.5))
            )
            await asyncio.sleep(0)  # its channel exists before the listener is back
            [new_id] = second.channels
            seen["new"] = (new_id, second.channels[new_id])
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            await new
            seen["new_ended"] = second.ended
            await old
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()
        return listener, server

    listener, server = asyncio.run(scenario())

    (old_id, old_name), (new_id, new_name) = seen["old"], seen["new"]
    assert old_name == new_name and old_id != new_id  # the restart reused the channel name
    [request] = listener.hangups
    assert request.call_id == old_id and request.reason.startswith("NO_CREDIT")
    assert listener.stats.hangups_failed == 1  # refused at once: AMI was down
    after_restart = [a for n, a in server.action_log if n == 1 and a["Action"] == "Hangup"]
    assert after_restart == []  # nothing queued before the restart reached the new Asterisk
    assert seen["new_ended"] == [(new_id, "callee")]  # the new call ended on its own
    assert listener.stats.errors == 0


def test_a_hangup_asterisk_never_answers_times_out_and_other_calls_keep_paying(rig, key_prefix):
    """Asterisk reads the Hangup of booth 8001's cut and never answers it. Meanwhile booth
    8002's call goes on paying its blocks; the Hangup gives up after ASTERBILL_AMI_TIMEOUT_MS.
    It was sent by Uniqueid."""
    prepaid(rig, 8001, blocks=2)  # cut by the scheduler at the end of the second block
    samples = []

    async def feed(server):
        listener = rig.listener
        server.unanswered.add("hangup")
        calls = pbx_sim.Generator(server)
        cut = asyncio.create_task(
            calls.call(pbx_sim.CallPlan("8001", "00493012345678", ring=0.2, talk=30))
        )
        other = asyncio.create_task(
            calls.call(pbx_sim.CallPlan("8002", "00493012345678", ring=0.2, talk=30))
        )
        await until(lambda: listener.hangups)
        await until(lambda: any(a["Action"] == "Hangup" for a in server.actions))

        def used():
            return rig.engine.level(1, "clid", 8002).used

        samples.append((used(), listener.stats.hangups_failed))
        await until(lambda: used() > samples[0][0] + 10**6)  # two more blocks paid...
        samples.append((used(), listener.stats.hangups_failed))  # ...the Hangup still pending
        assert len(rig.engine.live_calls(1)) == 2  # paid block by block, not at its end
        await until(lambda: listener.stats.hangups_failed == 1)  # then it gives up
        samples.append((calls.channels, [a for a in server.actions if a["Action"] == "Hangup"]))
        for task in (cut, other):
            task.cancel()

    listener = asyncio.run(
        run_with(rig, key_prefix, feed, settle=0.2, ASTERBILL_AMI_TIMEOUT_MS="4000")
    )

    (_, failed_before), (_, failed_while_paying), (channels, hangups) = samples
    assert failed_before == failed_while_paying == 0
    [request] = listener.hangups
    [hangup] = hangups
    assert hangup["Channel"] == request.call_id  # the Uniqueid, not the channel name
    assert channels[request.call_id] == request.channel
    assert listener.stats.hangups_sent == 0


def test_reconnects_are_fast_after_a_drop_a_restart_and_while_asterisk_is_down(rig, key_prefix):
    """Asterisk down at start, then one dropped connection, then a clean `core restart now`
    (Shutdown): every wait is a short step (0.5 s more per attempt, jitter, capped at
    FAST_MOST_S) and starts again from the first step after each login."""
    port = free_port()
    settings = settings_for(port, key_prefix)
    marks = {}

    async def scenario():
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        server = pbx_sim.AmiServer("billing", "s3cret")
        try:
            await until(lambda: listener.manager and len(listener.manager.attempts) >= 4)
            await server.start("127.0.0.1", port)
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            marks["down"] = len(listener.manager.delays)
            listener.logged_in.clear()
            assert server.drop_client()
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            marks["dropped"] = len(listener.manager.delays)
            listener.logged_in.clear()
            await server.restart(clean=True, down_for=1.2)
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            return listener.manager
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()

    manager = asyncio.run(scenario())

    step, most, jitter = BackoffManager.FAST_STEP_S, BackoffManager.FAST_MOST_S, 0.2
    assert manager.logins == 3 and manager.shutdowns == 1
    assert {kind for kind, _ in manager.delays} == {"fast"}
    runs = [
        manager.delays[: marks["down"]],  # Asterisk not started yet
        manager.delays[marks["down"] : marks["dropped"]],  # one dropped connection
        manager.delays[marks["dropped"] :],  # Shutdown, then down for 1.2 s
    ]
    assert len(runs[0]) >= 3 and len(runs[1]) >= 1 and len(runs[2]) >= 2
    for run in runs:
        for attempt, (_, wait) in enumerate(run, 1):
            expected = min(most, step * attempt)
            assert expected * (1 - jitter) <= wait <= expected * (1 + jitter), run


def test_a_refused_login_backs_off_doubling_until_a_login_succeeds(rig, key_prefix, monkeypatch):
    """A wrong secret is not fixed by retrying: the waits double (SLOW_FIRST_S, x2, ...). Once
    the secret is right, a dropped connection is retried fast again."""
    monkeypatch.setattr(BackoffManager, "SLOW_FIRST_S", 0.2)

    async def scenario():
        server = pbx_sim.AmiServer("billing", "another secret")
        port = await server.start("127.0.0.1", 0)
        settings = settings_for(port, key_prefix)
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        try:
            await until(lambda: listener.manager and len(listener.manager.delays) >= 3)
            server.secret = "s3cret"  # the operator fixes manager.conf
            await asyncio.wait_for(listener.logged_in.wait(), 15)
            refused = list(listener.manager.delays)
            listener.logged_in.clear()
            server.drop_client()
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            return refused, listener.manager.delays[len(refused) :]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()

    refused, after = asyncio.run(scenario())

    assert [kind for kind, _ in refused] == ["refused"] * len(refused)
    waits = [wait for _, wait in refused]
    assert waits[:3] == [0.2, 0.4, 0.8]
    assert [kind for kind, _ in after] == ["fast"]


def test_a_login_asterisk_never_answers_is_given_up_and_retried(rig, key_prefix):
    """An Asterisk that accepts the connection and never answers the Login (a stuck PBX)
    would leave billing blind for good: the connection is closed after the action timeout
    and tried again, until a login succeeds."""

    async def scenario():
        server = pbx_sim.AmiServer("billing", "s3cret")
        server.unanswered.add("login")
        port = await server.start("127.0.0.1", 0)
        settings = settings_for(port, key_prefix, ASTERBILL_AMI_TIMEOUT_MS="300")
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        try:
            # two Logins read and left unanswered (not two connection attempts: the second
            # attempt's Login may still be on its way, and would then be answered)
            await until(lambda: [a["Action"] for a in server.actions].count("Login") >= 2)
            server.unanswered.clear()
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            return [a["Action"] for a in server.actions]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()

    actions = asyncio.run(scenario())
    assert actions.count("Login") >= 3  # two given up, then the one answered


def test_under_load_with_drops_and_a_kill_every_hangup_hits_only_calls_that_must_end(
    rig, key_prefix
):
    """Calls at 8 a second from ten booths, half of them prepaid for 2 s; meanwhile the
    listener's connection is dropped once and Asterisk is killed and comes back with its
    channel counters reset. Every Hangup Asterisk receives names, by Uniqueid, a call of that
    Asterisk whose booth is prepaid; no booth without a limit is ever cut."""
    prepaid_booths = {8001, 8003, 8005, 8007, 8009}
    for booth in range(8001, 8011):
        rig.engine.provision(Payer(1, 10, booth), payer_key=str(booth))
        if booth in prepaid_booths:
            prepaid(rig, booth, blocks=2)
    lives: list[pbx_sim.Generator] = []

    def load(server, seed):
        plans = pbx_sim.random_plans(
            16, booths=10, seed=seed, answer_ratio=1.0, talk=(0.5, 4.0), numbers=["0049301"]
        )
        generator = pbx_sim.Generator(server)
        lives.append(generator)

        async def run():
            tasks = []
            for plan in plans:
                plan.ring = 0.2
                tasks.append(asyncio.create_task(generator.call(plan)))
                await asyncio.sleep(1 / 8)
            await asyncio.gather(*tasks)

        return asyncio.create_task(run())

    async def scenario():
        server = pbx_sim.AmiServer("billing", "s3cret")
        settings = settings_for(await server.start("127.0.0.1", 0), key_prefix)
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            before = load(server, seed=5)
            await asyncio.sleep(1.0)
            listener.logged_in.clear()
            assert server.drop_client()
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            await asyncio.sleep(1.0)
            listener.logged_in.clear()
            await server.restart(clean=False, down_for=0.8)
            await before
            after = load(server, seed=6)
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            await after
            await asyncio.sleep(0.5)
            return server.action_log
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()

    action_log = asyncio.run(scenario())

    def booth(uniqueid: str) -> int:
        return int(channel_of[uniqueid].partition("/")[2].partition("-")[0])

    channel_of = {uid: name for g in lives for uid, name in g.channels.items()}
    incarnation_of = {uid: n for n, g in enumerate(lives) for uid in g.channels}
    hangups = [(n, a["Channel"]) for n, a in action_log if a["Action"] == "Hangup"]
    assert hangups, "the prepaid booths were cut"
    for n, target in hangups:
        assert target in channel_of  # a Uniqueid, never a channel name
        assert incarnation_of[target] == n  # a call of the Asterisk that received it
        assert booth(target) in prepaid_booths
    cut = [uid for g in lives for uid, how in g.ended if how == "hangup-action"]
    assert cut and {booth(uid) for uid in cut} <= prepaid_booths
