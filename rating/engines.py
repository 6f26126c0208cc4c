"""The two rating engines behind one interface: the Python reference and the Lua twin.

Used by the operator tools (`asterbill rates price|select`) and by the tests that prove the
engines agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from lua.keys import Keys
from lua.scripts import Scripts
from ops.errors import InvalidInput
from rating.book import RedisRateBook
from rating.price import PriceOverflow, Rate, price
from rating.select import BookRow, RateBook

MAX_BILLSEC = 31 * 86400  # keeps billsec x multiple exact in Lua's doubles
CALLS_PER_SCRIPT = 1_000


@dataclass(frozen=True, slots=True)
class PriceQuery:
    rate: Rate
    multiple: int  # ten-thousandths
    billsec: int

    def check(self) -> None:
        if self.billsec > MAX_BILLSEC:
            raise InvalidInput(f"billsec {self.billsec} is longer than {MAX_BILLSEC} s")
        if self.rate.block < 1:
            raise InvalidInput(f"billingblock {self.rate.block} must be at least 1")


def price_python(queries: Sequence[PriceQuery]) -> list[int]:
    out = []
    for q in queries:
        q.check()
        try:
            out.append(price(q.billsec, q.multiple, q.rate))
        except PriceOverflow as exc:
            raise InvalidInput(str(exc)) from None
    return out


def price_lua(client: redis.Redis, queries: Sequence[PriceQuery]) -> list[int]:
    scripts = Scripts(client)
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(queries), CALLS_PER_SCRIPT):
        args: list[int] = []
        for q in queries[start : start + CALLS_PER_SCRIPT]:
            q.check()
            r = q.rate
            args += [r.connect, r.initblock, r.per_minute, r.block, q.multiple, q.billsec]
        scripts.price_calls(args=args, client=pipe)
    try:
        replies = pipe.execute()
    except redis.ResponseError as exc:
        raise InvalidInput(f"Lua pricing refused the input: {exc}") from None
    return [int(p) for reply in replies for p in reply]


Selection = dict[str, int | None]  # table -> chosen rate id


def select_python(
    rows: Sequence[BookRow], queries: Sequence[tuple[str, int, int]]
) -> list[Selection]:
    try:
        book = RateBook(rows)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return [
        {t: (r.rate.id if r else None) for t, r in book.select_all(*q).items()} for q in queries
    ]


def select_lua(
    client: redis.Redis,
    prefix: str,
    rows: Sequence[BookRow],
    queries: Sequence[tuple[str, int, int]],
) -> list[Selection]:
    """Loads the book under a scratch key prefix, looks up, and removes it again."""
    RateBook(rows)  # refuses duplicate keys the same way as the Python engine
    book = RedisRateBook(client, Keys(prefix))
    try:
        book.replace(rows)
        found = book.lookup_many(list(queries))
    finally:
        book.clear()
    return [{t: (r.id if r else None) for t, r in f.items()} for f in found]
