"""Reports (issue 16) on real MariaDB: every figure of every grouping against an independent
SQL computation over the CDRs, to the micro-unit, on generated calls across local midnight,
a month end and the DST change of Europe/Berlin; each role's scope and columns; the exports."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import delete, insert, select, text

from admin.report_query import COLUMNS, GROUPINGS, Filters, period_bounds, run_report
from schema import Account, Cdr
from tests import test_back_office
from tests.test_back_office import login
from workers.rollup import add_cdrs, differences

office = test_back_office.office
BERLIN = ZoneInfo("Europe/Berlin")
# Local Berlin 2026-03-01 00:00 .. 2026-04-30 24:00, in UTC (CET +1 until the change on
# 2026-03-29 01:00 UTC, CEST +2 after), written out by hand: not computed by the code tested.
START, END = datetime(2026, 2, 28, 23), datetime(2026, 4, 30, 22)
# The local time of a UTC `calldate`, in SQL, from the same hand-written rule.
LOCAL = (
    "DATE_ADD(calldate, INTERVAL CASE WHEN calldate < '2026-03-29 01:00:00' THEN 1 ELSE 2 END HOUR)"
)
SQL_KEY = {
    "none": "'all'",
    "year": f"YEAR({LOCAL})",
    "month": f"DATE_FORMAT({LOCAL}, '%Y-%m')",
    "day": f"DATE_FORMAT({LOCAL}, '%Y-%m-%d')",
    "hour": f"HOUR({LOCAL})",
    "reseller": "COALESCE(reseller_id, 0)",
    "callshop": "COALESCE(group_id, 0)",
    "booth": "COALESCE(clid_id, 0)",
    "destination": "destination",
    "operator": "COALESCE(billed_by, 0)",
    "payment": "COALESCE(payment, '')",
}
# Instants around which calls are placed: local midnights, the month end, the DST change.
HOT = [
    datetime(2026, 3, 1, 22, 59),  # 23:59 / 00:00 local on 2 March
    datetime(2026, 3, 28, 22, 30),  # local midnight before the change
    datetime(2026, 3, 29, 0, 30),  # 01:30 CET
    datetime(2026, 3, 29, 1, 0),  # 03:00 CEST: the change
    datetime(2026, 3, 31, 21, 45),  # local 31 March 23:45 CEST
    datetime(2026, 3, 31, 22, 0),  # local 1 April 00:00: the month end
    datetime(2026, 2, 28, 22, 50),  # before the period (local 28 Feb 23:50)
    datetime(2026, 4, 30, 21, 55),  # last minutes of the period
    datetime(2026, 4, 30, 22, 5),  # after the period (local 1 May)
]


def generate(session, ids, operators, seed=16, n=500):
    """n CDRs over the office's booths (and unknown payers), inserted and rolled up the way
    settlement does (insert, then add_cdrs, in one transaction)."""
    rnd = random.Random(seed)
    booths = [
        (ids[f"reseller{r}"], ids[f"group{r}{g}"], ids[f"clid{r}{g}"]) for r in "AB" for g in (1, 2)
    ]
    rows = []
    for i in range(n):
        if i % 3 == 0:
            at = rnd.choice(HOT) + timedelta(seconds=rnd.randint(-1800, 1800))
        else:
            at = START + timedelta(seconds=rnd.randint(-86400, (END - START).days * 86400 + 86400))
        reseller, group, clid = rnd.choice(booths) if i % 17 else (None, None, None)
        answered = rnd.random() < 0.7
        billsec = rnd.randint(1, 900) if answered else 0
        billed = answered and rnd.random() < 0.5
        price = Decimal(rnd.randint(0, 5_000_000)) / 10**6 if answered else Decimal(0)
        rows.append(
            {
                "uniqueid": f"gen-{i}",
                "leg": "booth",
                "calldate": at.replace(microsecond=rnd.randint(0, 999_999)),
                "clid_id": clid,
                "group_id": group,
                "reseller_id": reseller,
                "dst": "0049301234567",
                "destination": rnd.choice(["Germany", "France", "=cmd|' /C calc'!A0", ""]),
                "disposition": "ANSWERED" if answered else rnd.choice(["NO ANSWER", "BUSY"]),
                "billsec": billsec,
                "credit": price,
                "callshop_credit": (price * Decimal("0.6")).quantize(Decimal("0.000001")),
                "reseller_credit": (price * Decimal("0.3")).quantize(Decimal("0.000001")),
                "billing_status": "BILLED" if billed else "UNBILLED",
                "payment": rnd.choice(["cash", "credit_card"]) if billed else None,
                "billed_by": rnd.choice(operators) if billed else None,
            }
        )
    session.execute(insert(Cdr.__table__), rows)
    add_cdrs(session, rows)


@pytest.fixture
def reports(office):
    app, factory, _credit, ids = office
    app.config["ASTERBILL_TIMEZONE"] = "Europe/Berlin"
    with factory() as s, s.begin():
        s.execute(delete(Cdr))  # the office's own CDRs were not settled: not in the rollup
        operators = list(s.scalars(select(Account.id).where(Account.role == "operator")))
        generate(s, ids, operators)
    with factory() as s:
        assert differences(s.connection()) == []
    return app, factory, ids


def user(role, reseller_id=None, group_id=None):
    return SimpleNamespace(role=role, reseller_id=reseller_id, group_id=group_id)


def independent(session, group_by, scope_sql="1=1", params=None):
    """The figures straight from the CDRs, by SQL that shares nothing with the report code."""
    rows = session.execute(
        text(
            f"SELECT {SQL_KEY[group_by]} AS k, COUNT(*), "  # noqa: S608 (the test's constants)
            "SUM(disposition = 'ANSWERED'), SUM(billsec), SUM(CEIL(billsec / 60)), "
            "SUM(credit), SUM(callshop_credit), SUM(reseller_credit) FROM cdrs "
            f"WHERE calldate >= :start AND calldate < :end AND {scope_sql} GROUP BY k"
        ),
        {"start": START, "end": END, **(params or {})},
    ).all()
    return {
        str(r[0]): tuple(int(x) for x in r[1:5]) + tuple(Decimal(x) for x in r[5:]) for r in rows
    }


def figures(row):
    return (
        row.calls,
        row.answered,
        row.billsec,
        row.billed_minutes,
        row.credit,
        row.callshop_credit,
        row.reseller_credit,
    )


@pytest.mark.parametrize(
    "who,scope_sql",
    [
        (("admin",), "1=1"),
        (("reseller", "resellerA"), "reseller_id = :r"),
        (("groupadmin", "resellerA", "groupA1"), "group_id = :g"),
        (("operator", "resellerB", "groupB2"), "group_id = :g"),
    ],
)
def test_every_figure_of_every_grouping_equals_the_cdrs(reports, who, scope_sql):
    _app, factory, ids = reports
    role = who[0]
    r = ids[who[1]] if len(who) > 1 else None
    g = ids[who[2]] if len(who) > 2 else None
    someone = user(role, r, g)
    start, end = period_bounds(
        "custom", BERLIN, datetime.now(UTC), date(2026, 3, 1), date(2026, 4, 30)
    )
    assert (start, end) == (START, END)
    with factory() as s:
        for group_by in GROUPINGS:
            report = run_report(s, someone, Filters(start, end), group_by, BERLIN)
            want = independent(s, group_by, scope_sql, {"r": r, "g": g})
            got = {
                ("all" if row.key is None else str(row.key)): figures(row) for row in report.rows
            }
            assert got == want, group_by
            total = tuple(sum(col) for col in zip(*want.values(), strict=True))
            assert figures(report.total) == total, group_by
            assert report.total.calls > 0
        days = run_report(s, someone, Filters(start, end), "day", BERLIN)
    # the DST day has 23 hours and is one day; 31 March and 1 April stay apart
    assert "2026-03-29" in {row.key for row in days.rows} or role != "admin"


def test_a_filter_narrows_exactly_like_sql(reports):
    _app, factory, ids = reports
    with factory() as s:
        f = Filters(START, END, group_id=ids["groupA2"], billing="BILLED", payment="cash")
        report = run_report(s, user("admin"), f, "day", BERLIN)
        want = independent(
            s,
            "day",
            "group_id = :g AND billing_status = 'BILLED' AND payment = 'cash'",
            {"g": ids["groupA2"]},
        )
    assert {row.key: figures(row) for row in report.rows} == want


def test_a_reseller_never_sees_another_resellers_calls(reports):
    _app, factory, ids = reports
    with factory() as s:
        f = Filters(START, END, reseller_id=ids["resellerB"])
        mine = run_report(s, user("reseller", ids["resellerA"]), f, "none", BERLIN)
    assert mine.rows == [] and mine.total.calls == 0


def test_each_role_sees_exactly_its_columns_on_the_page_and_in_the_exports(reports):
    app, _factory, _ids = reports
    query = "/admin/reports/?period=custom&from=2026-03-01&to=2026-04-30&group_by=callshop"
    expected_headers = {
        "root": ["Callshop cost", "Reseller cost", "Shop margin", "Reseller margin"],
        "resA": ["Callshop cost", "Reseller cost", "Reseller margin"],
        "gaA1": ["Callshop cost", "Shop margin"],
        "opA1": [],
    }
    for name, costs in expected_headers.items():
        client = login(app, name)
        page = client.get(query)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        for label in ("Callshop cost", "Reseller cost", "Shop margin", "Reseller margin"):
            assert (label in html) == (label in costs), (name, label)
        exported = client.get(query + "&export=csv").get_data(as_text=True)
        header = next(csv.reader(io.StringIO(exported)))
        assert header[7:] == ["Customer amount", *costs], name
        book = load_workbook(io.BytesIO(client.get(query + "&export=xlsx").data))
        assert [c.value for c in next(book.active.iter_rows())] == header
    # the operator's export names only its own shop
    exported = login(app, "opA1").get(query + "&export=csv").get_data(as_text=True)
    assert [r[0] for r in csv.reader(io.StringIO(exported))][1:] == ["shop-A1", "Total"]


def test_the_xlsx_export_matches_the_csv_and_the_sql_to_the_micro_unit(reports):
    app, factory, _ids = reports
    client = login(app, "root")
    query = "/admin/reports/?period=custom&from=2026-03-01&to=2026-04-30&group_by=destination"
    rows = list(csv.reader(io.StringIO(client.get(query + "&export=csv").get_data(as_text=True))))
    book = load_workbook(io.BytesIO(client.get(query + "&export=xlsx").data))
    cells = [
        ["" if c is None else str(c) for c in r] for r in book.active.iter_rows(values_only=True)
    ]
    assert cells == rows
    with factory() as s:
        want = independent(s, "destination")
    by_label = {r[0]: r for r in rows[1:]}
    # the formula-like destination is neutralised; its figures are the SQL's
    assert "'=cmd|' /C calc'!A0" in by_label and "=cmd|' /C calc'!A0" not in by_label
    germany = by_label["Germany"]
    assert germany[7:10] == [str(x) for x in want["Germany"][4:]]
    assert Decimal(by_label["Total"][7]) == sum(v[4] for v in want.values())
    # the page shows the same totals, to the display decimals
    page = client.get(query).get_data(as_text=True)
    shown = Decimal(by_label["Total"][7]).quantize(Decimal("0.01"))
    assert f">{shown}<" in page


def test_bad_filters_get_a_clear_message(reports):
    app, *_ = reports
    client = login(app, "root")
    for bad, message in (
        ("period=custom&from=2026-04-02&to=2026-04-01", "first day on or before"),
        ("period=custom&from=yesterday", "YYYY-MM-DD"),
        ("group_by=price", "Unknown grouping"),
        ("booth=1%20OR%201=1", "must be a number"),
    ):
        reply = client.get(f"/admin/reports/?{bad}")
        assert reply.status_code == 400 and message in reply.get_data(as_text=True), bad
        assert client.get(f"/admin/reports/?{bad}&export=csv").status_code == 400


def test_the_period_shortcuts_follow_the_local_calendar():
    now = datetime(2026, 3, 29, 12, tzinfo=UTC)  # Sunday, the DST day
    assert period_bounds("today", BERLIN, now) == (
        datetime(2026, 3, 28, 23),
        datetime(2026, 3, 29, 22),
    )
    assert period_bounds("yesterday", BERLIN, now) == (
        datetime(2026, 3, 27, 23),
        datetime(2026, 3, 28, 23),
    )
    assert period_bounds("this_week", BERLIN, now)[0] == datetime(2026, 3, 22, 23)
    assert period_bounds("this_month", BERLIN, now)[0] == datetime(2026, 2, 28, 23)
    assert period_bounds("last_month", BERLIN, now) == (
        datetime(2026, 1, 31, 23),
        datetime(2026, 2, 28, 23),
    )


def test_columns_by_role_never_give_an_operator_a_cost():
    assert COLUMNS["operator"][-1] == "credit"
    assert not {"callshop_credit", "reseller_credit", "shop_margin", "reseller_margin"} & set(
        COLUMNS["operator"]
    )
    assert "reseller_credit" not in COLUMNS["groupadmin"]


def test_charts_are_inline_svg_with_only_the_roles_figures(reports):
    app, *_ = reports
    base = "/admin/reports/?period=custom&from=2026-03-01&to=2026-04-30&group_by="
    for group_by, titles in (
        ("day", ["Customer amount", "Shop margin"]),
        ("hour", ["Calls", "ASR %"]),
        ("callshop", ["Customer amount", "Calls"]),
    ):
        page = login(app, "gaA1").get(base + group_by).get_data(as_text=True)
        charts = page.split('id="report-charts"')[1].split("</div>")[0]
        assert charts.count("<svg") == 2 and "<script" not in charts
        for title in titles:
            assert f"<title>{title}</title>" in charts, group_by
    page = login(app, "opA1").get(base + "day").get_data(as_text=True)
    charts = page.split('id="report-charts"')[1].split("</div>")[0]
    assert "<title>Customer amount</title>" in charts and "margin" not in charts.lower()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN


def test_an_unknown_time_zone_is_refused_with_its_name():
    from ops.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="Mars/Olympus"):
        load_settings({"ASTERBILL_TIMEZONE": "Mars/Olympus"}, env_file=None)
    assert load_settings({}, env_file=None).timezone == "UTC"


def test_the_home_page_dashboard_shows_today_live_calls_and_limits_in_scope(reports):
    from lua.credit import Payer, Pricing
    from tests.ledger import BUY, DE, OWNER

    app, factory, ids = reports
    credit = app.extensions["asterbill_credit"]
    now = datetime.now(UTC).replace(tzinfo=None)
    with factory() as s, s.begin():  # two calls settled today in shop A1, one in B1
        rows = [
            {
                "uniqueid": f"today-{i}",
                "calldate": now,
                "clid_id": ids[f"clid{shop}"],
                "group_id": ids[f"group{shop}"],
                "reseller_id": ids[f"reseller{shop[0]}"],
                "disposition": "ANSWERED",
                "billsec": 60,
                "credit": Decimal("1.250000"),
                "callshop_credit": Decimal("0.500000"),
                "reseller_credit": Decimal("0.200000"),
            }
            for i, shop in enumerate(("A1", "A1", "B1"))
        ]
        s.execute(insert(Cdr.__table__), rows)
        add_cdrs(s, rows)
    live = Payer(ids["resellerA"], ids["groupA1"], ids["clidA1"])
    credit.answer("live-1", live, Pricing(DE, BUY, OWNER), int(now.timestamp() * 1000))

    page = login(app, "gaA1").get("/admin/").get_data(as_text=True)
    today = page.split('id="dashboard-today"')[1].split("</table>")[0]
    assert ">2<" in today and ">2.50<" in today and ">1.50<" in today  # calls, amount, margin
    assert "Reseller" not in today
    assert "shop-A1: 1" in page.split('id="dashboard-live"')[1].split("</ul>")[0]
    operator = login(app, "opA1").get("/admin/").get_data(as_text=True)
    today = operator.split('id="dashboard-today"')[1].split("</table>")[0]
    assert ">2.50<" in today and "margin" not in today.lower() and "0.50" not in today
    assert "dashboard-waiting" not in operator
    admin = login(app, "root").get("/admin/").get_data(as_text=True)
    today = admin.split('id="dashboard-today"')[1].split("</table>")[0]
    assert ">3<" in today and ">3.75<" in today and "dashboard-waiting" in admin


def test_the_report_page_in_chinese_names_its_rows_and_payment_methods_in_chinese(reports):
    """Issue 13 point 21 on the report page with real rows: labels, the payment methods
    grouped by, the "All" row of an ungrouped report; the exports' header too."""
    from tests.test_chinese_everywhere import chinese_client, visible_without

    app, _factory, _ids = reports
    client = chinese_client(app, "root")
    base = "/admin/reports/?period=custom&from=2026-03-01&to=2026-04-30&group_by="
    for group_by in ("payment", "none", "day", "hour"):
        html = client.get(base + group_by).get_data(as_text=True)
        assert "<td" in html, group_by  # real rows, not an empty report
        assert visible_without(html, "Europe/Berlin") == set(), group_by  # the zone id is data
    html = client.get(base + "payment").get_data(as_text=True)
    assert "现金" in html and "信用卡" in html
    exported = client.get(base + "payment&export=csv").get_data(as_text=True)
    assert next(csv.reader(io.StringIO(exported)))[:2] == ["付款方式", "通话记录"]
