"""Incoming calls (ASTERBILL_INBOUND=bill): a call from the PSTN to a booth, replayed through
the real listener as the events Asterisk 20 sends for `Dial(SIP/8001)` from a trunk (the
booth is the DialBegin's destination), is billed to the booth at its inbound rate."""

from __future__ import annotations

import asyncio
import time

import pytest

from ami_listener import frames
from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from rating.book import RedisRateBook
from rating.price import Rate, price
from rating.select import BookRow
from tests.test_listener import Rig, ended_records, read_metas, run_with

OUT = Rate(12, 100_000, 0, 600_000, 60, "Per minute")  # booth calls out
INBOUND = Rate(21, 50_000, 0, 120_000, 1, "Inbound")  # 0.05 + 0.12/min, per second
TALK_S = 3.4  # stamped on the events: billsec 3


def inbound_call(server, t0: float, uniqueid: str = "1795700000.10") -> None:
    """The caller is the trunk channel; the booth is the destination (as capture 14 shows
    for the reverse direction: DestCallerIDNum is the number dialled, DestChannel the peer)."""
    trunk = [
        ("Channel", "SIP/pstn-trunk-0000000a"),
        ("ChannelState", "4"),
        ("ChannelStateDesc", "Ring"),
        ("CallerIDNum", "004930555123"),
        ("CallerIDName", "<unknown>"),
        ("AccountCode", ""),
        ("Context", "from-pstn"),
        ("Exten", "8001"),
        ("Priority", "1"),
        ("Uniqueid", uniqueid),
        ("Linkedid", uniqueid),
    ]
    booth = [
        ("DestChannel", "SIP/8001-0000000b"),
        ("DestCallerIDNum", "8001"),
        ("DestAccountCode", "shop1"),
        ("DestUniqueid", "1795700000.11"),
    ]

    def send(at: float, name: str, headers) -> None:
        items = [("Event", name), ("Privilege", "call,all"), ("Timestamp", f"{at:.6f}")]
        server.send_raw(frames.build([*items, *headers]))

    send(t0, "DialBegin", [*trunk, *booth, ("DialString", "8001")])
    send(t0 + 1, "DialEnd", [*trunk, *booth, ("DialStatus", "ANSWER")])
    send(t0 + 1 + TALK_S, "Hangup", [*trunk, ("Cause", "16"), ("Cause-txt", "Normal Clearing")])


@pytest.fixture
def rig(redis_server, key_prefix) -> Rig:
    keys = Keys(key_prefix)
    engine, book = CreditEngine(redis_server, keys), RedisRateBook(redis_server, keys)
    book.replace(
        [
            BookRow("customer", "00", 0, 0, 0, OUT),
            BookRow("customer", "0000", 0, 0, 0, INBOUND),  # the inbound rate rows
        ]
    )
    for booth in (8001, 8002):
        engine.provision(Payer(1, 10, booth), payer_key=str(booth))
    return Rig(engine, book)


def test_an_incoming_call_is_billed_to_the_booth_at_its_inbound_rate(rig, key_prefix):

    async def feed(server):
        inbound_call(server, time.time() - 5)

    asyncio.run(run_with(rig, key_prefix, feed, ASTERBILL_INBOUND="bill"))
    (record,) = ended_records(rig).values()
    assert record[0] == 8001  # the booth (clid id 8001 in this rig) pays
    assert record[4] == 3  # billsec
    assert record[5] == price(3, 10_000, INBOUND) == 56_000
    assert record[8] == INBOUND.id
    (meta,) = read_metas(rig, 1).values()
    assert "inbound" in meta["flags"]
    assert (meta["src"], meta["dst"]) == ("004930555123", "8001")


def test_without_the_setting_an_incoming_call_is_recorded_unbilled(rig, key_prefix):

    async def feed(server):
        inbound_call(server, time.time() - 5)

    asyncio.run(run_with(rig, key_prefix, feed))
    assert ended_records(rig) == {}
    (record,) = ended_records(rig, reseller_id=0).values()
    assert record[5:8] == [0, 0, 0]


def test_a_booth_calling_a_booth_is_paid_by_the_caller_only(rig, key_prefix):
    rig.book.upsert(BookRow("customer", "8", 0, 0, 0, OUT))

    # The same events, but the caller is booth 8002 calling 8001.
    async def feed_booth(server):
        t0 = time.time() - 5
        uid = "1795700000.20"
        caller = [
            ("Channel", "SIP/8002-0000000c"),
            ("CallerIDNum", "8002"),
            ("Exten", "8001"),
            ("Uniqueid", uid),
            ("Linkedid", uid),
        ]
        booth = [("DestChannel", "SIP/8001-0000000d"), ("DestCallerIDNum", "8001")]
        for at, name, extra in (
            (t0, "DialBegin", []),
            (t0 + 1, "DialEnd", [("DialStatus", "ANSWER")]),
            (t0 + 4.4, "Hangup", [("Cause", "16")]),
        ):
            items = [("Event", name), ("Timestamp", f"{at:.6f}"), *caller]
            if name != "Hangup":
                items += booth
            server.send_raw(frames.build([*items, *extra]))

    asyncio.run(run_with(rig, key_prefix, feed_booth, ASTERBILL_INBOUND="bill"))
    (record,) = ended_records(rig).values()
    assert record[0] == 8002
    assert record[5] == price(3, 10_000, OUT)
