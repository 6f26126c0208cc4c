"""Exact money: integer micro-units (1e-6) inside, Decimal at the edges, never float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from ops.errors import InvalidInput

MICROS = 1_000_000
MULTIPLE_SCALE = 10_000  # billsec multiples have at most 4 decimals
# Lua numbers are doubles: every amount must stay an exact integer there (2**53).
MAX_SAFE_MICROS = 2**53 - 1
MAX_MONEY = Decimal(MAX_SAFE_MICROS) / MICROS
# Money typed by a person: ASCII digits only (Python's Decimal also reads "٣" as 3, and
# exponents such as "1e9"), an optional sign and decimal point.
MONEY_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def parse_decimal(raw: str | Decimal | int, places: int, what: str = "value") -> Decimal:
    """A finite, non-negative Decimal with at most `places` decimals, or InvalidInput."""
    if isinstance(raw, float):
        raise TypeError("money is never a float")
    if isinstance(raw, str) and not MONEY_TEXT.fullmatch(raw.strip()):
        raise InvalidInput(f"{what} {raw!r} is not a number (digits 0-9 and a decimal point)")
    try:
        value = raw if isinstance(raw, Decimal) else Decimal(str(raw).strip())
    except InvalidOperation:
        raise InvalidInput(f"{what} {raw!r} is not a number") from None
    if not value.is_finite():
        raise InvalidInput(f"{what} {raw!r} is not a number")
    if value < 0:
        raise InvalidInput(f"{what} {raw!r} is negative")
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise InvalidInput(f"{what} {raw!r} has more than {places} decimals")
    return value


def to_micros(raw: str | Decimal | int, what: str = "amount") -> int:
    """Money as integer micro-units, exactly (refuses more than 6 decimals or negatives)."""
    micros = int(parse_decimal(raw, 6, what) * MICROS)
    if micros > MAX_SAFE_MICROS:
        raise InvalidInput(f"{what} {raw!r} is larger than {MAX_MONEY}")
    return micros


def stored_micros(value: Decimal) -> int:
    """A DECIMAL(18,6) column value as micro-units (exact: the column has 6 decimals)."""
    return int(value.scaleb(6))


def from_micros(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS).quantize(Decimal("0.000001"))


def to_multiple(raw: str | Decimal | int, what: str = "multiple") -> int:
    """A billsec multiple as integer ten-thousandths (1.25 -> 12500)."""
    value = parse_decimal(raw, 4, what)
    if value > Decimal("9999.9999"):
        raise InvalidInput(f"{what} {raw!r} is larger than 9999.9999")
    return int(value * MULTIPLE_SCALE)


def format_micros(micros: int, decimals: int = 6) -> str:
    """Text for display: half-up to `decimals` places (storage keeps all six)."""
    return str(from_micros(micros).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP))
