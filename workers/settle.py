"""Settlement: write ended calls from Redis into MySQL, exactly once in effect.

One transaction per batch writes every CDR (unique on uniqueid + leg) and adds each call's
three prices to curcredit and to the lifetime totals of its clid, group and reseller. A call
whose CDR is already in MySQL is skipped (a replayed job, or another worker that got there
first), so delivering a call twice changes nothing. Only after the commit are the calls
removed from Redis's `ended` and `meta` hashes: a crash in between leaves them there, and the
next run finds their CDRs and only removes them.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import case, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from lua.credit import CreditEngine
from rating.money import from_micros
from schema import AccountGroup, Cdr, Clid, Reseller

log = logging.getLogger("asterbill.settle")
LEG = "booth"


@dataclass(frozen=True)
class EndedCall:
    """An ended record of Redis (`{rR}:ended`) with its meta text, parsed."""

    call_id: str
    reseller_id: int
    clid_id: int
    group_id: int
    answer_ms: int
    end_ms: int
    billsec: int
    prices: tuple[int, int, int]  # customer, callshop, reseller, micro-units
    rate_ids: tuple[int, int, int]
    cut: bool
    meta: dict

    @property
    def answered(self) -> bool:
        return self.answer_ms > 0

    @classmethod
    def parse(cls, call_id: str, reseller_id: int, record: str, meta: str | None) -> EndedCall:
        v = [int(x) for x in record.split(",")]
        return cls(
            call_id,
            reseller_id,
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            (v[5], v[6], v[7]),
            (v[8], v[9], v[10]),
            v[11] == 1,
            json.loads(meta) if meta else {},
        )


@dataclass
class SettleReport:
    written: int = 0
    already: int = 0


def read_ended(engine: CreditEngine, reseller_id: int, limit: int | None = 1000) -> list[EndedCall]:
    """Up to `limit` (None: all) ended calls of one reseller tag, waiting for settlement."""
    client, keys = engine.client, engine.keys
    ids = []
    for key in client.hscan_iter(keys.ended(reseller_id), count=limit or 1000):
        ids.append(key[0].decode() if isinstance(key[0], bytes) else key[0])
        if limit is not None and len(ids) >= limit:
            break
    if not ids:
        return []
    records = client.hmget(keys.ended(reseller_id), ids)
    metas = client.hmget(keys.meta(reseller_id), ids)
    return [
        EndedCall.parse(i, reseller_id, r.decode(), m.decode() if m else None)
        for i, r, m in zip(ids, records, metas, strict=True)
        if r is not None
    ]


def settle(session: Session, calls: list[EndedCall]) -> SettleReport:
    """Write the CDRs and balances of `calls` in the caller's transaction (commit after)."""
    report = SettleReport()
    if not calls:
        return report
    ids = [c.call_id for c in calls]
    # A plain read, no locking read: SELECT ... FOR UPDATE of keys that do not exist yet
    # takes gap locks, and two workers inserting into each other's gaps deadlock (measured:
    # two workers were 4x slower than one). The unique key (uniqueid, leg) is the guard: a
    # worker racing another on the same calls fails on it, rolls back, retries, and then
    # finds them here.
    existing = settled_ids(session, ids)
    fresh = [c for c in calls if c.call_id not in existing]
    report.already = len(calls) - len(fresh)
    if not fresh:
        return report
    session.execute(insert(Cdr.__table__), [cdr_row(c) for c in fresh])
    add_to_balances(session, fresh)
    report.written = len(fresh)
    return report


def cdr_row(c: EndedCall) -> dict:
    m = c.meta
    dialed = dialed_ms(m, c)
    flags = list(m.get("flags", [])) + ([m["review"]] if m.get("review") else [])
    return {
        "uniqueid": split_call_id(c.call_id)[0],
        "leg": split_call_id(c.call_id)[1],
        "linkedid": m.get("linkedid", ""),
        "calldate": _at(dialed),
        "answered_at": _at(c.answer_ms) if c.answered else None,
        "ended_at": _at(c.end_ms),
        "src": m.get("src", ""),
        "dst": m.get("dst", ""),
        "channel": m.get("channel", ""),
        "dstchannel": m.get("dstchannel", ""),
        "accountcode": m.get("accountcode", ""),
        # 0: the payer is unknown (recorded, not billed)
        "clid_id": c.clid_id or None,
        "group_id": c.group_id or None,
        "reseller_id": c.reseller_id or None,
        # Asterisk's own duration (from the channel's creation) when the listener has it
        "duration": m["duration"]
        if isinstance(m.get("duration"), int)
        else max(0, (c.end_ms - dialed) // 1000),
        "billsec": c.billsec,
        "disposition": "ANSWERED" if c.answered else (m.get("disposition") or "FAILED"),
        "hangup_cause": m.get("hangup_cause"),
        "hangup_cause_text": (m.get("hangup_cause_text") or "")[:64],
        "destination": (m.get("destination") or "")[:100],
        "customer_rate_id": c.rate_ids[0] or None,
        "callshop_rate_id": c.rate_ids[1] or None,
        "reseller_rate_id": c.rate_ids[2] or None,
        "credit": from_micros(c.prices[0]),
        "callshop_credit": from_micros(c.prices[1]),
        "reseller_credit": from_micros(c.prices[2]),
        "review_reason": ",".join(flags)[:64],
        "settled_at": datetime.now(UTC).replace(tzinfo=None),
    }


def split_call_id(call_id: str) -> tuple[str, str]:
    """A call id is the channel's uniqueid, plus `:a` / `:b` for a callback's legs: the
    CDR's (uniqueid, leg)."""
    uniqueid, _, leg = call_id.partition(":")
    return uniqueid, leg or LEG


def settled_ids(session: Session, call_ids: list[str]) -> set[str]:
    """Those of `call_ids` whose CDR is already in MySQL."""
    wanted = set(call_ids)
    rows = session.execute(
        select(Cdr.uniqueid, Cdr.leg).where(
            Cdr.uniqueid.in_({split_call_id(i)[0] for i in call_ids})
        )
    )
    found = {u if leg == LEG else f"{u}:{leg}" for u, leg in rows}
    return found & wanted


def dialed_ms(meta: dict, c: EndedCall) -> int:
    return int(meta.get("dialed_us") or (c.answer_ms or c.end_ms) * 1000) // 1000


def add_to_balances(session: Session, calls: list[EndedCall]) -> None:
    """curcredit += the level's own price; credit_* += all three prices, per level.

    One UPDATE per table for the whole batch (a CASE on the id), not one per level: a batch
    of 2,000 calls over 200 booths is 3 statements, not 211."""
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for c in calls:
        if not any(c.prices):
            continue  # unanswered or free: nothing to add
        for level in ((Clid, c.clid_id), (AccountGroup, c.group_id), (Reseller, c.reseller_id)):
            total = sums[level]
            for i in range(3):
                total[i] += c.prices[i]
    own = {Clid: 0, AccountGroup: 1, Reseller: 2}
    for model in (Clid, AccountGroup, Reseller):
        rows = {level_id: v for (m, level_id), v in sums.items() if m is model}
        if not rows:
            continue

        def added(index: int, rows=rows, model=model):
            amounts = {i: from_micros(v[index]) for i, v in rows.items()}
            return case(amounts, value=model.id, else_=Decimal(0))

        session.execute(
            update(model)
            .where(model.id.in_(sorted(rows)))
            .values(
                curcredit=model.curcredit + added(own[model]),
                credit_clid=model.credit_clid + added(0),
                credit_group=model.credit_group + added(1),
                credit_reseller=model.credit_reseller + added(2),
            )
            .execution_options(synchronize_session=False)
        )


def forget_settled(engine: CreditEngine, reseller_id: int, call_ids: list[str]) -> None:
    """After the commit: the calls are in MySQL; Redis no longer needs to keep them."""
    if call_ids:
        pipe = engine.client.pipeline(transaction=True)
        pipe.hdel(engine.keys.ended(reseller_id), *call_ids)
        pipe.hdel(engine.keys.meta(reseller_id), *call_ids)
        pipe.execute()


def settle_pending(
    factory, engine: CreditEngine, reseller_id: int, limit: int = 1000, attempts: int = 3
) -> SettleReport:
    """One batch: read from Redis, write to MySQL in one transaction, then forget in Redis.

    Two workers on the same calls: one commits, the other fails on the unique key (or is
    chosen as a deadlock victim), rolls back, and on its next attempt finds the CDRs."""
    calls = read_ended(engine, reseller_id, limit)
    for attempt in range(1, attempts + 1):
        try:
            with factory() as session, session.begin():
                if session.get_bind().dialect.name == "mysql":
                    # READ COMMITTED: an UPDATE that scans the booth table keeps no lock on
                    # the rows it does not change, so workers of different resellers never
                    # wait for (or deadlock with) each other. The unique key and the atomic
                    # `+=` updates keep the result exact in any isolation level.
                    session.connection(execution_options={"isolation_level": "READ COMMITTED"})
                report = settle(session, calls)
            break
        except (IntegrityError, OperationalError) as exc:
            if attempt == attempts:
                raise
            log.warning(
                "settlement of %d calls retried (%s)", len(calls), str(exc.orig).splitlines()[0]
            )
    forget_settled(engine, reseller_id, [c.call_id for c in calls])
    if calls:
        log.info(
            "reseller %d: %d CDRs written, %d already settled",
            reseller_id,
            report.written,
            report.already,
        )
    return report


def _at(ms: int) -> datetime:
    """Milliseconds since the epoch as a naive UTC datetime, exactly."""
    return EPOCH + timedelta(milliseconds=ms)


EPOCH = datetime(1970, 1, 1)


def settle_all(factory, engine: CreditEngine, limit: int = 1000) -> SettleReport:
    """Settle every reseller's ended calls until none is waiting."""
    total = SettleReport()
    for reseller_id in engine.resellers_with_calls("ended"):
        while True:
            report = settle_pending(factory, engine, reseller_id, limit)
            total.written += report.written
            total.already += report.already
            if report.written + report.already < limit:
                break
    return total
