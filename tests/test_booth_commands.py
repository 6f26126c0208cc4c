"""Hang-up from the booth page through the listener: the web writes a command to the Redis
stream, the real listener (against the PBX simulator) sends the AMI Hangup by Uniqueid on its
own connection and writes the result back; without a listener the web says so."""

from __future__ import annotations

import asyncio
import time

from admin import booth_commands
from ops import pbx_sim
from tests.test_listener import ended_records, rig, run_with  # noqa: F401 - the fixture


def test_a_hang_up_from_the_web_reaches_asterisk_through_the_listener(rig, key_prefix):  # noqa: F811
    client = rig.engine.client
    seen: dict = {}

    async def feed(server):
        plan = pbx_sim.CallPlan("8001", "00493012345678", ring=0.2, talk=30)
        call = asyncio.create_task(pbx_sim.run_generator(server, [plan], cps=0))
        for _ in range(100):  # until Redis bills the answered call
            live = rig.engine.live_calls(1)
            if live:
                break
            await asyncio.sleep(0.05)
        [call_id] = live
        seen["call"] = call_id
        command = booth_commands.send_hangup(client, key_prefix, call_id, 7)
        for _ in range(100):
            reply = booth_commands.result(client, key_prefix, command)
            if reply["status"] != "waiting":
                break
            await asyncio.sleep(0.05)
        seen["reply"] = reply
        seen["actions"] = list(server.actions)
        await asyncio.wait_for(call, 10)  # the simulator ends the call: Hangup, Cdr

    asyncio.run(run_with(rig, key_prefix, feed, settle=0.5))
    assert seen["reply"] == {"status": "done"}
    hangups = [a for a in seen["actions"] if a.get("Action") == "Hangup"]
    assert [a["Channel"] for a in hangups] == [seen["call"].partition(":")[0]]
    [record] = ended_records(rig).values()
    assert record[4] < 30  # ended long before the 30 s the customer would have talked


def test_without_a_listener_the_web_says_so_at_once(redis_server, key_prefix):
    command = booth_commands.send_hangup(redis_server, key_prefix, "1700000000.1", None)
    assert booth_commands.result(redis_server, key_prefix, command) == {"status": "no_listener"}


def test_a_listener_that_never_answers_is_reported_after_5_s(redis_server, key_prefix, monkeypatch):
    from lua.keys import Keys

    redis_server.set(Keys(key_prefix).command_reader_alive(), "1", px=60_000)  # alive but silent
    command = booth_commands.send_hangup(redis_server, key_prefix, "1700000000.2", None)
    assert booth_commands.result(redis_server, key_prefix, command)["status"] == "waiting"
    later = time.time() + booth_commands.NO_LISTENER_S + 0.5
    monkeypatch.setattr(booth_commands.time, "time", lambda: later)
    assert booth_commands.result(redis_server, key_prefix, command) == {"status": "no_listener"}


def test_the_command_readers_beat_never_spoils_the_listeners_heartbeat(rig, key_prefix):  # noqa: F811
    """Both were once one key: the reader's "1" made the next listener end the calls that
    ended while none ran at 1 ms after the epoch instead of at the last heartbeat."""
    from types import SimpleNamespace

    from ami_listener.billing import Biller
    from ami_listener.commands import CommandReader
    from tests.test_listener import settings_for

    settings = settings_for(1, key_prefix)
    biller = Biller(rig.engine, rig.book, settings)
    biller.heartbeat(1_795_000_000_123)
    CommandReader(SimpleNamespace(settings=settings), client=rig.engine.client)._beat()
    assert biller.last_alive_ms() == 1_795_000_000_123
