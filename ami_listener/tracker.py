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

from ami_listener.frames import timestamp_us

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
    """One dial of one booth channel."""

    call_id: str  # the booth channel's Uniqueid
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
    review: str = ""  # why a person should look at this call (e.g. ended while away)
    seen_at: int = 0  # the listener's receive sequence number of its first event

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
    payer_field: str = "callerid"  # callerid | peer | accountcode
    calls: dict[str, Call] = field(default_factory=dict)  # by booth channel Uniqueid
    up_since: dict[str, int] = field(default_factory=dict)  # live channels answered, by Uniqueid
    counters: Counters = field(default_factory=Counters)

    def feed(self, event: Mapping[str, str], received_us: int) -> list[Step]:
        """One AMI event -> the billing steps it causes (usually none)."""
        self.counters.events += 1
        name = event.get("Event", "")
        at = timestamp_us(dict(event)) or received_us
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
        if not uniqueid or not e.get("Channel"):
            return []  # an Originate's own dial: no caller channel, nobody to bill
        if uniqueid in self.calls:
            return []  # a second destination of the same Dial, a redirect, or a replay
        call = self._new_call(e, at)
        self.calls[uniqueid] = call
        up = self.up_since.get(uniqueid)
        if up is not None:
            # The caller was answered before it dialed (a callback's leg A, originated and
            # answered first): Asterisk bills it from its own answer.
            call.dial_status, call.answered_us = ANSWER, up
            return [Dialed(call), Answered(call)]
        return [Dialed(call)]

    def _on_VarSet(self, e: Mapping[str, str], at: int) -> list[Step]:
        """A Dial that failed before any DialBegin (no route: CHANUNAVAIL) is still a call
        to record: its final DIALSTATUS is the only trace."""
        if e.get("Variable") != "DIALSTATUS" or not e.get("Value"):
            return []
        uniqueid = e.get("Uniqueid", "")
        call = self.calls.get(uniqueid)
        if call is None and uniqueid and e.get("Channel"):
            call = self._new_call(e, at)
            call.dial_status = e["Value"]
            self.calls[uniqueid] = call
        return []  # a known call's status comes from its DialEnd

    def _new_call(self, e: Mapping[str, str], at: int) -> Call:
        uniqueid = e["Uniqueid"]
        return Call(
            call_id=uniqueid,
            channel=e["Channel"],
            linkedid=e.get("Linkedid", uniqueid),
            payer_key=self.payer_key(e),
            src=e.get("CallerIDNum", ""),
            number=e.get("Exten", ""),
            accountcode=e.get("AccountCode", ""),
            dialed_us=at,
            dest_channel=e.get("DestChannel", ""),
        )

    def _on_DialEnd(self, e: Mapping[str, str], at: int) -> list[Step]:
        call = self.calls.get(e.get("Uniqueid", ""))
        if call is None:
            if e.get("Channel"):
                self.counters.unknown_channel += 1
            return []
        if call.dial_status:
            return []  # already decided (a replayed or duplicated event)
        call.dial_status = e.get("DialStatus", "")
        if call.dial_status == ANSWER:
            call.answered_us = at
            call.dest_channel = e.get("DestChannel", call.dest_channel)
            return [Answered(call)]
        return []

    def _on_Hangup(self, e: Mapping[str, str], at: int) -> list[Step]:
        self.up_since.pop(e.get("Uniqueid", ""), None)
        call = self.calls.pop(e.get("Uniqueid", ""), None)
        if call is None:
            return []  # not a booth channel (far ends, Local halves), or never seen
        call.ended_us = max(at, call.answered_us or at)
        cause = e.get("Cause", "")
        call.hangup_cause = int(cause) if cause.isdigit() else None
        call.hangup_cause_text = e.get("Cause-txt", "")
        return [Ended(call)]

    def resync(self, live_uniqueids: set[str], now_us: int, asked_at: int) -> list[Step]:
        """After a reconnect: calls whose channel is gone ended while we were away. They end
        at the reconnect time (the last moment they may have run) and are flagged. Only calls
        first seen before the channel list was asked for (`asked_at`, a receive sequence
        number) can be judged by it."""
        steps: list[Step] = []
        gone = [
            u for u, c in self.calls.items() if u not in live_uniqueids and c.seen_at < asked_at
        ]
        for uniqueid in gone:
            call = self.calls.pop(uniqueid)
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


def peer_of(channel: str) -> str:
    """`SIP/8001-00000002` -> `SIP/8001` (the peer, without the channel's sequence number)."""
    name, sep, sequence = channel.rpartition("-")
    if sep and sequence and all(c in "0123456789abcdef" for c in sequence.lower()):
        return name
    return channel
