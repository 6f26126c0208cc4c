"""What a CDR says besides money: a callback's leg A as Asterisk's CDR has it (capture 08),
and the number its rates were chosen by."""

from __future__ import annotations

import json

from ami_listener.billing import Biller
from ami_listener.tracker import CallTracker, Ended
from ops.settings import load_settings
from tests.ami_captures import capture_files, events

CALLBACK = next(p for p in capture_files() if p.name.startswith("08-"))


def test_a_callbacks_leg_a_has_asterisks_destination_and_is_priced_by_its_own_number():
    """Asterisk's leg-A Dial CDR says Destination = leg B's number; the CDR follows it,
    while the rates stay chosen by leg A's own number (`rated_number`)."""
    tracker = CallTracker(callback_legs="a")
    steps = []
    for received_us, event in events(CALLBACK):
        steps += tracker.feed(event, received_us)
    [a] = [s.call for s in steps if isinstance(s, Ended)]
    [leg_a_cdr] = [
        e
        for _, e in events(CALLBACK)
        if e.get("Event") == "Cdr" and e.get("Channel", "").endswith("pstn-sim-00000022;1")
    ]
    settings = load_settings({"ASTERBILL_STRIP_PREFIXES": "00"}, env_file=None)
    biller = Biller(None, None, settings)

    meta = json.loads(Biller._describe(a, [], "", rated_number=biller._rated(a)))

    assert leg_a_cdr["Destination"] == "00447700900123"
    assert (meta["dst"], meta["src"]) == (leg_a_cdr["Destination"], leg_a_cdr["Source"])
    assert meta["rated_number"] == "4930555111"  # leg A's own number, "00" stripped: priced
    assert a.number == "004930555111"
