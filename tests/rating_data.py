"""The public vectors (of ../shared/rating/, copied into tests/data/rating/) and hypothesis
strategies for rates and books."""

from __future__ import annotations

import csv
from pathlib import Path

from hypothesis import strategies as st

from rating.price import Rate
from rating.select import TABLES, BookRow

# A copy in the repository: a clone runs its tests without ../shared beside it.
SHARED_RATING = Path(__file__).resolve().parent / "data" / "rating"


def vector_rows(name: str) -> list[dict]:
    assert SHARED_RATING.is_dir(), f"the rating vectors are missing: {SHARED_RATING}"
    with open(SHARED_RATING / name, newline="") as f:
        return list(csv.DictReader(f))


money_micros = st.one_of(
    st.integers(0, 2_000_000),  # everyday prices
    st.integers(0, 10**12),  # up to a million per minute
    st.sampled_from([0, 1, 29, 30, 59, 60, 61, 999_999, 1_000_000]),
)
rates = st.builds(
    Rate,
    id=st.integers(1, 10**6),
    connect=money_micros,
    initblock=st.sampled_from([0, 1, 6, 30, 60, 120, 180]) | st.integers(0, 3600),
    per_minute=money_micros,
    block=st.sampled_from([1, 6, 30, 60]) | st.integers(1, 3600),
)
# Prices that always fit in 2**53 micro-units: up to 10,000 a minute, multiples up to 4.
everyday_rates = st.builds(
    Rate,
    id=st.integers(1, 10**6),
    connect=st.integers(0, 10**10),
    initblock=st.integers(0, 3600),
    per_minute=st.integers(0, 10**10),
    block=st.sampled_from([1, 6, 30, 60]) | st.integers(1, 3600),
)
everyday_multiples = st.integers(0, 40_000)
multiples = st.sampled_from([0, 1, 5000, 10000, 12500, 15000, 3333]) | st.integers(0, 99_999_999)
billsecs = st.integers(-5, 7200) | st.integers(0, 31 * 86400)

digits = st.text("0123456789", min_size=0, max_size=6)


@st.composite
def books(draw):
    """Random rate books over few prefixes and scopes, so that rules collide often."""
    prefixes = draw(st.lists(st.text("0149", min_size=1, max_size=5), min_size=1, max_size=8))
    rows, seen, next_id = [], set(), 1
    for _ in range(draw(st.integers(0, 40))):
        table = draw(st.sampled_from(TABLES))
        prefix = draw(st.sampled_from([*prefixes, "default"]))
        numlen = draw(st.sampled_from([0, 0, 3, 5, 8]))
        reseller = draw(st.sampled_from([0, 1, 2]))
        group = 0 if table == "reseller" else draw(st.sampled_from([0, 10, 20]))
        key = (table, prefix, numlen, reseller, group)
        if key in seen:
            continue
        seen.add(key)
        rate = Rate(next_id, 0, 0, next_id, 60, f"d{next_id}")
        rows.append(BookRow(table, prefix, numlen, reseller, group, rate))
        next_id += 1
    return rows


queries = st.tuples(
    st.text("01495", max_size=9), st.sampled_from([0, 1, 2, 3]), st.sampled_from([0, 10, 20, 30])
)
