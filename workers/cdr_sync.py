"""`asterbill cdr-sync`: correct flagged calls from Asterisk's own CDRs, exactly once.

A call whose end or answer the listener did not see (it was disconnected, down, or adopted
the call at a resync) is billed from the best evidence it had and flagged for review
(`review_reason`). Asterisk's CDR store has the truth: this service matches each flagged CDR
to Asterisk's record of the same channel (the booth channel's Uniqueid: Asterisk's `Dial`
CDR of that channel; the n-th one for `<uniqueid>#n`, the redial after a redirect), and
- writes Asterisk's billsec, duration, disposition and times into the CDR,
- recomputes its three prices with the rates recorded on the CDR (the levels' current
  billsec multiples; for a call that was never rated, the rates the book gives now),
- moves the difference through the credit service at each level: a `charge` (credit used
  goes down: the call cost less) or a `refund` (it goes up: the call cost more), each with a
  credit-history line saying why, op id `cdr-sync:<cdr id>:<level>`,
- corrects the lifetime totals, and replaces the flag with `corrected_from_asterisk_cdr`,
all in one MySQL transaction per call; Redis gets the operations after the commit (the
reconciler re-applies any it missed). A second run finds no flag, and would find the op ids
if it did: nothing is applied twice. `reconcile --check` counts these operations through
the CDR prices they changed (workers/reconcile.py skips them in the credit-operation sum).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from lua.credit import NO_RATE, CreditEngine, CreditError, Payer
from rating.book import RedisRateBook
from rating.memo import pricing_fields, rate_memo, with_prefix
from rating.money import format_micros, from_micros, stored_micros, to_micros, to_multiple
from rating.price import Rate, price
from rating.select import TABLES, strip_number
from rating.store import MODELS as RATE_MODELS
from schema import AccountGroup, Cdr, Clid, CreditOperation, Reseller
from workers.asterisk_cdrs import AsteriskCdr
from workers.credit_ops import CreditRequest, apply_to_redis, record_pending
from workers.rollup import add_cdrs

log = logging.getLogger("asterbill.cdr_sync")

# Flags that mean "the listener did not see this call's answer or end": Asterisk knows better.
CORRECTABLE_FLAGS = (
    "ended_while_disconnected",  # the connection was lost: ended at the reconnect (or loss)
    "ended_while_listener_down",  # a restarted listener found it gone
    "asterisk_restarted",  # ended by an Asterisk restart while the listener was away
    "adopted_at_resync",  # found up at a resync: billed from what the listener could learn
    "adopted_answer_unknown",  # found up and bridged, answer time unknown: billed from then
    "answer_not_seen",
    "dial_not_seen",  # dialled while the listener was away
    "billsec_measured",  # the listener's own receive clock, no Asterisk figure
)
CORRECTED = "corrected_from_asterisk_cdr"
OP_PREFIX = "cdr-sync:"
LEVELS = ("clid", "group", "reseller")  # each pays its own price: customer, callshop, reseller


class Skip(Exception):
    """This call cannot be corrected automatically (the message says why)."""


class _DryRun(Exception):
    """What a correction would change; raised to roll its transaction back."""


@dataclass
class SyncReport:
    corrected: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)  # flagged, no Asterisk record
    skipped: list[str] = field(default_factory=list)  # matched, not corrected: why
    unmatched_rows: list[str] = field(default_factory=list)  # Asterisk rows of no flagged call
    errors: list[str] = field(default_factory=list)  # lines of the source that were not read


def is_cdr_sync_op(op_id: str) -> bool:
    """Operations whose amount the corrected CDR prices already carry (reconcile)."""
    return op_id.startswith(OP_PREFIX)


def flags_of(cdr: Cdr) -> list[str]:
    return [f for f in (cdr.review_reason or "").split(",") if f]


def flagged(session: Session, flags: tuple[str, ...] = CORRECTABLE_FLAGS) -> list[Cdr]:
    """The CDRs that carry one of `flags` (booth and callback legs)."""
    rows = session.scalars(
        select(Cdr).where(or_(*(Cdr.review_reason.contains(f) for f in flags))).order_by(Cdr.id)
    )
    return [c for c in rows if set(flags_of(c)) & set(flags)]


def choose(cdr: Cdr, records: list[AsteriskCdr]) -> AsteriskCdr | None:
    """Asterisk's record of this call among those of its channel's Uniqueid."""
    base, _, redial = cdr.uniqueid.partition("#")
    mine = [r for r in records if r.uniqueid == base]
    dials = [r for r in mine if r.lastapp.lower() == "dial"] or mine
    dials = sorted(set(dials), key=lambda r: (r.start, r.where))
    index = int(redial) - 1 if redial.isdigit() else 0
    return dials[index] if 0 <= index < len(dials) else None


def synchronize(
    factory,
    engine: CreditEngine,
    records: list[AsteriskCdr],
    *,
    flags: tuple[str, ...] = CORRECTABLE_FLAGS,
    book: RedisRateBook | None = None,
    strip_prefixes: tuple[str, ...] = (),
    short_call_seconds: int = 0,
    dry_run: bool = False,
) -> SyncReport:
    report = SyncReport()
    if not dry_run:
        follow_earlier_in_redis(factory, engine)
    with factory() as session:
        todo = [(c.id, c.uniqueid, c.leg) for c in flagged(session, flags)]
    wanted = {u.partition("#")[0] for _, u, leg in todo if leg != "b"}
    report.unmatched_rows = sorted({r.uniqueid for r in records if r.uniqueid not in wanted})
    for cdr_id, uniqueid, leg in todo:
        name = uniqueid if leg == "booth" else f"{uniqueid}:{leg}"
        if leg == "b":
            report.not_found.append(
                f"{name}: a callback's leg B lives on another channel; correct it by hand"
            )
            continue
        try:
            line = _correct_one(
                factory,
                engine,
                cdr_id,
                records,
                flags,
                book,
                strip_prefixes,
                short_call_seconds,
                dry_run,
            )
        except Skip as exc:
            report.skipped.append(f"{name}: {exc}")
            continue
        if line is None:
            report.not_found.append(f"{name}: not in Asterisk's CDRs")
        else:
            report.corrected.append(f"{name}: {line}")
    return report


def _correct_one(
    factory, engine, cdr_id, records, flags, book, strip, short_call_seconds, dry_run
) -> str | None:
    try:
        return _apply_one(
            factory, engine, cdr_id, records, flags, book, strip, short_call_seconds, dry_run
        )
    except _DryRun as exc:
        return str(exc)


def _apply_one(
    factory, engine, cdr_id, records, flags, book, strip, short_call_seconds, dry_run
) -> str | None:
    pending = []
    with factory() as session, session.begin():
        cdr = session.get(Cdr, cdr_id, with_for_update=True)
        if cdr is None or not set(flags_of(cdr)) & set(flags):
            raise Skip("corrected meanwhile by another run")
        found = choose(cdr, records)
        if found is None:
            return None
        if cdr.channel and found.channel and cdr.channel != found.channel:
            raise Skip(
                f"Asterisk's CDR ({found.where}) is of channel {found.channel}, ours of "
                f"{cdr.channel}: not the same call"
            )
        old = (stored_micros(cdr.credit), stored_micros(cdr.callshop_credit))
        old += (stored_micros(cdr.reseller_credit),)
        new = _prices(session, cdr, found, book, strip, short_call_seconds)
        line = f"billsec {cdr.billsec} -> {found.billsec} ({found.where}), prices " + "/".join(
            f"{format_micros(o)}->{format_micros(n)}" for o, n in zip(old, new, strict=True)
        )
        if dry_run:
            raise _DryRun("would change " + line)  # rolls back: nothing written
        why = (
            f"cdr-sync: call {cdr.uniqueid} billed {cdr.billsec} s, Asterisk's CDR says "
            f"{found.billsec} s"
        )
        for level, level_id, before, after in zip(
            LEVELS, (cdr.clid_id, cdr.group_id, cdr.reseller_id), old, new, strict=True
        ):
            if level_id is None or before == after:
                continue
            back = before - after  # > 0: the call cost less, credit used goes down
            request = CreditRequest(
                "charge" if back > 0 else "refund",
                level,
                level_id,
                amount=from_micros(abs(back)),
                comment=f"{why}: {format_micros(abs(back))} {'back' if back > 0 else 'more'}",
                op_id=f"{OP_PREFIX}{cdr.id}:{level}",
            )
            pending.append(record_pending(session, request))
        change = tuple(n - o for o, n in zip(old, new, strict=True))
        _add_to_totals(session, cdr, change)
        add_cdrs(session, [cdr], sign=-1)  # the report rollup follows the CDR: old figures
        _rewrite(cdr, found, new, flags)
        add_cdrs(session, [cdr])  # out, corrected figures in (its bucket may change too)
        payer = Payer(cdr.reseller_id, cdr.group_id, cdr.clid_id) if cdr.clid_id else None
        unbilled = cdr.billing_status == "UNBILLED"
    for op in pending:
        apply_to_redis(factory, engine, op)
    if payer is not None and any(change):
        _follow_in_redis(engine, f"{OP_PREFIX}{cdr_id}:totals", payer, change, unbilled)
    log.info("call %s corrected from Asterisk's CDR: %s", cdr.uniqueid, line)
    return line


def _follow_in_redis(engine, op_id: str, payer: Payer, change, unbilled: bool) -> str:
    """Redis's lifetime totals and the booth's unbilled amount (its deposit room) follow the
    corrected prices, once per op id: "OK", "ALREADY", or "" while Redis is away. Then they
    stay behind (no money moves with them; the credit operations wait for the reconciler)
    until the next cdr-sync run (`follow_earlier_in_redis`) or `reconcile --repair`."""
    try:
        return engine.correct_call(op_id, payer, change, unbilled)  # OK or ALREADY
    except (redis.ConnectionError, redis.TimeoutError, CreditError) as exc:
        log.warning("%s: Redis totals not corrected yet (%s)", op_id, exc)
        return ""


def follow_earlier_in_redis(factory, engine, days: int = 30) -> int:
    """The Redis side of the corrections of the last `days`, for those whose totals step
    Redis missed (it was down): each call's change is read back from its credit
    operations; a step Redis has is not applied again (its op id). Returns how many ran."""
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
    changes: dict[int, list[int]] = {}
    with factory() as session:
        for op_id, kind, amount in session.execute(
            select(CreditOperation.op_id, CreditOperation.kind, CreditOperation.amount).where(
                CreditOperation.op_id.startswith(OP_PREFIX),
                CreditOperation.created_at >= cutoff,
            )
        ):
            _, cdr_id, level = op_id.split(":")
            signed = stored_micros(amount) * (1 if kind == "refund" else -1)
            changes.setdefault(int(cdr_id), [0, 0, 0])[LEVELS.index(level)] = signed
        cdrs = (
            {c.id: c for c in session.scalars(select(Cdr).where(Cdr.id.in_(changes)))}
            if changes
            else {}
        )
    done = 0
    for cdr_id, change in changes.items():
        cdr = cdrs.get(cdr_id)
        if cdr is None or cdr.clid_id is None:
            continue
        payer = Payer(cdr.reseller_id, cdr.group_id, cdr.clid_id)
        unbilled = cdr.billing_status == "UNBILLED"
        outcome = _follow_in_redis(
            engine, f"{OP_PREFIX}{cdr_id}:totals", payer, tuple(change), unbilled
        )
        if not outcome:
            break  # Redis is still away: the next run
        done += outcome == "OK"
    return done


def _prices(session, cdr, found, book, strip, short_call_seconds) -> tuple[int, int, int]:
    if cdr.clid_id is None:
        return (0, 0, 0)  # unknown payer: recorded, never billed
    if found.disposition != "ANSWERED" or found.billsec <= 0:
        return (0, 0, 0)
    rates = _recorded_rates(session, cdr)
    group = session.get(AccountGroup, cdr.group_id)
    multiples = (
        to_multiple(group.customer_multiple),
        to_multiple(group.group_multiple),
        to_multiple(session.get(Reseller, cdr.reseller_id).multiple),
    )
    if rates is None:
        rates = _rates_now(session, cdr, book, strip, multiples)
    prices = [
        price(found.billsec, m, rates[t]) if rates[t] else 0
        for t, m in zip(TABLES, multiples, strict=True)
    ]
    if short_call_seconds and found.billsec <= short_call_seconds:
        prices[0] = 0  # as the end script does: short answered calls are free for the customer
    return tuple(prices)


def _recorded_rates(session, cdr: Cdr) -> dict[str, Rate | None] | None:
    recorded = (cdr.customer_rate_id, cdr.callshop_rate_id, cdr.reseller_rate_id)
    ids = dict(zip(TABLES, recorded, strict=True))
    if not any(ids.values()):
        return None
    rates: dict[str, Rate | None] = {}
    for table, rate_id in ids.items():
        if not rate_id:
            rates[table] = None
            continue
        row = session.get(RATE_MODELS[table], rate_id)
        if row is None:
            raise Skip(f"its {table} rate {rate_id} was deleted since; correct it by hand")
        rates[table] = Rate(
            row.id,
            to_micros(row.connectcharge),
            row.initblock,
            to_micros(row.rateinitial),
            row.billingblock,
            row.destination,
        )
    return rates


def _rates_now(session, cdr: Cdr, book, strip, multiples) -> dict[str, Rate | None]:
    """A call that was never rated (its answer was not seen): the rates of its number now,
    recorded on the CDR with their memo."""
    number = cdr.rated_number or strip_number(cdr.dst, strip)
    if book is None or not number.isdigit():
        raise Skip("it was never rated and its number cannot be rated now")
    found = book.lookup(number, cdr.reseller_id, cdr.group_id)
    if found["customer"] is None:
        raise Skip(f"no customer rate for {number}")
    cdr.customer_rate_id, cdr.callshop_rate_id, cdr.reseller_rate_id = (
        found[t].id if found[t] else None for t in TABLES
    )
    cdr.destination = (found["customer"].destination or "")[:100]
    cdr.rated_number = number
    fields = pricing_fields(
        [(found[t] or NO_RATE, m) for t, m in zip(TABLES, multiples, strict=True)]
    )
    for index, table in enumerate(TABLES):
        if found[table]:
            row = session.get(RATE_MODELS[table], found[table].id)
            with_prefix({"rates": fields}, index, row.dialprefix if row else None)
    cdr.rate_memo = rate_memo(fields)
    return found


def _add_to_totals(session: Session, cdr: Cdr, diff: list[int]) -> None:
    """The lifetime totals of the call's three levels follow its prices."""
    if not any(diff):
        return
    amounts = [from_micros(d) for d in diff]
    for model, level_id in ((Clid, cdr.clid_id), (AccountGroup, cdr.group_id)):
        if level_id is not None:
            _bump(session, model, level_id, amounts)
    if cdr.reseller_id is not None:
        _bump(session, Reseller, cdr.reseller_id, amounts)


def _bump(session: Session, model, level_id: int, amounts) -> None:
    session.execute(
        update(model)
        .where(model.id == level_id)
        .values(
            credit_clid=model.credit_clid + amounts[0],
            credit_group=model.credit_group + amounts[1],
            credit_reseller=model.credit_reseller + amounts[2],
        )
        .execution_options(synchronize_session=False)
    )


def _rewrite(cdr: Cdr, found: AsteriskCdr, prices: tuple[int, int, int], flags) -> None:
    answered = found.disposition == "ANSWERED"
    cdr.billsec = found.billsec
    cdr.duration = found.duration
    cdr.disposition = found.disposition
    if answered and cdr.answered_at is None:
        cdr.answered_at = found.answer or found.end - timedelta(seconds=found.billsec)
    if not answered:
        cdr.answered_at = None
    cdr.ended_at = found.end
    cdr.credit, cdr.callshop_credit, cdr.reseller_credit = (from_micros(p) for p in prices)
    kept = [f for f in flags_of(cdr) if f not in flags and f != CORRECTED]
    cdr.review_reason = ",".join([*kept, CORRECTED])[:64]
