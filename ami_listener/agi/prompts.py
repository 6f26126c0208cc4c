"""What the IVR says: Asterisk's own SAY NUMBER / SAY DIGITS and a few sound files
(README, FastAGI: the sounds a site records under these names)."""

from __future__ import annotations

from ami_listener.agi.protocol import AgiSession

BALANCE_IS = "asterbill-balance-is"  # "your balance is"
CURRENCY = "asterbill-currency"  # "dollars" (the unit of ASTERBILL_CURRENCY)
AND = "asterbill-and"  # "and"
CENTS = "asterbill-cents"  # "cents"
MINUS = "asterbill-minus"  # "minus" (a postpaid level past its limit)
UNLIMITED = "asterbill-unlimited"  # "your credit is not limited"
UNKNOWN = "asterbill-unknown"  # "this line is not known"
ENTER_CARD = "asterbill-enter-card"  # "enter your card number, then the hash key"
ENTER_PIN = "asterbill-enter-pin"  # "enter your PIN, then the hash key"
WRONG_PIN = "asterbill-wrong-pin"  # "this PIN is not right"
LOCKED = "asterbill-locked"  # "this card is locked"
MINUTES_LEFT = "asterbill-minutes-left"  # "minutes left for this destination"
ENTER_NUMBER = "asterbill-enter-number"  # "enter the number you want to call, then hash"
NO_CREDIT = "asterbill-no-credit"  # "your credit is not enough for this call"
NO_RATE = "asterbill-no-rate"  # "this destination cannot be called"
GOODBYE = "vm-goodbye"  # Asterisk's own

ALL = (BALANCE_IS, CURRENCY, AND, CENTS, MINUS, UNLIMITED, UNKNOWN, ENTER_CARD, ENTER_PIN)
ALL += (WRONG_PIN, LOCKED, MINUTES_LEFT, ENTER_NUMBER, NO_CREDIT, NO_RATE)


async def play(session: AgiSession, sound: str) -> None:
    await session.command(f'STREAM FILE {sound} ""')


async def say_number(session: AgiSession, number: int) -> None:
    await session.command(f'SAY NUMBER {int(number)} ""')


async def say_balance(session: AgiSession, micros: int | None, decimals: int) -> None:
    """Whole units, then the fraction at the display decimals (rounded down: never more than
    the caller has)."""
    if micros is None:
        await play(session, UNLIMITED)
        return
    await play(session, BALANCE_IS)
    if micros < 0:
        await play(session, MINUS)
        micros = -micros
    units, rest = divmod(micros, 1_000_000)
    await say_number(session, units)
    await play(session, CURRENCY)
    fraction = rest // 10 ** (6 - decimals) if decimals else 0
    if fraction:
        await play(session, AND)
        await say_number(session, fraction)
        await play(session, CENTS)


async def get_data(session: AgiSession, sound: str, max_digits: int, timeout_ms: int) -> str:
    """DTMF digits after a prompt; `#` ends the input (Asterisk's GET DATA does so)."""
    result, _ = await session.command(f"GET DATA {sound} {timeout_ms} {max_digits}")
    return result if result.isdigit() else ""
