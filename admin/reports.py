"""The report page and its CSV / XLSX exports (issue 16): every role, scoped on the server by
admin.report_query (rows: `scope_clause`; figures: `COLUMNS`), read from the CDR rollup."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from flask import Response, abort, current_app, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from admin import display, scope
from admin.charts import report_charts
from admin.extensions import db
from admin.report_query import (
    BILLING,
    COLUMNS,
    GROUPINGS,
    MONEY,
    PERIODS,
    Filters,
    Report,
    fractional_offset,
    period_bounds,
    run_report,
)
from rating.csv_safety import neutralise
from schema import Account, AccountGroup, Clid, Reseller
from schema.calls import DISPOSITIONS, PAYMENTS

ROLES = ("admin", "reseller", "groupadmin", "operator")
LABELS = {
    "calls": _l("Calls"),
    "answered": _l("Answered"),
    "asr": _l("ASR %"),
    "acd": _l("ACD"),
    "billsec": _l("Billsec"),
    "billed_minutes": _l("Billed minutes"),
    "credit": _l("Customer amount"),
    "callshop_credit": _l("Callshop cost"),
    "reseller_credit": _l("Reseller cost"),
    "shop_margin": _l("Shop margin"),
    "reseller_margin": _l("Reseller margin"),
}
GROUP_LABELS = {
    "none": _l("Totals"),
    "year": _l("Year"),
    "month": _l("Month"),
    "day": _l("Day"),
    "hour": _l("Hour of day"),
    "reseller": _l("Reseller"),
    "callshop": _l("Callshop"),
    "booth": _l("Booth"),
    "destination": _l("Destination"),
    "operator": _l("Operator"),
    "payment": _l("Payment method"),
}
PERIOD_LABELS = {
    "today": _l("Today"),
    "yesterday": _l("Yesterday"),
    "this_week": _l("This week"),
    "this_month": _l("This month"),
    "last_month": _l("Last month"),
    "custom": _l("Custom"),
}
FILTER_NAMES = {"disposition": _l("disposition"), "payment": _l("payment")}  # in errors
EXACT = Decimal("0.000001")


class BadReportRequest(ValueError):
    pass


def read_request(args, tz: ZoneInfo, now: datetime) -> tuple[Filters, str, dict]:
    """The filters and grouping of a request's query string, or BadReportRequest."""
    period = args.get("period", "today")
    group_by = args.get("group_by", "none")
    if period not in PERIODS:
        raise BadReportRequest(_("Unknown period."))
    if group_by not in GROUPINGS:
        raise BadReportRequest(_("Unknown grouping."))
    try:
        first = date.fromisoformat(args["from"]) if args.get("from") else None
        last = date.fromisoformat(args["to"]) if args.get("to") else None
    except ValueError:
        raise BadReportRequest(_("Dates are written YYYY-MM-DD.")) from None
    try:
        start, end = period_bounds(period, tz, now, first, last)
    except ValueError:
        raise BadReportRequest(
            _("A custom period needs a first day on or before its last day.")
        ) from None
    f = Filters(start, end)
    for name, attr in (
        ("reseller", "reseller_id"),
        ("callshop", "group_id"),
        ("booth", "clid_id"),
        ("operator", "operator_id"),
    ):
        raw = args.get(name, "")
        if raw:
            if not (raw.isascii() and raw.isdigit()):
                raise BadReportRequest(_("A filter id must be a number."))
            setattr(f, attr, int(raw))
    f.destination = args.get("destination") or None
    for name, allowed in (("disposition", DISPOSITIONS), ("payment", PAYMENTS)):
        raw = args.get(name) or None
        if raw is not None and raw not in allowed:
            raise BadReportRequest(_("Unknown %(name)s.", name=FILTER_NAMES[name]))
        setattr(f, name, raw)
    f.billing = args.get("billing") or "all"
    if f.billing not in BILLING:
        raise BadReportRequest(_("Unknown billing status."))
    chosen = {"period": period, "group_by": group_by, "from": first, "to": last}
    return f, group_by, chosen


def translate_row_labels(report: Report) -> None:
    """The row names that are words, not data (the single "All" row, payment methods), in
    the user's language; names of resellers, shops, booths and users stay as they are."""
    for row in report.rows:
        if row.label == "All" or (report.group_by == "payment" and row.label in PAYMENTS):
            row.label = _(row.label)


def cell(name: str, value, exact: bool = False) -> str:
    """One figure as text: money exact (exports) or to the display decimals (page)."""
    if value is None:
        return ""
    if name in MONEY:
        return str(Decimal(value).quantize(EXACT)) if exact else display.money_text(value)
    if name == "acd" and not exact:
        return f"{value // 60}:{value % 60:02d}"
    return str(value)


def table(report: Report, role: str, exact: bool) -> tuple[list[str], list[list]]:
    """Header and rows (the totals row last) of what `role` may see, as cell texts."""
    names = COLUMNS[role]
    header = [str(GROUP_LABELS[report.group_by])] + [str(LABELS[n]) for n in names]
    rows = []
    for row in [*report.rows, report.total]:
        label = str(_("Total")) if row is report.total else row.label
        rows.append([label] + [cell(n, v, exact) for n, v in row.figures(role).items()])
    return header, rows


class ReportPage(BaseView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.role in ROLES

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login"))
        abort(403)

    @expose("/")
    def index(self):
        tz = ZoneInfo(current_app.config.get("ASTERBILL_TIMEZONE", "UTC"))
        role = current_user.role
        error, report, chosen = None, None, {"period": "today", "group_by": "none"}
        try:
            f, group_by, chosen = read_request(request.args, tz, datetime.now(UTC))
            report = run_report(db.session, current_user, f, group_by, tz)
            translate_row_labels(report)
        except BadReportRequest as exc:
            error = str(exc)
        export = request.args.get("export")
        if export in ("csv", "xlsx"):
            if report is None:
                return Response(error, status=400, mimetype="text/plain")
            header, rows = table(report, role, exact=True)
            return (_csv if export == "csv" else _xlsx)(header, rows)
        header, rows = table(report, role, exact=False) if report else ([], [])
        page = self.render(
            "reports.html",
            error=error,
            header=header,
            rows=rows,
            chosen=chosen,
            args=request.args,
            periods=PERIOD_LABELS,
            groupings=GROUP_LABELS,
            options=_options(current_user),
            dispositions=DISPOSITIONS,
            payments=PAYMENTS,
            billing=BILLING,
            timezone=tz.key,
            fractional=report is not None and fractional_offset(tz, f.start, f.end),
            currency=current_app.config["ASTERBILL_CURRENCY"],
            charts=report_charts(report, role, {k: str(v) for k, v in LABELS.items()}, _shown)
            if report
            else [],
        )
        return (page, 400) if error else page


def _shown(value) -> Decimal:
    return Decimal(display.money_text(value))


def _options(user) -> dict:
    """The names a user may pick in the filters: only those of its own scope."""

    def pick(model, label):
        rows = db.session.scalars(select(model).where(scope.visible(model, user))).all()
        return [(r.id, label(r)) for r in rows]

    return {
        "reseller": pick(Reseller, lambda r: r.name) if user.role in ("admin",) else [],
        "callshop": pick(AccountGroup, lambda g: g.name)
        if user.role in ("admin", "reseller")
        else [],
        "booth": pick(Clid, lambda c: f"{c.display} ({c.clid})" if c.display else c.clid),
        "operator": pick(Account, lambda a: a.username),
    }


def _csv(header, rows) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([neutralise(v) for v in row])
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=report.csv"},
    )


def _xlsx(header, rows) -> Response:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "report"
    sheet.append(header)
    for row in rows:
        # text cells (money as exact decimal strings), neutralised like the CSV
        sheet.append([neutralise(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return Response(
        out.getvalue(),
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": "attachment; filename=report.xlsx"},
    )
