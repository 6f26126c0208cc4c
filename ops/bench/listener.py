"""Listener benchmark: `python -m ops.bench.listener [--concurrent 2000] [--block 1]`.

The PBX simulator runs in its own process (`asterbill pbx-sim`, generator mode) and places
`--concurrent` calls at `--cps`, each talking `--talk` seconds; the real listener (panoramisk)
bills them on the local Redis, every level prepaid, one booth in twenty with credit for ten
blocks only (so some calls are cut and hung up). Reports AMI events per second ingested, how
late boundaries were paid after their moment (due - guard; p50 / p99 / max), and how long a
Hangup took. Uses a scratch key prefix, removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ami_listener.billing import Biller
from ami_listener.service import Listener
from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from ops.redis_server import connect
from ops.settings import load_settings
from rating.book import RedisRateBook
from rating.price import Rate
from rating.select import BookRow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(args) -> None:
    prefix = f"abbench{secrets.token_hex(3)}"
    port = free_port()
    client = connect(args.redis)
    keys = Keys(prefix)
    engine, book = CreditEngine(client, keys), RedisRateBook(client, keys)
    rate = Rate(1, 0, 0, 60_000 * args.block, args.block, "Bench")  # 0.001 a second
    book.replace([BookRow("customer", "00", 0, 0, 0, rate)])
    for i in range(args.booths):
        small = i % 20 == 0  # these run out after ten blocks
        limit = 10 * 1_000 * args.block if small else 10**13
        engine.provision(
            Payer(1, 1 + i // 50, 8001 + i),
            payer_key=str(8001 + i),
            limits={
                "clid": ("prepaid", limit),
                "group": ("prepaid", 10**14),
                "reseller": ("prepaid", 10**15),
            },
        )
    settings = load_settings(
        environ={
            "AMI_HOST": "127.0.0.1",
            "AMI_PORT": str(port),
            "AMI_USER": "bench",
            "AMI_SECRET": "bench",
            "REDIS_URL": args.redis,
            "ASTERBILL_KEY_PREFIX": prefix,
            "ASTERBILL_GUARD_MS": str(args.guard_ms),
            "ASTERBILL_LOG_LEVEL": "WARNING",
        },
        env_file=None,
    )
    total_calls = args.calls or args.concurrent * 2
    sim = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("asterbill")),
            "pbx-sim",
            "--port",
            str(port),
            "--user",
            "bench",
            "--secret",
            "bench",
            "--calls",
            str(total_calls),
            "--concurrent",
            str(args.concurrent),
            "--cps",
            str(args.cps),
            "--booths",
            str(args.booths),
            "--talk",
            f"{args.talk}:{args.talk}",
            "--answer-ratio",
            "1",
            "--numbers",
            "00493012345678,00442071234567",
        ],
        env={**os.environ, "ASTERBILL_LOG_LEVEL": "WARNING"},
        start_new_session=True,
    )
    listener = Listener(settings, Biller(engine, book, settings))
    try:
        await asyncio.sleep(1.0)
        task = asyncio.create_task(listener.run())
        start = time.monotonic()
        peak, samples = 0, []
        backlog = 0
        while sim.poll() is None:
            await asyncio.sleep(1.0)
            live = client.hlen(keys.calls(1))
            peak = max(peak, live)
            backlog = max(backlog, listener.queue.qsize())
            samples.append((time.monotonic() - start, listener.stats.events, live))
        with contextlib.suppress(TimeoutError):  # drain, but not forever
            await asyncio.wait_for(listener.queue.join(), timeout=args.drain)
        left = listener.queue.qsize()
        elapsed = time.monotonic() - start
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        listener.close()
        if sim.poll() is None:
            os.killpg(sim.pid, signal.SIGTERM)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)

    lags = list(listener.stats.wake_lag_ms)
    hangups = list(listener.stats.hangup_lag_ms)
    busiest = (
        max((b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(samples))
        if len(samples) > 1
        else 0
    )
    print(
        f"machine: {platform.node()} {platform.machine()} {platform.python_version()}, "
        f"{os.cpu_count()} cores (simulator, listener and Redis share them)"
    )
    print(
        f"calls: {total_calls:,} placed, peak {peak:,} live at once, {args.block} s blocks, "
        f"{args.talk} s talk, {args.cps} calls/s"
    )
    print(
        f"AMI events ingested: {listener.stats.events:,} in {elapsed:.0f} s, busiest second "
        f"{busiest:,.0f} events/s; errors {listener.stats.errors}; largest backlog "
        f"{backlog:,} events, {left:,} still queued {args.drain:.0f} s after the last call"
        + (" -> THE LISTENER FELL BEHIND" if left else "")
    )
    print(
        f"boundary payment lag (ms after due - guard, {len(lags):,} wakes): "
        f"p50 {percentile(lags, 50):.0f}, p99 {percentile(lags, 99):.0f}, "
        f"max {max(lags) if lags else float('nan'):.0f} (guard {args.guard_ms} ms)"
    )
    print(
        f"hang-ups: {len(hangups):,}; AMI Hangup round trip p50 "
        f"{percentile(hangups, 50):.1f} ms, p99 {percentile(hangups, 99):.1f} ms, max "
        f"{max(hangups) if hangups else float('nan'):.1f} ms"
    )
    if lags:
        print(f"mean lag {statistics.mean(lags):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--cps", type=float, default=200)
    parser.add_argument(
        "--calls", type=int, default=0, help="calls to place in all (default: 2 x --concurrent)"
    )
    parser.add_argument("--talk", type=float, default=30)
    parser.add_argument("--block", type=int, default=1, help="billing block, seconds")
    parser.add_argument("--booths", type=int, default=500)
    parser.add_argument("--guard-ms", type=int, default=500)
    parser.add_argument("--drain", type=float, default=30, help="seconds to drain at the end")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
