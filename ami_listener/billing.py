"""Turns the tracker's steps into credit-engine calls, and says which channels to hang up.

At dial: admission (payer, rates, credit) - a locked, unpayable, or (by setting) unknown or
unrated booth is hung up before answer, at no cost. At answer: the first block at every
level. Between: the due boundaries, paid by `tick` for every reseller with live calls. At
hangup: the real billsec. It never computes money: the Lua scripts do, and it obeys them.

It keeps, for each live call with a prepaid level or a booth deposit, the time its paid
blocks run out (`paid_until`, on Asterisk's clock, from the scripts' answers), so that while
Redis does not answer it can still cut those calls there (the credit-failure policy,
ami_listener/policy.py). Times come bounded by the listener's clock (ami_listener/clock.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field

from ami_listener import policy
from ami_listener.clock import AsteriskClock
from ami_listener.tracker import Call
from lua.credit import CreditEngine, CreditError, Deny, EndMode, Outcome, Payer, Pricing
from ops.settings import Settings
from rating.book import RedisRateBook
from rating.memo import pricing_fields
from rating.select import strip_number

log = logging.getLogger("asterbill.listener")

HANG_UP_AT_DIAL = {
    Deny.LOCKED,
    Deny.NO_CREDIT_CLID,
    Deny.NO_CREDIT_GROUP,
    Deny.NO_CREDIT_RESELLER,
    Deny.DEPOSIT_REACHED,
    Deny.PRICE_OVERFLOW,
    Deny.OVER_LIMIT_CLID,
    Deny.OVER_LIMIT_GROUP,
    Deny.OVER_LIMIT_RESELLER,
    Deny.DEPOSIT_EXCEEDED,
    Deny.CREDIT_UNAVAILABLE,
}
REPLAYED = "replayed"  # a call ended (and settled) before whose events came again
# Reviews that say the end was not seen: its billsec is an upper bound (EndMode.ESTIMATED).
END_NOT_SEEN = {"ended_while_disconnected", "ended_while_listener_down"}


@dataclass(frozen=True)
class HangupRequest:
    channel: str
    call_id: str
    reason: str


@dataclass
class Billed:
    payer: Payer
    pricing: Pricing
    answered: bool = False
    flags: list[str] = field(default_factory=list)
    limited: bool = False  # a prepaid level or the deposit bounds it (the listener may cut it)
    could_not_cut: bool = False  # part of it ran while nobody could cut it (EndMode.REAL)


class Biller:
    def __init__(
        self,
        engine: CreditEngine,
        book: RedisRateBook,
        settings: Settings,
        clock: AsteriskClock | None = None,
    ) -> None:
        self.engine, self.book, self.settings = engine, book, settings
        self.clock = clock or AsteriskClock()
        self.failure = policy.CreditFailure(settings.credit_failure)
        # call id -> the moment (Asterisk's clock, ms) its billsec reaches the first unpaid
        # second, for live limited calls: where the listener cuts it while Redis is away.
        self.paid_until: dict[str, int] = {}
        self.credit_down_since_ms: int | None = None  # local clock; None: Redis answers
        self.billed: dict[str, Billed] = {}  # live calls being billed, by call id
        self.channels: dict[str, str] = {}  # call id -> booth channel (to hang it up)
        self.resellers: dict[int, int] = {}  # reseller id -> live answered calls
        self.refused: dict[str, str] = {}  # call id -> why it is not billed (until it ends)
        self.unbilled_calls = 0  # ended calls nobody paid for (unanswered, refused, unknown)
        self.to_settle: set[int] = set()  # resellers with calls ended since the last request
        self.dialled: dict[str, int] = {}  # call id -> the tag of its `dialled` entry

    def on_dialed(self, call: Call, blind: bool = False) -> HangupRequest | None:
        """`blind`: the dial was let through while Redis was down (policy `continue`) and is
        billed now: a refusal for credit no longer stops it (it is flagged), and a hang-up
        is asked for only if the call is still up."""
        request = self._admit(call, blind)
        self._note_dialled(call)
        return request

    def _note_dialled(self, call: Call) -> None:
        """Every dialled call is written to Redis (`{rR}:dialled`, R = 0 for an unknown
        payer) until it has ended, so that a listener that dies meanwhile loses none: the
        next one records those that ended while nobody listened (`stale_dialled`)."""
        billed = self.billed.get(call.call_id)
        payer = billed.payer if billed else self.engine.find_payer(call.payer_key)
        reseller = payer.reseller_id if payer else 0
        info = json.loads(self._describe(call, [], ""))
        info["payer"] = [payer.reseller_id, payer.group_id, payer.clid_id] if payer else None
        self.dialled[call.call_id] = reseller
        self.engine.client.hset(
            self._dialled_key(reseller), call.call_id, json.dumps(info, separators=(",", ":"))
        )

    def closed(self, call: Call) -> None:
        """The call's end is written (billed or recorded): it needs no rescue any more."""
        reseller = self.dialled.pop(call.call_id, None)
        if reseller is not None:
            self.engine.client.hdel(self._dialled_key(reseller), call.call_id)

    def _dialled_key(self, reseller_id: int) -> str:
        return f"{self.engine.keys.tag(reseller_id)}:dialled"

    def stale_dialled(self, live_uniqueids: set[str], known: set[str], now_ms: int) -> int:
        """After a (re)start: dialled calls a dead listener wrote that nobody follows, are
        not billing in Redis (`orphans` has those) and are not up any more (the snapshot
        adopts those): they ended while nobody listened, their answer unseen. Recorded at
        cost 0, flagged `ended_while_listener_down`, never as free answered calls. Returns
        how many."""
        last_alive = self.last_alive_ms() or now_ms
        count = 0
        pattern = f"{self.engine.keys.prefix}:{{r*}}:dialled"
        for key in list(self.engine.client.scan_iter(match=pattern, count=1000)):
            key = key.decode() if isinstance(key, bytes) else key
            reseller = int(key[len(self.engine.keys.prefix) + 3 :].split("}", 1)[0])
            for raw_id, text in self.engine.client.hgetall(key).items():
                call_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                uniqueid = call_id.partition(":")[0].partition("#")[0]
                if call_id in known or call_id in self.billed or uniqueid in live_uniqueids:
                    continue
                if self.engine.client.hexists(self.engine.keys.calls(reseller), call_id):
                    continue  # answered and billing: `orphans` ends it
                if self.settings.unanswered == "drop":  # unbilled calls are not recorded
                    self.engine.client.hdel(key, call_id)
                    continue
                info = json.loads(text)
                payer = Payer(*info["payer"]) if info.get("payer") else None
                info.update(review="ended_while_listener_down", disposition="FAILED")
                dialed_ms = int(info.get("dialed_us") or 0) // 1000
                until = max(min(now_ms, last_alive), dialed_ms)
                self.engine.record_unpaid(
                    call_id, payer, dialed_ms, 0, until, 0, json.dumps(info, separators=(",", ":"))
                )
                self.engine.client.hdel(key, call_id)
                self.to_settle.add(reseller)
                count += 1
        return count

    def _admit(self, call: Call, blind: bool) -> HangupRequest | None:
        number = strip_number(call.number, self.settings.strip_prefixes)
        payer_key, flags = call.payer_key, []
        if self._is_inbound(call):
            # The called booth pays, priced by its inbound rate rows (README, Incoming calls).
            payer_key, flags = call.dest_payer_key, ["inbound"]
            digits = "".join(c for c in call.src if c.isdigit())
            number = self.settings.inbound_prefix + strip_number(
                digits, self.settings.strip_prefixes
            )
        if not number.isdigit():
            self._flag_unbilled(call, "number is not digits")
            self.refused[call.call_id] = "not_digits"
            return None
        auth, payer, pricing = self.engine.admit(payer_key, number, self.book)
        reason = auth.reason
        if blind and not auth.allowed and reason in HANG_UP_AT_DIAL:
            # It went through while nobody could refuse it: bill what really happens.
            log.warning("call %s let through while Redis was down: %s", call.call_id, reason)
            auth = dataclasses.replace(auth, allowed=True, seconds=0)
        if auth.allowed:
            self.billed[call.call_id] = Billed(
                payer, pricing, flags=flags, limited=auth.seconds >= 0, could_not_cut=blind
            )
            if blind:
                self.billed[call.call_id].flags.append(policy.FLAG)
            self.channels[call.call_id] = call.channel
            return None
        if call.ended_us is not None and reason in HANG_UP_AT_DIAL and payer and pricing:
            # A call that already happened (known only by its Cdr): nobody could stop it,
            # so what Asterisk says it talked is billed, and flagged with why it would
            # have been refused.
            self.billed[call.call_id] = Billed(
                payer, pricing, flags=[str(reason).lower()], could_not_cut=True
            )
            return None
        self.refused[call.call_id] = str(reason or "DENIED").lower()
        if reason == Deny.UNKNOWN_PAYER:
            log.info(
                "call %s from %r: no clid matches, recorded, not billed",
                call.call_id,
                call.payer_key,
            )
            if self.settings.unknown_payer == "hangup":
                return HangupRequest(call.channel, call.call_id, reason)
            return None
        if reason == Deny.NO_RATE:
            prepaid = self._any_prepaid(payer)
            if self.settings.no_rate == "hangup" or (
                self.settings.no_rate == "hangup-prepaid" and prepaid
            ):
                return HangupRequest(call.channel, call.call_id, reason)
            # Bill 0 at the customer level and flag the call for review.
            self.refused.pop(call.call_id, None)
            self.billed[call.call_id] = Billed(payer, pricing, flags=[*flags, "no_rate"])
            self.channels[call.call_id] = call.channel
            return None
        log.info("call %s from %s refused at dial: %s", call.call_id, call.payer_key, reason)
        return HangupRequest(call.channel, call.call_id, reason or "DENIED")

    def _is_inbound(self, call: Call) -> bool:
        """ASTERBILL_INBOUND=bill, the caller is no clid and the called channel is one."""
        if self.settings.inbound != "bill" or not call.dest_payer_key:
            return False
        if self.engine.find_payer(call.payer_key) is not None:
            return False  # a booth calling a booth: the caller pays, as always
        return self.engine.find_payer(call.dest_payer_key) is not None

    def refuse_unavailable(self, call: Call) -> HangupRequest:
        """Redis did not answer at dial and the policy refuses the call (terminate, or
        retry_and_terminate after its retries): hung up before answer, recorded at cost 0
        with the flag `credit_unavailable` when it ends."""
        self.refused[call.call_id] = policy.FLAG
        log.warning("call %s refused at dial: the credit store does not answer", call.call_id)
        return HangupRequest(call.channel, call.call_id, Deny.CREDIT_UNAVAILABLE)

    def answer_unavailable(self, call: Call) -> None:
        """Redis did not answer at answer: the step waits for Redis (the listener keeps it).
        A limited call has paid nothing yet: the policy cuts it at once (terminate) or after
        the retry window (retry_and_terminate); `continue` lets it talk, billed afterwards."""
        billed = self.billed.get(call.call_id)
        if billed is None or call.answered_us is None:
            return
        if self.failure.cuts:
            if billed.limited:
                self.paid_until[call.call_id] = call.answered_us // 1000 + self.failure.grace_ms
        else:
            self._mark_uncut(billed)

    def on_answered(self, call: Call) -> HangupRequest | None:
        billed = self.billed.get(call.call_id)
        if billed is None:
            return None
        step = self.engine.answer(
            call.call_id,
            billed.payer,
            billed.pricing,
            call.answered_us // 1000,
            meta=self._meta(call, billed),
        )
        if step.outcome == Outcome.ENDED:
            log.warning("call %s was ended (and settled) before: a replay, ignored", call.call_id)
            self._forget(call.call_id)
            self.refused[call.call_id] = REPLAYED  # its end changes nothing either
            return None
        billed.answered = True
        self.resellers[billed.payer.reseller_id] = (
            self.resellers.get(billed.payer.reseller_id, 0) + 1
        )
        if billed.limited and step.due_ms >= 0:
            self.paid_until[call.call_id] = step.due_ms
        else:
            self.paid_until.pop(call.call_id, None)
        if step.outcome == Outcome.HANGUP:
            log.warning("call %s cut at answer: %s", call.call_id, step.reason)
            if call.ended_us is not None:
                return None  # billed after its end (a step Redis could not take in time)
            return HangupRequest(call.channel, call.call_id, step.reason)
        return None

    def on_ended(self, call: Call) -> None:
        """The local state of the call is forgotten only after Redis took its end: when Redis
        fails here, the same step is applied again later and finds everything it needs."""
        billed = self.billed.get(call.call_id)
        if self.refused.get(call.call_id) == REPLAYED:
            self._forget(call.call_id)
            return
        if billed is None or not billed.answered:
            if self.settings.unanswered == "record":
                self._record_unpaid(call, billed, self.refused.get(call.call_id))
            self.unbilled_calls += 1
            self._forget(call.call_id)
            return
        reseller = billed.payer.reseller_id
        if self.clock.suspect(call.uniqueid) and "timestamp_replaced" not in billed.flags:
            billed.flags.append("timestamp_replaced")  # an Asterisk Timestamp was not believed
        mode = self.end_mode(call, billed)
        try:
            ended = self.engine.end(
                call.call_id,
                reseller,
                call.ended_us // 1000,
                call.billsec,
                meta=self._meta(call, billed),
                short_call_seconds=self.settings.short_call_seconds,
                mode=mode,
            )
        except CreditError as exc:
            if exc.code != "ERR_BAD_TIME":
                raise
            ended = self._end_within_bounds(call, billed, reseller)
        self._forget(call.call_id)
        self.resellers[reseller] -= 1
        if not self.resellers[reseller]:
            del self.resellers[reseller]
        self.to_settle.add(reseller)  # after the write: the job it asks for will see it
        log.info(
            "call %s ended: billsec %d, prices %d/%d/%d micro (%s)",
            call.call_id,
            call.billsec,
            ended.customer,
            ended.callshop,
            ended.reseller,
            ended.outcome,
        )

    def _forget(self, call_id: str) -> None:
        self.billed.pop(call_id, None)
        self.channels.pop(call_id, None)
        self.paid_until.pop(call_id, None)
        self.refused.pop(call_id, None)

    @staticmethod
    def end_mode(call: Call, billed: Billed) -> EndMode:
        """How far the end's billsec is believed at prepaid levels and deposits: an end not
        seen is an upper bound (never charged past what the call paid); a call that ran while
        nobody could cut it is billed for what really happened (flagged over_limit when it
        pushed a level over); otherwise never past a limit (lua/endCall-6.lua)."""
        if call.review in END_NOT_SEEN:
            return EndMode.ESTIMATED
        if billed.could_not_cut:
            return EndMode.REAL
        return EndMode.LIVE

    def _end_within_bounds(self, call: Call, billed: Billed, reseller: int):
        """The end script refused the times (e.g. an end before the answer Redis holds):
        end the call at the answer's own clock, with what the times allow, flagged; so one
        call's bad data never leaves it billing forever."""
        answer_ms = self.engine.answer_ms(reseller, call.call_id)
        end_ms = max(call.ended_us // 1000, answer_ms)
        billsec = min(call.billsec, (end_ms - answer_ms) // 1000, 31 * 24 * 3600)
        billed.flags.append("bad_time")
        log.error(
            "call %s: end refused (billsec %d, end %d, answer %d); ended with billsec %d",
            call.call_id,
            call.billsec,
            call.ended_us // 1000,
            answer_ms,
            billsec,
        )
        return self.engine.end(
            call.call_id,
            reseller,
            end_ms,
            billsec,
            meta=self._meta(call, billed),
            short_call_seconds=self.settings.short_call_seconds,
            mode=EndMode.ESTIMATED,
        )

    def orphans(self, live_uniqueids: set[str], known: set[str], now_ms: int) -> list[Call]:
        """After a (re)start: calls Redis is billing that this process does not follow.
        Those still up are adopted (returned, to be followed); the others ended while nobody
        listened: they end at the last sign of life of the listener that billed them (its
        heartbeat; they were known to run until then, and Asterisk's Cdr of their real end
        went to nobody), never later than now, and are flagged for review."""
        adopted = []
        last_alive = self.last_alive_ms()
        for reseller in self.engine.resellers_with_calls():
            for call_id, meta in self.engine.live_calls(reseller).items():
                if call_id in known:
                    continue
                info = json.loads(meta or "{}")
                answered_ms = self.engine.answer_ms(reseller, call_id)
                call = Call(
                    call_id=call_id,
                    channel=info.get("channel", ""),
                    linkedid=info.get("linkedid", ""),
                    payer_key="",
                    src=info.get("src", ""),
                    number=info.get("dst", ""),
                    accountcode=info.get("accountcode", ""),
                    dialed_us=info.get("dialed_us", 0),
                    answered_us=answered_ms * 1000,
                    dial_status="ANSWER",
                    dest_channel=info.get("dstchannel", ""),
                )
                if call_id not in self.billed:  # (not counted twice when a resync is retried)
                    self.resellers[reseller] = self.resellers.get(reseller, 0) + 1
                self.channels[call_id] = call.channel
                self.billed[call_id] = Billed(
                    self.engine.payer_of(reseller, call_id),
                    self.engine.pricing_of(reseller, call_id),
                    True,
                    could_not_cut=True,  # it ran while no listener could cut it
                )
                self.dialled[call_id] = reseller
                if call_id in live_uniqueids:
                    adopted.append(call)
                else:
                    until = min(now_ms, last_alive) if last_alive else now_ms
                    call.ended_us = max(until * 1000, call.answered_us)
                    call.review = "ended_while_listener_down"
                    self.on_ended(call)
                    self.closed(call)
        return adopted

    def heartbeat(self, now_ms: int) -> None:
        """The listener is alive and following its calls (read by the next one's orphans)."""
        self.engine.client.set(self._alive_key(), now_ms)

    def last_alive_ms(self) -> int:
        value = self.engine.client.get(self._alive_key())
        return int(value) if value else 0

    def _alive_key(self) -> str:
        return self.engine.keys.listener_heartbeat()

    def tick(self, now_ms: int) -> tuple[list[HangupRequest], int]:
        """Pay every boundary due before now + guard; the calls to cut; the next due time.

        `now_ms` and the due time returned are on the listener's clock; the due index is on
        Asterisk's (ami_listener/clock.py). While Redis does not answer, the calls are cut
        from the local paid-until table as the credit-failure policy says."""
        now_ast = self.clock.asterisk_ms(now_ms)
        hangups: list[HangupRequest] = []
        next_due = -1
        try:
            if not self.resellers and self.paid_until:
                self.engine.client.ping()  # only answers Redis could not take: is it back?
            for reseller in list(self.resellers):
                try:
                    batch = self.engine.extend_due(reseller, now_ast + self.settings.guard_ms, 5000)
                except CreditError as exc:
                    log.error("extend for reseller %d failed: %s", reseller, exc)
                    continue
                for call_id, due_ms in batch.dues.items():
                    if call_id in self.paid_until:
                        self.paid_until[call_id] = due_ms
                for cut in batch.cut:
                    self.paid_until.pop(cut.call_id, None)
                    channel = self.channels.get(cut.call_id)
                    log.warning(
                        "call %s must end before %d: %s",
                        cut.call_id,
                        cut.hangup_before_ms,
                        cut.reason,
                    )
                    if channel:
                        hangups.append(HangupRequest(channel, cut.call_id, cut.reason))
                if batch.next_due_ms >= 0 and (next_due < 0 or batch.next_due_ms < next_due):
                    next_due = batch.next_due_ms
        except policy.UNREACHABLE as exc:
            return hangups + self.cut_without_credit(now_ms, exc), self._next_local_cut()
        if self.credit_down_since_ms is not None:
            log.warning("the credit store answers again")
            self.credit_down_since_ms = None
        return hangups, (self.clock.local_ms(next_due) if next_due >= 0 else -1)

    def cut_without_credit(self, now_ms: int, why: Exception) -> list[HangupRequest]:
        """Redis does not answer: the limited calls whose paid time ends before now + guard
        are hung up (terminate, retry_and_terminate); with `continue` every live call runs
        on and is marked to be billed for what really happens."""
        if self.credit_down_since_ms is None:
            self.credit_down_since_ms = now_ms
            log.error("the credit store does not answer (%s): policy %s", why, self.failure)
        if not self.failure.cuts:
            for billed in self.billed.values():
                if billed.answered:
                    self._mark_uncut(billed)
            return []
        until = self.clock.asterisk_ms(now_ms) + self.settings.guard_ms
        hangups = []
        for call_id, due_ms in list(self.paid_until.items()):
            if due_ms <= until:
                del self.paid_until[call_id]
                channel = self.channels.get(call_id)
                log.warning("call %s cut at the end of what it paid: Redis is away", call_id)
                if channel:
                    hangups.append(HangupRequest(channel, call_id, Deny.CREDIT_UNAVAILABLE))
        return hangups

    def _next_local_cut(self) -> int:
        """The next local cut (listener's clock), -1: none."""
        if not self.paid_until or not self.failure.cuts:
            return -1
        return self.clock.local_ms(min(self.paid_until.values()))

    @staticmethod
    def _mark_uncut(billed: Billed) -> None:
        billed.could_not_cut = True
        if policy.FLAG not in billed.flags:
            billed.flags.append(policy.FLAG)

    def _record_unpaid(self, call: Call, billed: Billed | None, refused: str | None) -> None:
        """A CDR at cost 0 for settlement: who it was (when known), and why it cost nothing."""
        payer = billed.payer if billed else self.engine.find_payer(call.payer_key)
        flags = ([refused] if refused else []) + (billed.flags if billed else [])
        if call.answered_us is not None and not flags:
            flags.append("answered_not_billed")  # its answer step failed: a person must look
        meta = self._describe(
            call,
            flags,
            billed.pricing.customer.destination if billed else "",
            self._rated(call),
            billed.pricing if billed else None,
        )
        self.engine.record_unpaid(
            call.call_id,
            payer,
            call.dialed_us // 1000,
            (call.answered_us or 0) // 1000,
            (call.ended_us or call.dialed_us) // 1000,
            call.billsec,
            meta,
        )
        self.to_settle.add(payer.reseller_id if payer else 0)  # after the write: a job sees it

    def _any_prepaid(self, payer: Payer | None) -> bool:
        if payer is None:
            return False
        levels = (
            ("clid", payer.clid_id),
            ("group", payer.group_id),
            ("reseller", payer.reseller_id),
        )
        return any(
            self.engine.level(payer.reseller_id, name, level_id).limit_type == "prepaid"
            for name, level_id in levels
        )

    def _flag_unbilled(self, call: Call, why: str) -> None:
        log.warning("call %s not billed: %s", call.call_id, why)

    def _meta(self, call: Call, billed: Billed) -> str:
        return self._describe(
            call,
            billed.flags,
            billed.pricing.customer.destination,
            self._rated(call),
            billed.pricing,
        )

    def _rated(self, call: Call) -> str:
        """The number the rates are chosen by: as dialled, leading digits stripped."""
        return strip_number(call.number, self.settings.strip_prefixes)

    @staticmethod
    def _describe(
        call: Call,
        flags: list[str],
        destination: str,
        rated_number: str = "",
        pricing: Pricing | None = None,
    ) -> str:
        return json.dumps(
            {
                "uniqueid": call.call_id,
                # the rates that priced it (rating/memo.py) and the number they were chosen by
                "rated_number": rated_number,
                "rates": pricing_fields(pricing.levels()) if pricing else [],
                "linkedid": call.linkedid,
                "channel": call.channel,
                "dstchannel": call.dest_channel,
                "src": call.src,
                "dst": call.cdr_dst or call.number,  # as Asterisk's CDR (callback leg A)
                "accountcode": call.accountcode,
                "dialed_us": call.dialed_us,
                "disposition": call.disposition,
                "hangup_cause": call.hangup_cause,
                "hangup_cause_text": call.hangup_cause_text,
                "flags": flags + (["billsec_measured"] if _measured(call) else []),
                "review": call.review,
                "destination": destination,
                "duration": call.duration,
                "billsec_source": call.billsec_source,
            },
            separators=(",", ":"),
        )


def _measured(call: Call) -> bool:
    """An ended answered call whose billsec is the listener's own clock (no Cdr, no
    Timestamp headers): a person may want to compare it with Asterisk's CDR."""
    return call.ended_us is not None and call.billsec_source == "clock"
