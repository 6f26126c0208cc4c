"""How numbers and states are shown to people: money to the display setting's decimals, rates
exactly (a per-minute rate of 0.085 is not 0.09), available credit next to credit used."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from flask import current_app


def decimals() -> int:
    return current_app.config["ASTERBILL_DISPLAY_DECIMALS"]


def money_text(value: Decimal | None) -> str:
    """An amount, half-up to the display setting's decimals (storage keeps all six)."""
    if value is None:
        return ""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-decimals()), ROUND_HALF_UP))


def exact_text(value: Decimal | None) -> str:
    """A price per unit (a rate, a connect charge): at least the display decimals, and as
    many more as the value needs to be shown exactly."""
    if value is None:
        return ""
    value = Decimal(value)
    shown = value.quantize(Decimal(1).scaleb(-decimals()))
    if shown == value:
        return str(shown)
    return str(value.normalize()) if value.as_tuple().exponent < 0 else str(value)


def available(row) -> Decimal:
    """Credit still available at a level: credit limit minus credit used."""
    return row.creditlimit - row.curcredit
