"""Report benchmark: `python -m ops.bench.reports [--cdrs 10000000] [--settle 40000]`.

In one run, on the local MariaDB, in a scratch database removed afterwards:
1. `--cdrs` generated CDRs (INSERT ... SELECT from MariaDB's sequence engine: 10 resellers,
   200 shops, 2,000 booths, 40 destinations, over the last 13 months), the rollup rebuilt from
   them (workers.rollup.rebuild: what settlement would have kept, see tests/test_rollup.py);
2. report latency, p50 / p95 over `--runs`, of "this month, by day, one reseller" and "last
   year, by destination, all", from the rollup (admin.report_query.run_report) and the same
   figures straight from the CDR table (one GROUP BY over `cdrs`);
3. settlement throughput with the rollup kept and without it, batches of 2,000 calls
   alternating in the same run (`settle()` in one transaction per batch, as workers do).
The database URL: --server (default mysql+mysqldb://root@127.0.0.1:3306).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import select, text

import workers.settle as settle_module
from admin.report_query import Filters, period_bounds, run_report
from schema import AccountGroup, Clid, Reseller, migrate
from schema.db import make_engine, session_factory
from workers.rollup import rebuild
from workers.settle import EndedCall, settle

TZ = ZoneInfo("Europe/Berlin")


def tenants(factory) -> list[tuple[int, int, int]]:
    with factory() as s, s.begin():
        for r in range(10):
            reseller = Reseller(name=f"bench-r{r}")
            for g in range(20):
                group = AccountGroup(name=f"bench-r{r}-g{g}", reseller=reseller)
                for b in range(10):
                    s.add(
                        Clid(
                            clid=f"{r}{g:02d}{b:02d}", pin=f"7{r}{g:02d}{b:02d}0000000", group=group
                        )
                    )
        s.flush()
        return [(c.group.reseller_id, c.group_id, c.id) for c in s.scalars(select(Clid))]


def generate(engine, booths, count: int, now: datetime) -> float:
    """`count` CDRs, booth = seq mod 2000, spread evenly over 395 days back from now."""
    first = booths[0][2]
    span = 395 * 86400
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("SET SESSION unique_checks = 0"))
        step = 500_000
        for low in range(1, count + 1, step):
            high = min(count, low + step - 1)
            conn.execute(
                text(
                    "INSERT INTO cdrs (uniqueid, leg, linkedid, calldate, src, dst, clid_id, "  # noqa: S608
                    "group_id, reseller_id, duration, billsec, disposition, destination, "
                    "credit, callshop_credit, reseller_credit, billing_status, settled_at) "
                    "SELECT CONCAT('b', seq), 'booth', '', "
                    "DATE_SUB(:now, INTERVAL (seq * 7919) MOD :span SECOND), '', '', "
                    "c.id, c.group_id, g.reseller_id, seq MOD 400, seq MOD 377, "
                    "IF(seq MOD 4 = 0, 'NO ANSWER', 'ANSWERED'), CONCAT('dest-', seq MOD 40), "
                    "IF(seq MOD 4 = 0, 0, (seq MOD 377) * 0.004517), "
                    "IF(seq MOD 4 = 0, 0, (seq MOD 377) * 0.002003), "
                    "IF(seq MOD 4 = 0, 0, (seq MOD 377) * 0.000911), "
                    "IF(seq MOD 3 = 0, 'BILLED', 'UNBILLED'), :now "
                    f"FROM seq_{low}_to_{high} JOIN clids c ON c.id = :first + seq MOD 2000 "
                    "JOIN account_groups g ON g.id = c.group_id"
                ),
                {"now": now, "span": span, "first": first},
            )
    return time.perf_counter() - started


def timed(runs: int, action) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def raw(session, start, end, key_sql: str, where: str = "", params=None):
    """The same figures from the CDRs: one GROUP BY over the raw table."""
    return session.execute(
        text(
            f"SELECT {key_sql} AS k, COUNT(*), SUM(disposition = 'ANSWERED'), SUM(billsec), "  # noqa: S608 (fixed text)
            "SUM(CEIL(billsec / 60)), SUM(credit), SUM(callshop_credit), SUM(reseller_credit) "
            f"FROM cdrs WHERE calldate >= :s AND calldate < :e {where} GROUP BY k"
        ),
        {"s": start, "e": end, **(params or {})},
    ).all()


def settlement(factory, booths, calls: int) -> dict:
    """CDRs/s with and without the rollup, alternating batches of 2,000 in one run."""
    keep = settle_module.add_cdrs
    rates = {"with rollup": [], "without rollup": []}
    t0 = int(datetime.now(UTC).timestamp() * 1000)
    for batch in range(calls // 2000):
        batch_calls = []
        for i in range(2000):
            n = batch * 2000 + i
            reseller, group, clid = booths[n % len(booths)]
            billsec = 5 + n % 300
            batch_calls.append(
                EndedCall(
                    f"s{n}",
                    reseller,
                    clid,
                    group,
                    t0 + n,
                    t0 + n + billsec * 1000,
                    billsec,
                    (billsec * 10_000, billsec * 5_000, billsec * 2_000),
                    (1, 2, 3),
                    False,
                    {"destination": f"dest-{n % 40}", "dialed_us": (t0 + n - 3000) * 1000},
                )
            )
        mode = "with rollup" if batch % 2 == 0 else "without rollup"
        settle_module.add_cdrs = keep if mode == "with rollup" else (lambda *a, **k: None)
        started = time.perf_counter()
        with factory() as session, session.begin():
            settle(session, batch_calls)
        rates[mode].append(2000 / (time.perf_counter() - started))
    settle_module.add_cdrs = keep
    return {mode: statistics.median(r) for mode, r in rates.items() if r}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cdrs", type=int, default=10_000_000)
    parser.add_argument("--settle", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--server", default="mysql+mysqldb://root@127.0.0.1:3306")
    args = parser.parse_args()
    name = f"abbench_{secrets.token_hex(4)}"
    server = make_engine(f"{args.server}/")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine = make_engine(f"{args.server}/{name}")
    try:
        migrate.upgrade(engine)
        factory = session_factory(engine)
        booths = tenants(factory)
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        print(f"{args.cdrs:,} CDRs generated in {generate(engine, booths, args.cdrs, now):.0f} s")
        started = time.perf_counter()
        with engine.begin() as conn:
            buckets = rebuild(conn)
        print(f"rollup rebuilt: {buckets:,} rows in {time.perf_counter() - started:.0f} s")
        admin = SimpleNamespace(role="admin", reseller_id=None, group_id=None)
        reseller = booths[0][0]
        month = period_bounds("this_month", TZ, datetime.now(UTC))
        today = datetime.now(UTC).astimezone(TZ).date()
        year = period_bounds(
            "custom",
            TZ,
            datetime.now(UTC),
            today.replace(year=today.year - 1, month=1, day=1),
            today.replace(year=today.year - 1, month=12, day=31),
        )
        cases = {
            "this month, by day, one reseller": (
                lambda s: run_report(s, admin, Filters(*month, reseller_id=reseller), "day", TZ),
                lambda s: raw(
                    s,
                    *month,
                    "DATE_FORMAT(calldate, '%Y-%m-%d %H')",
                    "AND reseller_id = :r",
                    {"r": reseller},
                ),
            ),
            "last year, by destination, all": (
                lambda s: run_report(s, admin, Filters(*year), "destination", TZ),
                lambda s: raw(s, *year, "destination"),
            ),
        }
        for label, (from_rollup, from_cdrs) in cases.items():
            with factory() as s:
                rollup = timed(args.runs, lambda f=from_rollup, s=s: f(s))
                cdrs = timed(max(3, args.runs // 4), lambda f=from_cdrs, s=s: f(s))
            print(
                f"{label}: rollup p50 {rollup[0]:.1f} ms p95 {rollup[1]:.1f} ms; "
                f"raw CDRs p50 {cdrs[0]:.0f} ms p95 {cdrs[1]:.0f} ms; "
                f"{cdrs[0] / rollup[0]:.0f}x"
            )
        rates = settlement(factory, booths, args.settle)
        with_, without = rates["with rollup"], rates["without rollup"]
        print(
            f"settlement: {with_:.0f} CDRs/s with the rollup, {without:.0f} without "
            f"({(1 - with_ / without) * 100:.1f} % slower)"
        )
    finally:
        engine.dispose()
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


if __name__ == "__main__":
    main()
