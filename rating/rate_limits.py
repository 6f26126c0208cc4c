"""The limits every rate row must keep, whichever way it enters (back-office form, import
page, `asterbill rates import`, seed): `rating.store.validate_row` applies them, with one
message per field.

Why these numbers: Lua numbers are doubles, so every price must stay an exact integer below
2**53 micro-units (rating/price.py, lua/include/price.lua refuse more with PRICE_OVERFLOW).
A call billed for MAX_BILLED_S seconds (a day-long call at a billsec multiple of 10) pays at
most MAX_BILLED_S + one block (MAX_BLOCK_S) of charged seconds, i.e. 15,840 minutes; at the
highest rate and connect charge that is 1.58e15 + 1e11 micro-units, well inside 2**53
(9.007e15), so no call of that length can overflow at any level.
"""

from __future__ import annotations

import re
from decimal import Decimal

from rating.money import MAX_SAFE_MICROS, MICROS

MAX_PREFIX_DIGITS = 32
MAX_NUMLEN = 64  # a number length to match exactly (0: any length)
MAX_BLOCK_S = 86_400  # initblock and billingblock: at most one day
MAX_RATE = Decimal(100_000)  # per minute, in the currency
MAX_CONNECT = Decimal(100_000)
MAX_DESTINATION = 100
MAX_BILLED_S = 10 * 86_400

ASCII_DIGITS = re.compile(r"[0-9]+")
# `|` separates the fields of a rate in Redis; control characters break exports and pages; a
# leading = + - @ makes a spreadsheet read the cell as a formula (exports neutralise it too).
DESTINATION_FORBIDDEN = re.compile(r"[|\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
FORMULA_START = ("=", "+", "-", "@")

# The bound above, checked once at import time so a change of a limit cannot silently break it.
_WORST_CHARGED_MIN = -(-(MAX_BILLED_S + MAX_BLOCK_S) // 60)
assert (MAX_CONNECT + MAX_RATE * _WORST_CHARGED_MIN) * MICROS < MAX_SAFE_MICROS
