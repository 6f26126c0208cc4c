"""Reports from the CDR rollup: filters, groupings, the figures of each row and which of them
each role may see. No Flask here: the page, the exports and the tests all call `run_report`.

Time groupings are in the configured zone. The rollup is hourly in UTC, so the query groups by
UTC hour and each hour is then put in its local year / month / day / hour of day: a day of 23
or 25 hours at a DST change comes out right. Whole-hour buckets cannot split a zone whose
offset has half or quarter hours (see workers/rollup.py); `fractional_offset` tells the page.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import false, func, select, true

from schema import Account, AccountGroup, Clid, Reseller
from schema.reports import CdrRollup as R

TIME_GROUPS = ("year", "month", "day", "hour")
GROUPINGS = (
    "none",
    *TIME_GROUPS,
    "reseller",
    "callshop",
    "booth",
    "destination",
    "operator",
    "payment",
)
PERIODS = ("today", "yesterday", "this_week", "this_month", "last_month", "custom")
BILLING = ("all", "BILLED", "UNBILLED")
COUNTS = ("calls", "answered", "asr", "acd", "billsec", "billed_minutes")
# The figures each role sees (ORIGINAL.md 7.3 and DESIGN.md section 2: the prices down from
# one's own level). shop_margin = customer - callshop price; reseller_margin = callshop -
# reseller price.
COLUMNS = {
    "admin": (
        *COUNTS,
        "credit",
        "callshop_credit",
        "reseller_credit",
        "shop_margin",
        "reseller_margin",
    ),
    "reseller": (*COUNTS, "credit", "callshop_credit", "reseller_credit", "reseller_margin"),
    "groupadmin": (*COUNTS, "credit", "callshop_credit", "shop_margin"),
    "operator": (*COUNTS, "credit"),
}
MONEY = ("credit", "callshop_credit", "reseller_credit", "shop_margin", "reseller_margin")
SQL_KEYS = {
    "reseller": R.reseller_id,
    "callshop": R.group_id,
    "booth": R.clid_id,
    "destination": R.destination,
    "operator": R.operator_id,
    "payment": R.payment,
}


@dataclass
class Filters:
    start: datetime  # UTC, naive, inclusive
    end: datetime  # UTC, naive, exclusive
    reseller_id: int | None = None
    group_id: int | None = None
    clid_id: int | None = None
    destination: str | None = None
    disposition: str | None = None
    billing: str = "all"
    payment: str | None = None
    operator_id: int | None = None


@dataclass
class Row:
    key: object = None
    label: str = ""
    calls: int = 0
    answered: int = 0
    billsec: int = 0
    billed_minutes: int = 0
    credit: Decimal = Decimal(0)
    callshop_credit: Decimal = Decimal(0)
    reseller_credit: Decimal = Decimal(0)

    def add(self, other) -> None:
        for name in ("calls", "answered", "billsec", "billed_minutes"):
            setattr(self, name, getattr(self, name) + int(getattr(other, name)))
        for name in ("credit", "callshop_credit", "reseller_credit"):
            setattr(self, name, getattr(self, name) + Decimal(getattr(other, name)))

    @property
    def asr(self) -> Decimal | None:
        """Answered calls as a percentage of all calls, 2 decimals."""
        if not self.calls:
            return None
        return (Decimal(100 * self.answered) / self.calls).quantize(Decimal("0.01"), ROUND_HALF_UP)

    @property
    def acd(self) -> int | None:
        """Average call duration of the answered calls, whole seconds."""
        if not self.answered:
            return None
        return int((Decimal(self.billsec) / self.answered).quantize(Decimal(1), ROUND_HALF_UP))

    @property
    def shop_margin(self) -> Decimal:
        return self.credit - self.callshop_credit

    @property
    def reseller_margin(self) -> Decimal:
        return self.callshop_credit - self.reseller_credit

    def figures(self, role: str) -> dict:
        """Only the figures `role` may see: the page and the exports read nothing else."""
        return {name: getattr(self, name) for name in COLUMNS[role]}


@dataclass
class Report:
    group_by: str
    rows: list[Row] = field(default_factory=list)
    total: Row = field(default_factory=lambda: Row(label="Total"))


def scope_clause(user):
    """The rollup rows `user` may see: admin all, a reseller its own, a shop its own."""
    if user.role == "admin":
        return true()
    if user.role == "reseller":
        return R.reseller_id == user.reseller_id
    if user.role in ("groupadmin", "operator"):
        return R.group_id == user.group_id
    return false()


def period_bounds(
    period: str, tz: ZoneInfo, now: datetime, first: date | None = None, last: date | None = None
) -> tuple[datetime, datetime]:
    """[start, end) in naive UTC of a named period in zone `tz`; custom: days first..last."""
    today = now.astimezone(tz).date()
    if period == "today":
        first = last = today
    elif period == "yesterday":
        first = last = today - timedelta(days=1)
    elif period == "this_week":  # Monday to today
        first, last = today - timedelta(days=today.weekday()), today
    elif period == "this_month":
        first, last = today.replace(day=1), today
    elif period == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        first = last.replace(day=1)
    elif period != "custom":
        raise ValueError(f"unknown period {period!r}")
    if first is None or last is None or last < first:
        raise ValueError("a custom period needs a first day on or before its last day")
    return local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    local = datetime(day.year, day.month, day.day, tzinfo=tz)
    return local.astimezone(UTC).replace(tzinfo=None)


def fractional_offset(tz: ZoneInfo, start: datetime, end: datetime) -> bool:
    """Does `tz` have an offset that is not whole hours at either end of the period?"""
    return any(
        (at.replace(tzinfo=UTC).astimezone(tz).utcoffset().total_seconds() % 3600) != 0
        for at in (start, end)
    )


def _where(user, f: Filters):
    clauses = [scope_clause(user), R.hour >= f.start, R.hour < f.end]
    for column, value in (
        (R.reseller_id, f.reseller_id),
        (R.group_id, f.group_id),
        (R.clid_id, f.clid_id),
        (R.destination, f.destination),
        (R.disposition, f.disposition),
        (R.payment, f.payment),
        (R.operator_id, f.operator_id),
    ):
        if value is not None and value != "":
            clauses.append(column == value)
    if f.billing != "all":
        clauses.append(R.billing_status == f.billing)
    return clauses


SUMS = (
    func.sum(R.calls).label("calls"),
    func.sum(R.answered).label("answered"),
    func.sum(R.billsec).label("billsec"),
    func.sum(R.billed_minutes).label("billed_minutes"),
    func.sum(R.credit).label("credit"),
    func.sum(R.callshop_credit).label("callshop_credit"),
    func.sum(R.reseller_credit).label("reseller_credit"),
)


def run_report(session, user, f: Filters, group_by: str, tz: ZoneInfo) -> Report:
    if group_by not in GROUPINGS:
        raise ValueError(f"unknown grouping {group_by!r}")
    report = Report(group_by)
    where = _where(user, f)
    if group_by == "none":
        key = None
    elif group_by in TIME_GROUPS:
        key = R.hour
    else:
        key = SQL_KEYS[group_by]
    columns = ([key.label("k")] if key is not None else []) + list(SUMS)
    query = select(*columns).where(*where)
    if key is not None:
        query = query.group_by(key)
    rows: dict[object, Row] = defaultdict(Row)
    for r in session.execute(query):
        if not r.calls:
            continue  # no calls in scope (an empty sum, or buckets emptied by check-outs)
        k = _local_key(r.k, group_by, tz) if key is not None else None
        rows[k].add(r)
    for k in sorted(rows, key=lambda k: (k is None, k)):
        row = rows[k]
        row.key = k
        report.rows.append(row)
        report.total.add(row)
    _label(session, report)
    return report


def _local_key(value, group_by: str, tz: ZoneInfo):
    if group_by not in TIME_GROUPS:
        return value
    local = value.replace(tzinfo=UTC).astimezone(tz)
    return {
        "year": lambda: local.year,
        "month": lambda: f"{local.year:04d}-{local.month:02d}",
        "day": lambda: local.date().isoformat(),
        "hour": lambda: local.hour,
    }[group_by]()


def _label(session, report: Report) -> None:
    """Names for ids: reseller and shop names, booth display name and number, usernames."""
    model = {
        "reseller": (Reseller, lambda r: r.name),
        "callshop": (AccountGroup, lambda g: g.name),
        "booth": (Clid, lambda c: f"{c.display} ({c.clid})" if c.display else c.clid),
        "operator": (Account, lambda a: a.username),
    }.get(report.group_by)
    names = {}
    if model is not None:
        ids = [r.key for r in report.rows if r.key]
        cls, name = model
        names = {o.id: name(o) for o in session.scalars(select(cls).where(cls.id.in_(ids)))}
    for row in report.rows:
        if model is not None:
            row.label = names.get(row.key) or ("-" if not row.key else f"#{row.key}")
        elif report.group_by == "hour":
            row.label = f"{row.key:02d}:00"
        elif report.group_by == "none":
            row.label = "All"
        else:
            row.label = str(row.key) if row.key not in (None, "") else "-"
