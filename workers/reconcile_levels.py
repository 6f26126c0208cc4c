"""`reconcile --check` beyond balances: configuration, limits, deposits and phantom calls.

- limit, limit type, lock and deposit of every level: MySQL (the truth) == Redis, except
  while a credit operation of that attribute is still waiting to reach Redis;
- every prepaid level whose credit used is over its limit (MySQL, and Redis with its running
  calls), and every booth whose unbilled calls are over its deposit;
- every call Redis is billing that was answered before the listener's last resync with
  Asterisk and that Asterisk did not list as live then (a phantom: nobody will end it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ami_listener.resync_record import last_resync
from lua.credit import CreditEngine, parse_call_state
from rating.money import format_micros, stored_micros
from schema import CreditOperation

# credit operation kind -> the attribute it sets
ATTRIBUTE = {
    "set_limit": "limit",
    "set_limit_type": "limit type",
    "lock": "lock",
    "unlock": "lock",
    "set_deposit": "deposit",
}


@dataclass(frozen=True)
class Finding:
    """Something `--check` reports that is not a money drift; `repairable`: `--repair`
    fixes it (configuration pushed from MySQL), else it says what to do."""

    level: str
    level_id: int
    text: str
    repairable: bool

    def __str__(self) -> str:
        return f"{self.level} {self.level_id}: {self.text}"


def pending_attributes(session: Session) -> set[tuple[str, int, str]]:
    """(level, id, attribute) with an absolute credit operation not yet applied to Redis."""
    rows = session.execute(
        select(CreditOperation.level, CreditOperation.target_id, CreditOperation.kind).where(
            CreditOperation.applied_at.is_(None), CreditOperation.kind.in_(ATTRIBUTE)
        )
    )
    return {(level, target, ATTRIBUTE[kind]) for level, target, kind in rows}


def configuration(name: str, row, state, pending: set) -> list[Finding]:
    """MySQL's limit, type, lock and deposit against Redis's `state` (a LevelState)."""
    want = {
        "limit": format_micros(stored_micros(row.creditlimit)),
        "limit type": row.limit_type,
    }
    have = {"limit": format_micros(state.limit), "limit type": state.limit_type}
    if name == "clid":
        want["lock"] = "locked" if row.locked else "unlocked"
        have["lock"] = "locked" if state.locked else "unlocked"
        want["deposit"] = (
            "none" if row.deposit is None else format_micros(stored_micros(row.deposit))
        )
        have["deposit"] = "none" if state.deposit is None else format_micros(state.deposit)
    return [
        Finding(name, row.id, f"Redis {attr} is {have[attr]}, MySQL {want[attr]}", True)
        for attr in want
        if want[attr] != have[attr] and (name, row.id, attr) not in pending
    ]


def over_limits(name: str, row, state) -> list[Finding]:
    """A prepaid level over its limit (MySQL, and Redis when given); a deposit exceeded."""
    out = []
    limit = stored_micros(row.creditlimit)
    if row.limit_type == "prepaid":
        cur = stored_micros(row.curcredit)
        if cur > limit:
            out.append(_over(name, row.id, "MySQL credit used", cur, limit))
        if state is not None and state.limit_type == "prepaid" and state.used > state.limit:
            out.append(_over(name, row.id, "Redis credit used", state.used, state.limit))
    if state is not None and state.deposit is not None and state.unbilled > state.deposit:
        out.append(
            Finding(
                name,
                row.id,
                f"deposit exceeded: unbilled {format_micros(state.unbilled)} over the deposit "
                f"{format_micros(state.deposit)} "
                f"(by {format_micros(state.unbilled - state.deposit)})",
                False,
            )
        )
    return out


def _over(name: str, level_id: int, what: str, used: int, limit: int) -> Finding:
    return Finding(
        name,
        level_id,
        f"prepaid over its limit: {what} {format_micros(used)}, limit {format_micros(limit)} "
        f"(over by {format_micros(used - limit)})",
        False,
    )


def phantom_calls(engine: CreditEngine) -> list[Finding]:
    """Calls Redis bills, answered before the last resync, that Asterisk did not list."""
    record = last_resync(engine.client, engine.keys)
    if record is None:
        return []
    at_ms, live = record
    out = []
    for reseller_id in engine.resellers_with_calls("calls"):
        for call_id, value in engine.client.hgetall(engine.keys.calls(reseller_id)).items():
            call_id = call_id.decode()
            uniqueid = call_id.partition(":")[0].partition("#")[0]
            state = parse_call_state(value)
            if state[2] < at_ms and uniqueid not in live:
                out.append(
                    Finding(
                        "clid",
                        state[0],
                        f"call {call_id} is live in Redis but Asterisk did not list it at the "
                        "last resync (restart the listener: its resync ends it)",
                        False,
                    )
                )
    return out
