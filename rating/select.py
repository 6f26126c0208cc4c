"""Which rate applies (DESIGN.md section 3): scopes, longest prefix, numlen, default rows.

A RateBook holds the rows of the three tables by scope. Selection for a call from group G of
reseller R dialing N (after the leading digits were stripped):
- scopes, most specific first: customer and callshop (R, G) -> (R, 0) -> (0, 0); reseller
  (R) -> (0); each table on its own, no fallback from one table to another;
- inside a scope, rows whose numlen is 0 or len(N): the longest dialprefix N starts with, the
  exact numlen before 0 on the same prefix; else the scope's `default` row (exact numlen
  first); only a scope with neither passes the search on to the next scope.
lua/lookupRates-N.lua is the twin over Redis hashes; `candidate_fields` is shared by both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rating.price import Rate

TABLES = ("customer", "callshop", "reseller")
DEFAULT = "default"

Scope = tuple[int, int]  # (reseller_id, group_id); 0 = applies to all


@dataclass(frozen=True, slots=True)
class BookRow:
    table: str
    dialprefix: str
    numlen: int
    reseller_id: int
    group_id: int
    rate: Rate

    @property
    def scope(self) -> Scope:
        return (self.reseller_id, self.group_id)

    @property
    def field(self) -> str:
        return rate_field(self.dialprefix, self.numlen)


def rate_field(dialprefix: str, numlen: int) -> str:
    """The key of a row inside its scope: `0049|13`, `default|0`."""
    return f"{dialprefix}|{numlen}"


def strip_number(number: str, prefixes: Iterable[str]) -> str:
    """Remove the first configured leading digits that match (longest first)."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix and number.startswith(prefix):
            return number[len(prefix) :]
    return number


def candidate_fields(number: str) -> list[str]:
    """Fields to look for in one scope, best first: longest prefix (exact numlen, then any
    length), down to one digit, then `default` (exact numlen, then any length)."""
    n = len(number)
    fields: list[str] = []
    for length in range(n, 0, -1):
        fields.append(rate_field(number[:length], n))
        fields.append(rate_field(number[:length], 0))
    fields.append(rate_field(DEFAULT, n))
    if n:
        fields.append(rate_field(DEFAULT, 0))
    return fields


def scopes(table: str, reseller_id: int, group_id: int) -> list[Scope]:
    """The scopes searched for a table, most specific first (duplicates removed)."""
    if table == "reseller":
        chain = [(reseller_id, 0), (0, 0)]
    else:
        chain = [(reseller_id, group_id), (reseller_id, 0), (0, 0)]
    return list(dict.fromkeys(chain))


class RateBook:
    """The three rate tables in memory, indexed by scope and field."""

    def __init__(self, rows: Iterable[BookRow] = ()) -> None:
        self._scopes: dict[str, dict[Scope, dict[str, BookRow]]] = {
            t: defaultdict(dict) for t in TABLES
        }
        for row in rows:
            self.add(row)

    def add(self, row: BookRow) -> None:
        scope = self._scopes[row.table][row.scope]
        if row.field in scope:
            raise ValueError(f"duplicate rate {row.table} {row.field} in scope {row.scope}")
        scope[row.field] = row

    def __iter__(self) -> Iterator[BookRow]:
        for table in TABLES:
            for rows in self._scopes[table].values():
                yield from rows.values()

    def select(self, table: str, number: str, reseller_id: int, group_id: int) -> BookRow | None:
        fields = candidate_fields(number)
        for scope in scopes(table, reseller_id, group_id):
            rows = self._scopes[table].get(scope)
            if not rows:
                continue
            for field in fields:
                row = rows.get(field)
                if row is not None:
                    return row
        return None

    def select_all(self, number: str, reseller_id: int, group_id: int) -> dict[str, BookRow | None]:
        return {t: self.select(t, number, reseller_id, group_id) for t in TABLES}
