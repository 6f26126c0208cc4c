"""CSV cells that a spreadsheet would run as a formula (CSV injection, OWASP): a text cell
starting with =, +, -, @, tab or carriage return gets a leading `'`, which spreadsheets show
as text and do not evaluate.

Numbers stay numbers: a cell that is a plain decimal number (`-5`, `-0.250000`, `+3`) is left
as it is, since a spreadsheet reads it as that number, never as a formula; a negative money
amount thus exports readable and sums in a spreadsheet. Anything more (`-2+3`, `-A1`,
`=1+2`) is text and is neutralised.
"""

from __future__ import annotations

import re

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def neutralise(value):
    """The cell as it may be written to a CSV file (non-text values unchanged)."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(row: dict) -> dict:
    return {k: neutralise(v) for k, v in row.items()}
