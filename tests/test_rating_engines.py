"""The Python reference and the Lua twin: every public vector, then random agreement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lua.keys import Keys
from ops.errors import InvalidInput
from rating import csvfiles, engines
from rating.book import RedisRateBook
from rating.engines import PriceQuery
from rating.money import format_micros
from rating.select import RateBook
from tests.conftest import REDIS_SERVER
from tests.rating_data import (
    SHARED_RATING,
    billsecs,
    books,
    everyday_multiples,
    everyday_rates,
    multiples,
    queries,
    rates,
    vector_rows,
)

PRICE_VECTORS = vector_rows("price-vectors.csv")
SELECTION_QUERIES = vector_rows("selection-queries.csv")
ASTERBILL = str(Path(sys.executable).with_name("asterbill"))
HYPOTHESIS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def parsed_vectors():
    return [csvfiles.parse_price_query(row) for row in PRICE_VECTORS]


def selection_book():
    with open(SHARED_RATING / "selection-book.csv", newline="") as f:
        return [
            b for _, b in csvfiles.read_rows(f, csvfiles.BOOK_COLUMNS, csvfiles.parse_book_row)[1]
        ]


def expected_selection(row):
    return {
        t: (int(row[f"{t}_rate_id"]) if row[f"{t}_rate_id"] else None)
        for t in ("customer", "callshop", "reseller")
    }


def test_there_are_vectors_to_check():
    assert len(PRICE_VECTORS) > 300 and len(SELECTION_QUERIES) >= 12


def test_python_prices_every_public_vector_exactly():
    prices = engines.price_python(parsed_vectors())
    got = [format_micros(p) for p in prices]
    assert got == [row["price"] for row in PRICE_VECTORS]


def test_lua_prices_every_public_vector_exactly(redis_server):
    prices = engines.price_lua(redis_server, parsed_vectors())
    got = [format_micros(p) for p in prices]
    assert got == [row["price"] for row in PRICE_VECTORS]


def test_python_selects_every_public_vector(redis_server):
    queries_ = [csvfiles.parse_query(row) for row in SELECTION_QUERIES]
    got = engines.select_python(selection_book(), queries_)
    assert got == [expected_selection(row) for row in SELECTION_QUERIES]


def test_lua_selects_every_public_vector(redis_server, key_prefix):
    queries_ = [csvfiles.parse_query(row) for row in SELECTION_QUERIES]
    got = engines.select_lua(redis_server, key_prefix, selection_book(), queries_)
    assert got == [expected_selection(row) for row in SELECTION_QUERIES]
    assert list(redis_server.scan_iter(match=f"{key_prefix}*")) == []  # scratch book removed


@pytest.mark.parametrize("engine", ["python", "lua"])
def test_the_operator_tools_reproduce_the_vector_files(engine, tmp_path):
    price_csv = (SHARED_RATING / "price-vectors.csv").read_text()
    without_price = (
        "\n".join(",".join(line.split(",")[:-1]) for line in price_csv.strip().splitlines()) + "\n"
    )
    env = {"REDIS_URL": REDIS_SERVER, "PATH": "/usr/bin:/bin"}
    priced = subprocess.run(
        [ASTERBILL, "rates", "price", "--engine", engine],
        input=without_price,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert priced.stdout.splitlines() == price_csv.replace("\r", "").strip().splitlines()

    queries_csv = (SHARED_RATING / "selection-queries.csv").read_text()
    selected = subprocess.run(
        [
            ASTERBILL,
            "rates",
            "select",
            "--book",
            str(SHARED_RATING / "selection-book.csv"),
            "--engine",
            engine,
        ],
        input=queries_csv,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert selected.stdout.splitlines() == queries_csv.replace("\r", "").strip().splitlines()


@HYPOTHESIS
@given(calls=st.lists(st.tuples(rates, multiples, billsecs), min_size=1, max_size=30))
def test_lua_prices_equal_python_prices(redis_server, calls):
    """Equal prices, or both engines refuse a price that is not exact below 2**53 micros."""
    queries_ = [PriceQuery(r, m, b) for r, m, b in calls]
    assert outcome(engines.price_lua, redis_server, queries_) == outcome(
        lambda _, q: engines.price_python(q), None, queries_
    )


def outcome(price, client, queries_):
    try:
        return price(client, queries_)
    except InvalidInput as exc:
        assert "OVERFLOW" in str(exc).upper() or "exceeds" in str(exc)
        return "overflow"


@HYPOTHESIS
@given(rate=everyday_rates, multiple=everyday_multiples, a=billsecs, b=billsecs)
def test_price_never_decreases_with_billsec(rate, multiple, a, b):
    low, high = sorted((a, b))
    assert (
        engines.price_python([PriceQuery(rate, multiple, low)])[0]
        <= engines.price_python([PriceQuery(rate, multiple, high)])[0]
    )


@HYPOTHESIS
@given(rate=everyday_rates, multiple=everyday_multiples, billsec=st.integers(1, 4 * 3600))
def test_block_by_block_debits_sum_to_the_final_price(redis_server, rate, multiple, billsec):
    """Paying each block as it starts (differences of totals) adds up to the final price,
    and no step is negative, in both engines."""
    boundaries = sorted({1, billsec, *range(1, billsec + 1, max(rate.block, 60))})
    queries_ = [PriceQuery(rate, multiple, s) for s in boundaries]
    totals = engines.price_python(queries_)
    assert engines.price_lua(redis_server, queries_) == totals
    debits = [b - a for a, b in zip([0, *totals], totals, strict=False)]
    assert all(d >= 0 for d in debits)
    assert (
        sum(debits) == totals[-1] == engines.price_python([PriceQuery(rate, multiple, billsec)])[0]
    )


@HYPOTHESIS
@given(rows=books(), asked=st.lists(queries, min_size=1, max_size=12))
def test_lua_selection_equals_python_selection(redis_server, key_prefix, rows, asked):
    expected = engines.select_python(rows, asked)
    book = RedisRateBook(redis_server, Keys(key_prefix))
    book.replace(rows)
    found = book.lookup_many(asked)
    assert [{t: (r.id if r else None) for t, r in f.items()} for f in found] == expected
    # The full rate travels, not only the id.
    reference = RateBook(rows)
    for (number, reseller, group), f in zip(asked, found, strict=True):
        for table, rate in f.items():
            chosen = reference.select(table, number, reseller, group)
            assert rate == (chosen.rate if chosen else None)
