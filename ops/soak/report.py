"""The soak's figures, from the ledger (its MariaDB), Redis and the AMI tap."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from rating.money import stored_micros, to_multiple
from rating.price import Rate, price
from schema import AccountGroup, CallshopRate, Cdr, Clid, CustomerRate, DeadLetter, Reseller
from workers import reconcile
from workers.reconcile_levels import Finding


def figures(soak, drained: bool) -> dict:
    tap = soak.tap.snapshot()
    with soak.factory() as session:
        cdrs = session.scalars(select(Cdr)).all()
        dead = session.scalars(select(DeadLetter)).all()
        rates = _rates(session)
        multiples = _multiples(session)
        try:
            findings = reconcile.check(session, soak.credit)
        except Exception as exc:  # reported, not raised
            findings = [f"reconcile --check failed: {exc}"]
    per_uniqueid = Counter(c.uniqueid for c in cdrs)
    by_uniqueid = {c.uniqueid: c for c in cdrs}
    ended = {u: t for u, t in tap.items() if t.hung_up}
    interrupted = {u: t for u, t in tap.items() if not t.hung_up}  # the simulator was killed
    lost = sorted(u for u in ended if u not in by_uniqueid and u not in {d.call_id for d in dead})
    overbilled, billsec_differs, excess = [], 0, 0
    for u, t in ended.items():
        cdr = by_uniqueid.get(u)
        if cdr is None or t.billsec is None:
            continue
        if cdr.billsec != t.billsec:
            billsec_differs += 1
        if cdr.billsec > t.billsec:
            overbilled.append(u)
            excess += cdr.billsec - t.billsec
    mismatches = [c.uniqueid for c in cdrs if not _priced_right(c, rates, multiples)]
    over = [str(f) for f in findings if isinstance(f, Finding) and not f.repairable]
    drifts = [str(f) for f in findings if not (isinstance(f, Finding) and not f.repairable)]
    hands = [exit_ for p in soak.procs for exit_ in p.unexpected_exits]
    worst_recovery = max((r for _, r in soak.stall.recoveries), default=0.0)
    out = {
        "profile": soak.profile.name,
        "calls_placed": len(tap),
        "calls_answered": sum(1 for t in tap.values() if t.dial_status == "ANSWER"),
        "calls_ended_per_asterisk": len(ended),
        "calls_cut_by_simulator_kill": len(interrupted),
        "cdrs": len(cdrs),
        "dead_letters": len(dead),
        "lost": len(lost),
        "lost_examples": lost[:10],
        "doubled": sum(1 for n in per_uniqueid.values() if n > 1),
        "overbilled": len(overbilled),
        "overbilled_seconds": excess,
        "billsec_differs_from_asterisk": billsec_differs,
        "price_mismatches": len(mismatches),
        "over_limit": over,
        "reconcile_drifts": drifts,
        "longest_settlement_stall_s": round(soak.stall.longest, 1),
        "slowest_recovery_after_a_fault_s": worst_recovery,
        "recoveries": soak.stall.recoveries,
        "most_calls_waiting": soak.stall.waiting_max,
        "credit_operations": soak.credit_ops,
        "processes_that_needed_a_hand": hands,
        "restarts": {p.name: p.restarts for p in soak.procs},
        "drained": drained,
        "left_in_redis": _left(soak, by_uniqueid),
    }
    out["verdict"] = (
        "PASS"
        if drained
        and not lost
        and not out["doubled"]
        and not overbilled
        and not mismatches
        and not drifts
        and not hands
        and worst_recovery <= 15
        else "FAIL"
    )
    return out


def _rates(session) -> dict:
    out = {}
    for model, table in ((CustomerRate, "c"), (CallshopRate, "g")):
        for r in session.scalars(select(model)):
            out[(table, r.id)] = _rate(r)
    from schema import ResellerRate

    for r in session.scalars(select(ResellerRate)):
        out[("r", r.id)] = _rate(r)
    return out


def _rate(r) -> Rate:
    return Rate(
        r.id,
        stored_micros(r.connectcharge),
        r.initblock,
        stored_micros(r.rateinitial),
        r.billingblock,
    )


def _multiples(session) -> dict:
    groups = {
        g.id: (to_multiple(g.customer_multiple), to_multiple(g.group_multiple))
        for g in session.scalars(select(AccountGroup))
    }
    resellers = {r.id: to_multiple(r.multiple) for r in session.scalars(select(Reseller))}
    clids = dict(session.execute(select(Clid.id, Clid.group_id)).all())
    return {"groups": groups, "resellers": resellers, "clids": clids}


def _priced_right(c: Cdr, rates: dict, multiples: dict) -> bool:
    """The CDR's three prices == the Python reference for its billsec and rates."""
    if c.clid_id is None or not c.customer_rate_id:
        return True  # unknown payer or no rate: recorded at cost 0
    cmul, gmul = multiples["groups"][c.group_id]
    rmul = multiples["resellers"][c.reseller_id]
    want = [
        price(c.billsec, cmul, rates[("c", c.customer_rate_id)]),
        price(c.billsec, gmul, rates[("g", c.callshop_rate_id)]) if c.callshop_rate_id else 0,
        price(c.billsec, rmul, rates[("r", c.reseller_rate_id)]) if c.reseller_rate_id else 0,
    ]
    got = [
        stored_micros(c.credit),
        stored_micros(c.callshop_credit),
        stored_micros(c.reseller_credit),
    ]
    return want == got


def _left(soak, by_uniqueid: dict) -> dict:
    """What Redis still holds after the drain; a live call whose CDR exists is a phantom
    (its end was lost with the last second of the append-only file, say)."""
    try:
        left = soak.left_in_redis()
        live = [
            k.decode()
            for r in soak.credit.resellers_with_calls("calls")
            for k in soak.client.hkeys(soak.credit.keys.calls(r))
        ]
    except Exception as exc:  # reported, not raised
        return {"error": str(exc)}
    left["live_with_a_cdr"] = sum(1 for u in live if u.partition(":")[0] in by_uniqueid)
    return left
