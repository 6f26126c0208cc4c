"""The home page's dashboard (issue 16 point 4, first slice): live calls now per shop, today
against yesterday at the same hour, the five booths nearest their limit, and calls waiting
for settlement. Every figure is scoped like the reports (admin.report_query.scope_clause and
COLUMNS), so an operator sees counts and its shop's takings, never a cost."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from admin import scope
from admin.report_query import COLUMNS, Filters, Row, local_midnight, run_report
from lua.credit import CreditEngine, CreditError
from schema import AccountGroup, Clid


@dataclass
class Dashboard:
    today: Row
    yesterday: Row  # yesterday up to the same hour
    columns: tuple[str, ...]
    live_by_shop: list[tuple[str, int]] = field(default_factory=list)
    nearest_limit: list[tuple[Clid, object]] = field(default_factory=list)
    waiting_settlement: int | None = None  # admin and resellers only


def build(session, user, credit: CreditEngine, tz: ZoneInfo, now: datetime) -> Dashboard:
    """Today from local midnight to the end of the current hour, yesterday over the same
    hours (the rollup is hourly: 'the same hour' is whole hours)."""
    midnight = local_midnight(now.astimezone(tz).date(), tz)
    upto = now.astimezone(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    upto += timedelta(hours=1)
    today = run_report(session, user, Filters(midnight, upto), "none", tz).total
    yesterday = run_report(
        session, user, Filters(midnight - timedelta(days=1), upto - timedelta(days=1)), "none", tz
    ).total
    board = Dashboard(today, yesterday, COLUMNS[user.role])
    board.live_by_shop = _live_by_shop(session, user, credit)
    board.nearest_limit = _nearest_limit(session, user)
    if user.role in ("admin", "reseller"):
        resellers = (
            credit.resellers_with_calls("ended") if user.role == "admin" else [user.reseller_id]
        )
        board.waiting_settlement = sum(credit.client.hlen(credit.keys.ended(r)) for r in resellers)
    return board


def _live_by_shop(session, user, credit: CreditEngine) -> list[tuple[str, int]]:
    if user.role == "admin":
        resellers = credit.resellers_with_calls("calls")
    else:
        resellers = [user.reseller_id] if user.reseller_id else []
    counts: Counter = Counter()
    for reseller_id in resellers:
        for call_id in credit.live_calls(reseller_id):
            try:
                payer = credit.payer_of(reseller_id, call_id)
            except CreditError:
                continue  # ended between the two reads
            if user.role in ("groupadmin", "operator") and payer.group_id != user.group_id:
                continue
            counts[payer.group_id] += 1
    names = dict(
        session.execute(
            select(AccountGroup.id, AccountGroup.name).where(AccountGroup.id.in_(list(counts)))
        ).all()
    )
    return sorted(((names.get(g, f"#{g}"), n) for g, n in counts.items()), key=lambda p: -p[1])


def _nearest_limit(session, user) -> list[tuple[Clid, object]]:
    """The five booths (with a limit) with the least credit left, in the user's scope."""
    left = Clid.creditlimit - Clid.curcredit
    rows = session.execute(
        select(Clid, left)
        .where(scope.visible(Clid, user), Clid.limit_type != "none")
        .order_by(left, Clid.id)
        .limit(5)
    ).all()
    return [(clid, remaining) for clid, remaining in rows]
