"""CSV formats of the operator tools (those of ../shared/rating/): price queries, rate books
and selection queries. Every bad cell is reported with its row number and column."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from typing import IO, TypeVar

from ops.errors import InvalidInput
from rating.csv_safety import safe_row
from rating.engines import PriceQuery
from rating.money import format_micros, to_micros, to_multiple
from rating.price import Rate
from rating.select import DEFAULT, TABLES, BookRow

T = TypeVar("T")

PRICE_COLUMNS = ("connectcharge", "initblock", "rateinitial", "billingblock", "multiple", "billsec")
BOOK_COLUMNS = (
    "id",
    "table",
    "dialprefix",
    "numlen",
    "connectcharge",
    "initblock",
    "rateinitial",
    "billingblock",
    "resellerid",
    "groupid",
)
# What `rates export` writes: the book columns plus the destination.
BOOK_HEADER = (*BOOK_COLUMNS[:4], "destination", *BOOK_COLUMNS[4:])
QUERY_COLUMNS = ("number", "resellerid", "groupid")


def read_rows(
    stream: IO[str], required: Iterable[str], parse: Callable[[dict], T]
) -> tuple[list[str], list[tuple[dict, T]]]:
    """(header, [(raw row, parsed)]); InvalidInput naming every bad row (nothing returned)."""
    reader = csv.DictReader(stream)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise InvalidInput(f"CSV header lacks column(s): {', '.join(missing)}")
    out, errors = [], []
    for line, raw in enumerate(reader, start=2):
        try:
            out.append((raw, parse(raw)))
        except (InvalidInput, ValueError) as exc:
            errors.append(f"row {line}: {exc}")
    if errors:
        raise InvalidInput("; ".join(errors[:20]) + (" ..." if len(errors) > 20 else ""))
    return list(header), out


def whole(raw: dict, column: str, low: int | None = 0) -> int:
    text = (raw.get(column) or "").strip()
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"{column} {text!r} is not a whole number") from None
    if low is not None and value < low:
        raise InvalidInput(f"{column} {value} is below {low}")
    return value


def parse_rate(raw: dict, rate_id: int = 0, destination: str = "") -> Rate:
    block = whole(raw, "billingblock", 1)
    return Rate(
        id=rate_id,
        connect=to_micros(raw["connectcharge"], "connectcharge"),
        initblock=whole(raw, "initblock"),
        per_minute=to_micros(raw["rateinitial"], "rateinitial"),
        block=block,
        destination=destination,
    )


def parse_price_query(raw: dict) -> PriceQuery:
    return PriceQuery(
        parse_rate(raw), to_multiple(raw["multiple"]), whole(raw, "billsec", low=None)
    )


def parse_book_row(raw: dict) -> BookRow:
    table = raw["table"].strip()
    if table not in TABLES:
        raise InvalidInput(f"table {table!r} is not one of {', '.join(TABLES)}")
    prefix = raw["dialprefix"].strip()
    if not (prefix.isdigit() or prefix == DEFAULT):
        raise InvalidInput(f"dialprefix {prefix!r} is not digits or 'default'")
    group_id = whole(raw, "groupid")
    if table == "reseller" and group_id:
        raise InvalidInput("reseller rates have no group scope (groupid must be 0)")
    return BookRow(
        table,
        prefix,
        whole(raw, "numlen"),
        whole(raw, "resellerid"),
        group_id,
        parse_rate(raw, whole(raw, "id", 1), (raw.get("destination") or "").strip()),
    )


def parse_query(raw: dict) -> tuple[str, int, int]:
    number = (raw["number"] or "").strip()
    if number and not number.isdigit():
        raise InvalidInput(f"number {number!r} is not digits")
    return number, whole(raw, "resellerid"), whole(raw, "groupid")


def write_rows(stream: IO[str], header: list[str], rows: Iterable[dict]) -> None:
    writer = csv.DictWriter(stream, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(map(safe_row, rows))  # no cell a spreadsheet would run as a formula


def book_row_cells(b: BookRow) -> dict:
    """One rate row in the rate-book CSV format (money with 6 decimals)."""
    return {
        "id": b.rate.id,
        "table": b.table,
        "dialprefix": b.dialprefix,
        "numlen": b.numlen,
        "destination": b.rate.destination,
        "connectcharge": format_micros(b.rate.connect),
        "initblock": b.rate.initblock,
        "rateinitial": format_micros(b.rate.per_minute),
        "billingblock": b.rate.block,
        "resellerid": b.reseller_id,
        "groupid": b.group_id,
    }
