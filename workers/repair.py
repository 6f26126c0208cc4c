"""`asterbill reconcile --repair`: rebuild Redis's balances from MySQL, the ledger.

For a Redis that lost its data (no AOF, a new server) or drifted. Per reseller tag, in one
optimistic transaction (WATCH) against the calls still running or waiting there:
- every level's `used` = MySQL curcredit + what its running calls have paid + the prices of
  its ended calls not yet settled; lifetime totals = MySQL's + those ended calls' prices;
  a booth's `unbilled` = its UNBILLED CDRs + its running and unsettled calls;
- every credit operation MySQL has is marked applied (MySQL's curcredit already counts it),
  so re-applying it later changes nothing.
Configuration (limits, types, locks, deposits, multiples, payers, rate books) is pushed
first, as `asterbill seed` does. Run it while no credit operation is being made.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lua.credit import CreditEngine
from rating.book import RedisRateBook
from rating.money import stored_micros
from schema import AccountGroup, Cdr, Clid, CreditOperation, DeadLetter, Reseller
from workers.provision import provision_redis
from workers.reconcile import open_call_amounts

PREFIX = {"clid": "c", "group": "g", "reseller": "r"}


@dataclass
class RepairReport:
    resellers: int = 0
    levels: int = 0
    operations: int = 0


def repair(session: Session, credit: CreditEngine, book: RedisRateBook) -> RepairReport:
    report = RepairReport()
    provision_redis(session, credit, book)
    unbilled = dict(
        session.execute(
            select(Cdr.clid_id, func.sum(Cdr.credit))
            .where(Cdr.billing_status == "UNBILLED", Cdr.clid_id.is_not(None))
            .group_by(Cdr.clid_id)
        ).all()
    )
    # a dead letter's customer price is still owed at the booth (not checked out)
    for clid_id, amount in session.execute(
        select(DeadLetter.clid_id, func.sum(DeadLetter.credit))
        .where(DeadLetter.clid_id.is_not(None))
        .group_by(DeadLetter.clid_id)
    ):
        unbilled[clid_id] = (unbilled.get(clid_id) or 0) + amount
    ops_by_reseller = _operations_by_reseller(session)
    for reseller in session.scalars(select(Reseller)):
        levels = {("reseller", reseller.id): reseller}
        for group in session.scalars(
            select(AccountGroup).where(AccountGroup.reseller_id == reseller.id)
        ):
            levels[("group", group.id)] = group
            for clid in session.scalars(select(Clid).where(Clid.group_id == group.id)):
                levels[("clid", clid.id)] = clid
        base = {
            key: {
                "used": stored_micros(row.curcredit),
                "tot_c": stored_micros(row.credit_clid),
                "tot_g": stored_micros(row.credit_group),
                "tot_r": stored_micros(row.credit_reseller),
            }
            for key, row in levels.items()
        }
        for (name, level_id), values in base.items():
            if name == "clid":
                amount = unbilled.get(level_id)
                values["unbilled"] = 0 if amount is None else stored_micros(amount)
        _write_tag(credit, reseller.id, base, ops_by_reseller.get(reseller.id, []))
        report.resellers += 1
        report.levels += len(base)
        report.operations += len(ops_by_reseller.get(reseller.id, []))
    session.execute(
        update(CreditOperation)
        .where(CreditOperation.applied_at.is_(None))
        .values(applied_at=datetime.now(UTC).replace(tzinfo=None))
    )
    session.commit()
    return report


def _write_tag(credit: CreditEngine, reseller_id: int, base: dict, ops: list[str]) -> None:
    keys = credit.keys
    watched = [keys.balances(reseller_id), keys.calls(reseller_id), keys.ended(reseller_id)]
    with credit.client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(*watched)
                fields = _with_open_calls(pipe, credit, reseller_id, base)
                pipe.multi()
                if fields:
                    pipe.hset(keys.balances(reseller_id), mapping=fields)
                for op_id in ops:
                    pipe.hsetnx(keys.applied_ops(reseller_id), op_id, "repair|from MySQL|0")
                pipe.execute()
                return
            except redis.WatchError:
                continue  # a call moved meanwhile: read again


def _with_open_calls(pipe, credit: CreditEngine, reseller_id: int, base: dict) -> dict:
    """MySQL's values plus the running and unsettled calls of the tag, as balance fields."""
    extra = open_call_amounts(pipe, credit.keys, reseller_id)
    fields = {}
    for (name, level_id), values in base.items():
        for attr, amount in values.items():
            fields[f"{PREFIX[name]}{level_id}.{attr}"] = amount + extra[(name, level_id)][attr]
    return fields


def _operations_by_reseller(session: Session) -> dict[int, list[str]]:
    """Every credit operation's id, under the reseller tag its level lives in."""
    owner = {
        "reseller": {r: r for r in session.scalars(select(Reseller.id))},
        "group": dict(session.execute(select(AccountGroup.id, AccountGroup.reseller_id)).all()),
        "clid": dict(
            session.execute(
                select(Clid.id, AccountGroup.reseller_id).join(
                    AccountGroup, Clid.group_id == AccountGroup.id
                )
            ).all()
        ),
    }
    out: dict[int, list[str]] = defaultdict(list)
    for op_id, level, target_id in session.execute(
        select(CreditOperation.op_id, CreditOperation.level, CreditOperation.target_id)
    ):
        reseller_id = owner[level].get(target_id)
        if reseller_id is not None:
            out[reseller_id].append(op_id)
    return out
