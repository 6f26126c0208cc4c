"""How large a credit amount and a balance may be, so that every store keeps them exact:
Redis and Lua (doubles: integers below 2**53 micro-units, about 9.0e9 in money), MySQL
`DECIMAL(18,6)` (below 1e12). A booth's live `used` in Redis is its MySQL balance plus what
its open calls cost (each bounded by rating/rate_limits.py, at most 1.6e9 for a day-long call
at the highest rate), so the balance itself is kept to a ninth of the Lua range.

Every caller of the credit service (back-office form, `asterbill credit`, the service itself)
goes through `check_amount` and `check_balance`: one rule, one message.
"""

from __future__ import annotations

from decimal import Decimal

from ops.errors import InvalidInput

MAX_AMOUNT = Decimal(1_000_000_000)  # one charge, refund, limit or deposit
MAX_BALANCE = Decimal(1_000_000_000)  # credit used (curcredit), either sign


def check_amount(kind: str, amount: Decimal | None) -> None:
    if amount is not None and amount > MAX_AMOUNT:
        raise InvalidInput(f"{kind} amount {amount} is larger than the maximum {MAX_AMOUNT}")


def check_balance(level: str, target_id: int, before: Decimal, after: Decimal) -> None:
    """Refuse a balance past the bound, unless the operation brings it closer to 0 (a level
    that was out of range before these bounds can still be settled)."""
    if abs(after) > MAX_BALANCE and abs(after) > abs(before):
        raise InvalidInput(
            f"this would make the credit used of {level} {target_id} {after}, beyond "
            f"±{MAX_BALANCE}: nothing changed"
        )
