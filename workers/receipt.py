"""The check-out receipt's arithmetic, exact (Decimal only, never float): the booth page's
check-out and its printed receipt use this one function.

total = lines charged (free lines: 0) - discount (percent of those lines, half up to the
micro-unit) + extra charges, then rounded UP to the shop's rounding step; change = paid -
total. A hidden line is still charged: hiding only keeps it off the printed receipt.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from ops.errors import InvalidInput

MICRO = Decimal("0.000001")
ROUNDING_STEPS = (Decimal("0.01"), Decimal("0.05"), Decimal("0.10"), Decimal("1.00"))


@dataclass(frozen=True)
class Line:
    price: Decimal
    free: bool = False
    hidden: bool = False  # off the printed receipt, still charged


@dataclass(frozen=True)
class Extra:
    item: str
    amount: Decimal


@dataclass(frozen=True)
class Receipt:
    calls: Decimal  # lines charged (free lines excluded)
    free: Decimal  # what the free lines would have cost
    discount: Decimal
    extras: Decimal
    rounding: Decimal  # added by rounding up to the step
    total: Decimal
    paid: Decimal
    change: Decimal


def compute(
    lines: list[Line],
    *,
    discount_percent: Decimal = Decimal(0),
    extras: list[Extra] = (),
    step: Decimal = Decimal("0.01"),
    paid: Decimal | None = None,
) -> Receipt:
    """The receipt's figures, or InvalidInput (nothing computed) for impossible input."""
    for value in [line.price for line in lines] + [e.amount for e in extras]:
        _money(value)
    if not Decimal(0) <= _decimal(discount_percent) <= Decimal(100):
        raise InvalidInput("a discount is a percent from 0 to 100")
    if _decimal(step) not in ROUNDING_STEPS:
        raise InvalidInput("the rounding step is one of 0.01, 0.05, 0.10, 1.00")
    for extra in extras:
        if not extra.item.strip():
            raise InvalidInput("an extra charge needs a name (coffee, printing, ...)")
    calls = sum((line.price for line in lines if not line.free), Decimal(0))
    free = sum((line.price for line in lines if line.free), Decimal(0))
    discount = (calls * discount_percent / 100).quantize(MICRO, ROUND_HALF_UP)
    extra_total = sum((e.amount for e in extras), Decimal(0))
    before = calls - discount + extra_total
    total = (before / step).to_integral_value(ROUND_CEILING) * step
    paid_amount = total if paid is None else _money(paid)
    if paid_amount < total:
        raise InvalidInput(f"paid {paid_amount} is less than the total {total}")
    return Receipt(
        calls, free, discount, extra_total, total - before, total, paid_amount, paid_amount - total
    )


def _decimal(value) -> Decimal:
    if isinstance(value, float) or not isinstance(value, (Decimal, int)):
        raise InvalidInput(f"{value!r} is not an exact amount (Decimal)")
    return Decimal(value)


def _money(value) -> Decimal:
    value = _decimal(value)
    if value < 0:
        raise InvalidInput("an amount may not be negative")
    if value != value.quantize(MICRO):
        raise InvalidInput("an amount has at most 6 decimals")
    return value
