"""Bounds on what settlement writes: one bad call must never block its reseller.

A CDR row is checked against the columns of `cdrs` before the insert: free text longer than
its column (channel, caller id, number, ...) is cut to fit and the CDR flagged `fields_cut`
for review; what cannot be cut without lying (the uniqueid, the leg, a time outside what
MySQL's DATETIME holds, a number of seconds beyond INT) makes the call a dead letter
(schema.dead_letters): kept in MySQL with its raw Redis data and the error, its prices added
to the balances like a CDR's, while the rest of the batch settles.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import Integer, String

from schema import Cdr
from schema.calls import LEGS

INT_MAX = 2**31 - 1
# MariaDB/MySQL DATETIME holds years 1000-9999; a call before 2000 is no real call either
EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(9999, 1, 1)
CUT_FLAG = "fields_cut"
RAW_MAX = 60_000  # TEXT holds 64 KB


class UnwritableCall(ValueError):
    """The call cannot become a CDR as it is: it goes to the dead letters."""


def _lengths() -> dict[str, int]:
    return {
        c.name: c.type.length
        for c in Cdr.__table__.columns
        if isinstance(c.type, String) and c.type.length and c.name not in ("uniqueid", "leg")
    }


def _ints() -> set[str]:
    return {c.name for c in Cdr.__table__.columns if isinstance(c.type, Integer)} - {"id"}


def bounded(row: dict) -> dict:
    """The row, its free text cut to fit and flagged; UnwritableCall when it cannot be."""
    if not isinstance(row.get("uniqueid"), str) or not 1 <= len(row["uniqueid"]) <= 64:
        raise UnwritableCall(f"uniqueid of {len(str(row.get('uniqueid')))} characters (max 64)")
    if row.get("leg") not in LEGS:
        raise UnwritableCall(f"leg {row.get('leg')!r} is not one of {', '.join(LEGS)}")
    for name in ("calldate", "answered_at", "ended_at"):
        at = row.get(name)
        if at is not None and not EARLIEST <= at < LATEST:
            raise UnwritableCall(f"{name} {at} is outside {EARLIEST:%Y} to {LATEST:%Y}")
    out = dict(row)
    for name in _ints() & out.keys():
        value = out[name]
        if value is None:
            continue
        if name == "hangup_cause":  # Asterisk's text; a wrong one is dropped, not fatal
            try:
                value = int(value)
            except (TypeError, ValueError):
                value = None
            out[name] = value if value is None or 0 <= value <= INT_MAX else None
        elif not isinstance(value, int) or not 0 <= value <= INT_MAX:
            raise UnwritableCall(f"{name} {value!r} is outside 0 to {INT_MAX}")
    cut = []
    for name, length in _lengths().items():
        value = out.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            value = str(value)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a broken event
            cut.append(name)
            value = value.encode("utf-8", "replace").decode("utf-8")
        if len(value) > length:
            cut.append(name)
            value = value[:length]
        out[name] = value
    if cut:
        reason = out.get("review_reason") or ""
        out["review_reason"] = ",".join(x for x in (CUT_FLAG, reason) if x)[:64]
    return out


def call_key(call_id: str) -> str:
    """The dead letter's idempotency key (call ids are Asterisk uniqueids: unique)."""
    return hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()


def raw_text(value: str) -> str:
    return value if len(value) <= RAW_MAX else value[:RAW_MAX] + "...(cut)"
