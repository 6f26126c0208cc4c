"""AMI messages as text: parse one message into headers, and build one from headers.

The listener receives messages through panoramisk; this module is for what panoramisk does not
do for us (the PBX simulator's server side, replays of captures in tests) and keeps a header
whose value is empty, even when it is the last one (panoramisk 1.4 drops it).
"""

from __future__ import annotations

from collections.abc import Iterable

EOL = "\r\n"


class FrameError(ValueError):
    """A message that is not AMI (no `Key: value` lines)."""


def parse(raw: str) -> dict[str, str]:
    """One message (without or with its terminating blank line) -> headers, first wins for
    repeated keys except `Variable`/`ChanVariable`, which are joined by newlines."""
    headers: dict[str, str] = {}
    for line in raw.split(EOL):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or " " in key.strip():
            raise FrameError(f"not an AMI header line: {line[:80]!r}")
        key, value = key.strip(), value[1:] if value.startswith(" ") else value
        if key in headers:
            if key in ("Variable", "ChanVariable"):
                headers[key] += "\n" + value
            continue
        headers[key] = value
    if not headers:
        raise FrameError("empty AMI message")
    return headers


def build(headers: Iterable[tuple[str, str]]) -> bytes:
    """Headers -> one message on the wire, ending with the blank line."""
    return ("".join(f"{k}: {v}{EOL}" for k, v in headers) + EOL).encode()


def timestamp_us(headers: dict[str, str]) -> int | None:
    """The event's `Timestamp` (timestampevents = yes) in integer microseconds, exactly."""
    value = headers.get("Timestamp")
    if not value:
        return None
    seconds, _, fraction = value.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()):
        return None
    return int(seconds) * 1_000_000 + int((fraction + "000000")[:6])
