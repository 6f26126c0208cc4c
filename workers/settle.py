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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import case, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import Session

from lua.credit import CreditEngine
from rating.money import from_micros, stored_micros
from schema import AccountGroup, Cdr, Clid, DeadLetter, Reseller
from workers.bounds import UnwritableCall, bounded, call_key, raw_text
from workers.rollup import add_cdrs

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
    raw_record: str = ""  # as Redis had them: kept by a dead letter
    raw_meta: str = ""
    problem: str = ""  # why it cannot be read (a dead letter then)

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
            record,
            meta or "",
        )

    @classmethod
    def read(cls, call_id: str, reseller_id: int, record: str, meta: str | None) -> EndedCall:
        """`parse`, but a record or meta that cannot be read gives a call with a `problem`
        (a dead letter) instead of an error that would stop the whole batch."""
        try:
            call = cls.parse(call_id, reseller_id, record, meta)
            if not isinstance(call.meta, dict):
                raise ValueError("meta is not a JSON object")
            return call
        except (ValueError, IndexError, TypeError, RecursionError) as exc:
            problem = f"unreadable record: {type(exc).__name__}: {exc}"
        try:
            call = cls.parse(call_id, reseller_id, record, None)  # the prices, if readable
        except (ValueError, IndexError):
            call = cls(call_id, reseller_id, 0, 0, 0, 0, 0, (0, 0, 0), (0, 0, 0), False, {})
        return replace(call, raw_record=record, raw_meta=meta or "", problem=problem)


@dataclass
class SettleReport:
    written: int = 0
    already: int = 0
    dead: int = 0  # dead letters written (counted in `written` too: they left Redis)


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
        EndedCall.read(i, reseller_id, r.decode(), m.decode() if m else None)
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
    add_rate_memos(session, calls)
    fresh = [c for c in calls if c.call_id not in existing]
    report.already = len(calls) - len(fresh)
    # A second, different record of a settled call (Redis lost the end with the last second
    # of its append-only file and billed the call on): Redis charged its prices, so they are
    # kept as a dead letter for review instead of vanishing from the ledger.
    second = differing_records(session, [c for c in calls if c.call_id in existing])
    if second:
        write_dead_letters(session, second, key=second_key)
        add_to_balances(session, [c for c, _ in second])
        report.dead += len(second)
    if not fresh:
        return report
    rows, dead = [], []
    for c in fresh:
        try:
            if c.problem:
                raise UnwritableCall(c.problem)
            rows.append(bounded(cdr_row(c)))
        except (ValueError, OverflowError, TypeError, KeyError) as exc:
            dead.append((c, f"{type(exc).__name__}: {exc}"))
    if rows:
        session.execute(insert(Cdr.__table__), rows)
        add_cdrs(session, rows)  # the report rollup, same transaction
    if dead:
        write_dead_letters(session, dead)
    add_to_balances(session, fresh)
    report.written = len(fresh)
    report.dead = len(dead)
    return report


def differing_records(session: Session, calls: list[EndedCall]) -> list[tuple[EndedCall, str]]:
    """Those of `calls` (all settled before) whose prices differ from their CDR's, with
    the reason; a record already kept as a dead letter is not kept twice."""
    if not calls:
        return []
    cdrs = {
        (u if leg == LEG else f"{u}:{leg}"): (billsec, prices)
        for u, leg, billsec, *prices in session.execute(
            select(
                Cdr.uniqueid,
                Cdr.leg,
                Cdr.billsec,
                Cdr.credit,
                Cdr.callshop_credit,
                Cdr.reseller_credit,
            ).where(Cdr.uniqueid.in_({split_call_id(c.call_id)[0] for c in calls}))
        )
    }
    out = []
    for c in calls:
        if c.call_id not in cdrs:
            continue  # a dead letter already
        billsec, prices = cdrs[c.call_id]
        if [stored_micros(p) for p in prices] == list(c.prices):
            continue  # the same call again: nothing to add
        out.append(
            (
                c,
                f"second record of a settled call: its CDR has billsec {billsec}, prices "
                f"{'/'.join(str(p) for p in prices)}; this one billsec {c.billsec}, prices "
                f"{'/'.join(str(from_micros(p)) for p in c.prices)} (charged live by Redis)",
            )
        )
    keys = {second_key(c): (c, why) for c, why in out}
    if keys:
        kept = set(
            session.scalars(select(DeadLetter.call_key).where(DeadLetter.call_key.in_(keys)))
        )
        out = [v for k, v in keys.items() if k not in kept]
    return out


def second_key(c: EndedCall) -> str:
    """A second record's dead-letter key: the call id and the record (a replay of the same
    record is the same dead letter)."""
    return call_key(f"{c.call_id}\n{c.raw_record}")


def write_dead_letters(session: Session, dead: list[tuple[EndedCall, str]], key=None) -> None:
    """Calls that cannot be CDRs: their raw data and error, flagged for review. Their
    prices go to the balances with the batch (Redis charged them live)."""
    for c, error in dead:
        log.error("call %.80s of reseller %d is a dead letter: %s", c.call_id, c.reseller_id, error)
    session.execute(
        insert(DeadLetter.__table__),
        [
            {
                "call_key": (key or (lambda c: call_key(c.call_id)))(c),
                "call_id": c.call_id[:255],
                "reseller_id": c.reseller_id or None,
                "group_id": c.group_id or None,
                "clid_id": c.clid_id or None,
                "credit": from_micros(c.prices[0]),
                "callshop_credit": from_micros(c.prices[1]),
                "reseller_credit": from_micros(c.prices[2]),
                "raw_record": raw_text(c.raw_record),
                "raw_meta": raw_text(c.raw_meta),
                "error": raw_text(error),
                "needs_review": True,
                "created_at": datetime.now(UTC).replace(tzinfo=None),
            }
            for c, error in dead
        ],
    )


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
        "rated_number": str(m.get("rated_number") or "")[:80],
        "rate_memo": m.get("rate_memo", ""),  # add_rate_memos
        "customer_rate_id": c.rate_ids[0] or None,
        "callshop_rate_id": c.rate_ids[1] or None,
        "reseller_rate_id": c.rate_ids[2] or None,
        "credit": from_micros(c.prices[0]),
        "callshop_credit": from_micros(c.prices[1]),
        "reseller_credit": from_micros(c.prices[2]),
        "review_reason": ",".join(flags)[:64],
        "settled_at": datetime.now(UTC).replace(tzinfo=None),
    }


def add_rate_memos(session: Session, calls: list[EndedCall]) -> None:
    """Each call's meta gets its `rate_memo` (rating/memo.py): the rates the listener
    priced it with (meta `rates`), each with the dial prefix of its row (the listener knows
    the numbers, not the prefix they were found by), only for the levels a rate priced (the
    ended record's rate ids: unpaid calls have none). One query per rate table per batch."""
    from rating.memo import rate_memo, with_prefix
    from rating.store import MODELS  # the SQL rate models

    for index, model in enumerate(MODELS.values()):
        ids = {c.rate_ids[index] for c in calls if c.rate_ids[index]}
        if not ids:
            continue
        query = select(model.id, model.dialprefix).where(model.id.in_(ids))
        found = {rate_id: prefix for rate_id, prefix in session.execute(query)}
        for c in calls:
            with_prefix(c.meta, index, found.get(c.rate_ids[index]))
    for c in calls:
        if isinstance(c.meta, dict):
            rates = c.meta.get("rates") or []
            priced = [r if i else None for r, i in zip(rates, c.rate_ids, strict=False)]
            c.meta["rate_memo"] = rate_memo(priced)


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
    by_key = {call_key(i): i for i in call_ids}
    found |= {
        by_key[k]
        for k in session.scalars(select(DeadLetter.call_key).where(DeadLetter.call_key.in_(by_key)))
    }
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
        except (DBAPIError, StatementError) as exc:
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                raise
            # MySQL refused something of one call the bounds did not foresee: settle the
            # calls one by one, so only that call becomes a dead letter.
            log.warning("batch of %d calls refused (%s): one by one", len(calls), _first(exc))
            report = settle_one_by_one(factory, calls)
            break
    forget_settled(engine, reseller_id, [c.call_id for c in calls])
    if calls:
        log.info(
            "reseller %d: %d CDRs written, %d already settled%s",
            reseller_id,
            report.written - report.dead,
            report.already,
            f", {report.dead} dead letter(s)" if report.dead else "",
        )
    return report


def settle_one_by_one(factory, calls: list[EndedCall]) -> SettleReport:
    """Each call in its own transaction; one MySQL refuses becomes a dead letter."""
    report = SettleReport()
    for c in calls:
        try:
            with factory() as session, session.begin():
                one = settle(session, [c])
        except (IntegrityError, OperationalError):
            raise  # the server, or another worker: the whole job retries
        except (DBAPIError, StatementError) as exc:
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                raise
            with factory() as session, session.begin():
                if settled_ids(session, [c.call_id]):
                    continue
                write_dead_letters(session, [(c, _first(exc))])
                add_to_balances(session, [c])
            one = SettleReport(written=1, dead=1)
        report.written += one.written
        report.already += one.already
        report.dead += one.dead
    return report


def _first(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:2000]


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
