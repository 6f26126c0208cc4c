"""Wiring of `asterbill agi`: the credit engine, the scripts, the TCP server."""

from __future__ import annotations

import asyncio
import logging

from ami_listener.agi.admission import Admitter
from ami_listener.agi.card import CardIvr
from ami_listener.agi.pins import PinGuard
from ami_listener.agi.protocol import AgiApplication, serve
from ami_listener.agi.scripts import AgiScripts
from lua.credit import CreditEngine
from ops.settings import Settings
from rating.book import RedisRateBook

log = logging.getLogger("asterbill.agi")


def build_scripts(engine: CreditEngine, settings: Settings) -> AgiScripts:
    admitter = Admitter(engine, RedisRateBook(engine.client, engine.keys), settings)
    pins = PinGuard(engine.client, engine.keys, settings)
    return AgiScripts(admitter, settings, CardIvr(pins))


async def start(scripts: AgiScripts, host: str, port: int) -> tuple[AgiApplication, asyncio.Server]:
    """The server, listening (port 0: a free one, read it from `server.sockets`)."""
    app = AgiApplication(loop=asyncio.get_running_loop())
    scripts.install(app)
    server = await serve(app, host, port)
    return app, server


async def run_forever(engine: CreditEngine, settings: Settings, retry_s: float = 5.0) -> None:
    scripts = build_scripts(engine, settings)
    while True:
        try:
            _, server = await start(scripts, settings.agi_host, settings.agi_port)
            break
        except OSError as exc:
            # Another process holds the port (a restart race): exiting would stop every
            # process of `asterbill run` (honcho), so wait for the port instead.
            log.error(
                "FastAGI cannot listen on %s:%d (%s); retrying in %.0f s (ASTERBILL_AGI_PORT)",
                settings.agi_host,
                settings.agi_port,
                exc.strerror or exc,
                retry_s,
            )
            await asyncio.sleep(retry_s)
    log.info("FastAGI on %s:%d (agi://HOST/admit, /balance, /card)", *_bound(server))
    async with server:
        await server.serve_forever()


def _bound(server: asyncio.Server) -> tuple[str, int]:
    return server.sockets[0].getsockname()[:2]
