"""The call tracker on every real capture: the booth, the number, the answer, the billsec."""

from __future__ import annotations

import pytest

from ami_listener import frames
from ami_listener.tracker import Answered, CallTracker, Dialed, Ended, peer_of
from tests.ami_captures import answer_times, billing_cdrs, capture_files, events, stream

CAPTURE_IDS = [p.name for p in capture_files()]


def replay(path, payer_field="callerid", keep=lambda event: True, tracker=None):
    """Feed a capture as the listener lives it: events, the end of a session (connection
    lost), the CoreShowChannels snapshots at their place; what is left waiting for a Cdr at
    the end of the file is flushed."""
    tracker = tracker or CallTracker(payer_field=payer_field)
    answers = answer_times(path)
    steps, last = [], 0
    for kind, received_us, *rest in stream(path):
        last = received_us
        if kind == "event" and keep(rest[0]):
            steps += tracker.feed(rest[0], received_us)
        elif kind == "lost":
            steps += tracker.lost(received_us)
        elif kind == "snapshot":
            steps += tracker.resync(rest[0], answers, received_us)
    return tracker, steps + tracker.flush(last + 10**9)


@pytest.mark.parametrize("path", capture_files(), ids=CAPTURE_IDS)
def test_every_billed_call_has_asterisks_billsec(path):
    """Every booth Dial CDR Asterisk sent is one ended call with its billsec, duration,
    number, source and disposition; every other ended call (one Asterisk wrote no CDR for,
    killed in 24, or whose end the listener did not see, 25) is flagged for review."""
    tracker, steps = replay(path)
    ended = {s.call.uniqueid: s.call for s in steps if isinstance(s, Ended)}
    ids = [s.call.call_id for s in steps if isinstance(s, Ended)]
    assert len(ids) == len(set(ids))  # one end per call
    cdrs = billing_cdrs(path)
    for uniqueid, cdr in cdrs.items():
        if "23-ts-transfer" in path.name:
            continue  # two Dial CDRs on one channel: test_a_redirected_call_is_two_calls...
        call = ended[uniqueid]
        assert call.billsec == int(cdr["BillableSeconds"]), (uniqueid, call)
        assert call.billsec_source == ("cdr" if call.leg != "b" else "timestamp")
        if call.leg == "a":  # a callback's leg A is priced by its own number (see below)
            continue
        assert call.duration == int(cdr["Duration"])
        assert call.number == cdr["Destination"]
        assert call.src == cdr["Source"]
        assert call.disposition == cdr["Disposition"]
    for uniqueid, call in ended.items():
        assert uniqueid in cdrs or call.review, call
    assert tracker.calls == {} and tracker.up_since == {}  # every dial and channel ended
    assert tracker.ending == {}


def test_the_captures_hold_answered_calls_to_compare():
    answered = sum(
        1
        for p in capture_files()
        for c in billing_cdrs(p).values()
        if c["Disposition"] == "ANSWERED"
    )
    assert answered >= 30


@pytest.mark.parametrize(
    ("field", "expected"), [("callerid", "8001"), ("peer", "SIP/8001"), ("accountcode", "shop1")]
)
def test_the_payer_is_found_by_the_configured_field(field, expected):
    path = next(p for p in capture_files() if p.name.startswith("14-"))
    _, steps = replay(path, payer_field=field)
    dials = [s.call for s in steps if isinstance(s, Dialed)]
    assert [d.payer_key for d in dials] == [expected]


def test_steps_come_in_order_dial_answer_end():
    path = next(p for p in capture_files() if p.name.startswith("01-"))
    _, steps = replay(path)
    assert [type(s) for s in steps] == [Dialed, Answered, Ended]
    call = steps[-1].call
    assert (call.number, call.hangup_cause, call.disposition) == ("00493012345678", 16, "ANSWERED")


def test_unanswered_calls_end_with_no_billsec():
    path = next(p for p in capture_files() if p.name.startswith("03-"))
    _, steps = replay(path)
    assert [type(s) for s in steps] == [Dialed, Ended]
    assert (steps[-1].call.billsec, steps[-1].call.disposition) == (0, "BUSY")


def test_the_timestamp_header_is_used_when_present():
    path = next(p for p in capture_files() if p.name.startswith("18-"))
    _, steps = replay(path)
    call = steps[-1].call
    assert (call.ended_us - call.answered_us) == 5_509_000 or (
        5_500_000 < call.ended_us - call.answered_us < 5_520_000
    )
    assert call.answered_us > 1_700_000_000 * 10**6  # epoch time, not receipt time


def test_peer_names_drop_the_channel_sequence():
    assert peer_of("SIP/8001-00000002") == "SIP/8001"
    assert peer_of("PJSIP/booth-7-0000001a") == "PJSIP/booth-7"
    assert peer_of("DAHDI/1") == "DAHDI/1"


def test_events_for_unknown_channels_and_odd_frames_are_counted_not_fatal():
    tracker = CallTracker()
    assert tracker.feed({"Event": "DialEnd", "Channel": "SIP/x-1", "Uniqueid": "9"}, 1) == []
    assert tracker.feed({"Event": "Hangup", "Uniqueid": "never-seen"}, 2) == []
    assert tracker.feed({"Event": "SomethingNew"}, 3) == []
    assert (tracker.counters.unknown_channel, tracker.counters.ignored) == (1, 1)
    with pytest.raises(frames.FrameError):
        frames.parse("this is not ami\r\n\r\n")
    assert frames.parse("Event: Cdr\r\nUserField: \r\n\r\n")["UserField"] == ""


CALLBACK = next(p for p in capture_files() if p.name.startswith("08-"))


def far_end_cdr(path, channel_prefix):
    return next(
        e
        for _, e in events(path)
        if e.get("Event") == "Cdr" and e.get("Channel", "").startswith(channel_prefix)
    )


@pytest.mark.parametrize("legs", ["a", "b", "both"])
def test_callback_legs_are_billed_by_policy_each_by_its_own_number(legs):
    tracker = CallTracker(callback_legs=legs)
    steps = []
    for received_us, event in events(CALLBACK):
        steps += tracker.feed(event, received_us)
    ended = {s.call.leg: s.call for s in steps if isinstance(s, Ended)}

    assert set(ended) == {"a", "b"} if legs == "both" else {legs}
    leg_a_cdr = far_end_cdr(CALLBACK, "Local/004930555111@pstn-sim-00000022;1")
    leg_b_cdr = far_end_cdr(CALLBACK, "Local/00447700900123@pstn-sim-00000023;2")
    if "a" in ended:
        a = ended["a"]
        assert (a.number, a.payer_key, a.disposition) == ("004930555111", "8008", "ANSWERED")
        assert a.billsec == int(leg_a_cdr["BillableSeconds"])  # leg A's own answer to its end
    if "b" in ended:
        b = ended["b"]
        assert (b.number, b.payer_key, b.disposition) == ("00447700900123", "8008", "ANSWERED")
        assert b.billsec == int(leg_b_cdr["BillableSeconds"])  # leg B's answer to the end
    assert len({c.call_id for c in ended.values()}) == len(ended)  # distinct billing ids
    assert tracker.calls == {} and tracker.originated == {}


def test_a_redirected_call_is_two_calls_each_by_its_own_number():
    """Capture 23: an answered booth call moved by AMI Redirect to a second number."""
    path = next(p for p in capture_files() if p.name.startswith("23-"))
    _, steps = replay(path)
    ended = [s.call for s in steps if isinstance(s, Ended)]
    [first_cdr, second_cdr] = sorted(
        (
            e
            for _, e in events(path)
            if e.get("Event") == "Cdr"
            and e.get("LastApplication") == "Dial"
            and e.get("Channel", "").startswith("Local/0048221234567@callshop")
        ),
        key=lambda e: e["StartTime"],
    )
    second_far_end = next(
        e
        for _, e in events(path)
        if e.get("Event") == "Cdr"
        and e.get("Channel", "").startswith("Local/0033142685300@pstn-sim")
        and e["Channel"].endswith(";2")
    )

    assert [c.number for c in ended] == ["0048221234567", "0033142685300"]
    first, second = ended
    assert first.uniqueid == second.uniqueid and first.call_id != second.call_id
    assert first.billsec == int(first_cdr["BillableSeconds"])  # answer -> redirect: 4
    # Asterisk's second CDR counts from the redirect, the second far end's ringing included
    # (8, where that far end's own CDR says 6): the booth was already up. We bill the same.
    assert second.billsec == int(second_cdr["BillableSeconds"]) == 8
    assert int(second_far_end["BillableSeconds"]) == 6
    assert (first.hangup_cause_text, second.hangup_cause) == ("Redirected", 16)
    assert [type(s).__name__ for s in steps] == [
        "Dialed",
        "Answered",
        "Ended",
        "Dialed",
        "Answered",
        "Ended",
    ]


def test_a_call_answered_before_the_listener_came_is_billed_from_its_cdr_never_free():
    """Issue 11 point 3: the listener comes in after capture 01's dial and answer (the
    listener was away). The old tracker built the call from the final DIALSTATUS VarSet
    (ANSWER) and ended it answered, 0 s, unbilled and unflagged; now the Cdr makes it a
    billed call with Asterisk's billsec (here the Cdr even comes before that VarSet), flagged
    because its answer was not seen."""
    path = next(p for p in capture_files() if p.name.startswith("01-"))
    all_events = list(events(path))
    answer = next(
        n
        for n, (_, e) in enumerate(all_events)
        if e.get("Event") == "DialEnd" and e.get("DialStatus") == "ANSWER"
    )
    tracker = CallTracker()
    steps = []
    for received_us, event in all_events[answer + 1 :]:
        steps += tracker.feed(event, received_us)
    steps += tracker.flush(10**18)
    assert [type(s) for s in steps] == [Dialed, Answered, Ended]
    call = steps[-1].call
    cdr = billing_cdrs(path)[call.uniqueid]
    assert (call.billsec, call.duration) == (5, int(cdr["Duration"])) == (5, 8)
    assert call.disposition == "ANSWERED" and call.review  # flagged: its answer was not seen
    assert call.number == "00493012345678" and call.payer_key == "8001"


TIMESTAMPED = [p for p in capture_files() if p.name[:2] in ("18", "19", "20", "24", "26")]


@pytest.mark.parametrize("path", TIMESTAMPED, ids=[p.name for p in TIMESTAMPED])
def test_without_cdr_events_timestamps_give_asterisks_billsec_and_duration(path):
    """Issue 11 point 6: with no `Cdr` event (no cdr_manager, or the `cdr` class missing),
    the Timestamp headers still give Asterisk's figures: billsec from the answer, duration
    from the channel's creation (its ringing and the dialplan before the Dial included; the
    old tracker counted from the dial)."""
    _, steps = replay(path, keep=lambda event: event.get("Event") != "Cdr")
    ended = {s.call.uniqueid: s.call for s in steps if isinstance(s, Ended)}
    for uniqueid, cdr in billing_cdrs(path).items():
        call = ended[uniqueid]
        assert (call.billsec, call.duration) == (
            int(cdr["BillableSeconds"]),
            int(cdr["Duration"]),
        ), call
        assert call.billsec_source == "timestamp"


def test_without_cdr_or_timestamps_billsec_is_measured_and_flagged():
    """The last resort (no Cdr event, no Timestamp header): the listener's receive clock,
    said as such (`billsec_source` clock; the biller flags it `billsec_measured`)."""
    path = next(p for p in capture_files() if p.name.startswith("01-"))
    _, steps = replay(path, keep=lambda event: event.get("Event") != "Cdr")
    call = steps[-1].call
    assert (call.billsec, call.billsec_source) == (5, "clock")


def test_settlement_takes_asterisks_duration_from_the_meta():
    """Issue 11 point 6: the CDR's duration is Asterisk's (from the channel's creation) when
    the listener gives it, not end minus dial."""
    from workers.settle import EndedCall, cdr_row

    meta = {"dialed_us": 1_000_000_000, "duration": 9}  # created ~1 s before the dial
    call = EndedCall("1.1", 1, 8001, 10, 1_003_000, 1_008_600, 5, (0, 0, 0), (0, 0, 0), False, meta)
    assert cdr_row(call)["duration"] == 9  # end - dial would say 8
    del meta["duration"]
    assert cdr_row(call)["duration"] == 8  # the listener of before: end - dial


def test_a_call_whose_dial_was_missed_is_followed_from_its_answer():
    """Issue 11 point 9: the listener comes back between capture 01's DialBegin and its
    DialEnd ANSWER (dialled while it was away). The old tracker ignored the DialEnd and the
    Hangup of a channel it did not know: no CDR. Now the answer starts the call (billed
    from there, like any call) and the Cdr gives Asterisk's billsec; flagged."""
    path = next(p for p in capture_files() if p.name.startswith("01-"))
    all_events = list(events(path))
    answer = next(
        n
        for n, (_, e) in enumerate(all_events)
        if e.get("Event") == "DialEnd" and e.get("DialStatus") == "ANSWER"
    )
    tracker = CallTracker()
    steps = []
    for received_us, event in all_events[answer:]:
        steps += tracker.feed(event, received_us)
    assert [type(s) for s in steps] == [Dialed, Answered, Ended]
    call = steps[-1].call
    assert (call.billsec, call.billsec_source, call.review) == (5, "cdr", "dial_not_seen")
    assert (call.number, call.payer_key, call.disposition) == ("00493012345678", "8001", "ANSWERED")
