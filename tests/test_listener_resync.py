"""The listener across a lost connection, a restart and a resync (issue 11): the real
listener (panoramisk) against the simulated Asterisk over TCP, on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from ami_listener.billing import Biller
from ami_listener.resync_record import last_resync
from ami_listener.service import Listener
from lua.credit import Payer
from ops import pbx_sim
from rating.select import BookRow
from tests.ami_captures import billing_cdrs, capture_files, header
from tests.test_listener import (
    PER_SECOND,
    ended_records,
    read_metas,
    rig,  # noqa: F401 (a fixture)
    run_with,
    settings_for,
)

FAILURE_CAPTURES = [p for p in capture_files() if p.name[:2] in ("24", "25", "26", "27", "28")]


@pytest.mark.parametrize("path", FAILURE_CAPTURES, ids=[p.name for p in FAILURE_CAPTURES])
def test_captures_24_to_28_end_as_asterisks_own_cdrs_or_flagged(rig, key_prefix, path):  # noqa: F811
    """Each call of the capture's header (`observed.calls`, Asterisk's own CDRs from its
    Master.csv) against what the listener recorded: billsec, duration and disposition
    equal, or the call flagged for review; a call Asterisk kept no CDR of (killed, 24) is
    recorded and flagged; no call was hung up by the listener (none of these booths is
    limited); nothing is left running. The only calls missing are those the listener could
    not see at all (B of 25, begun and ended while it was away: `asterbill cdr-sync`'s job)."""
    speed = 4.0 if "ts-" in path.name or path.name[:2] in ("24", "25", "26", "27") else 20.0

    async def feed(server):
        await pbx_sim.replay(server, path, speed=speed)

    listener = asyncio.run(run_with(rig, key_prefix, feed, settle=1.5))

    records = {**ended_records(rig, 0), **ended_records(rig, 1)}
    metas = {**read_metas(rig, 0), **read_metas(rig, 1)}
    assert listener.hangups == []
    checked = 0
    for call in header(path)["observed"]["calls"]:
        uniqueid, cdr = call["booth_uniqueid"], call["cdr"]
        seen = call.get("seen_by_capture", {"newchannel": True})
        if uniqueid not in records:
            assert not any(seen.values()), call  # the listener never heard of it
            continue
        record, meta = records[uniqueid], metas[uniqueid]
        if cdr is None:  # Asterisk wrote none: killed with Asterisk (24)
            assert meta["review"] == "asterisk_restarted"
            # billed from its answer to the connection loss (the eof), on the replay's clock
            eof = pbx_sim.capture_sessions(path)[0].end_t
            talked_ms = (eof - call["t_answered"]) / speed * 1000
            assert abs(record[3] - record[2] - talked_ms) < 250, (record, talked_ms)
            continue
        right = (record[4], meta["duration"], meta["disposition"]) == (
            cdr["billsec"],
            cdr["duration"],
            cdr["disposition"],
        )
        assert right or meta["review"], (call, record, meta)
        if uniqueid in billing_cdrs(path):  # its Cdr event came: always right
            assert right and meta["billsec_source"] == "cdr", (call, record, meta)
        checked += 1
    assert checked >= 2
    assert listener.tracker.calls == {} and listener.tracker.ending == {}
    assert rig.engine.client.hlen(rig.engine.keys.calls(1)) == 0


JITTERED = [p for p in capture_files() if p.name[:2] in ("19", "28")]


@pytest.mark.parametrize("path", JITTERED, ids=[p.name for p in JITTERED])
def test_billsec_is_asterisks_under_delivery_jitter(rig, key_prefix, path):  # noqa: F811
    """Every event delivered up to 150 ms late (random, in stream order): billsec is the
    Cdr's on every call. Capture 28 (timestampevents = no, every talk ends 0-19 ms after a
    whole second): the listener's own clock would be a second short on many calls; 19 (ten
    calls at once, with Timestamps)."""

    async def feed(server):
        await pbx_sim.replay(server, path, speed=4.0, jitter=0.15)

    asyncio.run(run_with(rig, key_prefix, feed, settle=1.5))

    records = {**ended_records(rig, 0), **ended_records(rig, 1)}
    cdrs = billing_cdrs(path)
    assert len(cdrs) >= 10
    assert {u: records[u][4] for u in cdrs} == {
        u: int(c["BillableSeconds"]) for u, c in cdrs.items()
    }


async def _restart(rig, key_prefix, plans, away, before_second=None, after=1.5):  # noqa: F811
    """Listener 1 follows `plans` for `away[0]` s and dies; `away[1]` s later listener 2
    starts (`before_second(server, calls)` first) and runs `after` s."""
    server = pbx_sim.AmiServer("billing", "s3cret")
    port = await server.start("127.0.0.1", 0)
    settings = settings_for(port, key_prefix)
    first = Listener(settings, Biller(rig.engine, rig.book, settings))
    task = asyncio.create_task(first.run())
    await asyncio.wait_for(first.logged_in.wait(), 10)
    calls = asyncio.create_task(pbx_sim.run_generator(server, plans, cps=0))
    await asyncio.sleep(away[0])
    task.cancel()
    first.close()
    server.drop_sessions()
    await asyncio.sleep(away[1])
    if before_second is not None:
        before_second(server, calls)
    second = Listener(settings, Biller(rig.engine, rig.book, settings))
    task = asyncio.create_task(second.run())
    try:
        await asyncio.wait_for(second.logged_in.wait(), 10)
        await asyncio.sleep(after)
        await second.queue.join()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        second.close()
        calls.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await calls
        await server.close()
    return second


def test_a_call_hung_up_right_after_the_login_is_not_adopted_from_a_stale_snapshot(
    rig,  # noqa: F811
    key_prefix,
):
    """Issue 11 point 10. Listener 1 bills a call and dies. Listener 2 logs in; Asterisk
    lists the call, and its Hangup follows the list in the same TCP write (it hung up right
    after the listing). The old listener handled that Hangup before the snapshot (the list
    reaches panoramisk's future only after the rest of the read went to the handlers):
    unknown channel, ignored; then the snapshot adopted the call from Redis and billed it
    forever (a phantom). Now the snapshot applies at its place: adopted, then ended."""
    plan = pbx_sim.CallPlan("8005", "00493012345678", ring=0.2, talk=60)

    def hang_up_after_listing(server, calls):
        def hook():
            booth = next(c for c in server.channels.values() if c.caller == "8005")
            trunk = next(
                c
                for c in server.channels.values()
                if c.linkedid == booth.linkedid and c is not booth
            )
            calls.cancel()  # the generator sends nothing more
            for channel in (trunk, booth):
                server.channels.pop(channel.name)
                server.event("Hangup", [*channel.snapshot(), ("Cause", "16")])
            billsec = int(time.time() - booth.answered)
            server.event(
                "Cdr",
                [
                    ("Source", "8005"),
                    ("Destination", plan.number),
                    ("Channel", booth.name),
                    ("DestinationChannel", trunk.name),
                    ("LastApplication", "Dial"),
                    ("Duration", str(billsec)),
                    ("BillableSeconds", str(billsec)),
                    ("Disposition", "ANSWERED"),
                    ("UniqueID", booth.uniqueid),
                ],
            )

        server.after_show_channels = hook

    second = asyncio.run(
        _restart(rig, key_prefix, [plan], away=(1.0, 0.6), before_second=hang_up_after_listing)
    )

    assert second.stats.errors == 0 and second.hangups == []
    assert rig.engine.client.hlen(rig.engine.keys.calls(1)) == 0  # no phantom left running
    [record] = ended_records(rig).values()
    assert record[4] == 1  # answered ~0.2 s, hung up ~1.6 s: Asterisk's billsec
    assert second.tracker.calls == {}


def test_a_call_answered_while_the_listener_was_away_is_adopted_paid_up_and_cut(
    rig,  # noqa: F811
    key_prefix,
):
    """Issue 11 points 3 and 9. A prepaid booth (5 one-second blocks) and a locked one dial
    while no listener runs and are answered 1.5 s before the listener logs in. It adopts
    them from CoreShowChannels (bridged: answered; the answer time from Getvar
    CDR(answer,u)) by the usual rules: the locked one is cut at once; the prepaid one has its
    elapsed blocks paid and is cut at the end of what it paid, as if the listener had seen
    it all. The old listener ignored both (calls Redis did not know): they talked free."""
    rig.book.replace([BookRow("customer", "00", 0, 0, 0, PER_SECOND)])
    rig.engine.provision(
        Payer(1, 10, 8006), payer_key="8006", limits={"clid": ("prepaid", 5_000_000)}
    )
    rig.engine.provision(Payer(1, 10, 8007), payer_key="8007", locked=True)
    plans = [
        pbx_sim.CallPlan("8006", "00493012345678", ring=0.3, talk=30),
        pbx_sim.CallPlan("8007", "00493012345678", ring=0.3, talk=30),  # locked: cut at once
    ]

    async def main():
        server = pbx_sim.AmiServer("billing", "s3cret")
        port = await server.start("127.0.0.1", 0)
        settings = settings_for(port, key_prefix)
        server.logged_in.set()  # nobody logged in: the calls run all the same
        calls = asyncio.create_task(pbx_sim.run_generator(server, plans, cps=0))
        await asyncio.sleep(1.8)  # dialled, answered at 0.3 s
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            back = time.time()
            await asyncio.wait_for(calls, 15)  # the listener cuts both
            await asyncio.sleep(1.5)
            await listener.queue.join()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()
        return listener, back

    listener, back = asyncio.run(main())

    assert listener.stats.errors == 0
    assert [h.reason for h in listener.hangups] == ["LOCKED", "NO_CREDIT_CLID"]
    ended = {r[0]: (call_id, r) for call_id, r in ended_records(rig).items()}
    locked_id, locked = ended[8007]
    assert locked[5:8] == [0, 0, 0]  # recorded, nothing charged: refused at adoption
    assert read_metas(rig, 1)[locked_id]["flags"] == ["locked"]
    assert read_metas(rig, 1)[locked_id]["review"] == "adopted_at_resync"
    call_id, record = ended[8006]
    assert record[4] == 5  # billsec: exactly the five blocks paid
    assert record[5] == 5_000_000
    assert abs(record[2] - (back - 1.5) * 1000) < 400  # billed from Asterisk's answer
    assert read_metas(rig, 1)[call_id]["review"] == "adopted_at_resync"
    clid = rig.engine.level(1, "clid", 8006)
    assert (clid.used, clid.available) == (5_000_000, 0)
    # the resync is on record for `reconcile --check` (calls Redis bills, Asterisk lost)
    at_ms, live = last_resync(rig.engine.client, rig.engine.keys)
    assert {call_id, locked_id} <= live and abs(at_ms - back * 1000) < 1000


def test_calls_answered_and_ended_while_the_listener_was_dead_are_recorded_flagged(
    rig,  # noqa: F811
    key_prefix,
):
    """Issue 11 point 9. Listener 1 sees two calls dialled (a known booth and a caller no
    clid matches) and dies while they ring; they are answered and end while no listener
    runs. The dial was written to Redis (`{rR}:dialled`), so listener 2 records both at cost
    0, flagged, instead of losing them with listener 1's memory (the old listener kept them
    only in memory: no CDR at all); never as free answered calls."""
    plans = [
        pbx_sim.CallPlan("8008", "00493012345678", ring=0.8, talk=0.4),
        pbx_sim.CallPlan("9999", "00493012345678", ring=0.8, talk=0.4),  # no clid matches
    ]

    second = asyncio.run(_restart(rig, key_prefix, plans, away=(0.4, 1.6)))

    assert second.stats.errors == 0
    for reseller, clid in ((1, 8008), (0, 0)):
        [(call_id, record)] = ended_records(rig, reseller).items()
        assert record[0] == clid and record[2] == 0 and record[4:8] == [0, 0, 0, 0]
        meta = read_metas(rig, reseller)[call_id]
        assert meta["review"] == "ended_while_listener_down"
        assert meta["disposition"] != "ANSWERED"
        assert rig.engine.client.hlen(f"{rig.engine.keys.tag(reseller)}:dialled") == 0


def test_a_refused_channel_list_holds_no_event_back(rig, key_prefix, monkeypatch):  # noqa: F811
    """An AMI user that may not list channels gets `Response: Error` to CoreShowChannels:
    the events behind it are not held (panoramisk alone would wait for a list forever), no
    call is judged gone, and calls are billed as usual."""
    from ami_listener import frames

    def refuse(self, writer, reply):
        writer.write(frames.build([("Response", "Error"), *reply[1:], ("Message", "Denied")]))

    monkeypatch.setattr(pbx_sim.AmiServer, "_show_channels", refuse)
    plan = pbx_sim.CallPlan("8009", "00493012345678", ring=0.2, talk=1.2)

    async def feed(server):
        await pbx_sim.run_generator(server, [plan], cps=0)

    listener = asyncio.run(run_with(rig, key_prefix, feed, settle=1.5))

    [record] = ended_records(rig).values()
    assert record[4] == 1 and listener.resyncs == 0 and not listener.held


def test_a_cut_due_while_asterisk_was_unreachable_is_sent_after_the_resync(
    rig,  # noqa: F811
    key_prefix,
):
    """A prepaid call (2 one-second blocks) whose cut falls while the AMI connection is
    down: the Hangup cannot be sent then. It is held, and sent once the next snapshot shows
    the call still up (the old listener dropped it: not resent, and the call, already
    marked cut in Redis, talked on uncut until its own end)."""
    from tests.test_cli import free_port

    rig.book.replace([BookRow("customer", "00", 0, 0, 0, PER_SECOND)])
    rig.engine.provision(
        Payer(1, 10, 8001), payer_key="8001", limits={"clid": ("prepaid", 2_000_000)}
    )
    plan = pbx_sim.CallPlan("8001", "00493012345678", ring=0.2, talk=12)
    port = free_port()

    async def scenario():
        server = pbx_sim.AmiServer("billing", "s3cret")
        await server.start("127.0.0.1", port)
        settings = settings_for(port, key_prefix)
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        generator = pbx_sim.Generator(server)
        try:
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            call = asyncio.create_task(generator.call(plan))
            await asyncio.sleep(1.2)  # answered at 0.2; paid until 2.2 (cut due at ~1.7)
            listener.logged_in.clear()
            server.drop_sessions()
            await server.close()
            await asyncio.sleep(1.5)  # the cut falls in here
            await server.start("127.0.0.1", port)
            await asyncio.wait_for(listener.logged_in.wait(), 15)
            await asyncio.wait_for(call, 5)  # hung up by the listener, not at 12 s
            await asyncio.sleep(1.5)
            await listener.queue.join()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()
        return listener, generator, server

    listener, generator, server = asyncio.run(scenario())

    assert [how for _, how in generator.ended] == ["hangup-action"]
    # asked for while down (failed at once: not sent), then again after the resync (sent)
    assert [h.reason for h in listener.hangups] == ["NO_CREDIT_CLID"] * 2
    assert listener.stats.hangups_failed == 1
    assert [a["Action"] for a in server.actions].count("Hangup") == 1
    [record] = ended_records(rig).values()
    assert 2 <= record[4] < 12
