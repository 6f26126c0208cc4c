"""Failed-login limits, per kind of login (staff back office, booth portal), kept in Redis.

- Per name: after `NAME_FAILURES` failures within `WINDOW_S` the name is refused without a
  password check until the window passes. Names are counted in one canonical form, so the
  variants the database treats as the same name (case, accents, full-width or Arabic-Indic
  digits) share one counter.
- Per address: no hard lock-out (one attacker would lock out everyone behind the same
  address): after `ADDRESS_FREE_FAILURES` failures each further attempt from that address must
  wait a delay that doubles with each failure, up to `ADDRESS_MAX_DELAY_S`. Attempts refused
  for waiting are not counted.
The two kinds never share a counter: wrong portal PINs for "boss" do not lock out the admin boss.

Keys (under the key prefix): `login-fail:<kind>:name:<canonical name>` (a counter) and
`login-fail:<kind>:addr:<address>` (a hash: `n` failures, `until` ms before which to wait).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable

NAME_FAILURES = 5
WINDOW_S = 15 * 60
ADDRESS_FREE_FAILURES = 5
ADDRESS_MAX_DELAY_S = 120
KINDS = ("staff", "portal")


def ascii_digits(text: str) -> str:
    """Every decimal digit of any script as its ASCII digit ('٨٠٠١' and '８００１' -> '8001')."""
    return "".join(
        str(unicodedata.decimal(ch)) if unicodedata.decimal(ch, None) is not None else ch
        for ch in text
    )


def canonical_name(raw: str) -> str:
    """One spelling for the names a case- and accent-insensitive collation treats as equal:
    compatibility forms folded (NFKC), ASCII digits, accents dropped, case folded."""
    text = ascii_digits(unicodedata.normalize("NFKC", raw).strip())
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.casefold()


def login_name(raw: str) -> str:
    """A back-office name as typed, in its compatibility form (full-width letters as ASCII)."""
    return unicodedata.normalize("NFKC", raw).strip()


def booth_number(raw: str) -> str:
    """A booth / extension number as typed on the portal, with ASCII digits only."""
    return ascii_digits(unicodedata.normalize("NFKC", raw).strip())


class LoginLimiter:
    def __init__(self, redis, prefix: str, kind: str, clock: Callable[[], float] = time.time):
        if kind not in KINDS:
            raise ValueError(f"login kind {kind!r} is not one of {KINDS}")
        self.redis, self.prefix, self.kind, self.clock = redis, prefix, kind, clock

    def _name_key(self, name: str) -> str:
        return f"{self.prefix}:login-fail:{self.kind}:name:{canonical_name(name)}"

    def _address_key(self, address: str | None) -> str:
        return f"{self.prefix}:login-fail:{self.kind}:addr:{address or '-'}"

    def name_locked(self, name: str) -> bool:
        return int(self.redis.get(self._name_key(name)) or 0) >= NAME_FAILURES

    def address_wait_s(self, address: str | None) -> int:
        """Seconds this address must still wait before its next attempt (0: go ahead)."""
        until = self.redis.hget(self._address_key(address), "until")
        left_ms = int(until or 0) - int(self.clock() * 1000)
        return max(0, -(-left_ms // 1000))

    def failed(self, name: str, address: str | None) -> None:
        name_key, address_key = self._name_key(name), self._address_key(address)
        pipe = self.redis.pipeline()
        pipe.incr(name_key)
        pipe.expire(name_key, WINDOW_S)
        pipe.hincrby(address_key, "n", 1)
        pipe.expire(address_key, WINDOW_S)
        failures = pipe.execute()[2]
        if failures >= ADDRESS_FREE_FAILURES:
            delay_s = min(2 ** (failures - ADDRESS_FREE_FAILURES), ADDRESS_MAX_DELAY_S)
            self.redis.hset(address_key, "until", int((self.clock() + delay_s) * 1000))

    def succeeded(self, name: str) -> None:
        self.redis.delete(self._name_key(name))
