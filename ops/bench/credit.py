"""Credit engine benchmark: `python -m ops.bench.credit [--calls 20000]`.

Boundaries paid per second, against a no-op EVALSHA on the same Redis in the same run:
- the batch form (extendDue-4.lua), N live calls with 1 s blocks, the clock stepped 1 s a run;
- the single form (extendCall-4.lua), pipelined 100 a round trip;
and the Redis memory per active call (INFO used_memory before and after answering N calls).
Uses a scratch key prefix, removed afterwards.
"""

from __future__ import annotations

import argparse
import platform
import secrets
import time

from lua.credit import CreditEngine, Payer, Pricing
from lua.keys import Keys
from ops.bench.rating import noop_rate
from ops.redis_server import connect
from rating.price import Rate

T0 = 1_795_000_000_000
PER_SECOND = Rate(1, 0, 0, 600_000, 1)  # 0.01 a second: a boundary every second
RESELLER = 1


def setup(engine: CreditEngine, calls: int, booths_per_group: int = 20) -> None:
    for b in range(max(1, calls // 100)):
        payer = Payer(RESELLER, 1 + b // booths_per_group, 1000 + b)
        engine.provision(
            payer,
            limits={
                "clid": ("prepaid", 10**12),
                "group": ("prepaid", 10**13),
                "reseller": ("prepaid", 10**14),
            },
        )
    pricing = Pricing(PER_SECOND, PER_SECOND, PER_SECOND)
    booths = max(1, calls // 100)
    pipe = engine.client.pipeline(transaction=False)
    for i in range(calls):
        b = i % booths
        payer = Payer(RESELLER, 1 + b // booths_per_group, 1000 + b)
        engine.scripts.answer_call(
            keys=engine._answer_keys(RESELLER),
            args=[RESELLER, f"call{i}", payer.clid_id, payer.group_id, T0, *pricing.args(), ""],
            client=pipe,
        )
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def batch_rate(engine: CreditEngine, calls: int, seconds: int, batch: int) -> float:
    paid = 0
    start = time.perf_counter()
    for s in range(1, seconds + 1):
        until = T0 + (s + 1) * 1000
        while True:
            result = engine.extend_due(RESELLER, until, batch)
            paid += result.paid
            if result.next_due_ms > until or result.next_due_ms < 0 or not result.paid:
                break
    elapsed = time.perf_counter() - start
    assert paid == calls * seconds, (paid, calls * seconds)
    return paid / elapsed


def single_rate(engine: CreditEngine, calls: int, boundary: int) -> float:
    pipe = engine.client.pipeline(transaction=False)
    start = time.perf_counter()
    for i in range(calls):
        engine.scripts.extend_call(
            keys=engine._call_keys(RESELLER), args=[RESELLER, f"call{i}", boundary], client=pipe
        )
        if len(pipe) >= 100:
            pipe.execute()
    pipe.execute()
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    client = connect(args.redis)
    engine = CreditEngine(client, Keys(f"abbench{secrets.token_hex(3)}"))
    print(f"machine: {platform.node()} {platform.machine()} {platform.python_version()}")
    try:
        ceiling = noop_rate(client, 50_000)
        before = used_memory(client)
        setup(engine, args.calls)
        after = used_memory(client)
        booths = max(1, args.calls // 100)
        per_call = (after - before) / args.calls
        batch = batch_rate(engine, args.calls, args.seconds, args.batch)
        single = single_rate(engine, args.calls, args.seconds + 2)
        print(f"no-op EVALSHA, pipelined x100 (ceiling): {ceiling:10,.0f} /s")
        print(
            f"batch extend, {args.calls:,} calls, 1 s blocks, {args.batch} per run: "
            f"{batch:10,.0f} boundaries/s ({batch / ceiling:.0%} of the no-op rate)"
        )
        print(
            f"single extend, pipelined x100:           {single:10,.0f} boundaries/s "
            f"({single / ceiling:.0%} of the no-op rate)"
        )
        print(
            f"Redis memory per active call:            {per_call:10,.0f} bytes "
            f"({args.calls:,} calls, {booths} booths; includes the booths' balances)"
        )
    finally:
        for key in client.scan_iter(match=f"{engine.keys.prefix}*", count=1000):
            client.delete(key)


if __name__ == "__main__":
    main()
