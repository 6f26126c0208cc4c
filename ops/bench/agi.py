"""FastAGI benchmark: `python -m ops.bench.agi [--sessions 5000] [--concurrent 50]`.

Admissions per second through `agi://HOST/admit` over TCP (the real server in a process of
its own, a real Redis, a provisioned prepaid booth and rate book), against a bare FastAGI echo
on the same machine in the same run: the same server class and protocol, answering the same
four SET VARIABLE commands without Redis. The client (this process) plays Asterisk: the
`agi_*` environment, then a `200 result=1` per command. Uses a scratch key prefix, removed
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import platform
import secrets
import socket
import time

from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from ops.redis_server import connect
from ops.settings import load_settings
from rating.book import RedisRateBook
from rating.price import Rate
from rating.select import BookRow

DE = Rate(5, 400_000, 60, 400_000, 60, "Germany")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(kind: str, port: int, redis_url: str, prefix: str, ready) -> None:
    from ami_listener.agi.protocol import AgiApplication, serve
    from ami_listener.agi.server import build_scripts

    async def echo(session) -> None:
        for name, value in (("ASTERBILL_STATUS", "OK"), ("ASTERBILL_MAXSEC", "1500")):
            await session.set_variable(name, value)
        await session.set_variable("ASTERBILL_DESTINATION", "Germany")
        await session.set_variable("ASTERBILL_REASON", "")

    async def main() -> None:
        app = AgiApplication(loop=asyncio.get_running_loop())
        if kind == "echo":
            app.add_route("admit", echo)
        else:
            settings = load_settings({"ASTERBILL_KEY_PREFIX": prefix}, env_file=None)
            engine = CreditEngine(connect(redis_url), Keys(prefix))
            build_scripts(engine, settings).install(app)
        server = await serve(app, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


ENV = (
    "agi_network: yes\nagi_network_script: admit\nagi_request: agi://127.0.0.1/admit\n"
    "agi_channel: SIP/8001-{n:08x}\nagi_language: en\nagi_type: SIP\n"
    "agi_uniqueid: 1795000000.{n}\nagi_version: 18.20.0\nagi_callerid: 8001\n"
    "agi_calleridname: Booth\nagi_context: booths\nagi_extension: 004930123456\n"
    "agi_priority: 2\nagi_enhanced: 0.0\nagi_accountcode: \n\n"
)


async def _session(port: int, n: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(ENV.format(n=n).encode())
    status = ""
    while line := await reader.readline():
        if line.startswith(b"SET VARIABLE ASTERBILL_STATUS"):
            status = line.decode().split('"')[1]
        writer.write(b"200 result=1\n")
    writer.close()
    return status == "OK"


async def _drive(port: int, sessions: int, concurrent: int) -> tuple[float, int]:
    gate = asyncio.Semaphore(concurrent)
    ok = 0

    async def one(n: int) -> None:
        nonlocal ok
        async with gate:
            answered = await _session(port, n)
        ok += answered  # after the await: `ok += await ...` reads ok before it

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(sessions)))
    return time.perf_counter() - started, ok


def measure(kind: str, redis_url: str, prefix: str, sessions: int, concurrent: int):
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_serve, args=(kind, port, redis_url, prefix, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError(f"{kind} server did not start")
        asyncio.run(_drive(port, min(500, sessions), concurrent))  # warm-up
        elapsed, ok = asyncio.run(_drive(port, sessions, concurrent))
    finally:
        proc.terminate()
        proc.join()
    return sessions / elapsed, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"abbench{secrets.token_hex(3)}"
    client = connect(args.redis)
    keys = Keys(prefix)
    RedisRateBook(client, keys).replace([BookRow("customer", "0049", 0, 0, 0, DE)])
    CreditEngine(client, keys).provision(
        Payer(1, 10, 100), payer_key="8001", limits={"clid": ("prepaid", 10**7)}
    )
    try:
        print(
            f"{platform.node()} {platform.processor() or platform.machine()}, "
            f"{multiprocessing.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(f"{args.sessions} sessions, {args.concurrent} at once, 4 SET VARIABLE each")
        echo, echo_ok = measure("echo", args.redis, prefix, args.sessions, args.concurrent)
        admit, admit_ok = measure("admit", args.redis, prefix, args.sessions, args.concurrent)
        print(f"bare FastAGI echo : {echo:8.0f} sessions/s ({echo_ok} OK)")
        print(
            f"admit (Redis)     : {admit:8.0f} admissions/s ({admit_ok} OK), "
            f"{admit / echo:.0%} of the echo"
        )
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)


if __name__ == "__main__":
    main()
