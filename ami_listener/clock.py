"""Asterisk's clock, as the listener sees it: every `Timestamp` header is bounded by the
listener's own receive clock, so one absurd event (a DialEnd stamped 2001, a Timestamp of
`99999999999999999999.5`) can never bill millions of blocks, and an Asterisk whose clock runs
ahead or behind never delays a cut.

The offset (Asterisk's Timestamp minus the receive time) is the median of the last samples:
one bad event cannot move it, a whole Asterisk that is 60 s ahead does (after three events).
Billing stays on Asterisk's clock (billsec as its CDR counts it); the scheduler converts the
local time to Asterisk's before it asks which boundaries are due (Biller.tick).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping

from ami_listener.frames import timestamp_us

TOLERANCE_US = 5_000_000  # a Timestamp this far from receipt + offset is not believed
SAMPLES = 63  # odd: the median is one sample
MIN_SAMPLES = 3  # before that, the receive clock itself is the reference
REMEMBERED = 10_000  # channels whose timestamps were replaced (for the review flag)


class AsteriskClock:
    def __init__(self) -> None:
        self._samples: deque[int] = deque(maxlen=SAMPLES)
        self.offset_us = 0  # Asterisk's clock minus the listener's
        self.replaced = 0  # timestamps not believed (replaced by the receive time)
        self._suspects: OrderedDict[str, None] = OrderedDict()

    def at(self, event: Mapping[str, str], received_us: int) -> int:
        """The event's time on Asterisk's clock: its Timestamp when it is within
        TOLERANCE_US of receipt + offset, else receipt + offset (the channel is then
        remembered as suspect: its call is flagged `timestamp_replaced`)."""
        stamp = timestamp_us(dict(event))
        if stamp is None:
            return received_us + self.offset_us
        self._samples.append(stamp - received_us)
        if len(self._samples) >= MIN_SAMPLES:
            self.offset_us = sorted(self._samples)[len(self._samples) // 2]
        expected = received_us + self.offset_us
        if abs(stamp - expected) <= TOLERANCE_US:
            return stamp
        self.replaced += 1
        uniqueid = event.get("Uniqueid", "")
        if uniqueid:
            self._suspects[uniqueid] = None
            while len(self._suspects) > REMEMBERED:
                self._suspects.popitem(last=False)
        return expected

    def suspect(self, uniqueid: str) -> bool:
        """Was a Timestamp of this channel replaced (its call should be reviewed)?"""
        return uniqueid in self._suspects

    def asterisk_ms(self, local_ms: int) -> int:
        """The listener's time on Asterisk's clock."""
        return local_ms + self.offset_us // 1000

    def local_ms(self, asterisk_ms: int) -> int:
        """A time on Asterisk's clock (a due time) on the listener's."""
        return asterisk_ms - self.offset_us // 1000
