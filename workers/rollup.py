"""The CDR rollup (schema/reports.py): added to by settlement in the CDRs' transaction,
moved by a check-out, rebuilt from the CDRs, and checked against them.

Exactness rests on settlement's own guard: `settle` inserts only the calls whose CDR is not in
MySQL yet, and calls `add_cdrs` with exactly those rows in the same transaction, so a retried
or replayed batch adds nothing twice and a rolled-back batch adds nothing at all.

Buckets are whole UTC hours. A report in a zone whose offset is a whole number of hours
(every DST zone of Europe and the Americas) splits days exactly; a zone with a half- or
quarter-hour offset (India, Nepal, parts of Australia) would need 15-minute buckets: the
report page says so instead of showing a day that is off by that fraction of an hour.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy import String, case, cast, delete, func, insert, literal, select, type_coerce
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from schema import Cdr
from schema.reports import DIMENSIONS, MEASURES, CdrRollup

ROLLUP = CdrRollup.__table__
ZERO = Decimal(0)


def bucket_key(row: Mapping) -> tuple:
    """The rollup key of one CDR (a row dict as settlement inserts it, or a Cdr)."""
    get = row.get if isinstance(row, Mapping) else lambda k: getattr(row, k)
    return (
        get("calldate").replace(minute=0, second=0, microsecond=0),
        get("reseller_id") or 0,
        get("group_id") or 0,
        get("clid_id") or 0,
        get("destination") or "",
        get("disposition"),
        get("billing_status") or "UNBILLED",
        get("payment") or "",
        get("billed_by") or 0,
    )


def measures(row) -> tuple:
    get = row.get if isinstance(row, Mapping) else lambda k: getattr(row, k)
    billsec = get("billsec") or 0
    return (
        1,
        1 if get("disposition") == "ANSWERED" else 0,
        billsec,
        -(-billsec // 60),  # minutes rounded up, per call
        Decimal(get("credit") or ZERO),
        Decimal(get("callshop_credit") or ZERO),
        Decimal(get("reseller_credit") or ZERO),
    )


def add_cdrs(session, rows: Iterable, sign: int = 1) -> None:
    """Add (sign=-1: take away) these CDRs' figures to the rollup, in the caller's transaction.

    `rows`: the dicts settlement inserts, or Cdr objects (a check-out takes them away with
    their old status, then adds them with the new one)."""
    sums: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0, ZERO, ZERO, ZERO])
    for row in rows:
        total = sums[bucket_key(row)]
        for i, v in enumerate(measures(row)):
            total[i] += sign * v
    if not sums:
        return
    # In key order: two transactions touching the same buckets lock them in the same order.
    values = [
        dict(zip(DIMENSIONS, key, strict=True)) | dict(zip(MEASURES, sums[key], strict=True))
        for key in sorted(sums)
    ]
    session.execute(_upsert(session.get_bind().dialect.name), values)


def _upsert(dialect: str):
    if dialect == "mysql":
        stmt = mysql_insert(ROLLUP)
        return stmt.on_duplicate_key_update({m: ROLLUP.c[m] + stmt.inserted[m] for m in MEASURES})
    if dialect == "sqlite":
        stmt = sqlite_insert(ROLLUP)
        return stmt.on_conflict_do_update(
            index_elements=list(DIMENSIONS),
            set_={m: ROLLUP.c[m] + stmt.excluded[m] for m in MEASURES},
        )
    raise NotImplementedError(f"rollup upsert on {dialect}")


def move_billing(session, cdrs: Iterable[Cdr], change) -> None:
    """A check-out (or its undo): `change(cdr)` sets billing_status / payment / billed_by on
    each Cdr; the rollup moves the calls' figures from the old bucket to the new one, in the
    caller's transaction. Lock the CDRs (SELECT ... FOR UPDATE) before calling."""
    cdrs = list(cdrs)
    add_cdrs(session, cdrs, sign=-1)
    for cdr in cdrs:
        change(cdr)
    session.flush()
    add_cdrs(session, cdrs)


def _hour(dialect: str, column):
    if dialect == "sqlite":
        # SQLAlchemy's own text form of a DateTime on SQLite: the upsert's keys must match
        return func.strftime("%Y-%m-%d %H:00:00.000000", column)
    return func.date_format(column, "%Y-%m-%d %H:00:00")


def _grouped_cdrs(dialect: str):
    """The rollup computed from the CDRs by SQL, in rollup columns."""
    dims = [
        cast(_hour(dialect, Cdr.calldate), ROLLUP.c.hour.type).label("hour")
        if dialect != "sqlite"
        else _hour(dialect, Cdr.calldate).label("hour"),
        func.coalesce(Cdr.reseller_id, 0).label("reseller_id"),
        func.coalesce(Cdr.group_id, 0).label("group_id"),
        func.coalesce(Cdr.clid_id, 0).label("clid_id"),
        Cdr.destination.label("destination"),
        Cdr.disposition.label("disposition"),
        Cdr.billing_status.label("billing_status"),
        func.coalesce(type_coerce(Cdr.payment, String), literal("")).label("payment"),
        func.coalesce(Cdr.billed_by, 0).label("operator_id"),
    ]
    sums = [
        func.count().label("calls"),
        func.sum(case((Cdr.disposition == "ANSWERED", 1), else_=0)).label("answered"),
        func.sum(Cdr.billsec).label("billsec"),
        func.sum((Cdr.billsec + 59) // 60).label("billed_minutes"),
        func.sum(Cdr.credit).label("credit"),
        func.sum(Cdr.callshop_credit).label("callshop_credit"),
        func.sum(Cdr.reseller_credit).label("reseller_credit"),
    ]
    return select(*dims, *sums).group_by(*dims)


def rebuild(connection) -> int:
    """Empty the rollup and fill it from the CDRs (one INSERT ... SELECT). Run it with
    settlement stopped (or in a transaction that locks out settlement): a CDR inserted
    meanwhile would be counted in neither."""
    dialect = connection.dialect.name
    connection.execute(delete(ROLLUP))
    grouped = _grouped_cdrs(dialect)
    result = connection.execute(
        insert(ROLLUP).from_select(list(DIMENSIONS) + list(MEASURES), grouped)
    )
    return result.rowcount


def differences(connection) -> list[str]:
    """Where the rollup and the CDRs disagree, one line per bucket; empty when equal."""
    dialect = connection.dialect.name
    expected = {_key(r): _figures(r) for r in connection.execute(_grouped_cdrs(dialect))}
    found = {
        _key(r): _figures(r) for r in connection.execute(select(ROLLUP).where(ROLLUP.c.calls != 0))
    }
    out = []
    for key in sorted(expected.keys() | found.keys(), key=repr):
        want, got = expected.get(key), found.get(key)
        if want != got:
            out.append(f"rollup {key}: CDRs {want}, rollup {got}")
    # A bucket emptied by a check-out may stay with zero calls: its sums must be zero too.
    for r in connection.execute(select(ROLLUP).where(ROLLUP.c.calls == 0)):
        if any(_figures(r)):
            out.append(f"rollup {_key(r)}: zero calls but sums {_figures(r)}")
    return out


def _key(row) -> tuple:
    m = row._mapping
    hour = m["hour"]
    if isinstance(hour, str):
        hour = datetime.fromisoformat(hour)
    return (hour, *(m[d] for d in DIMENSIONS[1:]))


def _figures(row) -> tuple:
    m = row._mapping
    return tuple(
        Decimal(m[k]).quantize(Decimal("0.000001")) if k.endswith("credit") else int(m[k])
        for k in MEASURES
    )
