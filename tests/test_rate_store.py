"""Rate imports (all-or-nothing), export, delete-matching, sync to Redis, and quotes."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import xlwt
from sqlalchemy import func, select

from lua.keys import Keys
from ops.errors import InvalidInput
from rating import ratefiles
from rating.book import RedisRateBook
from rating.price import Rate
from rating.quote import quote
from rating.select import BookRow
from rating.store import Target, book_rows, delete_matching, import_rates, sync_all, sync_scope
from schema import CustomerRate
from tests.tenants import make_tenant

HEADER = "dialprefix,numlen,destination,connectcharge,initblock,rateinitial,billingblock\n"
GOOD = HEADER + (
    "0049,0,Germany,0.4,60,0.4,60\n"
    "0049,13,Germany 13-digit,0,0,0.000500,60\n"
    "default,0,Rest of world,0,0,1.5,60\n"
)


def write(tmp_path: Path, text: str, name: str = "rates.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows_of(path: Path, mapping=None, header=True):
    return ratefiles.mapped_rows(ratefiles.read_cells(path), mapping or {}, header=header)


def count(db, model=CustomerRate) -> int:
    return db.scalar(select(func.count()).select_from(model))


@pytest.fixture
def book(redis_server, key_prefix) -> RedisRateBook:
    return RedisRateBook(redis_server, Keys(key_prefix))


def test_an_import_lands_exactly_and_reaches_redis(db, book, tmp_path):
    booth = make_tenant(db)
    target = Target("customer", booth.group.reseller_id, booth.group_id)

    report = import_rates(db, target, rows_of(write(tmp_path, GOOD)))
    sync_scope(db, book, target)

    assert (report.inserted, report.updated) == (3, 0)
    stored = db.scalars(select(CustomerRate).order_by(CustomerRate.numlen)).all()
    assert [(r.dialprefix, r.numlen, r.rateinitial) for r in stored] == [
        ("0049", 0, Decimal("0.400000")),
        ("default", 0, Decimal("1.500000")),
        ("0049", 13, Decimal("0.000500")),
    ]
    found = book.lookup("0049301234567", booth.group.reseller_id, booth.group_id)
    assert found["customer"].destination == "Germany 13-digit"
    assert found["customer"].per_minute == 500
    assert (
        book.lookup("0033", booth.group.reseller_id, booth.group_id)["customer"].per_minute
        == 1_500_000
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0044,0,UK,-0.1,0,0.1,60", "connectcharge '-0.1' is negative"),
        ("0044,0,UK,0,0,0.1,0", "billingblock 0 is out of range"),
        ("44x,0,UK,0,0,0.1,60", "dialprefix '44x' is not digits"),
        ("0044,0,UK,0,0,0.1234567,60", "rateinitial '0.1234567' has more than 6 decimals"),
        ("0044,0,UK,0,0,,60", "rateinitial is empty"),
        ("0044,abc,UK,0,0,0.1,60", "numlen 'abc' is not a whole number"),
        ("0044,0,UK,0,-5,0.1,60", "initblock -5 is out of range"),
        ("0044,0,UK,0,0,NaN,60", "rateinitial 'NaN' is not a number"),
        ("0049,0,Germany again,0,0,0.1,60", "row 5: duplicate of row 2"),
    ],
)
def test_one_bad_row_rejects_the_whole_file_with_its_row_number(db, tmp_path, line, reason):
    booth = make_tenant(db)
    path = write(tmp_path, GOOD + line + "\n")
    with pytest.raises(InvalidInput) as err:
        import_rates(db, Target("customer", booth.group.reseller_id, booth.group_id), rows_of(path))
    assert reason in str(err.value) and "nothing imported" in str(err.value)
    if "duplicate" not in reason:
        assert "row 5:" in str(err.value)
    assert count(db) == 0


def test_every_bad_row_is_listed(db, tmp_path):
    booth = make_tenant(db)
    path = write(tmp_path, HEADER + "x,0,a,0,0,1,60\n0049,0,b,0,0,1,60\ny,0,c,0,0,-1,60\n")
    with pytest.raises(InvalidInput, match=r"2 bad row\(s\).*row 2: .*row 4: "):
        import_rates(db, Target("customer", booth.group.reseller_id, booth.group_id), rows_of(path))


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (lambda b: Target("customer", 999_999, 0), "reseller 999999 does not exist"),
        (lambda b: Target("customer", b.group.reseller_id, 999_999), "group 999999 does not"),
        (lambda b: Target("customer", 0, b.group_id), "belongs to reseller"),
        (lambda b: Target("reseller", b.group.reseller_id, b.group_id), "no group scope"),
    ],
)
def test_an_import_into_an_unknown_or_foreign_scope_is_refused(db, tmp_path, target, reason):
    booth = make_tenant(db)
    with pytest.raises(InvalidInput, match=reason):
        import_rates(db, target(booth), rows_of(write(tmp_path, GOOD)))
    assert count(db) == 0


def test_existing_rates_need_replace_and_replace_updates_them(db, tmp_path):
    booth = make_tenant(db)
    target = Target("customer", booth.group.reseller_id, booth.group_id)
    import_rates(db, target, rows_of(write(tmp_path, GOOD)))
    changed = write(tmp_path, HEADER + "0049,0,Germany,0.4,60,0.35,60\n0086,0,China,0,0,0.1,6\n")

    with pytest.raises(InvalidInput, match=r"row 2: rate 0049/0 already exists"):
        import_rates(db, target, rows_of(changed))
    assert count(db) == 3

    report = import_rates(db, target, rows_of(changed), replace=True)
    assert (report.inserted, report.updated) == (1, 1)
    germany = db.scalar(
        select(CustomerRate).where(CustomerRate.dialprefix == "0049", CustomerRate.numlen == 0)
    )
    assert germany.rateinitial == Decimal("0.35")


def test_a_column_mapping_reads_files_without_our_header(db, tmp_path):
    booth = make_tenant(db)
    path = write(tmp_path, "Country;Code;Per minute\nGermany;0049;0,4\n".replace(",", "."))
    path = write(tmp_path, path.read_text().replace(";", ","), "mapped.csv")
    mapping = {"destination": "Country", "dialprefix": "2", "rateinitial": "per minute"}
    report = import_rates(
        db, Target("customer", booth.group.reseller_id, booth.group_id), rows_of(path, mapping)
    )
    assert report.inserted == 1
    rate = db.scalars(select(CustomerRate)).one()
    assert (rate.destination, rate.billingblock, rate.rateinitial) == (
        "Germany",
        60,
        Decimal("0.4"),
    )


def test_xlsx_and_xls_files_import_like_csv(db, tmp_path):
    booth = make_tenant(db)
    table = [
        ["dialprefix", "numlen", "destination", "rateinitial", "billingblock"],
        ["0049", 0, "Germany", 0.1, 60],
        ["0086", 11, "China", 0.123456, 6],
    ]
    workbook = openpyxl.Workbook()
    for row in table:
        workbook.active.append(row)
    workbook.save(tmp_path / "rates.xlsx")
    legacy = xlwt.Workbook()
    sheet = legacy.add_sheet("rates")
    for r, row in enumerate(table):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    legacy.save(str(tmp_path / "rates.xls"))

    for name, group_scope in (("rates.xlsx", booth.group_id), ("rates.xls", 0)):
        target = Target("customer", booth.group.reseller_id, group_scope)
        assert import_rates(db, target, rows_of(tmp_path / name)).inserted == 2
    rates = db.scalars(select(CustomerRate).where(CustomerRate.dialprefix == "0086")).all()
    assert [r.rateinitial for r in rates] == [Decimal("0.123456")] * 2


def test_a_file_that_is_not_a_spreadsheet_is_refused(tmp_path):
    path = write(tmp_path, "garbage", "rates.xlsx")
    with pytest.raises(InvalidInput, match="not a readable XLSX"):
        list(rows_of(path))
    with pytest.raises(InvalidInput, match="unknown file type"):
        list(rows_of(write(tmp_path, "x", "rates.pdf")))


def test_delete_matching_needs_a_filter_or_all(db, book, tmp_path):
    booth = make_tenant(db)
    target = Target("customer", booth.group.reseller_id, booth.group_id)
    import_rates(db, target, rows_of(write(tmp_path, GOOD)))
    sync_scope(db, book, target)

    with pytest.raises(InvalidInput, match="confirm with --all"):
        delete_matching(db, "customer")
    deleted, touched = delete_matching(db, "customer", prefix="0049")
    for scope in touched:
        sync_scope(db, book, scope)

    assert (deleted, touched) == (2, {target})
    assert count(db) == 1
    found = book.lookup("0049301234567", booth.group.reseller_id, booth.group_id)
    assert found["customer"].destination == "Rest of world"
    deleted, _ = delete_matching(db, "customer", confirm_all=True)
    assert deleted == 1 and count(db) == 0


def test_sync_all_removes_scopes_that_no_longer_exist(db, book, redis_server, key_prefix):
    stale = BookRow("callshop", "0044", 0, 7, 70, Rate(1, 0, 0, 1, 60, "stale"))
    book.replace([stale])
    assert book.lookup("0044", 7, 70)["callshop"] is not None

    booth = make_tenant(db)
    import_rates(
        db, Target("customer", 0, 0), iter([(2, {"dialprefix": "1", "rateinitial": "0.02"})])
    )
    assert sync_all(db, book) == 1

    assert book.lookup("0044", 7, 70)["callshop"] is None
    assert book.lookup("1555", booth.group.reseller_id, booth.group_id)["customer"] is not None
    keys = {k.decode() for k in redis_server.scan_iter(match=f"{key_prefix}*")}
    assert keys == {
        Keys(key_prefix).rate_scope("customer", 0, 0),
        Keys(key_prefix).rate_index(0),
        Keys(key_prefix).rate_tags(),
    }


def test_a_lookup_never_sees_half_a_book(book):
    """While whole books are swapped, every lookup sees all-old or all-new rates."""

    def version(tag: str) -> list[BookRow]:
        return [
            BookRow(t, p, 0, r, g, Rate(i, 0, 0, 1, 60, tag))
            for i, (t, p, r, g) in enumerate(
                [
                    (t, p, r, g)
                    for t in ("customer", "callshop")
                    for p in ("1", "12", "123")
                    for r in (0, 5)
                    for g in (0, 50)
                ],
                start=1,
            )
        ]

    old, new = version("old"), version("new")
    book.replace(old)
    seen: set[tuple[str, ...]] = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            for found in book.lookup_many([("1239", 5, 50), ("129", 5, 0), ("19", 0, 0)]):
                seen.add(tuple(sorted({r.destination for r in found.values() if r})))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(30):
        book.replace(new if i % 2 == 0 else old)
    stop.set()
    thread.join()
    # One lookup reads one tag's scopes in one script run: never a mix of versions.
    assert seen <= {("old",), ("new",), ("new", "old")}
    assert ("old",) in seen


def test_a_partial_import_is_never_visible(db, migrated_mysql, tmp_path):
    booth = make_tenant(db)
    lines = [f"{4900000 + i},0,x,0,0,0.1,60" for i in range(20_000)] + ["bad,0,x,0,0,0.1,60"]
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match="row 20002"):
        import_rates(db, Target("customer", booth.group.reseller_id, booth.group_id), rows_of(path))
    assert count(db) == 0
    with migrated_mysql.connect() as other:
        assert other.scalar(select(func.count()).select_from(CustomerRate)) == 0


def test_quote_shows_each_level_and_sample_prices(db, book, tmp_path):
    booth = make_tenant(db, customer_multiple=Decimal("1.5"))
    r, g = booth.group.reseller_id, booth.group_id
    for table, text in (
        ("customer", "0049,0,DE,0.4,60,0.4,60\n"),
        ("callshop", "0049,0,DE buy,0,0,0.12,1\n"),
    ):
        target = Target(table, r, g)
        import_rates(db, target, rows_of(write(tmp_path, HEADER + text)))
        sync_scope(db, book, target)

    result = quote(book, booth, "0049301234567", ("011",))

    lines = {line.table: line for line in result.lines}
    # customer: 1.5 x 300 s = 450 s -> 0.4 + 7 blocks x 0.4 = 3.2
    assert lines["customer"].prices == (400_000, 800_000, 3_200_000)  # 60 s -> 90 s billed
    assert lines["callshop"].prices == (2_000, 120_000, 600_000)
    assert lines["reseller"].rate is None
    assert "no rate" in lines["reseller"].describe(2, "USD")
    assert quote(book, booth, "0110049301234567", ("011",)).rated_number == "0049301234567"


def test_export_reads_back_as_a_book(db, tmp_path):
    booth = make_tenant(db)
    import_rates(
        db,
        Target("customer", booth.group.reseller_id, booth.group_id),
        rows_of(write(tmp_path, GOOD)),
    )
    exported = list(book_rows(db, "customer"))
    assert {(b.dialprefix, b.numlen, b.rate.connect) for b in exported} == {
        ("0049", 0, 400_000),
        ("0049", 13, 0),
        ("default", 0, 0),
    }


def test_a_garbage_xls_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="not a readable XLS file"):
        list(rows_of(write(tmp_path, "not a workbook at all", "rates.xls")))


def test_a_single_rate_change_reaches_redis_without_a_full_sync(db, book):
    from rating.store import delete_rate, save_rate

    booth = make_tenant(db)
    r, g = booth.group.reseller_id, booth.group_id
    target = Target("customer", r, g)
    rate_id = save_rate(db, book, target, {"dialprefix": "0049", "rateinitial": "0.4"})
    assert book.lookup("00491", r, g)["customer"].per_minute == 400_000

    save_rate(db, book, target, {"dialprefix": "0049", "rateinitial": "0.35"}, rate_id)
    assert book.lookup("00491", r, g)["customer"].per_minute == 350_000

    save_rate(db, book, target, {"dialprefix": "0044", "rateinitial": "0.2"}, rate_id)
    assert book.lookup("00491", r, g)["customer"] is None  # the old key left Redis
    assert book.lookup("00441", r, g)["customer"].id == rate_id

    other = save_rate(db, book, target, {"dialprefix": "0033", "rateinitial": "0.1"})
    with pytest.raises(InvalidInput, match="already exists"):
        save_rate(db, book, target, {"dialprefix": "0044", "rateinitial": "0.1"}, other)
    with pytest.raises(InvalidInput, match="billingblock 0"):
        save_rate(db, book, target, {"dialprefix": "1", "rateinitial": "1", "billingblock": "0"})

    delete_rate(db, book, "customer", rate_id)
    assert book.lookup("00441", r, g)["customer"] is None
    assert count(db) == 1


def test_a_quote_says_a_price_is_too_large_instead_of_crashing(db, book):
    """A row stored before the rate limits existed may price past 2**53 micro-units."""
    booth = make_tenant(db)
    r, g = booth.group.reseller_id, booth.group_id
    huge = Rate(7, 0, 0, 10**17, 60, "legacy")
    book.upsert(BookRow("customer", "0039", 0, r, g, huge))

    line = next(x for x in quote(book, booth, "0039061234", ()).lines if x.table == "customer")

    assert line.prices == (None, None, None)
    assert "too large (refused)" in line.describe(2, "EUR")


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"dialprefix": "٤٩", "rateinitial": "1"}, "not digits 0-9"),
        ({"dialprefix": "49", "rateinitial": "1e3"}, "is not a number"),
        ({"dialprefix": "49", "rateinitial": "100000.000001"}, "larger than 100000"),
        ({"dialprefix": "49", "rateinitial": "1", "billingblock": "86401"}, "(1..86400)"),
        ({"dialprefix": "49", "rateinitial": "1", "destination": "@SUM(A1)"}, "formula"),
        ({"dialprefix": "49", "rateinitial": "1", "destination": "a\u202eb"}, "control"),
    ],
)
def test_one_validator_for_every_rate_applies_the_limits(db, cells, message):
    from rating.store import validate_row

    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_row(cells)


def test_the_rate_limits_keep_a_long_call_exact_in_both_engines():
    from rating import rate_limits as limits
    from rating.money import MAX_SAFE_MICROS, to_micros
    from rating.price import price

    worst = Rate(
        1, to_micros(limits.MAX_CONNECT), 0, to_micros(limits.MAX_RATE), limits.MAX_BLOCK_S
    )
    # a day-long call at a multiple of 10 (100000 in ten-thousandths)
    assert price(86_400, 100_000, worst) <= MAX_SAFE_MICROS


def stale_dimension_xlsx(tmp_path: Path, data_rows: int) -> Path:
    """An XLSX whose <dimension> tag says A1:C3 whatever it holds (as some tools write it)."""
    import re
    import zipfile

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["dialprefix", "destination", "rateinitial"])
    for n in range(data_rows):
        sheet.append([f"00{n + 10}", f"Place {n}", 0.1])
    fresh = tmp_path / "fresh.xlsx"
    book.save(fresh)
    path = tmp_path / "stale.xlsx"
    with zipfile.ZipFile(fresh) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:C3"', data)
            dst.writestr(item, data)
    return path


def test_an_xlsx_with_a_stale_dimension_tag_is_read_to_its_last_row(db, tmp_path):
    path = stale_dimension_xlsx(tmp_path, 10)
    booth = make_tenant(db)

    report = import_rates(
        db, Target("customer", booth.group.reseller_id, booth.group_id), rows_of(path)
    )

    assert (report.read, report.inserted) == (10, 10)


def test_a_damaged_xls_is_a_clear_error(tmp_path):
    book = xlwt.Workbook()
    book.add_sheet("rates").write(0, 0, "dialprefix")
    good = tmp_path / "good.xls"
    book.save(str(good))
    damaged = bytearray(good.read_bytes())
    damaged[0x4C:0x50] = b"\x00\x00\x00\xa0"  # the first MSAT entry: a sector id < -4
    path = tmp_path / "damaged.xls"
    path.write_bytes(bytes(damaged))
    with pytest.raises(InvalidInput, match="not a readable XLS file"):
        list(rows_of(path))


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    path = stale_dimension_xlsx(tmp_path, 10)
    monkeypatch.setattr(ratefiles, "XLSX_MAX_UNZIPPED_BYTES", 2_000)  # this one unpacks to more
    with pytest.raises(InvalidInput, match="unpacks to"):
        list(rows_of(path))


def test_a_file_past_the_row_cap_is_refused(tmp_path):
    path = write(tmp_path, "dialprefix,rateinitial\n" + "1,1\n" * 20)
    with pytest.raises(InvalidInput, match="more than 10 rows"):
        list(ratefiles.read_cells(path, max_rows=10))
    assert len(list(ratefiles.read_cells(path, max_rows=21))) == 21
