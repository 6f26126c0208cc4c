"""Checks the ledger invariants of DESIGN.md section 5, to the micro-unit.

For every clid, group and reseller:
- MySQL: curcredit == the level's own price summed over its settled CDRs + its refunds - its
  charges (credit operations), and the lifetime totals == the sums of the three prices of
  its CDRs;
- Redis: `used` == MySQL curcredit + what its running calls have paid + the prices of its
  ended calls not yet settled, less the charges (plus the refunds) that Redis has not applied
  yet (the reconciler re-applies those).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lua.credit import CreditEngine, CreditError, parse_call_state
from lua.keys import Keys
from rating.money import format_micros, stored_micros
from schema import AccountGroup, Cdr, Clid, CreditOperation, DeadLetter, Reseller
from workers.reconcile_levels import (
    Finding,
    configuration,
    over_limits,
    pending_attributes,
    phantom_calls,
)
from workers.settle import EndedCall

LEVELS = (
    ("clid", Clid, Cdr.clid_id, 0),
    ("group", AccountGroup, Cdr.group_id, 1),
    ("reseller", Reseller, Cdr.reseller_id, 2),
)


@dataclass(frozen=True)
class Drift:
    level: str
    level_id: int
    what: str
    expected: int  # micro-units
    found: int

    def __str__(self) -> str:
        return (
            f"{self.level} {self.level_id}: {self.what} is {format_micros(self.found)}, "
            f"expected {format_micros(self.expected)} "
            f"(drift {format_micros(abs(self.found - self.expected))})"
        )


def check(session: Session, engine: CreditEngine | None = None) -> list[Drift | Finding]:
    drifts: list[Drift] = []
    pending = _redis_pending(engine) if engine is not None else {}
    moved, unapplied = _credit_operations(session)
    pending_config = pending_attributes(session)
    for name, model, column, own in LEVELS:
        sums = _price_sums(session, Cdr, column)
        # dead letters (calls that could not be CDRs) carry their prices like CDRs
        dead_column = getattr(DeadLetter, column.key)
        for level_id, prices in _price_sums(session, DeadLetter, dead_column).items():
            sums[level_id] = [
                a + b for a, b in zip(sums.get(level_id, [0, 0, 0]), prices, strict=True)
            ]
        for level in session.scalars(select(model)):
            cdr = sums.get(level.id, [0, 0, 0])
            cur = stored_micros(level.curcredit)
            expected_cur = cdr[own] + moved.get((name, level.id), 0)
            if cur != expected_cur:
                drifts.append(Drift(name, level.id, "MySQL curcredit", expected_cur, cur))
            totals = [
                stored_micros(level.credit_clid),
                stored_micros(level.credit_group),
                stored_micros(level.credit_reseller),
            ]
            if totals != cdr:
                drifts.append(
                    Drift(name, level.id, "MySQL lifetime totals (sum)", sum(cdr), sum(totals))
                )
            if engine is None:
                drifts.extend(over_limits(name, level, None))
                continue
            reseller_id = (
                level.id
                if name == "reseller"
                else (level.reseller_id if name == "group" else level.group.reseller_id)
            )
            expected = cur + pending.get((name, level.id), 0)
            try:
                state = engine.level(reseller_id, name, level.id)
            except CreditError:
                # Not in Redis. Harmless while MySQL says 0 (provisioning starts it from
                # MySQL); otherwise Redis lost it: `reconcile --repair`.
                if expected:
                    drifts.append(Drift(name, level.id, "Redis used (level missing)", expected, 0))
                drifts.extend(over_limits(name, level, None))
                continue
            used = state.used
            drifts.extend(configuration(name, level, state, pending_config))
            drifts.extend(over_limits(name, level, state))
            waiting = unapplied.get((name, level.id), [])
            if waiting:
                known = engine.client.hmget(
                    engine.keys.applied_ops(reseller_id), [op_id for op_id, _ in waiting]
                )
                expected -= sum(m for (_, m), k in zip(waiting, known, strict=True) if k is None)
            if used != expected:
                drifts.append(Drift(name, level.id, "Redis used", expected, used))
    if engine is not None:
        drifts.extend(phantom_calls(engine))
    return drifts


def _price_sums(session: Session, model, column) -> dict[int, list[int]]:
    """Per level id: the sums of the customer, callshop and reseller prices of `model`."""
    return {
        row[0]: [0 if v is None else stored_micros(v) for v in row[1:]]
        for row in session.execute(
            select(
                column,
                func.sum(model.credit),
                func.sum(model.callshop_credit),
                func.sum(model.reseller_credit),
            )
            .where(column.is_not(None))
            .group_by(column)
        )
    }


def _credit_operations(session: Session):
    """Per level: refunds - charges (micro-units), and the money operations that Redis may
    not have yet: (op id, refund - charge) of those with `applied_at` NULL."""
    from workers.cdr_sync import OP_PREFIX as CDR_SYNC_OP_PREFIX  # (a leaf: no cycle)

    money = CreditOperation.kind.in_(("charge", "refund"))
    moved: dict[tuple[str, int], int] = defaultdict(int)
    for level, target_id, kind, total in session.execute(
        select(
            CreditOperation.level,
            CreditOperation.target_id,
            CreditOperation.kind,
            func.sum(CreditOperation.amount),
        )
        # cdr-sync's corrections are already in the corrected CDR prices (workers/cdr_sync.py)
        .where(money, ~CreditOperation.op_id.startswith(CDR_SYNC_OP_PREFIX))
        .group_by(CreditOperation.level, CreditOperation.target_id, CreditOperation.kind)
    ):
        moved[(level, target_id)] += stored_micros(total) * (1 if kind == "refund" else -1)
    unapplied: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for op_id, level, target_id, kind, amount in session.execute(
        select(
            CreditOperation.op_id,
            CreditOperation.level,
            CreditOperation.target_id,
            CreditOperation.kind,
            CreditOperation.amount,
        ).where(money, CreditOperation.applied_at.is_(None))
    ):
        signed = stored_micros(amount) * (1 if kind == "refund" else -1)
        unapplied[(level, target_id)].append((op_id, signed))
    return moved, unapplied


def _redis_pending(engine: CreditEngine) -> dict[tuple[str, int], int]:
    """Per level: what running calls have paid plus ended calls not yet settled."""
    out: dict[tuple[str, int], int] = {}
    for reseller_id in set(engine.resellers_with_calls("calls")) | set(
        engine.resellers_with_calls("ended")
    ):
        for level, amounts in open_call_amounts(engine.client, engine.keys, reseller_id).items():
            out[level] = amounts["used"]
    return out


def open_call_amounts(client, keys: Keys, reseller_id: int) -> dict[tuple[str, int], dict]:
    """What one reseller tag's open calls (running, or ended and not yet settled) add to each
    level beyond MySQL: `used` (each level's own price paid so far), the lifetime totals
    `tot_c` / `tot_g` / `tot_r` (ended calls only, as the end script adds them), and a booth's
    `unbilled`. `client` may be a pipeline in WATCH mode (`reconcile --repair`)."""
    out: dict[tuple[str, int], dict] = defaultdict(lambda: defaultdict(int))
    for value in client.hvals(keys.calls(reseller_id)):
        v = parse_call_state(value)
        clid, group, paid = v[0], v[1], (v[4], v[6], v[8])
        for i, level in enumerate((("clid", clid), ("group", group), ("reseller", reseller_id))):
            out[level]["used"] += paid[i]
        out[("clid", clid)]["unbilled"] += paid[0]
    for call_id, record in client.hgetall(keys.ended(reseller_id)).items():
        c = EndedCall.read(call_id.decode(), reseller_id, record.decode(), None)
        levels = (("clid", c.clid_id), ("group", c.group_id), ("reseller", reseller_id))
        for i, level in enumerate(levels):
            out[level]["used"] += c.prices[i]
            for j, total in enumerate(("tot_c", "tot_g", "tot_r")):
                out[level][total] += c.prices[j]
        out[("clid", c.clid_id)]["unbilled"] += c.prices[0]
    return out
