"""The price of a call at one level (DESIGN.md section 3), in integer micro-units.

1. billed = ceil(billsec x multiple) whole seconds; billsec <= 0 or billed = 0 costs nothing;
2. price = connectcharge, which pays for the first `initblock` seconds;
3. past initblock: charged = ceil((billed - initblock) / billingblock) x billingblock seconds,
   price += charged x rateinitial / 60, computed exactly and rounded half-up once.

lua/include/price.lua is the twin of this module, line by line; tests prove they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from rating.money import MAX_SAFE_MICROS, MULTIPLE_SCALE


class PriceOverflow(ArithmeticError):
    """The price would not be exact in Lua (more than 2**53 - 1 micro-units)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """One rate row, in the units the engines compute with."""

    id: int
    connect: int  # connect charge, micro-units
    initblock: int  # seconds paid by the connect charge
    per_minute: int  # rateinitial, micro-units per minute
    block: int  # billingblock, seconds (>= 1)
    destination: str = ""


def billed_seconds(billsec: int, multiple: int) -> int:
    """ceil(billsec x multiple / 10000) for billsec > 0, else 0. `multiple` in 1e-4."""
    if billsec <= 0:
        return 0
    return -(-billsec * multiple // MULTIPLE_SCALE)


def charged_seconds(billed: int, rate: Rate) -> int:
    """Seconds paid by blocks after the init block (a started block is paid whole)."""
    if billed <= rate.initblock:
        return 0
    return -(-(billed - rate.initblock) // rate.block) * rate.block


def price_of_billed(billed: int, rate: Rate) -> int:
    """Price in micro-units of `billed` seconds (already multiplied)."""
    if billed <= 0:
        return 0
    charged = charged_seconds(billed, rate)
    # charged x per_minute / 60, half-up. Split per_minute = 60q + r so that Lua's doubles stay
    # exact: only the result itself must be below 2**53.
    q, r = divmod(rate.per_minute, 60)
    total = rate.connect + charged * q + (2 * charged * r + 60) // 120
    if total > MAX_SAFE_MICROS:
        raise PriceOverflow(f"price of {billed} s at rate {rate.id} exceeds {MAX_SAFE_MICROS}")
    return total


def price(billsec: int, multiple: int, rate: Rate) -> int:
    """Price in micro-units of a call of `billsec` seconds at one level."""
    return price_of_billed(billed_seconds(billsec, multiple), rate)
