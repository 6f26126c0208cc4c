"""Follows Asterisk channels and dials, and turns them into billing steps. Pure: no I/O.

The booth (payer) channel is the caller of a `DialBegin`: the event's `Channel`. Its dialed
number is its `Exten`; the answer is its `DialEnd` with `DialStatus: ANSWER`; the end is its
`Hangup`. Times are the event's `Timestamp` header when Asterisk sends one
(`timestampevents = yes`), else the time the listener received the event. Billsec is whole
seconds from answer to hangup, rounded down, as Asterisk's own CDR (`BillableSeconds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ami_listener.clock import AsteriskClock

ANSWER = "ANSWER"
DISPOSITIONS = {  # DialStatus -> CDR disposition
    "ANSWER": "ANSWERED",
    "BUSY": "BUSY",
    "NOANSWER": "NO ANSWER",
    "CANCEL": "NO ANSWER",
    "CONGESTION": "CONGESTION",
    "CHANUNAVAIL": "NO ANSWER",  # as Asterisk 20's CDR writes it
}


@dataclass
class Call:
    """One billed leg: the dial of a booth channel, or one leg of a callback."""

    call_id: str  # the booth channel's Uniqueid; `<leg A Uniqueid>:a` / `:b` for callbacks
    channel: str
    linkedid: str
    payer_key: str
    src: str  # caller id number
    number: str  # as dialed (before leading digits are stripped)
    accountcode: str
    dialed_us: int
    answered_us: int | None = None
    ended_us: int | None = None
    dial_status: str = ""
    hangup_cause: int | None = None
    hangup_cause_text: str = ""
    dest_channel: str = ""
    cdr_dst: str = ""  # the CDR's dst if not `number` (callback leg A: leg B's, as Asterisk)
    review: str = ""  # why a person should look at this call (e.g. ended while away)
    redirected_us: int | None = None  # a redial after a redirect: when it began
    seen_at: int = 0  # the listener's receive sequence number of its first event
    dest_payer_key: str = ""  # the called channel's payer key (incoming calls to a booth)

    @property
    def uniqueid(self) -> str:
        """The Asterisk channel this call lives on."""
        return self.call_id.partition(":")[0].partition("#")[0]

    @property
    def leg(self) -> str:
        """booth, or a (the customer called back) / b (the number they asked for)."""
        return self.call_id.partition(":")[2] or "booth"

    @property
    def billsec(self) -> int:
        if self.answered_us is None or self.ended_us is None:
            return 0
        return max(0, (self.ended_us - self.answered_us) // 1_000_000)

    @property
    def disposition(self) -> str:
        return DISPOSITIONS.get(self.dial_status, "FAILED")


@dataclass(frozen=True)
class Dialed:
    call: Call


@dataclass(frozen=True)
class Answered:
    call: Call


@dataclass(frozen=True)
class Ended:
    call: Call


Step = Dialed | Answered | Ended


@dataclass
class Counters:
    events: int = 0
    unknown_channel: int = 0
    ignored: int = 0


@dataclass
class CallTracker:
    """Callbacks (an Originate of leg A, the customer, which when answered dials leg B, the
    number asked for; capture 08): the Originate's own DialBegin has no caller channel and
    names leg A's number (DestExten). `callback_legs` says which legs are billed: `a` (from
    leg A's answer, priced by leg A's number), `b` (from leg B's answer, priced by leg B's
    number) or `both`, as separate calls `<leg A Uniqueid>:a` and `:b`, paid by the booth
    whose caller id the Originate carried."""

    payer_field: str = "callerid"  # callerid | peer | accountcode
    callback_legs: str = "a"  # a | b | both
    calls: dict[str, Call] = field(default_factory=dict)  # by call id
    up_since: dict[str, int] = field(default_factory=dict)  # live channels answered, by Uniqueid
    originated: dict[str, str] = field(default_factory=dict)  # leg A Uniqueid -> its number
    redials: dict[str, int] = field(default_factory=dict)  # booth Uniqueid -> dials after the 1st
    counters: Counters = field(default_factory=Counters)
    clock: AsteriskClock = field(default_factory=AsteriskClock)  # bounds every Timestamp

    def calls_of(self, uniqueid: str) -> list[Call]:
        """The calls living on one channel (one, or a callback's two legs)."""
        booth = f"{uniqueid}#{self.redials[uniqueid] + 1}" if uniqueid in self.redials else uniqueid
        ids = (booth, f"{uniqueid}:a", f"{uniqueid}:b")
        return [self.calls[i] for i in ids if i in self.calls]

    def feed(self, event: Mapping[str, str], received_us: int) -> list[Step]:
        """One AMI event -> the billing steps it causes (usually none)."""
        self.counters.events += 1
        name = event.get("Event", "")
        at = self.clock.at(event, received_us)
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            self.counters.ignored += 1
            return []
        return handler(event, at)

    def _on_Newchannel(self, e: Mapping[str, str], at: int) -> list[Step]:
        return self._on_Newstate(e, at)

    def _on_Newstate(self, e: Mapping[str, str], at: int) -> list[Step]:
        if e.get("ChannelStateDesc") == "Up":
            self.up_since.setdefault(e.get("Uniqueid", ""), at)
        return []

    def _on_DialBegin(self, e: Mapping[str, str], at: int) -> list[Step]:
        uniqueid = e.get("Uniqueid", "")
        if not e.get("Channel"):
            # An Originate's own dial (no caller channel): a callback's leg A being rung.
            if e.get("DestUniqueid"):
                self.originated[e["DestUniqueid"]] = e.get("DestExten", "")
            return []
        if not uniqueid:
            return []
        current = self.calls_of(uniqueid)
        if current:
            return self._redial(current, e, at)
        up = self.up_since.get(uniqueid)
        if uniqueid in self.originated:
            return self._callback(e, at, up)
        call = self._new_call(e, at)
        self.calls[uniqueid] = call
        if up is not None:
            # The caller was answered before it dialed (e.g. an Originate into a dialplan):
            # Asterisk bills it from its own answer.
            call.dial_status, call.answered_us = ANSWER, up
            return [Dialed(call), Answered(call)]
        return [Dialed(call)]

    def _redial(self, current: list[Call], e: Mapping[str, str], at: int) -> list[Step]:
        """A channel that already has a call dials again. While that call is unanswered it
        is another destination of the same Dial, and a repeated DialBegin is a replay: both
        change nothing. After an answer it is a redirect (capture 23: AMI Redirect sends the
        answered booth back into the dialplan, which dials a new number): the first call
        ends now, and the new dial is a call of its own (`<uniqueid>#2`), priced by its own
        number; if it is answered it is billed from the redirect, as Asterisk's CDR does
        (unanswered, it costs nothing)."""
        [call] = current
        if call.leg != "booth" or call.answered_us is None:
            return []
        if e.get("DestChannel", "") == call.dest_channel:
            return []  # the same DialBegin again
        uniqueid = e["Uniqueid"]
        del self.calls[call.call_id]
        call.ended_us = max(at, call.answered_us)
        call.hangup_cause_text = "Redirected"
        self.redials[uniqueid] = self.redials.get(uniqueid, 0) + 1
        new = self._new_call(e, at, call_id=f"{uniqueid}#{self.redials[uniqueid] + 1}")
        new.redirected_us = at
        self.calls[new.call_id] = new
        return [Ended(call), Dialed(new)]

    def _callback(self, e: Mapping[str, str], at: int, up: int | None) -> list[Step]:
        """Leg A (answered) now dials leg B: the legs the policy bills start here."""
        uniqueid = e["Uniqueid"]
        steps: list[Step] = []
        if self.callback_legs in ("a", "both"):
            a = self._new_call(e, at, call_id=f"{uniqueid}:a")
            a.number, a.cdr_dst = self.originated[uniqueid], e.get("Exten", "")
            a.dialed_us = up if up is not None else at
            a.dial_status, a.answered_us = ANSWER, a.dialed_us
            self.calls[a.call_id] = a
            steps += [Dialed(a), Answered(a)]
        if self.callback_legs in ("b", "both"):
            b = self._new_call(e, at, call_id=f"{uniqueid}:b")
            self.calls[b.call_id] = b
            steps.append(Dialed(b))
        return steps

    def _on_VarSet(self, e: Mapping[str, str], at: int) -> list[Step]:
        """A Dial that failed before any DialBegin (no route: CHANUNAVAIL) is still a call
        to record: its final DIALSTATUS is the only trace."""
        if e.get("Variable") != "DIALSTATUS" or not e.get("Value"):
            return []
        uniqueid = e.get("Uniqueid", "")
        call = next(iter(self.calls_of(uniqueid)), None)
        if call is None and uniqueid and e.get("Channel") and uniqueid not in self.originated:
            call = self._new_call(e, at)
            call.dial_status = e["Value"]
            self.calls[uniqueid] = call
        return []  # a known call's status comes from its DialEnd

    def _new_call(self, e: Mapping[str, str], at: int, call_id: str = "") -> Call:
        uniqueid = e["Uniqueid"]
        return Call(
            call_id=call_id or uniqueid,
            channel=e["Channel"],
            linkedid=e.get("Linkedid", uniqueid),
            payer_key=self.payer_key(e),
            src=e.get("CallerIDNum", ""),
            number=e.get("Exten", ""),
            accountcode=e.get("AccountCode", ""),
            dialed_us=at,
            dest_channel=e.get("DestChannel", ""),
            dest_payer_key=self.dest_payer_key(e),
        )

    def _on_DialEnd(self, e: Mapping[str, str], at: int) -> list[Step]:
        calls = [c for c in self.calls_of(e.get("Uniqueid", "")) if not c.dial_status]
        if not calls:
            if e.get("Channel") and not self.calls_of(e.get("Uniqueid", "")):
                self.counters.unknown_channel += 1
            return []  # unknown, or already decided (a replayed or duplicated event)
        steps: list[Step] = []
        for call in calls:
            call.dial_status = e.get("DialStatus", "")
            if call.dial_status == ANSWER:
                # After a redirect the booth was already up: Asterisk's CDR bills the new
                # number from the redirect (its ringing included); so do we, once it answers.
                call.answered_us = call.redirected_us or at
                call.dest_channel = e.get("DestChannel", call.dest_channel)
                steps.append(Answered(call))
        return steps

    def _on_Hangup(self, e: Mapping[str, str], at: int) -> list[Step]:
        uniqueid = e.get("Uniqueid", "")
        self.up_since.pop(uniqueid, None)
        self.originated.pop(uniqueid, None)
        steps: list[Step] = []
        calls = self.calls_of(uniqueid)
        self.redials.pop(uniqueid, None)
        for call in calls:  # none: far ends, Local halves, never seen
            del self.calls[call.call_id]
            call.ended_us = max(at, call.answered_us or at)
            cause = e.get("Cause", "")
            call.hangup_cause = int(cause) if cause.isdigit() else None
            call.hangup_cause_text = e.get("Cause-txt", "")
            steps.append(Ended(call))
        return steps

    def resync(self, live_uniqueids: set[str], now_us: int, asked_at: int) -> list[Step]:
        """After a reconnect: calls whose channel is gone ended while we were away. They end
        at the reconnect time (the last moment they may have run) and are flagged. Only calls
        first seen before the channel list was asked for (`asked_at`, a receive sequence
        number) can be judged by it."""
        steps: list[Step] = []
        gone = [
            i
            for i, c in self.calls.items()
            if c.uniqueid not in live_uniqueids and c.seen_at < asked_at
        ]
        for call_id in gone:
            call = self.calls.pop(call_id)
            call.ended_us = max(now_us, call.answered_us or now_us)
            call.review = "ended_while_disconnected"
            steps.append(Ended(call))
        return steps

    def adopt(self, call: Call) -> None:
        """Follow a call that was billed before this process started (found in Redis)."""
        self.calls.setdefault(call.call_id, call)

    def payer_key(self, e: Mapping[str, str]) -> str:
        if self.payer_field == "accountcode":
            return e.get("AccountCode", "")
        if self.payer_field == "peer":
            return peer_of(e.get("Channel", ""))
        return e.get("CallerIDNum", "")

    def dest_payer_key(self, e: Mapping[str, str]) -> str:
        """The called channel's payer key, by the same field (Asterisk puts the number
        dialled in DestCallerIDNum, the peer in DestChannel)."""
        if self.payer_field == "accountcode":
            return e.get("DestAccountCode", "")
        if self.payer_field == "peer":
            return peer_of(e.get("DestChannel", ""))
        return e.get("DestCallerIDNum", "")


def peer_of(channel: str) -> str:
    """`SIP/8001-00000002` -> `SIP/8001` (the peer, without the channel's sequence number)."""
    name, sep, sequence = channel.rpartition("-")
    if sep and sequence and all(c in "0123456789abcdef" for c in sequence.lower()):
        return name
    return channel
