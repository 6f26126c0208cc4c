"""Admission for the dialplan: the credit engine's answer at dial, as AGI statuses.

No money rule lives here: `CreditEngine.admit` (payer, rates, lua/authorizeCall-1.lua) decides,
exactly as the listener does at DialBegin, and its `seconds` (the longest billsec every
prepaid level and the booth deposit can pay, after the connect charge and the init block,
with the billsec multiples, from balances that already hold what running calls paid) is
ASTERBILL_MAXSEC. The listener cuts the same call when its billsec reaches MAXSEC + 1 (minus
the guard time), so `Dial(...,L(${ASTERBILL_MAXSEC}000))` ends it on the last paid second.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import redis

from lua.credit import CreditEngine, CreditError, Deny, LevelState, Payer
from ops.settings import Settings
from rating.book import RedisRateBook
from rating.select import strip_number

log = logging.getLogger("asterbill.agi")


class Status(enum.StrEnum):
    """ASTERBILL_STATUS, the only values a dialplan has to know (README, FastAGI)."""

    OK = "OK"
    LOCKED = "LOCKED"
    NO_CREDIT = "NO_CREDIT"
    NO_CREDIT_GROUP = "NO_CREDIT_GROUP"
    NO_CREDIT_RESELLER = "NO_CREDIT_RESELLER"
    NO_RATE = "NO_RATE"
    UNKNOWN = "UNKNOWN"
    ERROR = "ERROR"


# Every reason the engine can deny a call for, to the status the dialplan sees. The booth
# (clid) level, its deposit, and a level over its limit after a call nobody could cut are all
# "no credit" at that level; ASTERBILL_REASON keeps the engine's exact reason.
STATUS_OF_DENY: dict[Deny, Status] = {
    Deny.UNKNOWN_PAYER: Status.UNKNOWN,
    Deny.LOCKED: Status.LOCKED,
    Deny.NO_RATE: Status.NO_RATE,
    Deny.NO_CREDIT_CLID: Status.NO_CREDIT,
    Deny.DEPOSIT_REACHED: Status.NO_CREDIT,
    Deny.OVER_LIMIT_CLID: Status.NO_CREDIT,
    Deny.DEPOSIT_EXCEEDED: Status.NO_CREDIT,
    Deny.NO_CREDIT_GROUP: Status.NO_CREDIT_GROUP,
    Deny.OVER_LIMIT_GROUP: Status.NO_CREDIT_GROUP,
    Deny.NO_CREDIT_RESELLER: Status.NO_CREDIT_RESELLER,
    Deny.OVER_LIMIT_RESELLER: Status.NO_CREDIT_RESELLER,
    Deny.PRICE_OVERFLOW: Status.ERROR,  # a rate too large to price exactly: a broken row
    Deny.CREDIT_UNAVAILABLE: Status.ERROR,  # Redis did not answer
}


@dataclass(frozen=True)
class Admission:
    status: Status
    reason: str = ""  # the engine's Deny reason, or what went wrong (ERROR)
    maxsec: int | None = None  # None: no prepaid level nor deposit bounds the call
    destination: str = ""
    payer: Payer | None = None

    def variables(self) -> dict[str, str]:
        return {
            "ASTERBILL_STATUS": str(self.status),
            "ASTERBILL_MAXSEC": "" if self.maxsec is None else str(self.maxsec),
            "ASTERBILL_DESTINATION": self.destination,
            "ASTERBILL_REASON": self.reason,
        }


def payer_key(headers: dict[str, str], field: str) -> str:
    """Who pays, from the AGI environment, by ASTERBILL_PAYER_FIELD (as the listener does
    from the AMI events: caller id number, channel peer or account code)."""
    from ami_listener.tracker import peer_of

    if field == "accountcode":
        return headers.get("agi_accountcode", "")
    if field == "peer":
        return peer_of(headers.get("agi_channel", ""))
    return headers.get("agi_callerid", "")


class Admitter:
    """Blocking (Redis); the server runs it in a worker thread."""

    def __init__(self, engine: CreditEngine, book: RedisRateBook, settings: Settings) -> None:
        self.engine, self.book, self.settings = engine, book, settings

    def admit(self, payer: str, dialled: str) -> Admission:
        number = strip_number(dialled.strip(), self.settings.strip_prefixes)
        if not number.isdigit():
            return Admission(Status.ERROR, f"number {dialled!r} is not digits")
        if not payer:
            return Admission(Status.UNKNOWN, Deny.UNKNOWN_PAYER)
        try:
            auth, who, pricing = self.engine.admit(payer, number, self.book)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("admission of %s -> %s: Redis does not answer (%s)", payer, number, exc)
            return Admission(Status.ERROR, Deny.CREDIT_UNAVAILABLE)
        except CreditError as exc:
            log.error("admission of %s -> %s refused by the engine: %s", payer, number, exc)
            return Admission(Status.ERROR, exc.code)
        destination = pricing.customer.destination if pricing is not None else ""
        if not auth.allowed:
            return Admission(STATUS_OF_DENY[auth.reason], auth.reason, None, destination, who)
        if auth.seconds == 0:
            # Not one second is paid: Dial's L(0) would mean "no limit", so refuse it here.
            return Admission(Status.NO_CREDIT, "NO_PAID_SECOND", 0, destination, who)
        maxsec = None if auth.seconds < 0 else auth.seconds
        return Admission(Status.OK, "", maxsec, destination, who)

    def available(self, payer: Payer) -> int | None:
        """The credit the clid itself may still spend (micro-units): its limit minus what it
        used, bounded by what is left of its booth deposit; None when neither bounds it."""
        clid = self.engine.level(payer.reseller_id, "clid", payer.clid_id)
        return available_of(clid)


def available_of(clid: LevelState) -> int | None:
    out = None if clid.limit_type == "none" else clid.available
    if clid.deposit is not None:
        left = clid.deposit - clid.unbilled
        out = left if out is None else min(out, left)
    return out
