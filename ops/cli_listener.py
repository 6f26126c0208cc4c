"""`asterbill listener` (the AMI listener) and `asterbill pbx-sim` (a simulated Asterisk)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from ops.cli import settings_of


@click.command()
@click.pass_context
def listener(ctx: click.Context) -> None:
    """Follow the calls of Asterisk (AMI_* settings) and bill them in real time."""
    from ami_listener.billing import Biller
    from ami_listener.service import Listener
    from lua.credit import CreditEngine
    from lua.keys import Keys
    from ops import redis_server
    from rating.book import RedisRateBook

    settings = settings_of(ctx)
    # Timeouts: a frozen Redis must fail the call (the credit-failure policy then cuts from
    # the listener's own table), never hang the scheduler.
    client = redis_server.connect(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    redis_server.wait_until_up(client, logging.getLogger("asterbill.listener"))
    keys = Keys(settings.key_prefix)
    biller = Biller(CreditEngine(client, keys), RedisRateBook(client, keys), settings)

    async def main() -> None:
        service = Listener(settings, biller)
        try:
            await service.run()
        finally:
            service.close()

    asyncio.run(main())


@click.command("pbx-sim")
@click.option(
    "--port",
    type=int,
    default=None,
    help="Port to listen on (default: ASTERBILL_SIM_PORT, 5039; never a real Asterisk's 5038).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--user", default=None, help="AMI user to accept (default: AMI_USER).")
@click.option("--secret", default=None, help="AMI secret to accept (default: AMI_SECRET).")
@click.option(
    "--replay",
    "replay_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay this capture (shared/ami-captures/*.jsonl).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),  # 0 would divide by zero
    default=1.0,
    show_default=True,
    help="Replay pace multiplier (Timestamp headers follow).",
)
@click.option("--booths", type=int, default=5, show_default=True)
@click.option("--calls", type=int, default=20, show_default=True, help="Generated calls.")
@click.option("--concurrent", type=int, default=None, help="At most this many at once.")
@click.option("--cps", type=float, default=1.0, show_default=True, help="New calls a second.")
@click.option("--talk", default="5:60", show_default=True, help="Talk seconds MIN:MAX.")
@click.option("--answer-ratio", type=float, default=0.8, show_default=True)
@click.option(
    "--numbers",
    default="00493012345678,00442071234567,0086139123456789",
    show_default=True,
    help="Dialed numbers, comma separated.",
)
@click.option("--seed", type=int, default=1)
@click.option("--forever", is_flag=True, help="Keep serving after the calls are done.")
@click.option(
    "--down-for",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds a killed or restarted simulator stays down (signals USR1, HUP).",
)
@click.pass_context
def pbx_sim(
    ctx,
    port,
    host,
    user,
    secret,
    replay_file,
    speed,
    booths,
    calls,
    concurrent,
    cps,
    talk,
    answer_ratio,
    numbers,
    seed,
    forever,
    down_for,
) -> None:
    """A simulated Asterisk speaking AMI: replays a capture, or generates booth calls.

    Faults on a signal: SIGUSR1 kills it (no Hangup or Cdr for the calls up) and starts it
    again after --down-for seconds; SIGHUP restarts it cleanly (`core restart now`: calls
    hung up, then Shutdown); SIGUSR2 drops the oldest client's connection. A restarted
    simulator counts channel names from the start again, as Asterisk does."""
    from ops import pbx_sim as sim
    from ops.errors import InvalidInput

    settings = settings_of(ctx)
    low, _, high = talk.partition(":")
    try:
        talk_range = (float(low), float(high or low))
    except ValueError:
        raise InvalidInput(f"--talk {talk!r}: expected MIN:MAX seconds") from None

    async def main() -> None:
        server = sim.AmiServer(
            user or settings.ami_user, settings.ami_secret if secret is None else secret
        )
        bound = await server.start(host, settings.sim_port if port is None else port)
        click.echo(f"pbx-sim: AMI on {host}:{bound}", err=True)
        _fault_signals(server, down_for)
        if replay_file:
            await sim.replay(server, replay_file, speed)
        else:
            plans = sim.random_plans(
                calls, booths, seed, answer_ratio, talk_range, numbers.split(",")
            )
            await sim.run_generator(server, plans, cps, concurrent)
        if forever:
            await asyncio.Event().wait()
        await asyncio.sleep(1)  # let the last events reach the listener
        await server.close()

    asyncio.run(main())


def _fault_signals(server, down_for: float) -> None:
    """Signals that inject the simulator's faults (see `asterbill pbx-sim --help`)."""
    import signal

    loop = asyncio.get_running_loop()
    faults: set[asyncio.Task] = set()

    def start(fault) -> None:
        task = asyncio.ensure_future(fault)
        faults.add(task)
        task.add_done_callback(faults.discard)

    log = logging.getLogger("asterbill.pbx_sim")
    actions = {
        signal.SIGUSR1: ("killed", lambda: start(server.restart(clean=False, down_for=down_for))),
        signal.SIGHUP: ("restarting", lambda: start(server.restart(clean=True, down_for=down_for))),
        signal.SIGUSR2: ("dropping a client", lambda: server.drop_client(0)),
    }
    for signum, (what, act) in actions.items():

        def handler(what=what, act=act) -> None:
            log.warning("pbx-sim: %s", what)
            act()

        loop.add_signal_handler(signum, handler)
