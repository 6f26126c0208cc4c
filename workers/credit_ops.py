"""The credit service: every charge, refund, limit, limit type, lock and deposit change.

One path for every caller (CLI now, back office later), in this order:
1. MySQL, one transaction: the level row is locked, changed, and the operation row (keyed by
   its op id) and, for money, its credit-history row are written. MySQL is the ledger.
2. Redis: the Lua credit operation with the same op id (applied once, whatever happens).
3. MySQL: `applied_at` is set.
A crash or a Redis outage after step 1 leaves `applied_at` NULL; the reconciler re-applies the
operation (step 2 is idempotent by op id). Repeating a request with the same op id changes
nothing: the second call finds the operation and only makes sure Redis has it.
Booth check-out (`checkout`) belongs to the booth page, which also marks the CDRs paid.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lua.credit import CreditEngine, CreditError
from ops.errors import InvalidInput
from rating.money import parse_decimal, stored_micros, to_micros
from schema import AccountGroup, Clid, CreditHistory, CreditOperation, Reseller
from schema.base import LIMIT_TYPES
from workers.credit_bounds import check_amount, check_balance

log = logging.getLogger("asterbill.credit")

MODELS = {"clid": Clid, "group": AccountGroup, "reseller": Reseller}
MONEY_KINDS = {"charge", "refund", "set_limit", "set_deposit"}
CLID_ONLY = {"lock", "unlock", "set_deposit"}
KINDS = ("charge", "refund", "set_limit", "set_limit_type", "lock", "unlock", "set_deposit")


@dataclass(frozen=True)
class CreditRequest:
    kind: str  # one of KINDS
    level: str  # clid, group or reseller
    target_id: int
    amount: Decimal | None = None  # charge, refund, set_limit, set_deposit (None: no deposit)
    value: str | None = None  # set_limit_type: none, prepaid or postpaid
    comment: str = ""
    account_id: int | None = None  # who asked (back office); None: the command line
    op_id: str = ""  # the caller's idempotency key; a new one when empty

    def with_op_id(self) -> CreditRequest:
        if self.op_id:
            return self
        return CreditRequest(**{**self.__dict__, "op_id": uuid.uuid4().hex})


@dataclass(frozen=True)
class CreditResult:
    op_id: str
    replayed: bool  # the op id was known: nothing changed this time
    applied: bool  # Redis has it (False: the reconciler will re-apply it)
    curcredit_before: Decimal
    curcredit_after: Decimal


def perform(factory, engine: CreditEngine, request: CreditRequest) -> CreditResult:
    """The whole operation: MySQL first (the ledger), then Redis, then mark it applied."""
    request = request.with_op_id()
    with factory() as session, session.begin():
        op, replayed, before, after = record(session, request)
        pending = _Pending.of(session, op)
    applied = apply_to_redis(factory, engine, pending)
    return CreditResult(request.op_id, replayed, applied, before, after)


def record(session: Session, request: CreditRequest):
    """Step 1 in the caller's transaction: (operation, replayed, curcredit before, after)."""
    validate(request)
    model = MODELS[request.level]
    row = session.get(model, request.target_id, with_for_update=True)
    if row is None:
        raise InvalidInput(f"{request.level} {request.target_id} does not exist")
    existing = session.scalar(select(CreditOperation).where(CreditOperation.op_id == request.op_id))
    if existing is not None:
        if _signature(existing) != _signature(request):
            raise InvalidInput(f"operation id {request.op_id} was used for another operation")
        return existing, True, row.curcredit, row.curcredit
    before = row.curcredit
    amount = request.amount
    if request.kind == "charge":
        row.curcredit = before - amount
    elif request.kind == "refund":
        row.curcredit = before + amount
    elif request.kind == "set_limit":
        row.creditlimit = amount
    elif request.kind == "set_limit_type":
        row.limit_type = request.value
    elif request.kind in ("lock", "unlock"):
        row.locked = request.kind == "lock"
    elif request.kind == "set_deposit":
        row.deposit = amount
    check_balance(request.level, request.target_id, before, row.curcredit)
    op = CreditOperation(
        op_id=request.op_id,
        level=request.level,
        target_id=request.target_id,
        kind=request.kind,
        amount=amount,
        value=request.value,
        comment=request.comment[:255],
        account_id=request.account_id,
    )
    session.add(op)
    session.flush()
    if request.kind in ("charge", "refund"):
        reseller_id, group_id, clid_id = _owners(row, request.level)
        session.add(
            CreditHistory(
                operation_id=op.id,
                level=request.level,
                reseller_id=reseller_id,
                group_id=group_id,
                clid_id=clid_id,
                operation=request.kind,
                balance_before=before,
                amount=amount,
                comment=request.comment[:255],
                account_id=request.account_id,
            )
        )
    return op, False, before, row.curcredit


@dataclass(frozen=True)
class _Pending:
    """What step 2 needs of an operation, read inside its transaction."""

    id: int
    op_id: str
    kind: str
    level: str
    target_id: int
    reseller_id: int
    value: int | str

    @classmethod
    def of(cls, session: Session, op: CreditOperation) -> _Pending:
        row = session.get(MODELS[op.level], op.target_id)
        if op.kind == "set_limit_type":
            value: int | str = op.value or ""
        elif op.kind == "set_deposit":
            value = "" if op.amount is None else stored_micros(op.amount)
        elif op.amount is not None:
            value = stored_micros(op.amount)
        else:
            value = ""
        return cls(
            op.id, op.op_id, op.kind, op.level, op.target_id, _owners(row, op.level)[0], value
        )


def apply_to_redis(factory, engine: CreditEngine, op: _Pending) -> bool:
    """Steps 2 and 3. False when Redis could not be reached (the reconciler retries)."""
    try:
        # the row id as version: an older absolute value never lands over a newer one
        outcome, _ = engine.credit_op(
            op.reseller_id, op.op_id, op.kind, op.level, op.target_id, op.value, version=op.id
        )
        if outcome == "STALE":
            log.info("credit op %s: a newer %s was applied first; skipped", op.op_id, op.kind)
    except CreditError as exc:
        if exc.code != "ERR_UNKNOWN_LEVEL":
            raise
        # Not in Redis yet: provisioning will read the level from MySQL, which has it.
        log.info("credit op %s: %s %d not in Redis yet", op.op_id, op.level, op.target_id)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("credit op %s written to MySQL, not yet to Redis: %s", op.op_id, exc)
        return False
    with factory() as session, session.begin():
        session.execute(
            update(CreditOperation)
            .where(CreditOperation.id == op.id, CreditOperation.applied_at.is_(None))
            .values(applied_at=datetime.now(UTC).replace(tzinfo=None))
        )
    return True


def reapply_pending(factory, engine: CreditEngine, older_than_s: float = 5.0) -> int:
    """The reconciler's part: operations in MySQL that Redis may not have. Returns how many
    were applied now (0 while Redis is still unreachable)."""
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=older_than_s)
    with factory() as session:
        ops = [
            _Pending.of(session, op)
            for op in session.scalars(
                select(CreditOperation)
                .where(CreditOperation.applied_at.is_(None), CreditOperation.created_at <= cutoff)
                .order_by(CreditOperation.id)
                .limit(1000)
            )
        ]
    done = 0
    for op in ops:
        if not apply_to_redis(factory, engine, op):
            break
        log.info("credit op %s re-applied to Redis", op.op_id)
        done += 1
    return done


def validate(r: CreditRequest) -> None:
    if r.kind not in KINDS:
        raise InvalidInput(f"unknown credit operation {r.kind!r} (one of {', '.join(KINDS)})")
    if r.level not in MODELS:
        raise InvalidInput(f"unknown level {r.level!r} (clid, group or reseller)")
    if r.kind in CLID_ONLY and r.level != "clid":
        raise InvalidInput(f"{r.kind} applies to clids only")
    if not 1 <= len(r.op_id) <= 64:
        raise InvalidInput("an operation id has 1 to 64 characters")
    if r.kind in MONEY_KINDS and not (r.kind == "set_deposit" and r.amount is None):
        if r.amount is None:
            raise InvalidInput(f"{r.kind} needs an amount")
        parse_decimal(r.amount, 6, f"{r.kind} amount")
        to_micros(r.amount, f"{r.kind} amount")  # also within what Lua keeps exact
        check_amount(r.kind, r.amount)
        if r.kind in ("charge", "refund") and r.amount == 0:
            raise InvalidInput(f"a {r.kind} of 0 changes nothing")
    if r.kind == "set_limit_type" and r.value not in LIMIT_TYPES:
        raise InvalidInput(f"limit type {r.value!r} is not one of {', '.join(LIMIT_TYPES)}")


def _signature(x) -> tuple:
    amount = None if x.amount is None else Decimal(x.amount).normalize()
    return (x.kind, x.level, x.target_id, amount, x.value or None)


def _owners(row, level: str) -> tuple[int, int | None, int | None]:
    """(reseller id, group id, clid id) of a level row."""
    if level == "reseller":
        return row.id, None, None
    if level == "group":
        return row.reseller_id, row.id, None
    return row.group.reseller_id, row.group_id, row.id


def record_pending(session: Session, request: CreditRequest) -> _Pending:
    """Step 1 inside a caller's larger transaction (e.g. a CDR corrected by `cdr-sync`);
    the caller runs `apply_to_redis` on the result after its commit."""
    op = record(session, request)[0]
    return _Pending.of(session, op)
