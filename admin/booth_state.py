"""The live state of one callshop for its booth page: one Redis round trip (a pipeline over the
reseller tag's calls, meta and balances) plus today's settled, unbilled CDR figures from
MySQL. Money stays integer micro-units here; the page formats it.

State of a booth, first that applies: `in_call` (an answered call Redis is billing), `locked`,
`no_credit` (prepaid and nothing available, or its deposit used up), `unbilled` (calls not yet
checked out), `idle`. Dialling / ringing is not in Redis (only answered calls are), so the
page does not show it yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from lua.credit import parse_call_state
from lua.keys import Keys
from rating.price import Rate, price
from schema import Cdr

BOOTH_ATTRS = ("limit", "used", "type", "unbilled", "deposit", "locked")
GROUP_ATTRS = ("limit", "used", "type")
COST_KEYS = ("cost",)  # shop figures only groupadmin and above may see


@dataclass(frozen=True)
class Shop:
    """What the reader needs to know of a callshop (from MySQL, refreshed now and then)."""

    reseller_id: int
    group_id: int
    clid_ids: tuple[int, ...]


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def read_redis(client, keys: Keys, shop: Shop) -> dict:
    """One pipeline: the tag's live calls and metas, the booths' and the shop's balances."""
    r = shop.reseller_id
    fields = [f"c{c}.{a}" for c in shop.clid_ids for a in BOOTH_ATTRS]
    fields += [f"g{shop.group_id}.{a}" for a in GROUP_ATTRS]
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.calls(r))
    pipe.hmget(keys.balances(r), fields)
    calls, balances = pipe.execute()
    mine = {}
    for call_id, value in calls.items():
        state = parse_call_state(value)
        if state[1] == shop.group_id and state[0] in shop.clid_ids:
            mine[_text(call_id)] = state
    metas = client.hmget(keys.meta(r), list(mine)) if mine else []
    return {
        "calls": mine,
        "metas": dict(zip(mine, [_text(m) for m in metas], strict=True)),
        "balances": dict(zip(fields, [_text(b) for b in balances], strict=True)),
    }


def unbilled_today(session, group_id: int, today: datetime) -> dict:
    """Per booth: today's settled unbilled customer total and count; the shop's amount and
    cost of today (every settled call, billed or not)."""
    rows = session.execute(
        select(Cdr.clid_id, func.coalesce(func.sum(Cdr.credit), 0), func.count())
        .where(
            Cdr.group_id == group_id,
            Cdr.calldate >= today,
            Cdr.billing_status == "UNBILLED",
            Cdr.disposition == "ANSWERED",
        )
        .group_by(Cdr.clid_id)
    ).all()
    amount, cost = session.execute(
        select(
            func.coalesce(func.sum(Cdr.credit), 0), func.coalesce(func.sum(Cdr.callshop_credit), 0)
        ).where(Cdr.group_id == group_id, Cdr.calldate >= today)
    ).one()
    from rating.money import stored_micros

    return {
        "booths": {cid: (stored_micros(total), n) for cid, total, n in rows},
        "amount": stored_micros(amount),
        "cost": stored_micros(cost),
    }


def start_of_today() -> datetime:
    """Midnight UTC (CDR times are stored in UTC)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def snapshot(shop: Shop, live: dict, settled: dict, now_ms: int) -> dict:
    """The page's state: {"booths": {clid id: tile}, "shop": header figures}; only plain
    JSON values, so two snapshots compare with ==."""
    bal = live["balances"]
    calls_by_booth = {}
    for call_id, s in live["calls"].items():
        calls_by_booth[s[0]] = (call_id, s)
    booths = {}
    running_total = 0
    running_cost = 0
    for cid in shop.clid_ids:
        b = {a: bal.get(f"c{cid}.{a}") for a in BOOTH_ATTRS}
        limit, used = int(b["limit"] or 0), int(b["used"] or 0)
        deposit = None if b["deposit"] is None else int(b["deposit"])
        unbilled_redis = int(b["unbilled"] or 0)
        total, count = settled["booths"].get(cid, (0, 0))
        tile = {
            "limit": limit,
            "available": limit - used,
            "type": b["type"] or "none",
            "deposit": deposit,
            "locked": b["locked"] == "1",
            "unbilled": total,
            "unbilled_calls": count,
            "call": None,
        }
        if cid in calls_by_booth:
            call_id, s = calls_by_booth[cid]
            rate = Rate(*s[10:15])
            billsec = max(0, (now_ms - s[2]) // 1000)
            meta = json.loads(live["metas"].get(call_id) or "{}")
            running = price(billsec, s[15], rate)
            running_total += running
            running_cost += price(billsec, s[21], Rate(*s[16:21]))
            tile["call"] = {
                "id": call_id,
                "number": meta.get("dst", ""),
                "destination": meta.get("destination", ""),
                "answer_ms": s[2],
                "price": running,
                "paid": s[4],
                "paid_until_s": s[5],
                "per_minute": rate.per_minute,
                "cut": s[3] == 1,
            }
        tile["state"] = _state(tile, unbilled_redis)
        booths[str(cid)] = tile
    g = shop.group_id
    group_limit = int(bal.get(f"g{g}.limit") or 0)
    group_used = int(bal.get(f"g{g}.used") or 0)
    return {
        "booths": booths,
        "shop": {
            "amount": settled["amount"] + running_total,
            "cost": settled["cost"] + running_cost,
            "available": group_limit - group_used,
            "type": bal.get(f"g{g}.type") or "none",
        },
    }


def _state(tile: dict, unbilled_redis: int) -> str:
    if tile["call"] is not None:
        return "in_call"
    if tile["locked"]:
        return "locked"
    prepaid_empty = tile["type"] == "prepaid" and tile["available"] <= 0
    deposit = tile["deposit"]
    if prepaid_empty or (deposit is not None and unbilled_redis >= deposit):
        return "no_credit"
    if tile["unbilled_calls"] or unbilled_redis:
        return "unbilled"
    return "idle"


def changes(old: dict | None, new: dict) -> dict:
    """Only what differs: changed tiles whole, changed header fields."""
    if old is None:
        return new
    out: dict = {}
    booths = {k: v for k, v in new["booths"].items() if old["booths"].get(k) != v}
    if booths:
        out["booths"] = booths
    shop = {k: v for k, v in new["shop"].items() if old["shop"].get(k) != v}
    if shop:
        out["shop"] = shop
    return out


def for_role(message: dict, show_cost: bool) -> dict:
    """A message as a role may see it: without the shop's cost for an operator."""
    if show_cost or "shop" not in message:
        return message
    shop = {k: v for k, v in message["shop"].items() if k not in COST_KEYS}
    out = {k: v for k, v in message.items() if k != "shop"}
    if shop:
        out["shop"] = shop
    return out
