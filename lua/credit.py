"""The credit engine's Python side: the only code that knows the credit scripts' keys,
arguments and result codes (lua/*Call-*.lua, extendDue-4.lua, creditOp-2.lua).

Time is an argument everywhere (milliseconds since the epoch), so tests stand exactly on a
block boundary. Money is integer micro-units.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from lua.keys import Keys
from lua.scripts import Scripts
from rating.book import RedisRateBook
from rating.price import Rate

NO_RATE = Rate(0, 0, 0, 0, 1)  # a level with no rate pays nothing (and the call is flagged)


class Deny(enum.StrEnum):
    UNKNOWN_PAYER = "UNKNOWN_PAYER"
    LOCKED = "LOCKED"
    NO_RATE = "NO_RATE"
    NO_CREDIT_CLID = "NO_CREDIT_CLID"
    NO_CREDIT_GROUP = "NO_CREDIT_GROUP"
    NO_CREDIT_RESELLER = "NO_CREDIT_RESELLER"
    DEPOSIT_REACHED = "DEPOSIT_REACHED"
    PRICE_OVERFLOW = "PRICE_OVERFLOW"
    # A level a call nobody could cut pushed past its limit (lua/endCall-6.lua, mode real):
    # no new call until a charge (a check-out, for the deposit) brings it back under.
    OVER_LIMIT_CLID = "OVER_LIMIT_CLID"
    OVER_LIMIT_GROUP = "OVER_LIMIT_GROUP"
    OVER_LIMIT_RESELLER = "OVER_LIMIT_RESELLER"
    DEPOSIT_EXCEEDED = "DEPOSIT_EXCEEDED"
    # Redis did not answer at dial and the credit-failure policy refuses the call
    # (ASTERBILL_CREDIT_FAILURE, ami_listener/policy.py).
    CREDIT_UNAVAILABLE = "CREDIT_UNAVAILABLE"


class EndMode(enum.StrEnum):
    """How far an end's billsec is believed at prepaid levels and deposits (endCall-6.lua)."""

    LIVE = "live"  # the end was seen while calls could be cut: never charge past a limit
    ESTIMATED = "estimated"  # the end was not seen: never charge past what the call paid
    REAL = "real"  # it talked past its paid time, nobody could cut: bill it, flag over_limit


DONE_KEEP_MS = 3 * 24 * 3600 * 1000  # how long a settled call's id refuses a replay


class Outcome(enum.StrEnum):
    OK = "OK"
    HANGUP = "HANGUP"
    ALREADY = "ALREADY"
    ENDED = "ENDED"
    STALE = "STALE"  # a credit operation older than the value Redis has: nothing changed


class CreditError(Exception):
    """A script refused broken input or state (an ERR_* reply, or Redis's own error such as
    WRONGTYPE); the scripts check everything before their first write, so nothing changed."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code} {detail}".strip())
        self.code = code


@dataclass(frozen=True)
class Payer:
    reseller_id: int
    group_id: int
    clid_id: int


@dataclass(frozen=True)
class Pricing:
    """The rate and billsec multiple (1e-4) of each level for one call."""

    customer: Rate
    callshop: Rate
    reseller: Rate
    customer_multiple: int = 10_000
    callshop_multiple: int = 10_000
    reseller_multiple: int = 10_000

    def args(self) -> list[int]:
        out: list[int] = []
        for rate, multiple in (
            (self.customer, self.customer_multiple),
            (self.callshop, self.callshop_multiple),
            (self.reseller, self.reseller_multiple),
        ):
            out += [rate.id, rate.connect, rate.initblock, rate.per_minute, rate.block, multiple]
        return out

    def levels(self) -> list[tuple[Rate, int]]:
        """(rate, multiple) of the customer, callshop and reseller levels."""
        return [
            (self.customer, self.customer_multiple),
            (self.callshop, self.callshop_multiple),
            (self.reseller, self.reseller_multiple),
        ]


@dataclass(frozen=True)
class Authorization:
    allowed: bool
    seconds: int = -1  # what the prepaid levels and the deposit can pay; -1 = no limit
    reason: Deny | None = None


@dataclass(frozen=True)
class Step:
    """The answer of answer / extend: paid (OK), cut (HANGUP), or nothing to do."""

    outcome: Outcome
    due_ms: int = -1  # next boundary (OK, ALREADY) or the moment to hang up before (HANGUP)
    reason: str = ""


@dataclass(frozen=True)
class Cut:
    call_id: str
    hangup_before_ms: int
    reason: str


@dataclass(frozen=True)
class DueBatch:
    paid: int
    next_due_ms: int  # -1: nothing left in the index
    cut: list[Cut]
    dues: dict[str, int] = field(default_factory=dict)  # call id -> its new due time (ms)


@dataclass(frozen=True)
class Ended:
    outcome: Outcome
    customer: int
    callshop: int
    reseller: int


@dataclass(frozen=True)
class LevelState:
    limit: int
    used: int
    limit_type: str
    totals: tuple[int, int, int]
    unbilled: int = 0
    deposit: int | None = None
    locked: bool = False

    @property
    def available(self) -> int:
        return self.limit - self.used


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_call_state(value) -> list[int]:
    """A `{rR}:calls` value (README, Redis keys): its changing part (clid, group, answer_ms,
    status, paid and covered per level) followed by its constant part (rates, multiples)."""
    dynamic, _, static = _text(value).partition(";")
    return [int(x) for x in dynamic.split(",") + static.split(",")]


def _call(script, keys, args, client=None):
    try:
        return script(keys=keys, args=args, client=client)
    except redis.ResponseError as exc:
        # ERR_* from our scripts; WRONGTYPE etc. from Redis when a key holds the wrong type.
        code, _, detail = str(exc).partition(" ")
        raise CreditError(code, detail) from None


class CreditEngine:
    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts | None = None) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts or Scripts(client)

    def _answer_keys(self, reseller_id: int) -> list[str]:
        """The keys of answerCall-6 and endCall-6."""
        k = self.keys
        return [*self._call_keys(reseller_id), k.meta(reseller_id), k.done(reseller_id)]

    def _call_keys(self, reseller_id: int) -> list[str]:
        k = self.keys
        return [
            k.balances(reseller_id),
            k.calls(reseller_id),
            k.due(reseller_id),
            k.ended(reseller_id),
        ]

    # -- configuration (written by the admin / seed; read by the scripts) ----------------
    def provision(
        self,
        payer: Payer,
        *,
        limits: dict[str, tuple[str, int]] | None = None,
        payer_key: str | None = None,
        locked: bool = False,
        deposit: int | None = None,
        multiples: tuple[int, int, int] = (10_000, 10_000, 10_000),
        used: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        """Create the three levels of a payer if missing, and set their configuration.

        `limits` maps "clid" / "group" / "reseller" to (limit type, credit limit);
        `multiples` are the group's customer and callshop multiples and the reseller's
        multiple, in 1e-4. Balances are created (used from `used`: clid, group, reseller, as
        MySQL has them; unbilled and totals at 0) and never overwritten here."""
        key = self.keys.balances(payer.reseller_id)
        prefixes = {
            "clid": f"c{payer.clid_id}",
            "group": f"g{payer.group_id}",
            "reseller": f"r{payer.reseller_id}",
        }
        pipe = self.client.pipeline(transaction=True)
        for name, prefix in prefixes.items():
            limit_type, limit = (limits or {}).get(name, ("none", 0))
            pipe.hset(key, mapping={f"{prefix}.type": limit_type, f"{prefix}.limit": limit})
            pipe.hsetnx(key, f"{prefix}.used", used[list(prefixes).index(name)])
            for attr in ("tot_c", "tot_g", "tot_r"):
                pipe.hsetnx(key, f"{prefix}.{attr}", 0)
        pipe.hsetnx(key, f"c{payer.clid_id}.unbilled", 0)
        pipe.hset(
            key,
            mapping={
                f"g{payer.group_id}.cmul": multiples[0],
                f"g{payer.group_id}.gmul": multiples[1],
                f"r{payer.reseller_id}.mul": multiples[2],
            },
        )
        pipe.hset(key, f"c{payer.clid_id}.locked", int(locked))
        if deposit is None:
            pipe.hdel(key, f"c{payer.clid_id}.deposit")
        else:
            pipe.hset(key, f"c{payer.clid_id}.deposit", deposit)
        if payer_key is not None:
            pipe.hset(
                self.keys.payers(),
                payer_key,
                f"{payer.reseller_id}|{payer.group_id}|{payer.clid_id}",
            )
        pipe.execute()

    def forget_payer(self, payer_key: str) -> None:
        """A booth deleted or renumbered: its old number no longer finds a payer."""
        self.client.hdel(self.keys.payers(), payer_key)

    def find_payer(self, payer_key: str) -> Payer | None:
        value = self.client.hget(self.keys.payers(), payer_key)
        if value is None:
            return None
        r, g, c = (int(x) for x in _text(value).split("|"))
        return Payer(r, g, c)

    def pricing(self, payer: Payer, rates: dict[str, Rate | None]) -> Pricing:
        """The call's pricing: the rates found for it and the payer's billsec multiples."""
        cmul, gmul, rmul = self.client.hmget(
            self.keys.balances(payer.reseller_id),
            [f"g{payer.group_id}.cmul", f"g{payer.group_id}.gmul", f"r{payer.reseller_id}.mul"],
        )
        return Pricing(
            rates["customer"] or NO_RATE,
            rates["callshop"] or NO_RATE,
            rates["reseller"] or NO_RATE,
            int(cmul or 10_000),
            int(gmul or 10_000),
            int(rmul or 10_000),
        )

    def admit(
        self, payer_key: str, number: str, book: RedisRateBook
    ) -> tuple[Authorization, Payer | None, Pricing | None]:
        """At dial: who pays (UNKNOWN_PAYER), which rates apply (NO_RATE when the customer
        table has none), and may the call start (the authorize script)."""
        payer = self.find_payer(payer_key)
        if payer is None:
            return Authorization(False, reason=Deny.UNKNOWN_PAYER), None, None
        rates = book.lookup(number, payer.reseller_id, payer.group_id)
        pricing = self.pricing(payer, rates)
        if rates["customer"] is None:
            return Authorization(False, reason=Deny.NO_RATE), payer, pricing
        return self.authorize(payer, pricing), payer, pricing

    # -- the call's life ---------------------------------------------------------------
    def authorize(self, payer: Payer, pricing: Pricing) -> Authorization:
        reply = _call(
            self.scripts.authorize_call,
            [self.keys.balances(payer.reseller_id)],
            [payer.reseller_id, payer.clid_id, payer.group_id, *pricing.args()],
        )
        if _text(reply[0]) == "ALLOW":
            return Authorization(True, int(reply[1]))
        return Authorization(False, reason=Deny(_text(reply[1])))

    def answer(
        self, call_id: str, payer: Payer, pricing: Pricing, answer_ms: int, meta: str = ""
    ) -> Step:
        reply = _call(
            self.scripts.answer_call,
            self._answer_keys(payer.reseller_id),
            [
                payer.reseller_id,
                call_id,
                payer.clid_id,
                payer.group_id,
                answer_ms,
                *pricing.args(),
                meta,
            ],
        )
        return self._step(reply)

    def extend(self, call_id: str, reseller_id: int, boundary: int) -> Step:
        reply = _call(
            self.scripts.extend_call, self._call_keys(reseller_id), [reseller_id, call_id, boundary]
        )
        return self._step(reply)

    def extend_due(
        self, reseller_id: int, until_ms: int, limit: int = 1000, per_call: int = 300
    ) -> DueBatch:
        """`per_call`: at most this many boundaries of one call in this run (a call with a
        huge backlog never takes the run from the others; the rest is paid next run)."""
        reply = _call(
            self.scripts.extend_due,
            self._call_keys(reseller_id),
            [reseller_id, until_ms, limit, per_call],
        )
        after_cuts = 3 + 3 * int(reply[2])
        cut = [
            Cut(_text(reply[i]), int(reply[i + 1]), _text(reply[i + 2]))
            for i in range(3, after_cuts, 3)
        ]
        dues = {_text(reply[i + 1]): int(reply[i]) for i in range(after_cuts, len(reply), 2)}
        return DueBatch(int(reply[0]), int(reply[1]), cut, dues)

    def end(
        self,
        call_id: str,
        reseller_id: int,
        end_ms: int,
        billsec: int,
        meta: str = "",
        short_call_seconds: int = 0,
        mode: EndMode = EndMode.LIVE,
    ) -> Ended:
        """`short_call_seconds`: answered calls this short cost the customer nothing.
        `mode`: how far `billsec` is believed at prepaid levels and deposits (EndMode).
        Outcome ENDED (prices 0): the call was ended and settled before, nothing changed."""
        reply = _call(
            self.scripts.end_call,
            self._answer_keys(reseller_id),
            [reseller_id, call_id, end_ms, billsec, meta, short_call_seconds, mode, DONE_KEEP_MS],
        )
        return Ended(Outcome(_text(reply[0])), int(reply[1]), int(reply[2]), int(reply[3]))

    def record_unpaid(
        self,
        call_id: str,
        payer: Payer | None,
        dialed_ms: int,
        answer_ms: int,
        end_ms: int,
        billsec: int,
        meta: str,
    ) -> bool:
        """An ended call nobody pays for (unanswered, refused, unknown payer) waits for
        settlement beside the paid ones, at cost 0: the end script's `ended` record format,
        answer time 0 when unanswered. An unknown payer is filed under tag 0. Never
        overwrites a record (a replayed hangup); returns whether it was written."""
        payer = payer or Payer(0, 0, 0)
        end_ms = max(end_ms, dialed_ms)
        record = f"{payer.clid_id},{payer.group_id},{answer_ms},{end_ms},{billsec},0,0,0,0,0,0,0"
        pipe = self.client.pipeline(transaction=True)
        pipe.hsetnx(self.keys.ended(payer.reseller_id), call_id, record)
        pipe.hsetnx(self.keys.meta(payer.reseller_id), call_id, meta)
        done = self.keys.done(payer.reseller_id)
        pipe.zadd(done, {call_id: end_ms}, nx=True)  # a replay of its answer is refused
        pipe.zremrangebyscore(done, "-inf", f"({end_ms - DONE_KEEP_MS}")
        return bool(pipe.execute()[0])

    @staticmethod
    def _step(reply: Sequence) -> Step:
        outcome = Outcome(_text(reply[0]))
        reason = _text(reply[2]) if len(reply) > 2 else ""
        return Step(outcome, int(reply[1]), reason)

    @staticmethod
    def boundary_of(step: Step, answer_ms: int) -> int:
        """The billsec a due time stands for (due = answer + boundary x 1000)."""
        return (step.due_ms - answer_ms) // 1000

    # -- credit operations -------------------------------------------------------------
    def credit_op(
        self,
        reseller_id: int,
        op_id: str,
        kind: str,
        level: str,
        level_id: int,
        value: int | str = "",
        version: int | None = None,
    ) -> tuple[Outcome, int]:
        """Apply one credit operation once; level is "clid", "group" or "reseller".
        `version` (the MySQL row id): an absolute operation older than the last one applied
        to the same attribute changes nothing (Outcome.STALE)."""
        prefix = {"clid": "c", "group": "g", "reseller": "r"}[level] + str(level_id)
        args = [op_id, kind, prefix, value] + ([] if version is None else [version])
        reply = _call(
            self.scripts.credit_op,
            [self.keys.balances(reseller_id), self.keys.applied_ops(reseller_id)],
            args,
        )
        return Outcome(_text(reply[0])), int(reply[1])

    def correct_call(
        self,
        op_id: str,
        payer: Payer,
        change: tuple[int, int, int],
        unbilled: bool,
    ) -> str:
        """A settled call's prices changed by `change` (customer, callshop, reseller, signed
        micro-units): the levels' lifetime totals and, while `unbilled`, the booth's unbilled
        amount follow, once per op id (lua/correctCall-2.lua). "OK" or "ALREADY"."""
        reply = _call(
            self.scripts.correct_call,
            [self.keys.balances(payer.reseller_id), self.keys.applied_ops(payer.reseller_id)],
            [
                op_id,
                f"c{payer.clid_id}",
                f"g{payer.group_id}",
                f"r{payer.reseller_id}",
                *change,
                1 if unbilled else 0,
            ],
        )
        return _text(reply)

    # -- reading -----------------------------------------------------------------------
    def level(self, reseller_id: int, level: str, level_id: int) -> LevelState:
        prefix = {"clid": "c", "group": "g", "reseller": "r"}[level] + str(level_id)
        attrs = (
            "limit",
            "used",
            "type",
            "tot_c",
            "tot_g",
            "tot_r",
            "unbilled",
            "deposit",
            "locked",
        )
        values = self.client.hmget(
            self.keys.balances(reseller_id), [f"{prefix}.{a}" for a in attrs]
        )
        if values[2] is None:
            raise CreditError("ERR_UNKNOWN_LEVEL", prefix)
        v = [None if x is None else _text(x) for x in values]
        return LevelState(
            int(v[0] or 0),
            int(v[1] or 0),
            v[2],
            (int(v[3] or 0), int(v[4] or 0), int(v[5] or 0)),
            int(v[6] or 0),
            None if v[7] is None else int(v[7]),
            v[8] == "1",
        )

    def resellers_with_calls(self, kind: str = "calls") -> list[int]:
        """Reseller ids whose tag has live (`calls`) or unsettled (`ended`) calls. SCAN: for
        start-up, resync and settlement sweeps, never on the per-call path."""
        pattern = f"{self.keys.prefix}:{{r*}}:{kind}"
        out = []
        for key in self.client.scan_iter(match=pattern, count=1000):
            tag = _text(key)[len(self.keys.prefix) + 3 :].split("}", 1)[0]
            if tag.isdigit():
                out.append(int(tag))
        return sorted(out)

    def live_calls(self, reseller_id: int) -> dict[str, str]:
        """Call id -> meta text of every call Redis is billing under this tag."""
        ids = [_text(k) for k in self.client.hkeys(self.keys.calls(reseller_id))]
        metas = self.client.hmget(self.keys.meta(reseller_id), ids) if ids else []
        return {i: (_text(m) if m is not None else "") for i, m in zip(ids, metas, strict=True)}

    def _state(self, reseller_id: int, call_id: str) -> list[int]:
        value = self.client.hget(self.keys.calls(reseller_id), call_id)
        if value is None:
            raise CreditError("ERR_UNKNOWN_CALL", call_id)
        return parse_call_state(value)

    def answer_ms(self, reseller_id: int, call_id: str) -> int:
        return int(self._state(reseller_id, call_id)[2])

    def payer_of(self, reseller_id: int, call_id: str) -> Payer:
        v = self._state(reseller_id, call_id)
        return Payer(reseller_id, int(v[1]), int(v[0]))

    def pricing_of(self, reseller_id: int, call_id: str) -> Pricing:
        v = self._state(reseller_id, call_id)[10:]
        rates = [Rate(v[o], v[o + 1], v[o + 2], v[o + 3], v[o + 4]) for o in (0, 6, 12)]
        return Pricing(*rates, v[5], v[11], v[17])

    def running_cost(self, reseller_id: int, call_id: str) -> tuple[int, int, int] | None:
        """What the call has paid so far at clid, group and reseller level."""
        value = self.client.hget(self.keys.calls(reseller_id), call_id)
        if value is None:
            return None
        v = parse_call_state(value)
        return v[4], v[6], v[8]

    def paid_by_live_calls(self, reseller_id: int) -> list[tuple[int, int, tuple[int, ...]]]:
        """(clid id, group id, paid at clid / group / reseller) of every running call."""
        out = []
        for value in self.client.hvals(self.keys.calls(reseller_id)):
            v = parse_call_state(value)
            out.append((v[0], v[1], (v[4], v[6], v[8])))
        return out
