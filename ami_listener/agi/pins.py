"""PIN guessing bounds of the card IVR: wrong PINs are counted per caller id and per card in
Redis; at ASTERBILL_PIN_MAX_FAILURES the caller id, or the card, is refused for
ASTERBILL_PIN_LOCK_MINUTES (counted from its first failure). A card reaching the bound is
also queued (`pin_lockouts`) for the reconciler, which locks it in MySQL and Redis with a
credit operation that says why (workers/pin_lockouts.py): an administrator unlocks it.
"""

from __future__ import annotations

import json
import logging
import time

import redis

from lua.credit import CreditEngine, Payer
from lua.pins import PinStore
from ops.settings import Settings

log = logging.getLogger("asterbill.agi")


class PinGuard:
    """Blocking (Redis); the IVR runs it in a worker thread."""

    def __init__(self, client: redis.Redis, keys, settings: Settings) -> None:
        self.client, self.keys, self.settings = client, keys, settings
        self.store = PinStore(client, keys)
        self.engine = CreditEngine(client, keys)

    def _failures(self, kind: str, ident: str) -> int:
        return int(self.client.get(self.keys.pin_failures(kind, ident or "anonymous")) or 0)

    def caller_locked(self, caller: str) -> bool:
        return self._failures("caller", caller) >= self.settings.pin_max_failures

    def card_locked(self, card: str) -> bool:
        return self._failures("card", card) >= self.settings.pin_max_failures

    def check(self, card: str, pin: str) -> Payer | None:
        """The card's payer when `pin` is this card's PIN (and the card still exists)."""
        if not card.isdigit() or not pin.isdigit() or self.store.owner(pin) != card:
            return None
        return self.engine.find_payer(card)

    def succeeded(self, caller: str, card: str) -> None:
        self.client.delete(self.keys.pin_failures("card", card))

    def failed(self, caller: str, card: str) -> tuple[int, int]:
        """Count one wrong PIN against the caller id and the card; (caller's, card's)."""
        ttl = self.settings.pin_lock_minutes * 60
        caller_key = self.keys.pin_failures("caller", caller or "anonymous")
        card_key = self.keys.pin_failures("card", card or "none")
        pipe = self.client.pipeline(transaction=True)
        for key in (caller_key, card_key):
            pipe.set(key, 0, ex=ttl, nx=True)  # the window starts at the first failure
            pipe.incr(key)
        by_caller, by_card = pipe.execute()[1::2]
        limit = self.settings.pin_max_failures
        if by_caller == limit:
            log.warning("PIN: caller %r locked out after %d wrong PINs", caller, by_caller)
        if by_card == limit and card:
            log.warning(
                "PIN: card %s locked after %d wrong PINs (last from %r)", card, limit, caller
            )
            event = {"card": card, "caller": caller, "failures": limit, "at_ms": _now_ms()}
            self.client.rpush(self.keys.pin_lockouts(), json.dumps(event))
        return by_caller, by_card


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
