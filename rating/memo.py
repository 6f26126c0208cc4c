"""The rate memo of a CDR (`cdrs.rate_memo`): which rate priced the call at each level, in
words a person reads, kept with the call because rate rows change and are deleted later.

The listener puts the numbers of the rates that priced a call into its meta (`rates`:
one `[id, connect, initblock, per_minute, block, multiple, destination]` per level, money in
micro-units, multiple in 1e-4); settlement appends each rate's dial prefix and writes e.g.
`customer 0049 Germany (#12): 0.2/min, connect 0.1 for 60 s, 60 s blocks | callshop ...`.
"""

from __future__ import annotations

from rating.money import MULTIPLE_SCALE, format_micros
from rating.price import Rate
from rating.select import TABLES

MEMO_LENGTH = 255  # cdrs.rate_memo


def pricing_fields(levels: list[tuple[Rate, int]]) -> list[list]:
    """The meta's `rates`: per level (customer, callshop, reseller) its rate and multiple."""
    return [
        [r.id, r.connect, r.initblock, r.per_minute, r.block, multiple, r.destination]
        for r, multiple in levels
    ]


def with_prefix(meta: dict, index: int, prefix: str | None) -> None:
    """Append the dial prefix to the meta's rate of level `index` (0 customer, 1 callshop,
    2 reseller), when it has that rate and no prefix yet."""
    rates = meta.get("rates")
    if prefix and isinstance(rates, list) and index < len(rates):
        entry = rates[index]
        if isinstance(entry, list) and len(entry) == 7:
            entry.append(prefix)


def rate_memo(rates: list | None) -> str:
    """The memo of the meta's `rates` (each with its prefix appended, when known). A level
    without a rate (id 0, or None) is left out; "" when no level had one."""
    parts = []
    for table, fields in zip(TABLES, rates or [], strict=False):
        try:
            part = _level_memo(table, fields)
        except (TypeError, ValueError):
            continue  # an older or damaged meta: no memo rather than a wrong one
        if part:
            parts.append(part)
    return " | ".join(parts)[:MEMO_LENGTH]


def _level_memo(table: str, fields: list) -> str:
    rate_id, connect, initblock, per_minute, block, multiple, destination = fields[:7]
    prefix = str(fields[7]) if len(fields) > 7 else ""
    if not rate_id:
        return ""
    head = " ".join(p for p in (table, prefix, str(destination)[:24]) if p)
    words = [f"{_money(per_minute)}/min"]
    if connect or initblock:
        words.append(f"connect {_money(connect)} for {int(initblock)} s")
    words.append(f"{int(block)} s blocks")
    if int(multiple) != MULTIPLE_SCALE:
        words.append(f"x{int(multiple) / MULTIPLE_SCALE:g}")
    return f"{head} (#{int(rate_id)}): {', '.join(words)}"


def _money(micros: int) -> str:
    text = format_micros(int(micros))
    return text.rstrip("0").rstrip(".") if "." in text else text
