"""The rate memo of a CDR (rating/memo.py): readable, bounded, and never an error."""

from __future__ import annotations

from rating.memo import MEMO_LENGTH, pricing_fields, rate_memo, with_prefix
from rating.price import Rate


def test_a_memo_names_each_levels_rate_with_its_prefix():
    fields = pricing_fields(
        [
            (Rate(12, 100_000, 60, 200_000, 60, "Germany"), 10_000),
            (Rate(0, 0, 0, 0, 1), 10_000),  # no callshop rate: left out
            (Rate(4, 0, 0, 50_000, 1, "World"), 15_000),
        ]
    )
    meta = {"rates": fields}
    with_prefix(meta, 0, "0049")
    with_prefix(meta, 2, "00")

    assert rate_memo(meta["rates"]) == (
        "customer 0049 Germany (#12): 0.2/min, connect 0.1 for 60 s, 60 s blocks | "
        "reseller 00 World (#4): 0.05/min, 1 s blocks, x1.5"
    )


def test_damaged_or_long_rates_give_a_bounded_memo_never_an_error():
    long = [[n, 0, 0, 10**6, 1, 10_000, "D" * 500, "9" * 32] for n in (1, 2, 3)]
    assert len(rate_memo(long)) == MEMO_LENGTH
    damaged = [[1, "x", 0, "y", 1, 10_000, "A"], "text", {"a": 1}]
    assert rate_memo(damaged) == ""
    assert rate_memo(None) == "" and rate_memo([None, None, None]) == ""
