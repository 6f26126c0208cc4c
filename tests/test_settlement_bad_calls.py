"""One bad call never blocks its reseller: bounded fields, dead letters for the rest."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import func, select

from lua.credit import Pricing
from schema import Cdr, Clid, DeadLetter
from tests.ledger import BUY, DE, OWNER, T0, place_calls
from workers import bounds, reconcile
from workers.settle import read_ended, settle_pending

LONG_ID = "1795000000." + "7" * 89  # 100 characters
HUGE_US = 99999999999999999999  # an absurd timestamp (OverflowError in the old settlement)


def place(credit, payer, call_id, meta: dict, billsec=61):
    meta = {"dst": "0049301234567", "src": "8001", "dialed_us": (T0 - 3000) * 1000, **meta}
    credit.answer(call_id, payer, Pricing(DE, BUY, OWNER), T0, meta=json.dumps(meta))
    credit.end(call_id, payer.reseller_id, T0 + billsec * 1000 + 300, billsec)


def lose_done_memory(credit, payer, call_id):
    """What a Redis that lost the last second of its append-only file forgets with a call's
    end: its place in the settled-call memory (`done`), which refuses replays by itself."""
    credit.client.zrem(credit.keys.done(payer.reseller_id), call_id)


def poison_batch(credit, payer):
    place_calls(credit, payer, [30, 90])  # call-0, call-1: good
    place(
        credit,
        payer,
        "long-fields",
        {"channel": "SIP/" + "c" * 196, "src": "8" * 100, "dst": "9" * 100},
    )
    place(credit, payer, LONG_ID, {})
    place(credit, payer, "bad-time", {"dialed_us": HUGE_US})


def test_a_batch_with_bad_calls_settles_the_others_and_keeps_the_bad_ones(ledger):
    factory, credit, payer = ledger
    poison_batch(credit, payer)
    used = credit.level(payer.reseller_id, "clid", payer.clid_id).used

    report = settle_pending(factory, credit, payer.reseller_id)

    assert (report.written, report.dead) == (5, 2)
    assert read_ended(credit, payer.reseller_id) == []  # nothing left blocking the reseller
    with factory() as session:
        cdrs = {c.uniqueid: c for c in session.scalars(select(Cdr))}
        dead = {d.call_id: d for d in session.scalars(select(DeadLetter))}
        curcredit = session.get(Clid, payer.clid_id).curcredit
    assert sorted(cdrs) == ["call-0", "call-1", "long-fields"]
    cut = cdrs["long-fields"]
    assert (len(cut.channel), len(cut.src), len(cut.dst)) == (128, 80, 80)
    assert cut.review_reason.startswith(bounds.CUT_FLAG)
    assert sorted(dead) == [LONG_ID, "bad-time"]
    assert all(d.needs_review for d in dead.values())
    assert "uniqueid of 100 characters" in dead[LONG_ID].error
    assert "OverflowError" in dead["bad-time"].error
    assert str(HUGE_US) in dead["bad-time"].raw_meta  # the raw data is kept whole
    assert dead[LONG_ID].credit == Decimal("0.800000")  # 61 s: two 0.40 blocks
    # the money Redis charged live is in MySQL too: the ledger is exact
    assert curcredit * 10**6 == used
    with factory() as session:
        assert reconcile.check(session, credit) == []
    # a replay of the same calls changes nothing, even once Redis forgot it had ended
    lose_done_memory(credit, payer, LONG_ID)
    place(credit, payer, LONG_ID, {})
    again = settle_pending(factory, credit, payer.reseller_id)
    assert (again.written, again.already) == (0, 1)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 2


def test_a_call_mysql_refuses_unforeseen_becomes_a_dead_letter_alone(ledger, monkeypatch):
    factory, credit, payer = ledger
    place_calls(credit, payer, [30, 90])
    place(credit, payer, "long-channel", {"channel": "SIP/" + "c" * 196})
    # without the bounds, MariaDB refuses the call (Data too long, 1406)
    monkeypatch.setattr("workers.settle.bounded", lambda row: row)

    report = settle_pending(factory, credit, payer.reseller_id)

    assert (report.written, report.dead) == (3, 1)
    assert read_ended(credit, payer.reseller_id) == []
    with factory() as session:
        assert sorted(session.scalars(select(Cdr.uniqueid))) == ["call-0", "call-1"]
        letter = session.scalars(select(DeadLetter)).one()
        assert letter.call_id == "long-channel" and "1406" in letter.error
        assert reconcile.check(session, credit) == []


def test_an_unreadable_record_is_a_dead_letter_not_a_stuck_batch(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, [30])
    place(credit, payer, "broken-meta", {})
    credit.client.hset(credit.keys.meta(payer.reseller_id), "broken-meta", "{not json")

    report = settle_pending(factory, credit, payer.reseller_id)

    assert (report.written, report.dead) == (2, 1)
    with factory() as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert letter.raw_meta == "{not json" and "unreadable" in letter.error
        assert reconcile.check(session, credit) == []


def test_a_second_different_record_of_a_settled_call_keeps_its_money_for_review(ledger):
    """Seen in the soak: Redis lost a call's end with the last second of its append-only
    file, billed the call on, and ended it again later; settlement skipped the second
    record as already settled, and its price vanished from the ledger."""
    factory, credit, payer = ledger
    place(credit, payer, "twice", {}, billsec=7)
    settle_pending(factory, credit, payer.reseller_id)
    lose_done_memory(credit, payer, "twice")
    place(credit, payer, "twice", {}, billsec=109)  # the same call id, billed on
    used = credit.level(payer.reseller_id, "clid", payer.clid_id).used

    report = settle_pending(factory, credit, payer.reseller_id)

    assert (report.already, report.dead) == (1, 1)
    assert read_ended(credit, payer.reseller_id) == []
    with factory() as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert "second record of a settled call" in letter.error
        assert letter.call_id == "twice" and letter.credit == Decimal("0.800000")
        assert session.get(Clid, payer.clid_id).curcredit * 10**6 == used
        assert reconcile.check(session, credit) == []
    # the same second record again changes nothing
    lose_done_memory(credit, payer, "twice")
    place(credit, payer, "twice", {}, billsec=109)
    settle_pending(factory, credit, payer.reseller_id)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 1
