"""Follows Asterisk channels and dials, and turns them into billing steps. Pure: no I/O.

The booth (payer) channel is the caller of a `DialBegin`: the event's `Channel`. Its dialed
number is its `Exten`; the answer is its `DialEnd` with `DialStatus: ANSWER`; the end is its
`Hangup`. Times are the event's `Timestamp` header when Asterisk sends one
(`timestampevents = yes`), else the time the listener received the event.

Billsec and duration are Asterisk's own whenever Asterisk says them: the booth's Dial `Cdr`
event (cdr_manager), which may come just before or just after the booth's `Hangup` (capture
28), so a call whose `Hangup` came first waits up to `cdr_wait_us` for it. Without
one, billsec is whole seconds from answer to hangup, rounded down as Asterisk's CDR does,
by the Timestamp headers, else by the receive clock (flagged as measured).

Only the `call`, `cdr` and `system` read classes are needed (capture 27): `VarSet` is used
when it comes, never relied on. Calls the tracker did not see begin (dialled while the
listener was away) are picked up from a `DialEnd` ANSWER, from the resync snapshot
(`resync`) or, at the latest, from their `Cdr`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from ami_listener.clock import AsteriskClock
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
    created_us: int | None = None  # the channel's creation: where Asterisk's duration starts
    measured: bool = False  # an answer or end time is the listener's receive clock
    cdr_billsec: int | None = None  # Asterisk's own figures, from the booth's Dial `Cdr`
    cdr_duration: int | None = None
    cdr_disposition: str = ""

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
        if self.cdr_billsec is not None:
            return self.cdr_billsec
        if self.answered_us is None or self.ended_us is None:
            return 0
        return max(0, (self.ended_us - self.answered_us) // 1_000_000)

    @property
    def duration(self) -> int:
        """Whole seconds from the channel's creation (ringing included) to the end."""
        if self.cdr_duration is not None:
            return self.cdr_duration
        start = self.created_us if self.created_us is not None else self.dialed_us
        return max(0, ((self.ended_us or start) - start) // 1_000_000)

    @property
    def billsec_source(self) -> str:
        """cdr (Asterisk's BillableSeconds), timestamp (its event clock) or clock (ours)."""
        if self.cdr_billsec is not None:
            return "cdr"
        return "clock" if self.measured and self.answered_us is not None else "timestamp"

    @property
    def disposition(self) -> str:
        return self.cdr_disposition or DISPOSITIONS.get(self.dial_status, "FAILED")


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
    adopted: int = 0  # calls first learnt of from a resync, a DialEnd or a Cdr
    from_cdr: int = 0  # calls known only by their Cdr (begun and ended while away)


RECENT_ENDED = 20_000  # uniqueids of ended calls kept to recognise their late Cdr
BOOTH_APPS = ("Dial",)  # CoreShowChannel `Application` of a channel that dials (the payer)


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
    cdr_wait_us: int = 1_000_000  # how long an answered call's end waits for its Cdr
    created: dict[str, int] = field(default_factory=dict)  # live channels' creation, by Uniqueid
    ending: dict[str, tuple[Call, int]] = field(default_factory=dict)  # hung up, Cdr awaited
    # Uniqueids hung up lately (to read their late Cdr): True if a call of it was ended
    recent: OrderedDict = field(default_factory=OrderedDict)
    lost_at: int | None = None  # when the AMI connection was lost (event clock)
    uptime: int | None = None  # Asterisk's Uptime at the last login (FullyBooted)
    _measured: bool = False  # the event being handled has no Timestamp
    _received: int = 0  # its receive time

    def calls_of(self, uniqueid: str) -> list[Call]:
        """The calls living on one channel (one, or a callback's two legs)."""
        booth = f"{uniqueid}#{self.redials[uniqueid] + 1}" if uniqueid in self.redials else uniqueid
        ids = (booth, f"{uniqueid}:a", f"{uniqueid}:b")
        return [self.calls[i] for i in ids if i in self.calls]

    def feed(self, event: Mapping[str, str], received_us: int) -> list[Step]:
        """One AMI event -> the billing steps it causes (usually none)."""
        self.counters.events += 1
        name = event.get("Event", "")
        self._measured = timestamp_us(dict(event)) is None
        self._received = received_us
        at = self.clock.at(event, received_us)
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            self.counters.ignored += 1
            return []
        return handler(event, at)

    def _on_Newchannel(self, e: Mapping[str, str], at: int) -> list[Step]:
        if e.get("Uniqueid"):
            self.created[e["Uniqueid"]] = at
        return self._on_Newstate(e, at)

    def _on_FullyBooted(self, e: Mapping[str, str], at: int) -> list[Step]:
        uptime = e.get("Uptime", "")
        self.uptime = int(uptime) if uptime.isdigit() else None
        return []

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
        known = uniqueid in self.originated or self.recent.get(uniqueid)  # (its Cdr came)
        if call is None and uniqueid and e.get("Channel") and not known:
            call = self._new_call(e, at)
            call.dial_status = e["Value"]
            if call.dial_status == ANSWER:
                # Answered while the listener was away: never a free answered call. Its Cdr
                # (next) makes it a billed one; without a Cdr it stays unbilled, flagged.
                call.review = "answer_not_seen"
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
            created_us=self.created.get(uniqueid),
        )

    def _on_DialEnd(self, e: Mapping[str, str], at: int) -> list[Step]:
        uniqueid = e.get("Uniqueid", "")
        steps: list[Step] = []
        if e.get("Channel") and uniqueid and not self.calls_of(uniqueid):
            self.counters.unknown_channel += 1
            if e.get("DialStatus") != ANSWER or uniqueid in self.originated:
                return []  # unknown and unanswered: its Cdr will record it
            # Dialled while the listener was away, answered now: follow it from here.
            call = self._new_call(e, at)
            call.review = "dial_not_seen"
            self.calls[uniqueid] = call
            self.counters.adopted += 1
            steps.append(Dialed(call))
        calls = [c for c in self.calls_of(uniqueid) if not c.dial_status]
        for call in calls:
            call.dial_status = e.get("DialStatus", "")
            if call.dial_status == ANSWER:
                # After a redirect the booth was already up: Asterisk's CDR bills the new
                # number from the redirect (its ringing included); so do we, once it answers.
                call.answered_us = call.redirected_us or at
                call.measured = call.measured or self._measured
                call.dest_channel = e.get("DestChannel", call.dest_channel)
                steps.append(Answered(call))
        return steps  # none: unknown, or already decided (a replayed or duplicated event)

    def _on_Hangup(self, e: Mapping[str, str], at: int) -> list[Step]:
        uniqueid = e.get("Uniqueid", "")
        self.up_since.pop(uniqueid, None)
        self.originated.pop(uniqueid, None)
        if self.created.pop(uniqueid, None) is not None:
            self._remember(uniqueid, False)
        steps: list[Step] = []
        calls = self.calls_of(uniqueid)
        self.redials.pop(uniqueid, None)
        for call in calls:  # none: far ends, Local halves, never seen
            del self.calls[call.call_id]
            call.ended_us = max(at, call.answered_us or at)
            call.measured = call.measured or self._measured
            cause = e.get("Cause", "")
            call.hangup_cause = int(cause) if cause.isdigit() else None
            call.hangup_cause_text = e.get("Cause-txt", "")
            if self._awaits_cdr(call):
                # Asterisk's Cdr (its own billsec) comes within a few ms after this Hangup.
                self.ending[call.call_id] = (call, self._received + self.cdr_wait_us)
                continue
            steps.append(self._ended(call))
        return steps

    @staticmethod
    def _awaits_cdr(call: Call) -> bool:
        return call.cdr_billsec is None and call.leg != "b"

    def _ended(self, call: Call) -> Ended:
        if call.cdr_billsec is not None and call.answered_us is not None:
            # Asterisk's billsec on its own clock; our answer and end times may be a few ms
            # closer together (receive clock, a replay sped up): the end is never sooner than
            # answer + billsec, so the two agree (the end script checks it).
            floor = call.answered_us + call.cdr_billsec * 1_000_000
            call.ended_us = max(call.ended_us or floor, floor)
        self._remember(call.uniqueid, True)
        return Ended(call)

    def _remember(self, uniqueid: str, had_call: bool) -> None:
        self.recent[uniqueid] = had_call or self.recent.get(uniqueid, False)
        self.recent.move_to_end(uniqueid)
        while len(self.recent) > RECENT_ENDED:
            self.recent.popitem(last=False)

    def _on_Cdr(self, e: Mapping[str, str], at: int) -> list[Step]:
        """The booth's Dial CDR: Asterisk's own billsec, duration and disposition. It ends a
        call that hung up already, completes one still up, or (a channel never seen: dialled
        and ended while the listener was away) becomes the call itself."""
        uniqueid = e.get("UniqueID", "")
        if e.get("LastApplication") != "Dial" or not uniqueid:
            return []  # a Local half's own record, or the second CDR of a failed dial
        dest = e.get("DestinationChannel", "")
        live = [c for c in self.calls_of(uniqueid) if c.leg != "b"]
        unseen = [c for c in live if c.dial_status == ANSWER and c.answered_us is None]
        if unseen:  # known only by its DIALSTATUS: the Cdr tells the whole call
            for call in unseen:
                del self.calls[call.call_id]
            return self._call_from_cdr(e, at, seen=True)
        waiting = [c for c, _ in self.ending.values() if c.uniqueid == uniqueid and c.leg != "b"]
        matches = [c for c in live + waiting if not (c.dest_channel and dest != c.dest_channel)]
        for call in matches:
            _apply_cdr(call, e)
        steps = []
        for call in waiting:
            if call in matches:
                del self.ending[call.call_id]
                steps.append(self._ended(call))
        if live or waiting or self.recent.get(uniqueid):
            return steps  # (an earlier dial of a redirected booth: already billed)
        # Seen live but never as a dial (no DialBegin: an unreachable number, capture 27
        # without VarSet), or not seen at all (dialled and ended while the listener was away).
        seen = uniqueid in self.created or uniqueid in self.recent
        return self._call_from_cdr(e, at, seen)

    def _call_from_cdr(self, e: Mapping[str, str], at: int, seen: bool) -> list[Step]:
        """A call known only by its Cdr: its times are rebuilt from the CDR's figures around
        the Cdr's own time (the end); its money needs only billsec, which is Asterisk's."""
        uniqueid = e["UniqueID"]
        billsec, duration = _int(e.get("BillableSeconds")), _int(e.get("Duration"))
        fields = {
            "Uniqueid": uniqueid,
            "Channel": e.get("Channel", ""),
            "CallerIDNum": e.get("Source", ""),
            "Exten": e.get("Destination", ""),
            "AccountCode": e.get("AccountCode", ""),
            "DestChannel": e.get("DestinationChannel", ""),
        }
        call = self._new_call(fields, at - duration * 1_000_000)
        call.created_us = self.created.get(uniqueid, call.dialed_us)
        call.linkedid = ""
        call.review = "" if seen else "seen_only_in_cdr"
        _apply_cdr(call, e)
        call.ended_us = at
        steps: list[Step] = [Dialed(call)]
        if e.get("Disposition") == "ANSWERED":
            call.dial_status, call.answered_us = ANSWER, at - billsec * 1_000_000
            call.review = call.review or "answer_not_seen"
            steps.append(Answered(call))
        self.counters.from_cdr += 1
        return [*steps, self._ended(call)]

    def flush(self, received_us: int) -> list[Step]:
        """End the hung-up calls whose Cdr did not come in time (no cdr_manager, or lost):
        with the billsec of their own events."""
        due = [i for i, (_, deadline) in self.ending.items() if deadline <= received_us]
        return [self._ended(self.ending.pop(i)[0]) for i in due]

    def lost(self, received_us: int) -> list[Step]:
        """The AMI connection is gone (at `received_us`, our clock). Kept on the event clock
        as the end of every call that turns out, at the next resync, to have ended meanwhile:
        the last moment it was known to run. Calls waiting for their Cdr end now."""
        self.lost_at = received_us + self.clock.offset_us
        return self.flush(float("inf"))  # type: ignore[arg-type]

    def resync(
        self,
        channels: list[Mapping[str, str]],
        answers: Mapping[str, int | None],
        received_us: int,
    ) -> list[Step]:
        """Apply a login's CoreShowChannels snapshot, at its place among the events (the
        listener holds later events back until this ran, so nothing here is stale).

        Calls whose channel is gone ended while nobody listened: they end at the moment the
        connection was lost (the last moment they were known to run; an Asterisk that died
        then took them down with it) and are flagged. Booth channels (running Dial) that are
        not known are adopted: dialled at their creation (`Duration`), answered when bridged
        (`BridgeId`), at the answer time Asterisk gave (`answers`, by Uniqueid, from
        `CDR(answer)`), else from now, flagged. `received_us`: when the snapshot came (our
        clock; moved onto the event clock here)."""
        now_us = received_us + self.clock.offset_us
        live = {c.get("Uniqueid", "") for c in channels}
        restarted = (
            self.uptime is not None
            and self.lost_at is not None
            and (now_us - self.lost_at > self.uptime * 1_000_000)
        )
        end_at = self.lost_at if self.lost_at is not None else now_us
        steps: list[Step] = []
        for call_id in [i for i, c in self.calls.items() if c.uniqueid not in live]:
            call = self.calls.pop(call_id)
            call.ended_us = max(min(end_at, now_us), call.answered_us or call.dialed_us)
            call.review = "asterisk_restarted" if restarted else "ended_while_disconnected"
            steps.append(self._ended(call))
        for uniqueid in [u for u in self.up_since if u not in live]:
            del self.up_since[uniqueid]
        for uniqueid in [u for u in self.created if u not in live]:
            del self.created[uniqueid]
        for uniqueid in [u for u in self.originated if u not in live]:
            del self.originated[uniqueid]
        for channel in channels:
            uniqueid = channel.get("Uniqueid", "")
            if not uniqueid or uniqueid in self.created:
                continue
            seconds = hms_seconds(channel.get("Duration", ""))
            self.created[uniqueid] = now_us - seconds * 1_000_000
            if channel.get("ChannelStateDesc") == "Up" and channel.get("BridgeId"):
                self.up_since.setdefault(uniqueid, answers.get(uniqueid) or now_us)
            if channel.get("Application") not in BOOTH_APPS or self.calls_of(uniqueid):
                continue
            steps += self._adopt_live(channel, answers.get(uniqueid), now_us)
        self.lost_at = None
        return steps

    def _adopt_live(
        self, channel: Mapping[str, str], answered_us: int | None, now_us: int
    ) -> list[Step]:
        uniqueid = channel["Uniqueid"]
        call = self._new_call(channel, self.created[uniqueid])
        call.review = "adopted_at_resync"
        self.calls[uniqueid] = call
        self.counters.adopted += 1
        if not channel.get("BridgeId"):
            return [Dialed(call)]  # still ringing: its DialEnd comes
        call.dial_status = ANSWER
        if answered_us is None:
            call.review = "adopted_answer_unknown"  # billed from now; the Cdr corrects billsec
        call.answered_us = min(answered_us or now_us, now_us)
        return [Dialed(call), Answered(call)]

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


def _apply_cdr(call: Call, e: Mapping[str, str]) -> None:
    call.cdr_billsec = _int(e.get("BillableSeconds"))
    call.cdr_duration = _int(e.get("Duration"))
    call.cdr_disposition = e.get("Disposition", "")


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def hms_seconds(value: str) -> int:
    """CoreShowChannel `Duration` (`HH:MM:SS`) -> seconds; 0 when unreadable."""
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return 0
    hours, minutes, seconds = (int(p) for p in parts)
    return hours * 3600 + minutes * 60 + seconds


def peer_of(channel: str) -> str:
    """`SIP/8001-00000002` -> `SIP/8001` (the peer, without the channel's sequence number)."""
    name, sep, sequence = channel.rpartition("-")
    if sep and sequence and all(c in "0123456789abcdef" for c in sequence.lower()):
        return name
    return channel
