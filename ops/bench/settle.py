"""Settlement benchmark: `python -m ops.bench.settle [--calls 100000] [--workers 2]`.

In one run, on the same MariaDB and Redis:
1. the ceiling: the same CDR rows inserted raw (mysqlclient `executemany`, 2,000 rows per
   statement) into a copy of the `cdrs` table;
2. the backlog drain: `--calls` ended calls waiting in Redis (spread over `--resellers`
   reseller tags, the format the end script writes), settled by `--workers` real
   `asterbill worker` processes (RQ, SimpleWorker) on jobs requested as the listener and the
   reconciler do, until Redis is empty; CDRs per second, and the drain time;
3. the same backlog settled in one process without RQ (`settle_all`), for the RQ overhead.
Uses a scratch database and key prefix, both removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select, text

from lua.credit import CreditEngine
from lua.keys import Keys
from ops.redis_server import connect
from schema import AccountGroup, Cdr, Clid, Reseller, migrate
from schema.db import create_database, make_engine, session_factory
from workers.jobs import request_settlement, settle_queue
from workers.settle import cdr_row, read_ended, settle_all

T0 = 1_795_000_000_000
ASTERBILL = str(Path(sys.executable).with_name("asterbill"))


def build_tenants(factory, resellers: int, booths: int) -> dict[int, list[tuple[int, int]]]:
    """Reseller id -> [(group id, clid id)]: `booths` booths per reseller, 20 per group."""
    out: dict[int, list[tuple[int, int]]] = {}
    with factory() as session, session.begin():
        for r in range(resellers):
            reseller = Reseller(name=f"bench-r{r}")
            session.add(reseller)
            group = None
            for b in range(booths):
                if b % 20 == 0:
                    group = AccountGroup(name=f"bench-r{r}-g{b // 20}", reseller=reseller)
                    session.add(group)
                session.add(Clid(clid=f"{r:02d}{b:05d}", pin=f"9{r:02d}{b:08d}", group=group))
        session.flush()
        for clid in session.scalars(select(Clid)):
            out.setdefault(clid.group.reseller_id, []).append((clid.group_id, clid.id))
    return out


def fill(credit: CreditEngine, tenants: dict, calls: int) -> None:
    """`calls` ended calls, as the end script leaves them, round-robin over the booths."""
    pipe = credit.client.pipeline(transaction=False)
    resellers = sorted(tenants)
    for i in range(calls):
        reseller = resellers[i % len(resellers)]
        group, clid = tenants[reseller][(i // len(resellers)) % len(tenants[reseller])]
        billsec = 5 + i % 300
        answer = T0 + i * 10
        prices = (billsec * 10_000, billsec * 5_000, billsec * 2_000)
        record = f"{clid},{group},{answer},{answer + billsec * 1000 + 400},{billsec}," + (
            f"{prices[0]},{prices[1]},{prices[2]},1,2,3,0"
        )
        meta = json.dumps(
            {
                "uniqueid": f"bench.{i}",
                "linkedid": f"bench.{i}",
                "channel": f"SIP/{clid}-{i:08x}",
                "dstchannel": f"SIP/trunk-{i:08x}",
                "src": str(clid),
                "dst": "00493012345678",
                "dialed_us": (answer - 4000) * 1000,
                "hangup_cause": 16,
                "hangup_cause_text": "Normal Clearing",
                "destination": "Germany",
                "flags": [],
            },
            separators=(",", ":"),
        )
        pipe.hset(credit.keys.ended(reseller), f"bench.{i}", record)
        pipe.hset(credit.keys.meta(reseller), f"bench.{i}", meta)
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()


def raw_insert_rate(engine, rows: list[dict]) -> float:
    """The database's own ceiling for these rows: raw executemany, 2,000 rows a statement."""
    columns = list(rows[0])
    sql = (
        f"INSERT INTO cdrs_raw ({', '.join(columns)}) "  # noqa: S608 (fixed column names)
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    values = [tuple(r[c] for c in columns) for r in rows]
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE cdrs_raw LIKE cdrs"))
        conn.commit()
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor()
        started = time.perf_counter()
        for i in range(0, len(values), 2000):
            cursor.executemany(sql, values[i : i + 2000])
            raw.commit()
        elapsed = time.perf_counter() - started
        conn.execute(text("DROP TABLE cdrs_raw"))
    return len(values) / elapsed


def drain_with_workers(credit: CreditEngine, env: dict, workers: int, log) -> float:
    """Seconds until `workers` RQ workers have settled every waiting call."""
    procs = [
        subprocess.Popen([ASTERBILL, "worker"], env=env, stdout=log, stderr=log)
        for _ in range(workers)
    ]
    try:
        time.sleep(3)  # let them start and connect
        queue = settle_queue(credit.client, credit.keys.prefix)
        started = time.perf_counter()
        while True:
            waiting = credit.resellers_with_calls("ended")
            if not waiting:
                return time.perf_counter() - started
            for reseller in waiting:  # what the listener and the reconciler do
                request_settlement(queue, reseller)
            time.sleep(0.05)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--resellers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mysql", default="mysql+mysqldb://root@127.0.0.1:3306")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    prefix = f"benchsettle{secrets.token_hex(3)}"
    url = f"{args.mysql}/{prefix}"
    create_database(url)
    engine = make_engine(url)
    client = connect(args.redis)
    credit = CreditEngine(client, Keys(prefix))
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": args.redis}
    env["ASTERBILL_KEY_PREFIX"] = prefix
    env["ASTERBILL_LOG_LEVEL"] = "WARNING"
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpu(s)")
    print(f"mariadb: {engine.connect().execute(text('SELECT VERSION()')).scalar()}")
    try:
        migrate.upgrade(engine)
        factory = session_factory(engine)
        tenants = build_tenants(factory, args.resellers, 200)

        fill(credit, tenants, args.calls)
        rows = [cdr_row(c) for r in tenants for c in read_ended(credit, r, limit=None)]
        ceiling = raw_insert_rate(engine, rows)
        print(f"raw executemany of the same {len(rows):,} rows (ceiling): {ceiling:10,.0f} rows/s")

        with tempfile.TemporaryFile("w+") as log:
            elapsed = drain_with_workers(credit, env, args.workers, log)
            log.seek(0)
            lines = [line for line in log.read().splitlines() if "retried" in line]
            retried = len(lines)
            if lines:
                print("e.g.", lines[0][:300])
        with factory() as session:
            settled = session.scalar(select(func.count()).select_from(Cdr))
        assert settled == args.calls, f"{settled} CDRs for {args.calls} calls"
        rate = args.calls / elapsed
        print(
            f"RQ workers x{args.workers}: {args.calls:,} waiting calls drained in {elapsed:.1f} s"
            f" = {rate:,.0f} CDRs/s ({rate / ceiling:.0%} of the raw insert);"
            f" {retried} batch(es) retried after a lock conflict"
        )

        with engine.begin() as conn:  # the same backlog again, settled in this process
            conn.execute(text("DELETE FROM cdrs"))
            for model in (Clid, AccountGroup, Reseller):
                conn.execute(model.__table__.update().values(curcredit=0))
        fill(credit, tenants, args.calls)
        started = time.perf_counter()
        report = settle_all(factory, credit, limit=2000)
        elapsed = time.perf_counter() - started
        assert report.written == args.calls
        print(f"settle_all in one process (no RQ): {args.calls / elapsed:,.0f} CDRs/s")
    finally:
        engine.dispose()
        with make_engine(args.mysql + "/").begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{prefix}`"))
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        keys += list(client.scan_iter(match=f"rq:*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main()
