"""Checks the ledger invariants of DESIGN.md section 5, to the micro-unit.

For every clid, group and reseller:
- MySQL: curcredit == the level's own price summed over its settled CDRs (plus the credit
  operations, once they go through MySQL), and the lifetime totals == the sums of the three
  prices of its CDRs;
- Redis: `used` == MySQL curcredit + what its running calls have paid + the prices of its
  ended calls not yet settled.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lua.credit import CreditEngine, CreditError
from rating.money import format_micros, stored_micros
from schema import AccountGroup, Cdr, Clid, Reseller
from workers.settle import read_ended

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


def check(session: Session, engine: CreditEngine | None = None) -> list[Drift]:
    drifts: list[Drift] = []
    pending = _redis_pending(engine) if engine is not None else {}
    for name, model, column, own in LEVELS:
        sums = {
            row[0]: [0 if v is None else stored_micros(v) for v in row[1:]]
            for row in session.execute(
                select(
                    column,
                    func.sum(Cdr.credit),
                    func.sum(Cdr.callshop_credit),
                    func.sum(Cdr.reseller_credit),
                )
                .where(column.is_not(None))
                .group_by(column)
            )
        }
        for level in session.scalars(select(model)):
            cdr = sums.get(level.id, [0, 0, 0])
            cur = stored_micros(level.curcredit)
            if cur != cdr[own]:
                drifts.append(Drift(name, level.id, "MySQL curcredit", cdr[own], cur))
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
                continue
            reseller_id = (
                level.id
                if name == "reseller"
                else (level.reseller_id if name == "group" else level.group.reseller_id)
            )
            try:
                used = engine.level(reseller_id, name, level.id).used
            except CreditError:
                continue  # not provisioned in Redis: nothing to compare
            expected = cur + pending.get((name, level.id), 0)
            if used != expected:
                drifts.append(Drift(name, level.id, "Redis used", expected, used))
    return drifts


def _redis_pending(engine: CreditEngine) -> dict[tuple[str, int], int]:
    """Per level: what running calls have paid plus ended calls not yet settled."""
    out: dict[tuple[str, int], int] = defaultdict(int)
    for reseller_id in set(engine.resellers_with_calls("calls")) | set(
        engine.resellers_with_calls("ended")
    ):
        for clid, group, paid in engine.paid_by_live_calls(reseller_id):
            for level, amount in zip(
                (("clid", clid), ("group", group), ("reseller", reseller_id)), paid, strict=True
            ):
                out[level] += amount
        for call in read_ended(engine, reseller_id, limit=None):
            for level, amount in zip(
                (("clid", call.clid_id), ("group", call.group_id), ("reseller", reseller_id)),
                call.prices,
                strict=True,
            ):
                out[level] += amount
    return out
