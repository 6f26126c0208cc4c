"""What a call would cost: the rate each level pays for a number from one clid, and sample
prices (the booth page's "search rate" and `asterbill rates quote`)."""

from __future__ import annotations

from dataclasses import dataclass

from ops.errors import InvalidInput
from rating.book import RedisRateBook
from rating.money import format_micros, to_multiple
from rating.price import PriceOverflow, Rate, price
from rating.select import TABLES, strip_number
from schema import Clid

SAMPLE_SECONDS = (1, 60, 300)


@dataclass(frozen=True)
class QuoteLine:
    table: str
    rate: Rate | None
    multiple: int
    prices: tuple[int | None, ...]  # None: the price would not be exact (PriceOverflow)

    def describe(self, decimals: int, currency: str) -> str:
        if self.rate is None:
            return f"{self.table:9} no rate"
        r = self.rate
        samples = ", ".join(
            f"{s} s: " + ("too large (refused)" if p is None else format_micros(p, decimals))
            for s, p in zip(SAMPLE_SECONDS, self.prices, strict=True)
        )
        return (
            f"{self.table:9} rate {r.id} {r.destination!r}: connect "
            f"{format_micros(r.connect)} for {r.initblock} s, "
            f"{format_micros(r.per_minute)}/min in {r.block} s blocks, multiple "
            f"{self.multiple / 10_000:.4f} -> {samples} {currency}"
        )


@dataclass(frozen=True)
class Quote:
    number: str
    rated_number: str
    lines: list[QuoteLine]


def quote(book: RedisRateBook, clid: Clid, number: str, strip: tuple[str, ...]) -> Quote:
    number = number.strip()
    if number and not number.isdigit():
        raise InvalidInput(f"number {number!r} is not digits")
    rated = strip_number(number, strip)
    group = clid.group
    multiples = {
        "customer": to_multiple(group.customer_multiple),
        "callshop": to_multiple(group.group_multiple),
        "reseller": to_multiple(group.reseller.multiple),
    }
    found = book.lookup(rated, group.reseller_id, group.id)
    lines = []
    for table in TABLES:
        rate, m = found[table], multiples[table]
        prices = tuple(_price_or_none(s, m, rate) for s in SAMPLE_SECONDS) if rate else ()
        lines.append(QuoteLine(table, rate, m, prices))
    return Quote(number, rated, lines)


def _price_or_none(billsec: int, multiple: int, rate: Rate) -> int | None:
    """A row stored before the rate limits existed may price past 2**53: the engines refuse
    such a call (PRICE_OVERFLOW), and the quote says so instead of crashing."""
    try:
        return price(billsec, multiple, rate)
    except PriceOverflow:
        return None
